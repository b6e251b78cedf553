# msk-sidecar next to an application in one ECS task: the task definition (application +
# sidecar), its two IAM roles, the dead-letter archive bucket, optional SQS delivery queue, the
# log group, and optionally the service with its security group and lag-based autoscaling.

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition
  account   = data.aws_caller_identity.current.account_id

  sidecar_container_name = "msk-sidecar"
  # ECS sends SIGTERM, waits stopTimeout, then SIGKILL: leave the sidecar its whole drain grace.
  sidecar_stop_timeout = var.sidecar_shutdown_grace_seconds + 10

  msk_cluster_name = split("/", var.msk_cluster_arn)[1]
  ecs_cluster_name = var.cluster_arn == null ? null : element(split("/", var.cluster_arn), length(split("/", var.cluster_arn)) - 1)
  is_fargate       = contains(var.requires_compatibilities, "FARGATE")

  archive_bucket = var.create_archive_bucket ? module.storage.archive_bucket_id : var.archive_bucket_name
  archive_prefix = var.archive_prefix == null ? var.kafka_consumer_group : var.archive_prefix

  sqs_delivery  = var.create_sqs_queue || var.sqs_queue_url != null
  sqs_queue_url = var.create_sqs_queue ? module.storage.sqs_queue_url : var.sqs_queue_url
  sqs_queue_arn = var.create_sqs_queue ? module.storage.sqs_queue_arn : var.sqs_queue_arn

  # The SQS source: every queue's dead-letter queue once (queues may share one), none for a queue
  # without a RedrivePolicy.
  sqs_source_dead_letter_queue_arns = distinct([for q in var.sqs_source_queues : q.dead_letter_queue_arn if q.dead_letter_queue_arn != null])

  create_security_group = var.vpc_id != null
  create_autoscaling    = var.create_service && var.enable_autoscaling
}

################################################################################
# The sidecar's IAM policy and the AWS resources it writes to
################################################################################

module "iam_policy" {
  source = "../sidecar-iam-policy"

  msk_cluster_arn = var.msk_cluster_arn
  topics          = var.kafka_topics
  dlq_topic       = var.dlq_topic
  consumer_group  = var.kafka_consumer_group
  archive_bucket  = local.archive_bucket
  archive_prefix  = local.archive_prefix
  sqs_queue_arn   = local.sqs_queue_arn

  sqs_source_queue_arns             = [for q in var.sqs_source_queues : q.arn]
  sqs_source_dead_letter_queue_arns = local.sqs_source_dead_letter_queue_arns
  schema_registry                   = var.schema_registry
  environment                       = var.environment
  consumer_group_prefix             = var.kafka_consumer_group_prefix
  consumer_group_suffix             = var.kafka_consumer_group_suffix
}

module "alarms" {
  source = "../sidecar-alarms"
  count  = var.create_alarms ? 1 : 0

  name            = var.name
  msk_cluster_arn = var.msk_cluster_arn
  consumer_group  = module.iam_policy.consumer_group
  topics          = var.kafka_topics
  log_group_name  = aws_cloudwatch_log_group.this.name
  alarm_actions   = var.alarm_actions
  tags            = var.tags
}

module "storage" {
  source = "../sidecar-storage"

  name = var.name
  tags = var.tags

  create_archive_bucket              = var.create_archive_bucket
  archive_bucket_name                = var.archive_bucket_name
  archive_force_destroy              = var.archive_force_destroy
  archive_kms_key_arn                = var.archive_kms_key_arn
  archive_transition_to_glacier_days = var.archive_transition_to_glacier_days
  archive_expiration_days            = var.archive_expiration_days
  archive_logging                    = var.archive_logging

  create_sqs_queue               = var.create_sqs_queue
  sqs_kms_key_arn                = var.sqs_kms_key_arn
  sqs_visibility_timeout_seconds = var.sqs_visibility_timeout_seconds
  sqs_max_receive_count          = var.sqs_max_receive_count
}

################################################################################
# Container definitions
################################################################################

