variable "name" {
  description = "Name of the deployment: task definition family, service, roles, log group, security group and (generated) bucket and queue names start with it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,31}$", var.name))
    error_message = "name must be 1-32 of a-z 0-9 - (IAM role and S3 bucket names are built from it)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

################################################################################
# Kafka (MSK) and the sidecar's settings
################################################################################

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster. The IAM policy's topic and group ARNs are derived from it."
  type        = string
}

variable "kafka_brokers" {
  description = "Bootstrap brokers of the IAM listener (KAFKA_BROKERS), comma separated: aws_msk_cluster.bootstrap_brokers_sasl_iam."
  type        = string
}

variable "kafka_topics" {
  description = "Topics to consume (KAFKA_TOPICS), in order; ^regex for a pattern subscription."
  type        = list(string)
}

variable "kafka_consumer_group" {
  description = "Consumer group id (KAFKA_CONSUMER_GROUP)."
  type        = string
}

variable "dlq_topic" {
  description = "Dead-letter topic (SIDECAR_DLQ_TOPIC). Null: <first topic>.dlq."
  type        = string
  default     = null
}

variable "sidecar_image" {
  description = "msk-sidecar container image (built from the repository's Dockerfile), ideally pinned by digest."
  type        = string
}

variable "sidecar_cpu" {
  description = "CPU units reserved for the sidecar container."
  type        = number
  default     = 256
}

variable "sidecar_memory" {
  description = "Hard memory limit of the sidecar container (MiB)."
  type        = number
  default     = 256
}

variable "sidecar_shutdown_grace_seconds" {
  description = "Drain time on SIGTERM (SIDECAR_SHUTDOWN_GRACE). The container's stopTimeout is set 10 s above it (Fargate allows 120 s at most)."
  type        = number
  default     = 25

  validation {
    condition     = var.sidecar_shutdown_grace_seconds >= 1 && var.sidecar_shutdown_grace_seconds <= 110
    error_message = "sidecar_shutdown_grace_seconds must be 1-110 (stopTimeout = grace + 10 must stay within ECS's 120 s)."
  }
}

variable "sidecar_admin_addr" {
  description = "Admin listener of the sidecar (SIDECAR_ADMIN_ADDR). Loopback is enough on ECS: the container health check runs inside the task."
  type        = string
  default     = "127.0.0.1:9464"
}

variable "delivery_url" {
  description = "HTTP endpoint of the application (SIDECAR_DELIVERY_URL); containers of a task share the loopback interface. Ignored with SQS delivery."
  type        = string
  default     = "http://127.0.0.1:8080/events"
}

variable "otel_exporter_otlp_endpoint" {
  description = "OTLP endpoint for traces and metrics (OTEL_EXPORTER_OTLP_ENDPOINT), e.g. http://127.0.0.1:4317 for an ADOT collector sidecar. Null: no export."
  type        = string
  default     = null
}

variable "sidecar_environment" {
  description = "More environment variables for the sidecar (SIDECAR_MAX_IN_FLIGHT, SIDECAR_ORDERING, SIDECAR_LIBRDKAFKA_*, OTEL_*...). They override the module's values of the same name."
  type        = map(string)
  default     = {}
  validation {
    condition     = length(setintersection(keys(var.sidecar_environment), ["KAFKA_CONSUMER_GROUP", "ENVIRONMENT", "KAFKA_CONSUMER_GROUP_PREFIX", "KAFKA_CONSUMER_GROUP_SUFFIX", "SIDECAR_SCHEMA_REGISTRY"])) == 0
    error_message = "Set the group's name and the schema registry with their own inputs (kafka_consumer_group, environment, kafka_consumer_group_prefix/suffix, schema_registry), not sidecar_environment: the IAM policy and the alarms must name the same group."
  }
}

################################################################################
# The application container
################################################################################

