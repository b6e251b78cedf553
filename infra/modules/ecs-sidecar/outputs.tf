################################################################################
# Task definition
################################################################################

output "task_definition_arn" {
  description = "ARN of the task definition (family:revision)."
  value       = try(aws_ecs_task_definition.this.arn, null)
}

output "task_definition_family" {
  description = "Family of the task definition."
  value       = try(aws_ecs_task_definition.this.family, null)
}

output "task_definition_revision" {
  description = "Revision of the task definition."
  value       = try(aws_ecs_task_definition.this.revision, null)
}

output "container_definitions" {
  description = "The container definitions (JSON): the application and the sidecar."
  value       = try(aws_ecs_task_definition.this.container_definitions, null)
}

output "sidecar_environment" {
  description = "The sidecar container's environment."
  value       = try(local.sidecar_environment, null)
}

################################################################################
# IAM
################################################################################

output "iam_policy_json" {
  description = "The sidecar's IAM policy (inline policy msk-sidecar of the task role); equal to `msk-sidecar check-config --iam-policy` for the same settings."
  value       = try(module.iam_policy.json, null)
}

output "task_role_arn" {
  description = "ARN of the task role."
  value       = try(aws_iam_role.task.arn, null)
}

output "task_role_name" {
  description = "Name of the task role (attach the application's policies here)."
  value       = try(aws_iam_role.task.name, null)
}

output "execution_role_arn" {
  description = "ARN of the execution role."
  value       = try(aws_iam_role.execution.arn, null)
}

output "execution_role_name" {
  description = "Name of the execution role."
  value       = try(aws_iam_role.execution.name, null)
}

################################################################################
# Dead letters and delivery
################################################################################

output "dlq_topic" {
  description = "The dead-letter topic (SIDECAR_DLQ_TOPIC)."
  value       = try(module.iam_policy.dlq_topic, null)
}

output "archive_uri" {
  description = "The dead-letter archive (SIDECAR_DLQ_ARCHIVE): s3://bucket/prefix or none."
  value       = try(module.iam_policy.archive_uri, null)
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
  description = "URL of the created delivery queue's dead-letter queue."
  value       = try(module.storage.sqs_dlq_url, null)
}

output "sqs_dlq_arn" {
  description = "ARN of the created delivery queue's dead-letter queue."
  value       = try(module.storage.sqs_dlq_arn, null)
}

################################################################################
# Logs, network, service
################################################################################

output "cloudwatch_log_group_name" {
  description = "Log group of both containers."
  value       = try(aws_cloudwatch_log_group.this.name, null)
}

output "cloudwatch_log_group_arn" {
  description = "ARN of the log group."
  value       = try(aws_cloudwatch_log_group.this.arn, null)
}

output "security_group_id" {
  description = "Security group of the tasks."
  value       = try(aws_security_group.this[0].id, null)
}

output "service_id" {
  description = "ARN of the ECS service."
  value       = try(aws_ecs_service.this[0].id, null)
}

output "service_name" {
  description = "Name of the ECS service."
  value       = try(aws_ecs_service.this[0].name, null)
}

output "autoscaling_policy_arns" {
  description = "Target tracking policies, by topic (or `custom`)."
  value       = try({ for k, p in aws_appautoscaling_policy.this : k => p.arn }, null)
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms (empty with create_alarms = false)."
  value       = var.create_alarms ? module.alarms[0].alarm_names : []
}
