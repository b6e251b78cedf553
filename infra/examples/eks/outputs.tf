output "deployment_name" {
  description = "The Deployment (kubectl -n orders get deploy)."
  value       = module.orders_consumer.deployment_name
}

output "iam_role_arn" {
  description = "The pods' IAM role (its msk-sidecar policy is iam_policy_json)."
  value       = module.orders_consumer.iam_role_arn
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
