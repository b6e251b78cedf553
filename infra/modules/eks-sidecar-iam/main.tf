# The IAM role of msk-sidecar pods on EKS, usable through EKS Pod Identity (association
# included), IRSA, or both, with the sidecar's exact least-privilege policy.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC -> issuer host/path
  oidc_issuer = var.oidc_provider_arn == null ? "" : element(split(":oidc-provider/", var.oidc_provider_arn), 1)

  sqs_delivery = var.sqs_queue_arn != null && var.sqs_queue_arn != ""

  # Every source queue's dead-letter queue once (queues may share one), none for a queue
  # without a RedrivePolicy.
  sqs_source_dead_letter_queue_arns = distinct([for q in var.sqs_source_queues : q.dead_letter_queue_arn if q.dead_letter_queue_arn != null])
}

module "iam_policy" {
  source = "../sidecar-iam-policy"

  msk_cluster_arn = var.msk_cluster_arn
  topics          = var.kafka_topics
  dlq_topic       = var.dlq_topic
  consumer_group  = var.kafka_consumer_group
  archive_bucket  = var.archive_bucket
  archive_prefix  = var.archive_prefix
  sqs_queue_arn   = var.sqs_queue_arn

  sqs_source_queue_arns             = [for q in var.sqs_source_queues : q.arn]
  sqs_source_dead_letter_queue_arns = local.sqs_source_dead_letter_queue_arns
  schema_registry                   = var.schema_registry
  environment                       = var.environment
  consumer_group_prefix             = var.kafka_consumer_group_prefix
  consumer_group_suffix             = var.kafka_consumer_group_suffix
}

data "aws_iam_policy_document" "assume" {
  dynamic "statement" {
    for_each = var.enable_pod_identity ? [1] : []

    content {
      sid     = "EksPodIdentity"
      actions = ["sts:AssumeRole", "sts:TagSession"]

      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }

      dynamic "condition" {
        for_each = var.pod_identity_session_tag_conditions ? {
          "aws:RequestTag/eks-cluster-name"           = var.cluster_name
          "aws:RequestTag/kubernetes-namespace"       = var.namespace
          "aws:RequestTag/kubernetes-service-account" = var.service_account_name
        } : {}

        content {
          test     = "StringEquals"
          variable = condition.key
          values   = [condition.value]
        }
      }
    }
  }

  dynamic "statement" {
    for_each = var.enable_irsa ? [1] : []

    content {
      sid     = "EksIrsa"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [var.oidc_provider_arn]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.namespace}:${var.service_account_name}"]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.name
  description          = "msk-sidecar pods of ${var.namespace}/${var.service_account_name}"
  path                 = var.iam_role_path
  permissions_boundary = var.iam_role_permissions_boundary
  assume_role_policy   = data.aws_iam_policy_document.assume.json

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.enable_pod_identity || var.enable_irsa
      error_message = "Enable EKS Pod Identity, IRSA, or both: otherwise no pod can assume the role."
    }

    precondition {
      condition     = !var.enable_pod_identity || var.cluster_name != null
      error_message = "enable_pod_identity needs cluster_name."
    }

    precondition {
      condition     = !var.enable_irsa || var.oidc_provider_arn != null
      error_message = "enable_irsa needs oidc_provider_arn."
    }
  }
}

# Exactly what `msk-sidecar check-config --iam-policy` prints for the same settings.
resource "aws_iam_role_policy" "sidecar" {
  name   = "msk-sidecar"
  role   = aws_iam_role.this.id
  policy = module.iam_policy.json
}

resource "aws_iam_role_policy" "application_queue" {
  count = local.sqs_delivery && var.attach_application_queue_policy ? 1 : 0

  name = "application-queue"
  role = aws_iam_role.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ConsumeDeliveries"
        Effect   = "Allow"
        Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
        Resource = [var.sqs_queue_arn]
      },
    ]
  })
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each = { for i, arn in var.role_policy_arns : tostring(i) => arn }

  role       = aws_iam_role.this.name
  policy_arn = each.value
}

resource "aws_eks_pod_identity_association" "this" {
  count = var.enable_pod_identity ? 1 : 0

  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account_name
  role_arn        = aws_iam_role.this.arn

  tags = var.tags
}
