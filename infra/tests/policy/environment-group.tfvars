# Environment-specific group names (seed 001): the policy's consumer group is
# <environment>-<prefix><group><suffix>, as the sidecar computes it.
msk_cluster_arn       = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
topics                = ["orders"]
consumer_group        = "orders-sidecar"
environment           = "staging"
consumer_group_prefix = "team-"
consumer_group_suffix = "-v2"
