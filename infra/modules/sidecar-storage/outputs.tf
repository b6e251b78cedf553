output "archive_bucket_id" {
  description = "Name of the archive bucket (null when not created)."
  value       = try(aws_s3_bucket.this[0].id, null)
}

output "archive_bucket_arn" {
  description = "ARN of the archive bucket (null when not created)."
  value       = try(aws_s3_bucket.this[0].arn, null)
}

output "sqs_queue_url" {
  description = "URL of the delivery queue (SIDECAR_DELIVERY_SQS_QUEUE_URL; null when not created)."
  value       = try(aws_sqs_queue.this[0].url, null)
}

output "sqs_queue_arn" {
  description = "ARN of the delivery queue (null when not created)."
  value       = try(aws_sqs_queue.this[0].arn, null)
}

output "sqs_queue_name" {
  description = "Name of the delivery queue (null when not created)."
  value       = try(aws_sqs_queue.this[0].name, null)
}

output "sqs_dlq_url" {
  description = "URL of the delivery queue's dead-letter queue (null when not created)."
  value       = try(aws_sqs_queue.dlq[0].url, null)
}

output "sqs_dlq_arn" {
  description = "ARN of the delivery queue's dead-letter queue (null when not created)."
  value       = try(aws_sqs_queue.dlq[0].arn, null)
}
