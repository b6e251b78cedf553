variable "name" {
  description = "Name of the deployment: Deployment, ServiceAccount, PodDisruptionBudget, IAM role and (generated) bucket and queue names start with it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,31}$", var.name))
    error_message = "name must be 1-32 of a-z 0-9 - (a Kubernetes name that also fits IAM and S3 names)."
  }
}

variable "namespace" {
  description = "Kubernetes namespace (must exist)."
  type        = string
}

variable "tags" {
  description = "Tags for the AWS resources."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "More labels for the Kubernetes objects and pods."
  type        = map(string)
  default     = {}
}

variable "pod_annotations" {
  description = "More annotations for the pods."
  type        = map(string)
  default     = {}
}

################################################################################
# AWS credentials of the pods
################################################################################

variable "cluster_name" {
  description = "EKS cluster name (for the Pod Identity association)."
  type        = string
  default     = null
}

variable "enable_pod_identity" {
  description = "Give the pods the role through EKS Pod Identity (needs the eks-pod-identity-agent add-on)."
  type        = bool
  default     = true
}

variable "enable_irsa" {
  description = "Give the pods the role through IRSA (annotates the service account)."
  type        = bool
  default     = false
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (for IRSA)."
  type        = string
  default     = null
}

variable "create_service_account" {
  description = "Create the service account. False: it must exist (and carry the IRSA annotation if IRSA is used)."
  type        = bool
  default     = true
}

variable "service_account_name" {
  description = "Service account of the pods. Null: var.name."
  type        = string
  default     = null
}

variable "iam_role_path" {
  description = "Path of the IAM role."
  type        = string
  default     = "/"
}

variable "iam_role_permissions_boundary" {
  description = "Permissions boundary (policy ARN) of the IAM role."
  type        = string
  default     = null
}

variable "iam_role_policy_arns" {
  description = "Managed policies to attach to the role for the application (all containers of the pod share it). The sidecar's own policy is separate and exact."
  type        = list(string)
  default     = []
}

################################################################################
# Kafka (MSK) and the sidecar's settings
################################################################################

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster."
  type        = string
}

variable "kafka_brokers" {
  description = "Bootstrap brokers of the IAM listener (KAFKA_BROKERS), comma separated."
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
  description = "msk-sidecar container image, ideally pinned by digest."
  type        = string
}

variable "sidecar_image_pull_policy" {
  description = "Image pull policy of the sidecar."
  type        = string
  default     = "IfNotPresent"
}

variable "sidecar_resources" {
  description = "Resource requests and limits of the sidecar."
  type = object({
    requests = optional(map(string), { cpu = "100m", memory = "128Mi" })
    limits   = optional(map(string), { cpu = "1", memory = "256Mi" })
  })
  default = {}
}

variable "sidecar_admin_port" {
  description = "Port of the sidecar's admin server (/live, /ready, /metrics)."
  type        = number
  default     = 9464
}

variable "sidecar_admin_exposed" {
  description = "Listen on the pod's address instead of loopback, so that Prometheus can scrape /metrics and the kubelet probes over HTTP. Off by default: the probes then run `msk-sidecar healthcheck` in the container, and nothing outside the pod reaches the admin server."
  type        = bool
  default     = false
}

variable "sidecar_shutdown_grace_seconds" {
  description = "Drain time on SIGTERM (SIDECAR_SHUTDOWN_GRACE)."
  type        = number
  default     = 25
}

variable "termination_grace_period_seconds" {
  description = "The pod's termination grace period. Null: the sidecar's grace + 30 s. It covers the application's shutdown AND the sidecar's drain, which comes after it (see README)."
  type        = number
  default     = null
}

variable "delivery_path" {
  description = "Path on the application's port that the sidecar POSTs records to."
  type        = string
  default     = "/events"
}

variable "otel_exporter_otlp_endpoint" {
  description = "OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT), e.g. http://otel-collector.observability:4317. Null: no export."
  type        = string
  default     = null
}

variable "sidecar_environment" {
  description = "More environment variables for the sidecar; they override the module's values of the same name."
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
    The application container. name, image: required. port: where the sidecar delivers (default
    8080). Probes: TCP on the port unless liveness_path / readiness_path name HTTP paths.
    read_only_root_filesystem (default true) comes with a writable emptyDir on /tmp.
  EOT
  type = object({
    name                      = optional(string, "app")
    image                     = string
    image_pull_policy         = optional(string, "IfNotPresent")
    port                      = optional(number, 8080)
    command                   = optional(list(string))
    args                      = optional(list(string))
    environment               = optional(map(string), {})
    env_from_secret_names     = optional(list(string), [])
    liveness_path             = optional(string)
    readiness_path            = optional(string)
    run_as_user               = optional(number, 65532)
    read_only_root_filesystem = optional(bool, true)
    resources = optional(object({
      requests = optional(map(string), { cpu = "100m", memory = "128Mi" })
      limits   = optional(map(string), { cpu = "1", memory = "512Mi" })
    }), {})
  })
}

################################################################################
# Deployment
################################################################################

variable "replicas" {
  description = "Pods; more pods than partitions of the source topics stay idle (and not ready)."
  type        = number
  default     = 2
}

variable "pdb_max_unavailable" {
  description = "PodDisruptionBudget: pods that voluntary disruptions (node drains, upgrades) may take down at once."
  type        = string
  default     = "1"
}

variable "node_selector" {
  description = "Node selector of the pods."
  type        = map(string)
  default     = {}
}

variable "wait_for_rollout" {
  description = "Wait for the Deployment's rollout (pods ready: each needs a partition assignment) on apply."
  type        = bool
  default     = true
}

################################################################################
# Dead-letter archive (S3) and SQS delivery
################################################################################

variable "create_archive_bucket" {
  description = "Create the S3 bucket of the dead-letter archive. False: set archive_bucket_name to an existing bucket, or leave it null for no archive."
  type        = bool
  default     = true
}

variable "archive_bucket_name" {
  description = "Archive bucket: name of the bucket to create (null: generated), or of an existing bucket when create_archive_bucket is false (null: no archive)."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "Key prefix of the archive objects. Null: the consumer group."
  type        = string
  default     = null
}

variable "archive_force_destroy" {
  description = "Let `terraform destroy` delete the archive bucket with its objects."
  type        = bool
  default     = false
}

variable "archive_kms_key_arn" {
  description = "KMS key for the archive bucket. Null: the AWS managed key aws/s3."
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
  description = "Server access logging of the created archive bucket. Null: none."
  type = object({
    target_bucket = string
    target_prefix = optional(string, "")
  })
  default = null
}

variable "create_sqs_queue" {
  description = "Deliver through a new SQS queue (with its own DLQ) instead of HTTP."
  type        = bool
  default     = false
}

variable "sqs_queue_url" {
  description = "Deliver through this existing queue instead of HTTP (with sqs_queue_arn)."
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

################################################################################
# SQS source (next to the topics)
################################################################################

variable "sqs_source_queues" {
  description = "SQS queues the sidecar consumes next to the topics (SQS_QUEUE_URLS), in order: url, arn, and dead_letter_queue_arn, the dead-letter queue its RedrivePolicy names (null: none; its dead letters then go to the archive only). The role's policy gets ConsumeQueues on the queues and SendToDeadLetterQueues on the dead-letter queues. SQS_MAX_MESSAGES, SQS_WAIT_TIME and SQS_VISIBILITY_TIMEOUT go in sidecar_environment."
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
