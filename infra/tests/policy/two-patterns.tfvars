# Two pattern subscriptions and a plain topic: both patterns become topic/.../* and the ARN is
# listed once, at its first place; a pattern first topic needs an explicit DLQ topic.
msk_cluster_arn = "arn:aws-cn:kafka:cn-north-1:123456789012:cluster/events/aaaabbbb-cccc-dddd-eeee-ffff00001111-3"
topics          = ["^orders\\..*", "audit", "^payments\\..*"]
dlq_topic       = "events-sidecar.dlq"
consumer_group  = "events-sidecar"
sqs_queue_arn   = "arn:aws-cn:sqs:cn-north-1:123456789012:events"
