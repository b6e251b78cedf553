# CloudWatch alarms for msk-sidecar, for ECS (ecs-sidecar uses this module) and EKS (logs shipped
# to CloudWatch by Fluent Bit or Container Insights): MSK's own consumer-lag metrics per topic, and
# metric filters on the sidecar's JSON log lines (SIDECAR_LOG_FORMAT=json, the default) for dead
# letters and authentication failures. The Prometheus rules in infra/observability/ say the same
# from the sidecar's /metrics.

locals {
  cluster_name = split("/", var.msk_cluster_arn)[1]
  # A pattern subscription has no fixed topic to watch.
  topics    = [for t in var.topics : t if !startswith(t, "^")]
  namespace = "msk-sidecar/${var.name}"

  lag_alarms = merge(
    { for t in local.topics : "${t}/offset" => {
      topic       = t
      metric      = "SumOffsetLag"
      threshold   = var.offset_lag_threshold
      description = "msk-sidecar ${var.name}: group ${var.consumer_group} is more than ${var.offset_lag_threshold} records behind on ${t}"
    } },
    { for t in local.topics : "${t}/time" => {
      topic       = t
      metric      = "EstimatedMaxTimeLag"
      threshold   = var.time_lag_threshold_seconds
      description = "msk-sidecar ${var.name}: group ${var.consumer_group} is more than ${var.time_lag_threshold_seconds} s behind on ${t}"
    } },
  )
}

resource "aws_cloudwatch_metric_alarm" "lag" {
  for_each = local.lag_alarms

  alarm_name          = "${var.name}-${replace(each.key, "/", "-")}-lag"
  alarm_description   = each.value.description
  namespace           = "AWS/Kafka"
  metric_name         = each.value.metric
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = var.lag_evaluation_minutes
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  # No data: MSK publishes no lag for a group that does not consume (or keeps rebalancing);
  # watch the service's running task count for that.
  treat_missing_data = "notBreaching"
  dimensions = {
    "Cluster Name"   = local.cluster_name
    "Consumer Group" = var.consumer_group
    "Topic"          = each.value.topic
  }
  alarm_actions = var.alarm_actions
  ok_actions    = var.alarm_actions
  tags          = var.tags
}

resource "aws_cloudwatch_log_metric_filter" "dead_letters" {
  name           = "${var.name}-dead-letters"
  log_group_name = var.log_group_name
  pattern        = "{ $.message = \"Record dead-lettered.\" }"

  metric_transformation {
    name      = "DeadLetters"
    namespace = local.namespace
    value     = "1"
    unit      = "Count"
    dimensions = {
      ErrorClass = "$.error_class"
    }
  }
}

resource "aws_cloudwatch_log_metric_filter" "auth_failures" {
  name           = "${var.name}-auth-failures"
  log_group_name = var.log_group_name
  pattern        = "{ ($.message = \"Kafka authentication failed.\") || ($.message = \"Cannot sign an MSK IAM token.\") || ($.message = \"Cannot load AWS credentials: IAM tokens cannot be signed.\") }"

  metric_transformation {
    name          = "AuthFailures"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = toset(var.dead_letter_error_classes)

  alarm_name          = "${var.name}-dead-letters-${each.key}"
  alarm_description   = "msk-sidecar ${var.name}: ${each.key} dead letters (look at them, then redrive)"
  namespace           = local.namespace
  metric_name         = "DeadLetters"
  dimensions          = { ErrorClass = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
  depends_on          = [aws_cloudwatch_log_metric_filter.dead_letters]
}

resource "aws_cloudwatch_metric_alarm" "auth_failures" {
  alarm_name          = "${var.name}-auth-failures"
  alarm_description   = "msk-sidecar ${var.name}: MSK IAM tokens cannot be made, or the brokers refuse them"
  namespace           = local.namespace
  metric_name         = "AuthFailures"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
  depends_on          = [aws_cloudwatch_log_metric_filter.auth_failures]
}
