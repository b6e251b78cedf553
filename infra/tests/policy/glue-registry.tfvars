# Records decoded with the AWS Glue Schema Registry (SIDECAR_SCHEMA_REGISTRY=glue): the
# ReadGlueSchemas statement on the account's registries and schemas in the cluster's region.
msk_cluster_arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
topics          = ["orders"]
consumer_group  = "orders-sidecar"
schema_registry = "glue"
