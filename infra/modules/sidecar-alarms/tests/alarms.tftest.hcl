# Offline tests with a mocked AWS provider: which alarms exist, on which metrics and dimensions,
# and that the log filters match the sidecar's JSON log lines.

mock_provider "aws" {}

variables {
  name            = "orders"
  msk_cluster_arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
  consumer_group  = "staging-orders-sidecar"
  topics          = ["orders", "payments", "^audit\\..*"]
  log_group_name  = "/ecs/orders"
  alarm_actions   = ["arn:aws:sns:eu-west-1:123456789012:oncall"]
}

run "alarms_per_topic_and_class" {
  command = apply

  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.lag)) == toset(["orders/offset", "orders/time", "payments/offset", "payments/time"])
    error_message = "Each named topic gets an offset-lag and a time-lag alarm; the ^pattern none."
  }

  assert {
    condition = aws_cloudwatch_metric_alarm.lag["orders/time"].metric_name == "EstimatedMaxTimeLag" && aws_cloudwatch_metric_alarm.lag["orders/time"].dimensions == tomap({
      "Cluster Name" = "orders-cluster", "Consumer Group" = "staging-orders-sidecar", "Topic" = "orders"
    })
    error_message = "Lag alarms watch MSK's metric of the effective group and the topic."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.lag["payments/offset"].metric_name == "SumOffsetLag" && aws_cloudwatch_metric_alarm.lag["payments/offset"].threshold == 10000
    error_message = "The offset-lag alarm uses SumOffsetLag and the default threshold."
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.dead_letters) == 8 && aws_cloudwatch_metric_alarm.dead_letters["undecodable"].dimensions == tomap({ ErrorClass = "undecodable" })
    error_message = "Every error class gets a dead-letter alarm on the log filter's metric."
  }

  assert {
    condition     = aws_cloudwatch_log_metric_filter.dead_letters.pattern == "{ $.message = \"Record dead-lettered.\" }" && aws_cloudwatch_log_metric_filter.dead_letters.metric_transformation[0].dimensions == tomap({ ErrorClass = "$.error_class" })
    error_message = "The dead-letter filter matches the sidecar's log line and counts by its error_class field."
  }

  assert {
    condition     = alltrue([for a in aws_cloudwatch_metric_alarm.lag : a.alarm_actions == toset(var.alarm_actions)]) && aws_cloudwatch_metric_alarm.auth_failures.alarm_actions == toset(var.alarm_actions)
    error_message = "Every alarm notifies the alarm actions."
  }
}

run "bad_cluster_arn" {
  command = plan

  variables {
    msk_cluster_arn = "orders-cluster"
  }

  expect_failures = [var.msk_cluster_arn]
}