variable "application" {
  description = <<-EOT
    The application container that receives the records. It starts once the sidecar is HEALTHY.
    name, image: required. port: the port the sidecar delivers to (default 8080).
    environment: plain variables; secrets: variable name -> ARN of a Secrets Manager secret or SSM
    parameter (the execution role needs access: var.execution_role_policy_arns).
    readonly_root_filesystem: default true (mount writable paths with a volume of your own if needed).
    health_check: an ECS container health check command, e.g. ["CMD", "/app/healthcheck"].
  EOT
  type = object({
    name                     = optional(string, "app")
    image                    = string
    port                     = optional(number, 8080)
    cpu                      = optional(number)
    memory                   = optional(number)
    memory_reservation       = optional(number)
    command                  = optional(list(string))
    entry_point              = optional(list(string))
    user                     = optional(string)
    environment              = optional(map(string), {})
    secrets                  = optional(map(string), {})
    readonly_root_filesystem = optional(bool, true)
    stop_timeout             = optional(number, 30)
    health_check = optional(object({
      command      = list(string)
      interval     = optional(number, 10)
      timeout      = optional(number, 5)
      retries      = optional(number, 3)
      start_period = optional(number, 30)
    }))
  })
}

################################################################################
# Task definition
################################################################################

variable "task_cpu" {
  description = "Task CPU units (Fargate sizes: 256, 512, 1024, ...)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Task memory (MiB), large enough for both containers."
  type        = number
  default     = 1024
}

variable "requires_compatibilities" {
  description = "Launch types the task definition supports."
  type        = list(string)
  default     = ["FARGATE"]
}

