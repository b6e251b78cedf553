# An `orders` consumer on EKS: a stand-in Python application (app.py, run from the public python
# image) with msk-sidecar as a native sidecar, credentials through EKS Pod Identity.

provider "aws" {
  region = var.region
}

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

provider "kubernetes" {
  host                   = data.aws_eks_cluster.this.endpoint
  cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", var.cluster_name, "--region", var.region]
  }
}

locals {
  name = "orders-consumer"

  tags = {
    Example    = "msk-sidecar/eks"
    Repository = "msk-sidecar"
  }
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = "orders"
  }
}

# Pods use the cluster security group (unless security groups for pods are set up): let it reach
# the brokers' IAM listener.
resource "aws_vpc_security_group_ingress_rule" "msk" {
  security_group_id            = var.msk_security_group_id
  description                  = "EKS pods of ${var.cluster_name}, MSK IAM listener"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = data.aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

module "orders_consumer" {
  source = "../../modules/eks-sidecar"

  name      = local.name
  namespace = kubernetes_namespace_v1.this.metadata[0].name
  tags      = local.tags

  cluster_name        = var.cluster_name
  enable_pod_identity = true

  msk_cluster_arn      = var.msk_cluster_arn
  kafka_brokers        = var.kafka_brokers
  kafka_topics         = ["orders"]
  kafka_consumer_group = "orders-consumer"

  sidecar_image = var.sidecar_image
  sidecar_environment = {
    SIDECAR_MAX_IN_FLIGHT = "128"
  }

  application = {
    name    = "orders-app"
    image   = "public.ecr.aws/docker/library/python:3.12-slim"
    port    = 8080
    command = ["python3", "-u", "-c", file("${path.module}/app.py")]

    read_only_root_filesystem = true
    resources = {
      requests = { cpu = "50m", memory = "64Mi" }
      limits   = { cpu = "500m", memory = "128Mi" }
    }
  }

  replicas = 2
}
