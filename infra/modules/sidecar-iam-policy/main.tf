# The least-privilege IAM policy of msk-sidecar, exactly as `msk-sidecar check-config
# --iam-policy` prints it for the same settings: statement order, Sids and action order are part
# of the contract, and every Action and Resource is a list, even with one element. That is why it
# is built with jsonencode and not aws_iam_policy_document, which turns one-element lists into
# strings.

locals {
  partition = split(":", var.msk_cluster_arn)[1]

  # arn:<p>:kafka:<r>:<a>:cluster/<name>/<uuid> -> arn:<p>:kafka:<r>:<a>:topic/<name>/<uuid>
  topic_arn_base = replace(var.msk_cluster_arn, ":cluster/", ":topic/")
  group_arn_base = replace(var.msk_cluster_arn, ":cluster/", ":group/")

  # The group the sidecar joins: <prefix><group><suffix>, and <environment>- in front unless one
  # of the name's -, . or _ separated parts already is the environment (src/config/parse.rs).
  named_group = "${var.consumer_group_prefix}${var.consumer_group}${var.consumer_group_suffix}"
  # The environment's parts in a row among the name's parts (any of - . _ separating either).
  group_parts    = replace(replace(local.named_group, ".", "-"), "_", "-")
  env_parts      = replace(replace(var.environment, ".", "-"), "_", "-")
  consumer_group = var.environment == "" || strcontains("-${local.group_parts}-", "-${local.env_parts}-") ? local.named_group : "${var.environment}-${local.named_group}"

  dlq_topic = var.dlq_topic == null || var.dlq_topic == "" ? "${var.topics[0]}.dlq" : var.dlq_topic

  archive_bucket   = var.archive_bucket == null ? "" : var.archive_bucket
  archive_prefix   = var.archive_prefix == null ? "" : trim(var.archive_prefix, "/")
  archive_resource = local.archive_prefix == "" ? "arn:${local.partition}:s3:::${local.archive_bucket}/*" : "arn:${local.partition}:s3:::${local.archive_bucket}/${local.archive_prefix}/*"
  sqs_queue_arn    = var.sqs_queue_arn == null ? "" : var.sqs_queue_arn

  kafka_statements = [
    {
      Sid      = "ConnectToCluster"
      Effect   = "Allow"
      Action   = ["kafka-cluster:Connect"]
      Resource = [var.msk_cluster_arn]
    },
    {
      Sid    = "ReadSourceTopics"
      Effect = "Allow"
      Action = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
      # In the order of var.topics, each ARN once (two patterns both become topic/.../*).
      Resource = distinct([for t in var.topics : "${local.topic_arn_base}/${startswith(t, "^") ? "*" : t}"])
    },
    {
      Sid      = "WriteDeadLetterTopic"
      Effect   = "Allow"
      Action   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
      Resource = ["${local.topic_arn_base}/${local.dlq_topic}"]
    },
    {
      Sid      = "UseConsumerGroup"
      Effect   = "Allow"
      Action   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
      Resource = ["${local.group_arn_base}/${local.consumer_group}"]
    },
  ]

  archive_statements = local.archive_bucket == "" ? [] : [
    {
      Sid      = "ArchiveDeadLetters"
      Effect   = "Allow"
      Action   = ["s3:PutObject"]
      Resource = [local.archive_resource]
    },
  ]

  # A record names a schema version by id alone, which says nothing of its registry: the read is
  # allowed on the registries and schemas of the cluster's account and region.
  glue_statements = var.schema_registry != "glue" ? [] : [
    {
      Sid    = "ReadGlueSchemas"
      Effect = "Allow"
      Action = ["glue:GetSchemaVersion"]
      Resource = [
        "arn:${split(":", var.msk_cluster_arn)[1]}:glue:${split(":", var.msk_cluster_arn)[3]}:${split(":", var.msk_cluster_arn)[4]}:registry/*",
        "arn:${split(":", var.msk_cluster_arn)[1]}:glue:${split(":", var.msk_cluster_arn)[3]}:${split(":", var.msk_cluster_arn)[4]}:schema/*",
      ]
    },
  ]

  deliver_statements = local.sqs_queue_arn == "" ? [] : [
    {
      Sid      = "DeliverToQueue"
      Effect   = "Allow"
      Action   = ["sqs:SendMessage"]
      Resource = [local.sqs_queue_arn]
    },
  ]

  # No dead-letter queue ARNs (no source queue has a RedrivePolicy): no SendToDeadLetterQueues,
  # as IAM rejects a statement without resources. check-config always prints placeholders.
  source_statements = length(var.sqs_source_queue_arns) == 0 ? [] : concat(
    [
      {
        Sid      = "ConsumeQueues"
        Effect   = "Allow"
        Action   = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
        Resource = var.sqs_source_queue_arns
      },
    ],
    length(var.sqs_source_dead_letter_queue_arns) == 0 ? [] : [
      {
        Sid      = "SendToDeadLetterQueues"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage"]
        Resource = var.sqs_source_dead_letter_queue_arns
      },
    ],
  )

  # arn:<p>:sqs:<r>:<a>:<name>: a queue encrypted with a KMS key needs the key, through SQS only;
  # one statement for every queue the sidecar touches, keys and services each listed once.
  all_queue_arns = concat(
    local.sqs_queue_arn == "" ? [] : [local.sqs_queue_arn],
    var.sqs_source_queue_arns,
    var.sqs_source_dead_letter_queue_arns,
  )
  kms_keys     = distinct([for arn in local.all_queue_arns : "arn:${split(":", arn)[1]}:kms:${split(":", arn)[3]}:${split(":", arn)[4]}:key/*"])
  kms_services = distinct([for arn in local.all_queue_arns : "sqs.${split(":", arn)[3]}.${split(":", arn)[1] == "aws-cn" ? "amazonaws.com.cn" : "amazonaws.com"}"])

  kms_statements = length(local.all_queue_arns) == 0 ? [] : [
    {
      Sid      = "UseQueueKmsKey"
      Effect   = "Allow"
      Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
      Resource = local.kms_keys
      Condition = {
        StringEquals = {
          "kms:ViaService" = local.kms_services
        }
      }
    },
  ]

  policy = {
    Version   = "2012-10-17"
    Statement = concat(local.kafka_statements, local.archive_statements, local.glue_statements, local.deliver_statements, local.source_statements, local.kms_statements)
  }
}