variable "cpu_architecture" {
  description = "CPU architecture of the task: X86_64 or ARM64 (the images must exist for it)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

################################################################################
# IAM
################################################################################

variable "iam_role_path" {
  description = "Path of the IAM roles."
  type        = string
  default     = "/"
}

variable "iam_role_permissions_boundary" {
  description = "Permissions boundary (policy ARN) for both roles."
  type        = string
  default     = null
}

variable "task_role_policy_arns" {
  description = "Managed policies to attach to the task role for the application (the role is shared by every container of the task). The sidecar's own policy is separate and exact."
  type        = list(string)
  default     = []
}

variable "execution_role_policy_arns" {
  description = "Managed policies to attach to the execution role in addition to AmazonECSTaskExecutionRolePolicy, e.g. to read the application's secrets."
  type        = list(string)
  default     = []
}

################################################################################
# Dead-letter archive (S3)
################################################################################

variable "create_archive_bucket" {
  description = "Create the S3 bucket of the dead-letter archive. False: set archive_bucket_name to an existing bucket, or leave it null for no archive."
  type        = bool
  default     = true
}

variable "archive_bucket_name" {
  description = "Archive bucket: the name of the bucket to create (null: generated), or of an existing bucket when create_archive_bucket is false (null: no archive)."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "Key prefix of the archive objects (the prefix of SIDECAR_DLQ_ARCHIVE). Null: the consumer group."
  type        = string
  default     = null
}

variable "archive_force_destroy" {
  description = "Let `terraform destroy` delete the archive bucket with the dead letters in it."
  type        = bool
  default     = false
}

variable "archive_kms_key_arn" {
  description = "KMS key for the archive bucket. Null: the AWS managed key aws/s3. See the README before setting a customer managed key."
  type        = string
  default     = null
}

variable "archive_transition_to_glacier_days" {
  description = "Days after which archived dead letters move to S3 Glacier. Null: never."
  type        = number
  default     = 30
}

variable "archive_expiration_days" {
  description = "Days after which archived dead letters are deleted. Null: never."
  type        = number
  default     = 365
}

variable "archive_logging" {
  description = "Server access logging of the created archive bucket (target bucket and prefix). Null: none."
  type = object({
    target_bucket = string
    target_prefix = optional(string, "")
  })
  default = null
}

################################################################################
# SQS delivery (instead of HTTP)
################################################################################

variable "create_sqs_queue" {
  description = "Deliver through a new SQS queue (with its own DLQ) instead of HTTP: the sidecar fills it, the application reads it. The task role then also gets an `application-queue` policy to receive and delete."
  type        = bool
  default     = false
}

variable "sqs_queue_url" {
  description = "Deliver through this existing SQS queue instead of HTTP (with sqs_queue_arn). Ignored when create_sqs_queue is true."
  type        = string
  default     = null
}

variable "sqs_queue_arn" {
  description = "ARN of the existing queue named by sqs_queue_url."
  type        = string
  default     = null
}

variable "sqs_kms_key_arn" {
  description = "KMS key of the created queues. Null: SQS managed encryption."
  type        = string
  default     = null
}

variable "sqs_visibility_timeout_seconds" {
  description = "Visibility timeout of the created delivery queue."
  type        = number
  default     = 60
}

variable "sqs_max_receive_count" {
  description = "Receives after which a message of the created queue moves to its dead-letter queue."
  type        = number
  default     = 5
}

################################################################################
# SQS source (next to the topics)
################################################################################

variable "sqs_source_queues" {
  description = "SQS queues the sidecar consumes next to the topics (SQS_QUEUE_URLS), in order: url, arn, and dead_letter_queue_arn, the dead-letter queue its RedrivePolicy names (null: none; its dead letters then go to the archive only). The sidecar's policy gets ConsumeQueues on the queues and SendToDeadLetterQueues on the dead-letter queues. SQS_MAX_MESSAGES, SQS_WAIT_TIME and SQS_VISIBILITY_TIMEOUT go in sidecar_environment."
  type = list(object({
    url                   = string
    arn                   = string
    dead_letter_queue_arn = optional(string)
  }))
  default = []

  validation {
    condition     = alltrue([for q in var.sqs_source_queues : can(regex("^https?://[^/]+/(queue/[^/]+/)?[^/]+/[a-zA-Z0-9_-]{1,80}(\\.fifo)?$", q.url))])
    error_message = "Each url of sqs_source_queues must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)."
  }

  validation {
    condition     = alltrue([for q in var.sqs_source_queues : can(regex("^arn:[a-z-]+:sqs:[a-z0-9-]+:[0-9]{12}:.+$", q.arn))])
    error_message = "Each arn of sqs_source_queues must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
  }

  validation {
    condition     = alltrue([for q in var.sqs_source_queues : q.dead_letter_queue_arn == null || can(regex("^arn:[a-z-]+:sqs:[a-z0-9-]+:[0-9]{12}:.+$", coalesce(q.dead_letter_queue_arn, "x")))])
    error_message = "Each dead_letter_queue_arn of sqs_source_queues must be null or an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
  }

  validation {
    condition     = alltrue([for q in var.sqs_source_queues : reverse(split("/", q.url))[0] == reverse(split(":", q.arn))[0]])
    error_message = "Each url of sqs_source_queues must name the queue its arn names (the last path segment of the url equals the name at the end of the arn)."
  }

  validation {
    condition     = length(distinct([for q in var.sqs_source_queues : reverse(split("/", q.url))[0]])) == length(var.sqs_source_queues)
    error_message = "sqs_source_queues must list each queue name once (the sidecar refuses a queue listed twice)."
  }
}

################################################################################
# Logs
################################################################################

variable "cloudwatch_log_group_retention_in_days" {
  description = "Retention of the task's log group (both containers log there)."
  type        = number
  default     = 90
}

variable "cloudwatch_log_group_kms_key_id" {
  description = "KMS key ARN for the log group. Null: CloudWatch Logs' default encryption. The key policy must allow the logs service."
  type        = string
  default     = null
}

################################################################################
# Service, network and autoscaling
################################################################################

variable "create_service" {
  description = "Create the ECS service. False: only the task definition and what it needs (run it your way)."
  type        = bool
  default     = true
}

variable "cluster_arn" {
  description = "ECS cluster of the service."
  type        = string
  default     = null
}

variable "desired_count" {
  description = "Initial number of tasks (autoscaling adjusts it afterwards; more tasks than partitions stay idle)."
  type        = number
  default     = 1
}

variable "platform_version" {
  description = "Fargate platform version."
  type        = string
  default     = "LATEST"
}

variable "vpc_id" {
  description = "VPC of the tasks (and of the MSK brokers)."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
  default     = []
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without NAT; keep false)."
  type        = bool
  default     = false
}

