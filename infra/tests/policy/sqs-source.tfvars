# An SQS source next to the topics (one standard and one FIFO queue), HTTP delivery: the
# consumer actions on the queues, SendMessage on their dead-letter queues (named as check-config
# names them: only the queues' RedrivePolicy knows the real ones) and the KMS statement.
msk_cluster_arn                   = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
topics                            = ["orders"]
consumer_group                    = "orders-sidecar"
sqs_source_queue_arns             = ["arn:aws:sqs:eu-west-1:123456789012:tasks", "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo"]
sqs_source_dead_letter_queue_arns = ["arn:aws:sqs:eu-west-1:123456789012:DEAD_LETTER_QUEUE_OF_tasks", "arn:aws:sqs:eu-west-1:123456789012:DEAD_LETTER_QUEUE_OF_jobs.fifo"]
