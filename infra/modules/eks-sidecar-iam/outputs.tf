output "role_arn" {
  description = "ARN of the role (the eks.amazonaws.com/role-arn annotation for IRSA)."
  value       = try(aws_iam_role.this.arn, null)
}

output "role_name" {
  description = "Name of the role."
  value       = try(aws_iam_role.this.name, null)
}

output "iam_policy_json" {
  description = "The sidecar's IAM policy (inline policy msk-sidecar of the role)."
  value       = try(module.iam_policy.json, null)
}

output "dlq_topic" {
  description = "The effective dead-letter topic."
  value       = try(module.iam_policy.dlq_topic, null)
}

output "archive_uri" {
  description = "The SIDECAR_DLQ_ARCHIVE value: s3://bucket/prefix or none."
  value       = try(module.iam_policy.archive_uri, null)
}

output "pod_identity_association_id" {
  description = "ID of the Pod Identity association (null without Pod Identity)."
  value       = try(aws_eks_pod_identity_association.this[0].association_id, null)
}

output "pod_identity_association_arn" {
  description = "ARN of the Pod Identity association (null without Pod Identity)."
  value       = try(aws_eks_pod_identity_association.this[0].association_arn, null)
}
