//! The names of every configuration variable, in one place.
//!
//! These names are the external contract in `DESIGN.md`: the environment variables and the
//! keys of the TOML file (same names, any case). Tests and the effective-configuration printer
//! iterate [`ALL`], so a variable cannot be added without appearing everywhere.

pub const KAFKA_BROKERS: &str = "KAFKA_BROKERS";
pub const KAFKA_TOPICS: &str = "KAFKA_TOPICS";
pub const KAFKA_CONSUMER_GROUP: &str = "KAFKA_CONSUMER_GROUP";
pub const KAFKA_CONSUMER_GROUP_PREFIX: &str = "KAFKA_CONSUMER_GROUP_PREFIX";
pub const KAFKA_CONSUMER_GROUP_SUFFIX: &str = "KAFKA_CONSUMER_GROUP_SUFFIX";
pub const ENVIRONMENT: &str = "ENVIRONMENT";
pub const KAFKA_AUTH: &str = "KAFKA_AUTH";
pub const KAFKA_TLS: &str = "KAFKA_TLS";
pub const KAFKA_START_FROM: &str = "KAFKA_START_FROM";
pub const KAFKA_RESET_OFFSETS_ON_START: &str = "KAFKA_RESET_OFFSETS_ON_START";
pub const AWS_REGION: &str = "AWS_REGION";
pub const MSK_CLUSTER_ARN: &str = "MSK_CLUSTER_ARN";
pub const SIDECAR_DELIVERY_URL: &str = "SIDECAR_DELIVERY_URL";
pub const SIDECAR_DELIVERY_SQS_QUEUE_URL: &str = "SIDECAR_DELIVERY_SQS_QUEUE_URL";
pub const SIDECAR_DELIVERY_TIMEOUT: &str = "SIDECAR_DELIVERY_TIMEOUT";
pub const SIDECAR_DELIVERY_BATCH_MAX_RECORDS: &str = "SIDECAR_DELIVERY_BATCH_MAX_RECORDS";
pub const SIDECAR_DELIVERY_BATCH_MAX_BYTES: &str = "SIDECAR_DELIVERY_BATCH_MAX_BYTES";
pub const SIDECAR_DELIVERY_BATCH_LINGER: &str = "SIDECAR_DELIVERY_BATCH_LINGER";
pub const SIDECAR_ORDERING: &str = "SIDECAR_ORDERING";
pub const SIDECAR_MAX_IN_FLIGHT: &str = "SIDECAR_MAX_IN_FLIGHT";
pub const SIDECAR_MAX_UNCOMMITTED: &str = "SIDECAR_MAX_UNCOMMITTED";
pub const SIDECAR_RETRY_MAX_ATTEMPTS: &str = "SIDECAR_RETRY_MAX_ATTEMPTS";
pub const SIDECAR_RETRY_INITIAL_BACKOFF: &str = "SIDECAR_RETRY_INITIAL_BACKOFF";
pub const SIDECAR_RETRY_MAX_BACKOFF: &str = "SIDECAR_RETRY_MAX_BACKOFF";
pub const SIDECAR_DLQ_TOPIC: &str = "SIDECAR_DLQ_TOPIC";
pub const SIDECAR_DLQ_ARCHIVE: &str = "SIDECAR_DLQ_ARCHIVE";
pub const SIDECAR_ADMIN_ADDR: &str = "SIDECAR_ADMIN_ADDR";
pub const SIDECAR_SHUTDOWN_GRACE: &str = "SIDECAR_SHUTDOWN_GRACE";
pub const SIDECAR_LOG_FORMAT: &str = "SIDECAR_LOG_FORMAT";
pub const SIDECAR_TRACE_RECORD_KEYS: &str = "SIDECAR_TRACE_RECORD_KEYS";
pub const SIDECAR_VALUE_FORMAT: &str = "SIDECAR_VALUE_FORMAT";
pub const SIDECAR_KEY_FORMAT: &str = "SIDECAR_KEY_FORMAT";
pub const SIDECAR_SCHEMA_REGISTRY: &str = "SIDECAR_SCHEMA_REGISTRY";
pub const SIDECAR_PROTOBUF_DESCRIPTOR: &str = "SIDECAR_PROTOBUF_DESCRIPTOR";
pub const SIDECAR_PROTOBUF_MESSAGE: &str = "SIDECAR_PROTOBUF_MESSAGE";
pub const SIDECAR_FILTER: &str = "SIDECAR_FILTER";
pub const SIDECAR_MAX_RECORD_AGE: &str = "SIDECAR_MAX_RECORD_AGE";
pub const SQS_QUEUE_URLS: &str = "SQS_QUEUE_URLS";
pub const SQS_MAX_MESSAGES: &str = "SQS_MAX_MESSAGES";
pub const SQS_WAIT_TIME: &str = "SQS_WAIT_TIME";
pub const SQS_VISIBILITY_TIMEOUT: &str = "SQS_VISIBILITY_TIMEOUT";
pub const REDIS_URL: &str = "REDIS_URL";
pub const REDIS_AUTH: &str = "REDIS_AUTH";
pub const REDIS_IAM_CACHE: &str = "REDIS_IAM_CACHE";
pub const REDIS_STREAMS: &str = "REDIS_STREAMS";
pub const REDIS_CONSUMER_GROUP: &str = "REDIS_CONSUMER_GROUP";
pub const REDIS_CONSUMER_NAME: &str = "REDIS_CONSUMER_NAME";
pub const REDIS_CLAIM_MIN_IDLE: &str = "REDIS_CLAIM_MIN_IDLE";
pub const AMQP_URL: &str = "AMQP_URL";
pub const AMQP_QUEUES: &str = "AMQP_QUEUES";
pub const AMQP_PREFETCH: &str = "AMQP_PREFETCH";
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// Prefix of the librdkafka pass-through variables (`SIDECAR_LIBRDKAFKA_FETCH_MIN_BYTES`).
pub const LIBRDKAFKA_PREFIX: &str = "SIDECAR_LIBRDKAFKA_";