variable "security_group_ids" {
  description = "More security groups for the tasks, e.g. one that lets a load balancer reach the application."
  type        = list(string)
  default     = []
}

variable "msk_security_group_id" {
  description = "Security group of the MSK brokers. Set: the tasks may reach it on 9098, and (create_msk_ingress_rule) it admits the tasks on 9098."
  type        = string
  default     = null
}

variable "create_msk_ingress_rule" {
  description = "Add an ingress rule on 9098 from the tasks' security group to msk_security_group_id."
  type        = bool
  default     = true
}

variable "msk_broker_cidr_blocks" {
  description = "CIDR blocks of the brokers the tasks may reach on 9098 (instead of, or besides, msk_security_group_id)."
  type        = list(string)
  default     = []
}

variable "https_egress_cidr_blocks" {
  description = "Where the tasks may connect on 443: STS, S3, SQS, CloudWatch Logs, ECR (through NAT or VPC endpoints)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "https_egress_prefix_list_ids" {
  description = "Prefix lists the tasks may reach on 443 (e.g. the S3 gateway endpoint's), in addition to https_egress_cidr_blocks."
  type        = list(string)
  default     = []
}

variable "enable_autoscaling" {
  description = "Scale the service on consumer lag (target tracking)."
  type        = bool
  default     = true
}

variable "autoscaling_min_capacity" {
  description = "Fewest tasks."
  type        = number
  default     = 1
}

variable "autoscaling_max_capacity" {
  description = "Most tasks; more tasks than partitions of the source topics stay idle, so keep it at most the partition count."
  type        = number
  default     = 4
}

variable "autoscaling_target_lag" {
  description = "Target of the lag metric: total messages behind (MSK SumOffsetLag of the group, per topic) that the service tries to hold."
  type        = number
  default     = 1000
}

variable "autoscaling_scale_in_cooldown" {
  description = "Seconds between scale-in activities (each one rebalances the group)."
  type        = number
  default     = 300
}

variable "autoscaling_scale_out_cooldown" {
  description = "Seconds between scale-out activities."
  type        = number
  default     = 60
}

variable "autoscaling_custom_metric" {
  description = "Scale on this CloudWatch metric instead of MSK's SumOffsetLag per topic (e.g. a lag metric the sidecar exports over OTLP). One target tracking policy."
  type = object({
    namespace   = string
    metric_name = string
    dimensions  = optional(map(string), {})
    statistic   = optional(string, "Average")
  })
  default = null
}

variable "schema_registry" {
  description = "SIDECAR_SCHEMA_REGISTRY: \"glue\" (the AWS Glue Schema Registry: the policy gets ReadGlueSchemas, glue:GetSchemaVersion on the account's registries and schemas in the cluster's region), a Confluent-compatible registry's URL (no IAM statement), or empty for none."
  type        = string
  default     = ""
  nullable    = false
}

variable "environment" {
  description = "ENVIRONMENT: put in front of the consumer group as `<environment>-` unless the name already has it as one of its `-`, `.` or `_` separated parts (seed 001's environment-specific groups). Empty: none."
  type        = string
  default     = ""
  nullable    = false
}

variable "kafka_consumer_group_prefix" {
  description = "KAFKA_CONSUMER_GROUP_PREFIX: put before the consumer group's name (before the environment is added)."
  type        = string
  default     = ""
  nullable    = false
}

variable "kafka_consumer_group_suffix" {
  description = "KAFKA_CONSUMER_GROUP_SUFFIX: put after the consumer group's name."
  type        = string
  default     = ""
  nullable    = false
}

variable "create_alarms" {
  description = "Create the CloudWatch alarms of modules/sidecar-alarms: MSK SumOffsetLag and EstimatedMaxTimeLag per topic, dead letters by error class and authentication failures from the sidecar's JSON log lines."
  type        = bool
  default     = true
}

variable "alarm_actions" {
  description = "ARNs (SNS topics) the alarms notify when they fire and clear. Empty: the alarms only show in the console."
  type        = list(string)
  default     = []
}
