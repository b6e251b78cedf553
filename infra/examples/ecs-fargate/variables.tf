variable "region" {
  description = "AWS region of the MSK cluster and the ECS tasks."
  type        = string
  default     = "eu-west-1"
}

variable "msk_cluster_arn" {
  description = "ARN of an existing MSK cluster with IAM authentication."
  type        = string
}

variable "kafka_brokers" {
  description = "Its IAM bootstrap brokers (aws_msk_cluster.bootstrap_brokers_sasl_iam)."
  type        = string
}

variable "msk_security_group_id" {
  description = "Security group of the brokers (the example lets the tasks in on 9098)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (with a NAT gateway or VPC endpoints) for the tasks."
  type        = list(string)
}

variable "sidecar_image" {
  description = "msk-sidecar image built from the repository's Dockerfile and pushed to ECR, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/msk-sidecar@sha256:..."
  type        = string
}
