#!/usr/bin/env bash
# LocalStack init hook (mounted into /etc/localstack/init/ready.d by docker-compose.yml): creates
# what the demo's sidecar writes to, once LocalStack is ready.
#   s3://msk-sidecar-dlq                 dead-letter archive (SIDECAR_DLQ_ARCHIVE)
#   msk-sidecar-deliveries (+ -dlq)      SQS delivery queue with its own dead-letter queue, for
#                                        the `sqs` profile (SIDECAR_DELIVERY_SQS_QUEUE_URL)
set -euo pipefail

region="${AWS_DEFAULT_REGION:-us-east-1}"
account=000000000000

awslocal s3api create-bucket --bucket msk-sidecar-dlq >/dev/null
awslocal s3api put-bucket-versioning --bucket msk-sidecar-dlq \
  --versioning-configuration Status=Enabled

awslocal sqs create-queue --queue-name msk-sidecar-deliveries-dlq >/dev/null
awslocal sqs create-queue --queue-name msk-sidecar-deliveries \
  --attributes "{\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"arn:aws:sqs:${region}:${account}:msk-sidecar-deliveries-dlq\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\",\"VisibilityTimeout\":\"60\"}" \
  >/dev/null

echo "init: bucket msk-sidecar-dlq and queues msk-sidecar-deliveries(-dlq) are ready"
