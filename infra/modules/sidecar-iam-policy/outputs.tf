output "json" {
  description = "The IAM policy document (JSON) that the sidecar needs: attach it to the ECS task role or the EKS (IRSA / Pod Identity) role."
  value       = try(jsonencode(local.policy), null)

  precondition {
    condition     = var.dlq_topic != null && var.dlq_topic != "" || !startswith(var.topics[0], "^")
    error_message = "dlq_topic is required when the first topic is a ^pattern (the sidecar refuses to guess it)."
  }

  precondition {
    condition     = !contains(var.topics, local.dlq_topic)
    error_message = "The dead-letter topic must not be one of the consumed topics: dead letters would be consumed again."
  }
}

output "dlq_topic" {
  description = "The effective dead-letter topic (dlq_topic, or <first topic>.dlq)."
  value       = try(local.dlq_topic, null)
}

output "archive_uri" {
  description = "The SIDECAR_DLQ_ARCHIVE value for these settings: s3://bucket/prefix, s3://bucket, or none."
  value       = try(local.archive_bucket == "" ? "none" : (local.archive_prefix == "" ? "s3://${local.archive_bucket}" : "s3://${local.archive_bucket}/${local.archive_prefix}"), null)
}

output "topic_arns" {
  description = "ARNs of the source topics (* for ^pattern topics), in the order of var.topics, each once."
  value       = try(local.kafka_statements[1].Resource, null)
}

output "dlq_topic_arn" {
  description = "ARN of the dead-letter topic."
  value       = try("${local.topic_arn_base}/${local.dlq_topic}", null)
}

output "consumer_group_arn" {
  description = "ARN of the consumer group."
  value       = try("${local.group_arn_base}/${local.consumer_group}", null)
}

output "consumer_group" {
  description = "The consumer group the sidecar joins: environment, prefix and suffix applied."
  value       = local.consumer_group
}
