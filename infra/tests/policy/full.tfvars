# Everything: two topics (one a regex subscription), an explicit DLQ topic, an S3 archive with a
# prefix (slashes trimmed like the sidecar does) and SQS delivery.
msk_cluster_arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
topics          = ["orders", "^payments\\..*"]
dlq_topic       = "orders-sidecar.dlq"
consumer_group  = "orders-sidecar"
archive_bucket  = "orders-dlq-archive"
archive_prefix  = "/dead-letters/orders/"
sqs_queue_arn   = "arn:aws:sqs:eu-west-1:123456789012:orders-deliveries"