locals {
  # The contract of DESIGN.md: these names are what the sidecar reads.
  sidecar_environment = merge(
    {
      KAFKA_BROKERS          = var.kafka_brokers
      KAFKA_TOPICS           = join(",", var.kafka_topics)
      KAFKA_CONSUMER_GROUP   = var.kafka_consumer_group
      KAFKA_AUTH             = "msk-iam"
      MSK_CLUSTER_ARN        = var.msk_cluster_arn
      AWS_REGION             = local.region
      SIDECAR_DLQ_TOPIC      = module.iam_policy.dlq_topic
      SIDECAR_DLQ_ARCHIVE    = module.iam_policy.archive_uri
      SIDECAR_ADMIN_ADDR     = var.sidecar_admin_addr
      SIDECAR_SHUTDOWN_GRACE = "${var.sidecar_shutdown_grace_seconds}s"
      SIDECAR_LOG_FORMAT     = "json"
      OTEL_SERVICE_NAME      = var.name
    },
    local.sqs_delivery ? { SIDECAR_DELIVERY_SQS_QUEUE_URL = local.sqs_queue_url } : { SIDECAR_DELIVERY_URL = var.delivery_url },
    length(var.sqs_source_queues) > 0 ? { SQS_QUEUE_URLS = join(",", [for q in var.sqs_source_queues : q.url]) } : {},
    var.schema_registry != "" ? { SIDECAR_SCHEMA_REGISTRY = var.schema_registry } : {},
    var.environment != "" ? { ENVIRONMENT = var.environment } : {},
    var.kafka_consumer_group_prefix != "" ? { KAFKA_CONSUMER_GROUP_PREFIX = var.kafka_consumer_group_prefix } : {},
    var.kafka_consumer_group_suffix != "" ? { KAFKA_CONSUMER_GROUP_SUFFIX = var.kafka_consumer_group_suffix } : {},
    var.otel_exporter_otlp_endpoint == null ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT = var.otel_exporter_otlp_endpoint },
    var.sidecar_environment,
  )

  log_options = {
    awslogs-group         = aws_cloudwatch_log_group.this.name
    awslogs-region        = local.region
    awslogs-stream-prefix = var.name
  }

  sidecar_container = {
    name      = local.sidecar_container_name
    image     = var.sidecar_image
    essential = true
    cpu       = var.sidecar_cpu
    memory    = var.sidecar_memory
    user      = "65532:65532"

    environment = [for k in sort(keys(local.sidecar_environment)) : { name = k, value = local.sidecar_environment[k] }]

    # Liveness, not readiness: /ready stays 503 while the application is unreachable, and the
    # application only starts once this check passes (dependsOn HEALTHY below), so a readiness
    # check here would never pass: the task would deadlock.
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/msk-sidecar", "healthcheck", "--live"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 10
    }

    stopTimeout            = local.sidecar_stop_timeout
    readonlyRootFilesystem = true
    privileged             = false
    linuxParameters = {
      capabilities = {
        add  = []
        drop = ["ALL"]
      }
    }

    logConfiguration = {
      logDriver = "awslogs"
      options   = local.log_options
    }

    portMappings   = []
    mountPoints    = []
    volumesFrom    = []
    systemControls = []
  }

  application_container = merge(
    {
      name      = var.application.name
      image     = var.application.image
      essential = true

      portMappings = [
        {
          name          = "http"
          containerPort = var.application.port
          hostPort      = var.application.port
          protocol      = "tcp"
        },
      ]

      environment = [for k in sort(keys(var.application.environment)) : { name = k, value = var.application.environment[k] }]
      secrets     = [for k in sort(keys(var.application.secrets)) : { name = k, valueFrom = var.application.secrets[k] }]

      # Start once the sidecar runs; ECS stops containers in the reverse order, so the sidecar
      # also outlives the application on the way down.
      dependsOn = [
        {
          containerName = local.sidecar_container_name
          condition     = "HEALTHY"
        },
      ]

      stopTimeout            = var.application.stop_timeout
      readonlyRootFilesystem = var.application.readonly_root_filesystem
      privileged             = false
      linuxParameters = {
        capabilities = {
          add  = []
          drop = ["ALL"]
        }
      }

      logConfiguration = {
        logDriver = "awslogs"
        options   = local.log_options
      }

      mountPoints    = []
      volumesFrom    = []
      systemControls = []
    },
    var.application.cpu == null ? {} : { cpu = var.application.cpu },
    var.application.memory == null ? {} : { memory = var.application.memory },
    var.application.memory_reservation == null ? {} : { memoryReservation = var.application.memory_reservation },
    var.application.command == null ? {} : { command = var.application.command },
    var.application.entry_point == null ? {} : { entryPoint = var.application.entry_point },
    var.application.user == null ? {} : { user = var.application.user },
    var.application.health_check == null ? {} : {
      healthCheck = {
        command     = var.application.health_check.command
        interval    = var.application.health_check.interval
        timeout     = var.application.health_check.timeout
        retries     = var.application.health_check.retries
        startPeriod = var.application.health_check.start_period
      }
    },
  )
}

