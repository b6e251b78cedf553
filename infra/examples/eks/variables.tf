variable "region" {
  description = "AWS region of the EKS and MSK clusters."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "An existing EKS cluster (Kubernetes 1.29+, with the eks-pod-identity-agent add-on)."
  type        = string
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
  description = "Security group of the brokers (the example lets the EKS cluster security group in on 9098)."
  type        = string
}

variable "sidecar_image" {
  description = "msk-sidecar image built from the repository's Dockerfile, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/msk-sidecar@sha256:..."
  type        = string
}
