variable "name" {
  description = "Name of the sidecar deployment; prefixes the bucket (when generated) and the queue names."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,39}$", var.name))
    error_message = "name must be 1-40 of a-z 0-9 - (it becomes part of S3 bucket and SQS queue names)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

################################################################################
# Dead-letter archive bucket
################################################################################

variable "create_archive_bucket" {
  description = "Create the S3 bucket of the dead-letter archive."
  type        = bool
  default     = true
}

variable "archive_bucket_name" {
  description = "Name of the archive bucket to create. Null: generated from var.name (<name>-dlq-<random suffix>)."
  type        = string
  default     = null
}

variable "archive_force_destroy" {
  description = "Let `terraform destroy` delete the archive bucket with the dead letters in it."
  type        = bool
  default     = false
}

variable "archive_kms_key_arn" {
  description = "KMS key for the archive objects (SSE-KMS). Null: the AWS managed key aws/s3, which the sidecar's role can use without KMS permissions. A customer managed key must allow kms:GenerateDataKey to the sidecar's role in its key policy (the role's own policy stays the exact sidecar policy)."
  type        = string
  default     = null
}

variable "archive_transition_to_glacier_days" {
  description = "Days after which archived dead letters move to S3 Glacier Flexible Retrieval. Null: never."
  type        = number
  default     = 30
}

variable "archive_expiration_days" {
  description = "Days after which archived dead letters are deleted. Null: never."
  type        = number
  default     = 365

  validation {
    condition     = var.archive_expiration_days == null || coalesce(var.archive_expiration_days, 1) >= 1
    error_message = "archive_expiration_days must be at least 1."
  }
}

variable "archive_noncurrent_version_expiration_days" {
  description = "Days after which overwritten versions of archive objects are deleted (a rewrite of the same dead letter lands on the same key)."
  type        = number
  default     = 30
}

variable "archive_logging" {
  description = "Server access logging of the archive bucket: the target bucket and key prefix. Null: no access logs."
  type = object({
    target_bucket = string
    target_prefix = optional(string, "")
  })
  default = null
}

################################################################################
# SQS delivery queue
################################################################################

variable "create_sqs_queue" {
  description = "Create an SQS queue (and its own dead-letter queue) for SQS delivery: the sidecar fills it, the application reads it."
  type        = bool
  default     = false
}

variable "sqs_kms_key_arn" {
  description = "KMS key for both queues. Null: SQS managed encryption (SSE-SQS)."
  type        = string
  default     = null
}

variable "sqs_visibility_timeout_seconds" {
  description = "Visibility timeout of the delivery queue: how long the application has to process and delete a message."
  type        = number
  default     = 60
}

variable "sqs_message_retention_seconds" {
  description = "How long undelivered messages stay in the delivery queue."
  type        = number
  default     = 345600
}

variable "sqs_max_receive_count" {
  description = "Receives after which a message moves to the queue's dead-letter queue."
  type        = number
  default     = 5
}

variable "sqs_dlq_message_retention_seconds" {
  description = "How long messages stay in the queue's dead-letter queue (the maximum, 14 days, by default)."
  type        = number
  default     = 1209600
}
