# Offline tests of the module with a mocked AWS provider (terraform test, Terraform 1.7+):
# the container definitions, the IAM policy and the autoscaling follow the contract.
#
#   terraform -chdir=infra/modules/ecs-sidecar init -backend=false && terraform -chdir=... test

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mocked"
    }
  }

  mock_resource "aws_ecs_task_definition" {
    defaults = {
      arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/orders:1"
    }
  }

  mock_resource "aws_security_group" {
    defaults = {
      id = "sg-0123456789abcdef0"
    }
  }

  mock_resource "aws_s3_bucket" {
    defaults = {
      id  = "orders-dlq-20250101"
      arn = "arn:aws:s3:::orders-dlq-20250101"
    }
  }

  mock_resource "aws_sqs_queue" {
    defaults = {
      url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-deliveries"
      arn = "arn:aws:sqs:eu-west-1:123456789012:orders-deliveries"
    }
  }
}

variables {
  name                 = "orders"
  msk_cluster_arn      = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
  kafka_brokers        = "b-1.orderscluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.orderscluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"
  kafka_topics         = ["orders", "^payments\\..*", "refunds"]
  kafka_consumer_group = "orders-consumer"
  sidecar_image        = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/msk-sidecar:0.1.0"
  cluster_arn          = "arn:aws:ecs:eu-west-1:123456789012:cluster/apps"
  vpc_id               = "vpc-0123456789abcdef0"
  subnet_ids           = ["subnet-0123456789abcdef0"]

  application = {
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/orders-app:1.2.3"
  }
}

run "http_delivery" {
  command = apply

  assert {
    condition     = length(jsondecode(aws_ecs_task_definition.this.container_definitions)) == 2
    error_message = "The task must hold the application and the sidecar."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[0].dependsOn == [{ containerName = "msk-sidecar", condition = "HEALTHY" }]
    error_message = "The application must start once the sidecar is HEALTHY."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[1].healthCheck.command == ["CMD", "/usr/local/bin/msk-sidecar", "healthcheck", "--live"]
    error_message = "The sidecar's health check must ask /live (readiness would deadlock the task)."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[1].stopTimeout > 25
    error_message = "stopTimeout must exceed SIDECAR_SHUTDOWN_GRACE."
  }

  assert {
    condition = alltrue([
      for c in jsondecode(aws_ecs_task_definition.this.container_definitions) :
      c.readonlyRootFilesystem && c.linuxParameters.capabilities.drop == ["ALL"]
    ])
    error_message = "Both containers need a read-only root filesystem and no capabilities."
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[1].environment : e.name => e.value
      } == {
      AWS_REGION             = "eu-west-1"
      KAFKA_AUTH             = "msk-iam"
      KAFKA_BROKERS          = var.kafka_brokers
      KAFKA_CONSUMER_GROUP   = "orders-consumer"
      KAFKA_TOPICS           = "orders,^payments\\..*,refunds"
      MSK_CLUSTER_ARN        = var.msk_cluster_arn
      OTEL_SERVICE_NAME      = "orders"
      SIDECAR_ADMIN_ADDR     = "127.0.0.1:9464"
      SIDECAR_DELIVERY_URL   = "http://127.0.0.1:8080/events"
      SIDECAR_DLQ_ARCHIVE    = "s3://orders-dlq-20250101/orders-consumer"
      SIDECAR_DLQ_TOPIC      = "orders.dlq"
      SIDECAR_LOG_FORMAT     = "json"
      SIDECAR_SHUTDOWN_GRACE = "25s"
    }
    error_message = "The sidecar's environment does not match the contract of DESIGN.md."
  }

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid] == [
      "ConnectToCluster", "ReadSourceTopics", "WriteDeadLetterTopic", "UseConsumerGroup", "ArchiveDeadLetters",
    ]
    error_message = "The task role's sidecar policy must have the Kafka statements and the archive, in order."
  }

  assert {
    condition = jsondecode(aws_iam_role_policy.sidecar.policy).Statement[1].Resource == [
      "arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/orders",
      "arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/*",
      "arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/refunds",
    ]
    error_message = "Topic ARNs must follow the topics, with * for a pattern."
  }

  assert {
    condition     = jsondecode(aws_iam_role_policy.sidecar.policy).Statement[4].Resource == ["arn:aws:s3:::orders-dlq-20250101/orders-consumer/*"]
    error_message = "The archive statement must cover <bucket>/<prefix>/*."
  }

  assert {
    condition     = length(aws_iam_role_policy.application_queue) == 0
    error_message = "HTTP delivery needs no queue policy."
  }

  assert {
    condition     = toset(keys(aws_appautoscaling_policy.this)) == toset(["orders", "refunds"])
    error_message = "One lag policy per topic that is not a pattern."
  }

  assert {
    condition     = aws_appautoscaling_target.this[0].resource_id == "service/apps/orders"
    error_message = "The scalable target must name the cluster and the service."
  }
}