################################################################################
# Task definition
################################################################################

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  network_mode             = "awsvpc"
  requires_compatibilities = var.requires_compatibilities
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  container_definitions = jsonencode([local.application_container, local.sidecar_container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:Retention is var.cloudwatch_log_group_retention_in_days (90 days by default): these are operational logs, dead letters themselves are kept in the DLQ topic and the S3 archive.

  name              = "/ecs/${var.name}"
  retention_in_days = var.cloudwatch_log_group_retention_in_days
  kms_key_id        = var.cloudwatch_log_group_kms_key_id

  tags = var.tags
}

################################################################################
# IAM: the task role (the sidecar's exact policy) and the execution role
################################################################################

data "aws_iam_policy_document" "task_assume" {
  statement {
    sid     = "EcsTasksAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only tasks of this account (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

resource "aws_iam_role" "task" {
  name                 = "${var.name}-task"
  description          = "Task role of ${var.name}: msk-sidecar's least-privilege policy (and the application's, if any)"
  path                 = var.iam_role_path
  permissions_boundary = var.iam_role_permissions_boundary
  assume_role_policy   = data.aws_iam_policy_document.task_assume.json

  tags = var.tags
}

# Exactly what `msk-sidecar check-config --iam-policy` prints for the same settings.
resource "aws_iam_role_policy" "sidecar" {
  name   = "msk-sidecar"
  role   = aws_iam_role.task.id
  policy = module.iam_policy.json
}

# With SQS delivery the application (same task role) reads the queue the sidecar fills.
resource "aws_iam_role_policy" "application_queue" {
  count = local.sqs_delivery ? 1 : 0

  name = "application-queue"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ConsumeDeliveries"
        Effect   = "Allow"
        Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        Resource = [local.sqs_queue_arn]
      },
    ]
  })
}

resource "aws_iam_role_policy_attachment" "task" {
  for_each = { for i, arn in var.task_role_policy_arns : tostring(i) => arn }

  role       = aws_iam_role.task.name
  policy_arn = each.value
}

