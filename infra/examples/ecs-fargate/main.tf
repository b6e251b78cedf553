# An `orders` consumer on Fargate: a stand-in Python application (app.py, run from the public
# python image) behind msk-sidecar, on a new ECS cluster, next to an existing MSK cluster.

provider "aws" {
  region = var.region
}

locals {
  name = "orders-consumer"

  tags = {
    Example    = "msk-sidecar/ecs-fargate"
    Repository = "msk-sidecar"
  }
}

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

module "orders_consumer" {
  source = "../../modules/ecs-sidecar"

  name = local.name
  tags = local.tags

  msk_cluster_arn      = var.msk_cluster_arn
  kafka_brokers        = var.kafka_brokers
  kafka_topics         = ["orders"]
  kafka_consumer_group = "orders-consumer"

  sidecar_image = var.sidecar_image
  sidecar_environment = {
    SIDECAR_MAX_IN_FLIGHT      = "128"
    SIDECAR_RETRY_MAX_ATTEMPTS = "6"
  }

  application = {
    name    = "orders-app"
    image   = "public.ecr.aws/docker/library/python:3.12-slim"
    port    = 8080
    user    = "65534:65534"
    command = ["python3", "-u", "-c", file("${path.module}/app.py")]
  }

  cluster_arn           = aws_ecs_cluster.this.arn
  vpc_id                = var.vpc_id
  subnet_ids            = var.subnet_ids
  msk_security_group_id = var.msk_security_group_id

  desired_count            = 2
  autoscaling_min_capacity = 1
  autoscaling_max_capacity = 6
  autoscaling_target_lag   = 500
}
