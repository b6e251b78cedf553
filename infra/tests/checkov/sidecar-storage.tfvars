# checkov scans infra/modules/sidecar-storage with this var file too (infra/check.sh), so that
# the resources the examples leave off (SQS queues, access logging) are checked as well.
name                = "checkov"
create_sqs_queue    = true
archive_bucket_name = "checkov-dlq-archive"
archive_logging = {
  target_bucket = "checkov-access-logs"
  target_prefix = "dlq-archive/"
}