data "aws_iam_policy_document" "execution_assume" {
  statement {
    sid     = "EcsTasksAssumeRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name                 = "${var.name}-execution"
  description          = "Execution role of ${var.name}: pulls the images and writes the logs"
  path                 = var.iam_role_path
  permissions_boundary = var.iam_role_permissions_boundary
  assume_role_policy   = data.aws_iam_policy_document.execution_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy_attachment" "execution_additional" {
  for_each = { for i, arn in var.execution_role_policy_arns : tostring(i) => arn }

  role       = aws_iam_role.execution.name
  policy_arn = each.value
}

################################################################################
# Security group: out to the brokers (9098, IAM listener) and to AWS APIs (443)
################################################################################

resource "aws_security_group" "this" {
  count = local.create_security_group ? 1 : 0

  name_prefix = "${var.name}-"
  description = "Tasks of ${var.name}: egress to the MSK brokers on 9098 and to AWS APIs on 443"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = var.name })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "msk" {
  count = local.create_security_group && var.msk_security_group_id != null ? 1 : 0

  security_group_id            = aws_security_group.this[0].id
  description                  = "MSK brokers, IAM auth listener"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = var.msk_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "msk_cidr" {
  for_each = local.create_security_group ? toset(var.msk_broker_cidr_blocks) : toset([])

  security_group_id = aws_security_group.this[0].id
  description       = "MSK brokers, IAM auth listener"
  ip_protocol       = "tcp"
  from_port         = 9098
  to_port           = 9098
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = local.create_security_group ? toset(var.https_egress_cidr_blocks) : toset([])

  security_group_id = aws_security_group.this[0].id
  description       = "AWS APIs: STS, S3, SQS, CloudWatch Logs, ECR"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "https_prefix_list" {
  for_each = local.create_security_group ? toset(var.https_egress_prefix_list_ids) : toset([])

  security_group_id = aws_security_group.this[0].id
  description       = "AWS APIs through a prefix list (e.g. the S3 gateway endpoint)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.value
}

resource "aws_vpc_security_group_ingress_rule" "msk" {
  count = local.create_security_group && var.msk_security_group_id != null && var.create_msk_ingress_rule ? 1 : 0

  security_group_id            = var.msk_security_group_id
  description                  = "msk-sidecar tasks of ${var.name}, IAM auth listener"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.this[0].id
}

################################################################################
# Service
################################################################################

resource "aws_ecs_service" "this" {
  count = var.create_service ? 1 : 0

  name            = var.name
  cluster         = var.cluster_arn
  task_definition = aws_ecs_task_definition.this.arn
  desired_count   = var.desired_count

  launch_type      = local.is_fargate ? "FARGATE" : "EC2"
  platform_version = local.is_fargate ? var.platform_version : null

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = concat(aws_security_group.this[*].id, var.security_group_ids)
    assign_public_ip = var.assign_public_ip
  }

  tags = var.tags

  lifecycle {
    # Autoscaling owns the task count after the first apply.
    ignore_changes = [desired_count]

    precondition {
      condition     = var.cluster_arn != null && length(var.subnet_ids) > 0
      error_message = "create_service needs cluster_arn and subnet_ids."
    }
  }
}

################################################################################
# Autoscaling on consumer lag
################################################################################

locals {
  # MSK publishes SumOffsetLag per consumer group and topic (DEFAULT monitoring level); a
  # pattern subscription has no fixed topic to track, so it gets no policy of its own.
  lag_metrics = var.autoscaling_custom_metric != null ? { custom = var.autoscaling_custom_metric } : {
    for t in var.kafka_topics : t => {
      namespace   = "AWS/Kafka"
      metric_name = "SumOffsetLag"
      statistic   = "Average"
      dimensions = {
        "Cluster Name"   = local.msk_cluster_name
        "Consumer Group" = module.iam_policy.consumer_group
        "Topic"          = t
      }
    } if !startswith(t, "^")
  }
}

resource "aws_appautoscaling_target" "this" {
  count = local.create_autoscaling ? 1 : 0

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${local.ecs_cluster_name}/${aws_ecs_service.this[0].name}"
  min_capacity       = var.autoscaling_min_capacity
  max_capacity       = var.autoscaling_max_capacity

  tags = var.tags
}

# Several target tracking policies on one target: ECS scales out when any of them asks and in
# only when all agree, so the busiest topic decides.
resource "aws_appautoscaling_policy" "this" {
  for_each = local.create_autoscaling ? local.lag_metrics : {}

  name               = "${var.name}-lag-${each.key}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  resource_id        = aws_appautoscaling_target.this[0].resource_id
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling_target_lag
    scale_in_cooldown  = var.autoscaling_scale_in_cooldown
    scale_out_cooldown = var.autoscaling_scale_out_cooldown

    customized_metric_specification {
      namespace   = each.value.namespace
      metric_name = each.value.metric_name
      statistic   = each.value.statistic

      dynamic "dimensions" {
        for_each = each.value.dimensions

        content {
          name  = dimensions.key
          value = dimensions.value
        }
      }
    }
  }
}