run "sqs_delivery_without_archive" {
  command = apply

  variables {
    create_archive_bucket          = false
    create_sqs_queue               = true
    sidecar_shutdown_grace_seconds = 60
    otel_exporter_otlp_endpoint    = "http://127.0.0.1:4317"
    sidecar_environment = {
      SIDECAR_ORDERING = "key"
    }
  }

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid] == [
      "ConnectToCluster", "ReadSourceTopics", "WriteDeadLetterTopic", "UseConsumerGroup", "DeliverToQueue", "UseQueueKmsKey",
    ]
    error_message = "Without an archive and with SQS: no ArchiveDeadLetters, DeliverToQueue and UseQueueKmsKey statements."
  }

  assert {
    condition     = jsondecode(aws_iam_role_policy.sidecar.policy).Statement[4].Resource == ["arn:aws:sqs:eu-west-1:123456789012:orders-deliveries"]
    error_message = "DeliverToQueue must name the created queue."
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[1].environment : e.name => e.value
      if contains(["SIDECAR_DELIVERY_URL", "SIDECAR_DELIVERY_SQS_QUEUE_URL", "SIDECAR_DLQ_ARCHIVE", "OTEL_EXPORTER_OTLP_ENDPOINT", "SIDECAR_ORDERING", "SIDECAR_SHUTDOWN_GRACE"], e.name)
      } == {
      SIDECAR_DELIVERY_SQS_QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-deliveries"
      SIDECAR_DLQ_ARCHIVE            = "none"
      OTEL_EXPORTER_OTLP_ENDPOINT    = "http://127.0.0.1:4317"
      SIDECAR_ORDERING               = "key"
      SIDECAR_SHUTDOWN_GRACE         = "60s"
    }
    error_message = "SQS delivery replaces SIDECAR_DELIVERY_URL; extra variables pass through."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[1].stopTimeout == 70
    error_message = "stopTimeout must follow the grace."
  }

  assert {
    condition     = length(aws_iam_role_policy.application_queue) == 1
    error_message = "The application needs to read the queue."
  }
}

run "grace_too_long_for_ecs" {
  command = plan

  variables {
    sidecar_shutdown_grace_seconds = 115
  }

  expect_failures = [var.sidecar_shutdown_grace_seconds]
}

run "task_definition_only_with_existing_queue_and_bucket" {
  command = apply

  variables {
    create_service        = false
    vpc_id                = null
    cluster_arn           = null
    create_archive_bucket = false
    archive_bucket_name   = "shared-dead-letters"
    archive_prefix        = "/teams/orders/"
    sqs_queue_url         = "https://sqs.eu-west-1.amazonaws.com/123456789012/existing"
    sqs_queue_arn         = "arn:aws:sqs:eu-west-1:123456789012:existing"
  }

  assert {
    condition     = length(aws_ecs_service.this) == 0 && length(aws_security_group.this) == 0 && length(aws_appautoscaling_target.this) == 0
    error_message = "Without a service there is no security group and no autoscaling."
  }

  assert {
    condition     = output.archive_uri == "s3://shared-dead-letters/teams/orders"
    error_message = "The archive URI names the given bucket and the trimmed prefix."
  }

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Resource] == [
      ["arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"],
      [
        "arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/orders",
        "arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/*",
        "arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/refunds",
      ],
      ["arn:aws:kafka:eu-west-1:123456789012:topic/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/orders.dlq"],
      ["arn:aws:kafka:eu-west-1:123456789012:group/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2/orders-consumer"],
      ["arn:aws:s3:::shared-dead-letters/teams/orders/*"],
      ["arn:aws:sqs:eu-west-1:123456789012:existing"],
      ["arn:aws:kms:eu-west-1:123456789012:key/*"],
    ]
    error_message = "The policy must name the given bucket, prefix and queue."
  }

  assert {
    condition     = contains([for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[1].environment : e.name if e.name == "SIDECAR_DELIVERY_SQS_QUEUE_URL"], "SIDECAR_DELIVERY_SQS_QUEUE_URL")
    error_message = "An existing queue means SQS delivery."
  }
}

