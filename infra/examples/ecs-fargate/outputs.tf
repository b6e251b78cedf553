output "service_name" {
  description = "The ECS service."
  value       = module.orders_consumer.service_name
}

output "task_role_arn" {
  description = "The task role (its msk-sidecar policy is iam_policy_json)."
  value       = module.orders_consumer.task_role_arn
}

output "iam_policy_json" {
  description = "The sidecar's IAM policy."
  value       = module.orders_consumer.iam_policy_json
}

output "archive_uri" {
  description = "Where dead letters are archived."
  value       = module.orders_consumer.archive_uri
}

output "dlq_topic" {
  description = "The dead-letter topic (create it on the cluster)."
  value       = module.orders_consumer.dlq_topic
}

output "log_group" {
  description = "CloudWatch log group of both containers."
  value       = module.orders_consumer.cloudwatch_log_group_name
}
