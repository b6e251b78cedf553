# Renders the sidecar's IAM policy offline, for comparison with `msk-sidecar check-config
# --iam-policy`. No providers, no resources: `terraform apply` only evaluates the module.
#
#   infra/tests/policy/render.sh infra/tests/policy/full.tfvars

terraform {
  required_version = ">= 1.5.7"
}

module "policy" {
  source = "../../modules/sidecar-iam-policy"

  msk_cluster_arn = var.msk_cluster_arn
  topics          = var.topics
  dlq_topic       = var.dlq_topic
  consumer_group  = var.consumer_group
  archive_bucket  = var.archive_bucket
  archive_prefix  = var.archive_prefix
  sqs_queue_arn   = var.sqs_queue_arn

  sqs_source_queue_arns             = var.sqs_source_queue_arns
  sqs_source_dead_letter_queue_arns = var.sqs_source_dead_letter_queue_arns
  schema_registry                   = var.schema_registry
  environment                       = var.environment
  consumer_group_prefix             = var.consumer_group_prefix
  consumer_group_suffix             = var.consumer_group_suffix
}

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster."
  type        = string
}

variable "topics" {
  description = "Source topics, in order (^ for a regex subscription)."
  type        = list(string)
}

variable "dlq_topic" {
  description = "Dead-letter topic; null means <first topic>.dlq."
  type        = string
  default     = null
}

variable "consumer_group" {
  description = "Consumer group id."
  type        = string
}

variable "archive_bucket" {
  description = "S3 archive bucket; null means no archive."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "S3 archive key prefix."
  type        = string
  default     = ""
}

variable "sqs_queue_arn" {
  description = "SQS delivery queue ARN; null means HTTP delivery."
  type        = string
  default     = null
}

variable "sqs_source_queue_arns" {
  description = "SQS source queue ARNs."
  type        = list(string)
  default     = []
}

variable "sqs_source_dead_letter_queue_arns" {
  description = "Their dead-letter queue ARNs."
  type        = list(string)
  default     = []
}

output "json" {
  description = "The rendered IAM policy document."
  value       = module.policy.json
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
