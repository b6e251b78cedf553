output "deployment_name" {
  description = "Name of the Deployment."
  value       = try(kubernetes_deployment_v1.this.metadata[0].name, null)
}

output "namespace" {
  description = "Namespace of the Kubernetes objects."
  value       = try(kubernetes_deployment_v1.this.metadata[0].namespace, null)
}

output "service_account_name" {
  description = "Service account of the pods."
  value       = try(local.service_account_name, null)
}

output "pod_disruption_budget_name" {
  description = "Name of the PodDisruptionBudget."
  value       = try(kubernetes_pod_disruption_budget_v1.this.metadata[0].name, null)
}

output "sidecar_environment" {
  description = "The sidecar container's environment (besides K8S_POD_NAME)."
  value       = try(local.sidecar_environment, null)
}

output "termination_grace_period_seconds" {
  description = "The pods' termination grace period."
  value       = try(local.termination_grace_period_seconds, null)
}

output "iam_role_arn" {
  description = "ARN of the pods' IAM role."
  value       = try(module.iam.role_arn, null)
}

output "iam_role_name" {
  description = "Name of the pods' IAM role (attach the application's policies here)."
  value       = try(module.iam.role_name, null)
}

output "iam_policy_json" {
  description = "The sidecar's IAM policy (inline policy msk-sidecar of the role); equal to `msk-sidecar check-config --iam-policy` for the same settings."
  value       = try(module.iam.iam_policy_json, null)
}

output "pod_identity_association_id" {
  description = "ID of the Pod Identity association (null without Pod Identity)."
  value       = try(module.iam.pod_identity_association_id, null)
}

output "dlq_topic" {
  description = "The dead-letter topic."
  value       = try(module.iam.dlq_topic, null)
}

output "archive_uri" {
  description = "The dead-letter archive (SIDECAR_DLQ_ARCHIVE)."
  value       = try(module.iam.archive_uri, null)
}

output "archive_bucket_id" {
  description = "Name of the created archive bucket."
  value       = try(module.storage.archive_bucket_id, null)
}

output "archive_bucket_arn" {
  description = "ARN of the created archive bucket."
  value       = try(module.storage.archive_bucket_arn, null)
}

output "sqs_queue_url" {
  description = "URL of the delivery queue (created or given), null with HTTP delivery."
  value       = try(local.sqs_queue_url, null)
}

output "sqs_queue_arn" {
  description = "ARN of the delivery queue (created or given), null with HTTP delivery."
  value       = try(local.sqs_queue_arn, null)
}

output "sqs_dlq_url" {
  description = "URL of the created queue's dead-letter queue."
  value       = try(module.storage.sqs_dlq_url, null)
}
