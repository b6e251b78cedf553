variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster: arn:<partition>:kafka:<region>:<account>:cluster/<cluster_name>/<cluster_uuid>. Topic and group ARNs are derived from it."
  type        = string

  validation {
    condition     = can(regex("^arn:[a-z-]+:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[^/]+/[^/]+$", var.msk_cluster_arn))
    error_message = "msk_cluster_arn must look like arn:aws:kafka:eu-west-1:123456789012:cluster/my-cluster/0123abcd-...-1."
  }
}

variable "topics" {
  description = "Topics the sidecar consumes (KAFKA_TOPICS), in order. A topic starting with ^ is a regex subscription: its ARN uses * as the topic name (an ARN that repeats is listed once)."
  type        = list(string)

  validation {
    condition     = length(var.topics) > 0
    error_message = "topics must name at least one topic."
  }

  validation {
    condition     = alltrue([for t in var.topics : startswith(t, "^") || can(regex("^[a-zA-Z0-9._-]{1,249}$", t))])
    error_message = "Each topic must be a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -) or a ^regex pattern."
  }
}

variable "dlq_topic" {
  description = "Dead-letter topic (SIDECAR_DLQ_TOPIC). Null or empty means <first topic>.dlq, as the sidecar itself defaults; required when the first topic is a ^pattern."
  type        = string
  default     = null

  validation {
    condition     = var.dlq_topic == null || var.dlq_topic == "" || can(regex("^[a-zA-Z0-9._-]{1,249}$", coalesce(var.dlq_topic, "x")))
    error_message = "dlq_topic must be a legal Kafka topic name, not a pattern."
  }
}

variable "consumer_group" {
  description = "Consumer group id (KAFKA_CONSUMER_GROUP)."
  type        = string

  validation {
    condition     = length(var.consumer_group) > 0
    error_message = "consumer_group must not be empty."
  }
}

variable "archive_bucket" {
  description = "S3 bucket of the dead-letter archive (the bucket of SIDECAR_DLQ_ARCHIVE=s3://bucket/prefix). Null or empty means no archive, and no ArchiveDeadLetters statement."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "Key prefix of the dead-letter archive (the prefix of SIDECAR_DLQ_ARCHIVE). Leading and trailing slashes are ignored, as the sidecar ignores them; empty means the whole bucket."
  type        = string
  default     = ""
}

variable "sqs_queue_arn" {
  description = "ARN of the SQS queue the sidecar fills (SIDECAR_DELIVERY_SQS_QUEUE_URL). Null or empty means HTTP delivery, and no DeliverToQueue statement."
  type        = string
  default     = null

  validation {
    condition     = var.sqs_queue_arn == null || var.sqs_queue_arn == "" || can(regex("^arn:[a-z-]+:sqs:[a-z0-9-]+:[0-9]{12}:.+$", coalesce(var.sqs_queue_arn, "x")))
    error_message = "sqs_queue_arn must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)."
  }
}

variable "sqs_source_queue_arns" {
  description = "ARNs of the SQS queues the sidecar consumes (SQS_QUEUE_URLS), in order. Empty means no SQS source, and no ConsumeQueues or SendToDeadLetterQueues statement."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.sqs_source_queue_arns : can(regex("^arn:[a-z-]+:sqs:[a-z0-9-]+:[0-9]{12}:.+$", arn))])
    error_message = "sqs_source_queue_arns must be SQS queue ARNs (arn:aws:sqs:<region>:<account>:<name>)."
  }
}

variable "sqs_source_dead_letter_queue_arns" {
  description = "ARNs of the dead-letter queues the source queues' RedrivePolicy names, one per source queue in the same order (the sidecar sends dead letters there). check-config cannot know them and prints arn:...:DEAD_LETTER_QUEUE_OF_<queue> instead. Empty means no SendToDeadLetterQueues statement (no source queue has a dead-letter queue)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.sqs_source_dead_letter_queue_arns : can(regex("^arn:[a-z-]+:sqs:[a-z0-9-]+:[0-9]{12}:.+$", arn))])
    error_message = "sqs_source_dead_letter_queue_arns must be SQS queue ARNs (arn:aws:sqs:<region>:<account>:<name>)."
  }
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

variable "consumer_group_prefix" {
  description = "KAFKA_CONSUMER_GROUP_PREFIX: put before the consumer group's name (before the environment is added)."
  type        = string
  default     = ""
  nullable    = false
}

variable "consumer_group_suffix" {
  description = "KAFKA_CONSUMER_GROUP_SUFFIX: put after the consumer group's name."
  type        = string
  default     = ""
  nullable    = false
}