run "sqs_source_next_to_the_topics" {
  command = apply

  variables {
    sqs_source_queues = [
      {
        url                   = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn                   = "arn:aws:sqs:eu-west-1:123456789012:tasks"
        dead_letter_queue_arn = "arn:aws:sqs:eu-west-1:123456789012:tasks-dlq"
      },
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo"
        arn = "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo"
      },
    ]
    sidecar_environment = {
      SQS_WAIT_TIME = "10s"
    }
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[1].environment : e.name => e.value
      if startswith(e.name, "SQS_") || e.name == "SIDECAR_DELIVERY_URL"
      } == {
      SQS_QUEUE_URLS       = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks,https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo"
      SQS_WAIT_TIME        = "10s"
      SIDECAR_DELIVERY_URL = "http://127.0.0.1:8080/events"
    }
    error_message = "SQS_QUEUE_URLS must list the source queues' URLs in order, next to HTTP delivery; extra SQS_* variables pass through."
  }

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid] == [
      "ConnectToCluster", "ReadSourceTopics", "WriteDeadLetterTopic", "UseConsumerGroup", "ArchiveDeadLetters",
      "ConsumeQueues", "SendToDeadLetterQueues", "UseQueueKmsKey",
    ]
    error_message = "An SQS source adds ConsumeQueues, SendToDeadLetterQueues and UseQueueKmsKey after the archive."
  }

  assert {
    condition = { for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid => s.Resource }["ConsumeQueues"] == [
      "arn:aws:sqs:eu-west-1:123456789012:tasks",
      "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo",
    ]
    error_message = "ConsumeQueues must name both source queues, in order."
  }

  assert {
    condition     = { for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid => s.Resource }["SendToDeadLetterQueues"] == ["arn:aws:sqs:eu-west-1:123456789012:tasks-dlq"]
    error_message = "SendToDeadLetterQueues must name the one dead-letter queue given (a queue without one adds nothing)."
  }

  assert {
    condition     = length(aws_iam_role_policy.application_queue) == 0
    error_message = "An SQS source gives the application no queue policy."
  }
}

run "glue_schema_registry" {
  command = apply

  variables {
    schema_registry = "glue"
    sidecar_environment = {
      SIDECAR_VALUE_FORMAT = "avro"
    }
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[1].environment : e.name => e.value
      if e.name == "SIDECAR_SCHEMA_REGISTRY" || e.name == "SIDECAR_VALUE_FORMAT"
    } == { SIDECAR_SCHEMA_REGISTRY = "glue", SIDECAR_VALUE_FORMAT = "avro" }
    error_message = "schema_registry must reach the container as SIDECAR_SCHEMA_REGISTRY."
  }

  assert {
    condition     = { for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid => s.Action }["ReadGlueSchemas"] == ["glue:GetSchemaVersion"]
    error_message = "The Glue registry adds ReadGlueSchemas (glue:GetSchemaVersion)."
  }
}

run "environment_specific_group" {
  command = apply

  variables {
    environment                 = "staging"
    kafka_consumer_group_prefix = "team-"
  }

  assert {
    condition = {
      for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[1].environment : e.name => e.value
      if contains(["ENVIRONMENT", "KAFKA_CONSUMER_GROUP", "KAFKA_CONSUMER_GROUP_PREFIX"], e.name)
    } == { ENVIRONMENT = "staging", KAFKA_CONSUMER_GROUP = var.kafka_consumer_group, KAFKA_CONSUMER_GROUP_PREFIX = "team-" }
    error_message = "The container gets the group's parts; the sidecar makes the name."
  }

  assert {
    condition     = endswith(one({ for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid => s.Resource }["UseConsumerGroup"]), "/staging-team-${var.kafka_consumer_group}")
    error_message = "The policy names the group the sidecar joins: <environment>-<prefix><group>."
  }

  assert {
    condition     = module.iam_policy.consumer_group == "staging-team-${var.kafka_consumer_group}"
    error_message = "The effective group is the one the lag alarms and scaling use."
  }
}

run "cloudwatch_alarms" {
  command = apply

  variables {
    environment   = "prod"
    alarm_actions = ["arn:aws:sns:eu-west-1:123456789012:oncall"]
  }

  assert {
    condition     = contains(output.alarm_names, "${var.name}-auth-failures") && contains(output.alarm_names, "${var.name}-dead-letters-undecodable")
    error_message = "The service gets the dead-letter and authentication alarms."
  }

  assert {
    condition     = alltrue([for a in module.alarms[0].alarm_names : can(regex("^${var.name}-", a))])
    error_message = "Alarm names start with the service's name."
  }
}

run "sqs_source_url_and_arn_of_different_queues" {
  command = plan

  variables {
    sqs_source_queues = [
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn = "arn:aws:sqs:eu-west-1:123456789012:jobs"
      },
    ]
  }

  expect_failures = [var.sqs_source_queues]
}