/// Every typed variable with its default as shown to users (`None`: required or derived).
pub const ALL: &[(&str, Option<&str>)] = &[
    (KAFKA_BROKERS, None),
    (KAFKA_TOPICS, None),
    (KAFKA_CONSUMER_GROUP, None),
    (KAFKA_CONSUMER_GROUP_PREFIX, None),
    (KAFKA_CONSUMER_GROUP_SUFFIX, None),
    (ENVIRONMENT, None),
    (KAFKA_AUTH, Some("msk-iam")),
    (KAFKA_TLS, None),
    (KAFKA_START_FROM, Some("earliest")),
    (KAFKA_RESET_OFFSETS_ON_START, None),
    (AWS_REGION, None),
    (MSK_CLUSTER_ARN, None),
    (SIDECAR_DELIVERY_URL, None),
    (SIDECAR_DELIVERY_SQS_QUEUE_URL, None),
    (SIDECAR_DELIVERY_TIMEOUT, Some("20s")),
    (SIDECAR_DELIVERY_BATCH_MAX_RECORDS, Some("1")),
    (SIDECAR_DELIVERY_BATCH_MAX_BYTES, Some("1048576")),
    (SIDECAR_DELIVERY_BATCH_LINGER, Some("5ms")),
    (SIDECAR_ORDERING, Some("partition")),
    (SIDECAR_MAX_IN_FLIGHT, Some("256")),
    (SIDECAR_MAX_UNCOMMITTED, Some("20000")),
    (SIDECAR_RETRY_MAX_ATTEMPTS, Some("5")),
    (SIDECAR_RETRY_INITIAL_BACKOFF, Some("200ms")),
    (SIDECAR_RETRY_MAX_BACKOFF, Some("30s")),
    (SIDECAR_DLQ_TOPIC, None),
    (SIDECAR_DLQ_ARCHIVE, Some("none")),
    (SIDECAR_ADMIN_ADDR, Some("127.0.0.1:9464")),
    (SIDECAR_SHUTDOWN_GRACE, Some("25s")),
    (SIDECAR_LOG_FORMAT, Some("json")),
    (SIDECAR_TRACE_RECORD_KEYS, Some("false")),
    (SIDECAR_VALUE_FORMAT, Some("raw")),
    (SIDECAR_KEY_FORMAT, Some("raw")),
    (SIDECAR_SCHEMA_REGISTRY, None),
    (SIDECAR_PROTOBUF_DESCRIPTOR, None),
    (SIDECAR_PROTOBUF_MESSAGE, None),
    (SIDECAR_FILTER, None),
    (SIDECAR_MAX_RECORD_AGE, None),
    (SQS_QUEUE_URLS, None),
    (SQS_MAX_MESSAGES, Some("10")),
    (SQS_WAIT_TIME, Some("20s")),
    (SQS_VISIBILITY_TIMEOUT, Some("30s")),
    (REDIS_URL, None),
    (REDIS_AUTH, Some("password")),
    (REDIS_IAM_CACHE, None),
    (REDIS_STREAMS, None),
    (REDIS_CONSUMER_GROUP, None),
    (REDIS_CONSUMER_NAME, None),
    (REDIS_CLAIM_MIN_IDLE, Some("60s")),
    (AMQP_URL, None),
    (AMQP_QUEUES, None),
    (AMQP_PREFETCH, None),
    (OTEL_EXPORTER_OTLP_ENDPOINT, None),
    (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, None),
    (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, None),
    (OTEL_EXPORTER_OTLP_PROTOCOL, Some("http/protobuf")),
    (OTEL_SERVICE_NAME, Some("msk-sidecar")),
    (OTEL_TRACES_SAMPLER, Some("parentbased_always_on")),
    (OTEL_TRACES_SAMPLER_ARG, None),
];

/// Whether `name` is one of the typed variables.
pub fn is_known(name: &str) -> bool {
    ALL.iter().any(|(known, _)| *known == name)
}

/// The default text of a variable, if it has one.
pub fn default_of(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(known, _)| *known == name).and_then(|(_, default)| *default)
}
