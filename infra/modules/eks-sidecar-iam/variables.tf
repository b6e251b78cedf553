variable "name" {
  description = "Name of the IAM role (and of the deployment it serves)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9+=,.@_-]{1,64}$", var.name))
    error_message = "name must be a valid IAM role name (1-64 of a-z A-Z 0-9 +=,.@_-)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "namespace" {
  description = "Kubernetes namespace of the pods' service account."
  type        = string
}

variable "service_account_name" {
  description = "Kubernetes service account of the pods."
  type        = string
}

################################################################################
# How the pods get the role
################################################################################

variable "enable_pod_identity" {
  description = "Let EKS Pod Identity hand the role to the service account: adds the pods.eks.amazonaws.com trust and the association (the cluster needs the eks-pod-identity-agent add-on)."
  type        = bool
  default     = true
}

variable "cluster_name" {
  description = "EKS cluster of the Pod Identity association (required with enable_pod_identity)."
  type        = string
  default     = null
}

variable "pod_identity_session_tag_conditions" {
  description = "Restrict the Pod Identity trust to this cluster, namespace and service account through the session tags Pod Identity sets (keep session tags enabled on the association)."
  type        = bool
  default     = true
}

variable "enable_irsa" {
  description = "Trust the cluster's OIDC provider for IAM Roles for Service Accounts (the service account then needs the eks.amazonaws.com/role-arn annotation)."
  type        = bool
  default     = false
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (required with enable_irsa)."
  type        = string
  default     = null
}

variable "iam_role_path" {
  description = "Path of the IAM role."
  type        = string
  default     = "/"
}

variable "iam_role_permissions_boundary" {
  description = "Permissions boundary (policy ARN) of the role."
  type        = string
  default     = null
}

variable "role_policy_arns" {
  description = "Managed policies to attach for the application (every container of the pod gets the role). The sidecar's own policy is separate and exact."
  type        = list(string)
  default     = []
}

################################################################################
# What the sidecar does (its policy)
################################################################################

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster."
  type        = string
}

variable "kafka_topics" {
  description = "Topics the sidecar consumes, in order (^ for a pattern)."
  type        = list(string)
}

variable "kafka_consumer_group" {
  description = "Consumer group id."
  type        = string
}

variable "dlq_topic" {
  description = "Dead-letter topic. Null: <first topic>.dlq."
  type        = string
  default     = null
}

variable "archive_bucket" {
  description = "S3 bucket of the dead-letter archive. Null: no archive."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "Key prefix of the dead-letter archive."
  type        = string
  default     = ""
}

variable "sqs_queue_arn" {
  description = "SQS delivery queue the sidecar fills. Null: HTTP delivery."
  type        = string
  default     = null
}

variable "attach_application_queue_policy" {
  description = "With sqs_queue_arn: also let the application (same role) receive and delete from that queue, in a separate inline policy."
  type        = bool
  default     = true
}

variable "sqs_source_queues" {
  description = "SQS queues the sidecar consumes (SQS_QUEUE_URLS), in order: url, arn, and dead_letter_queue_arn, the dead-letter queue its RedrivePolicy names (null: none). The policy gets ConsumeQueues on the queues and SendToDeadLetterQueues on the dead-letter queues; the url is only checked against the arn."
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
