# GovCloud partition, archive without a prefix (resource bucket/*), HTTP delivery.
msk_cluster_arn = "arn:aws-us-gov:kafka:us-gov-west-1:123456789012:cluster/ledger/11111111-2222-3333-4444-555555555555-1"
topics          = ["ledger.events", "ledger.corrections"]
consumer_group  = "ledger-sidecar"
archive_bucket  = "ledger-dlq"
