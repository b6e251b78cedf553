//! Configuration tests: every default, every validation error, redaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

fn base() -> BTreeMap<String, String> {
    [
        ("KAFKA_BROKERS", "b-1.demo.abc.c2.kafka.eu-west-1.amazonaws.com:9098"),
        ("KAFKA_TOPICS", "orders,payments"),
        ("KAFKA_CONSUMER_GROUP", "orders-sidecar"),
        ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn with(changes: &[(&str, Option<&str>)]) -> BTreeMap<String, String> {
    let mut env = base();
    for (key, value) in changes {
        match value {
            Some(value) => env.insert(key.to_string(), value.to_string()),
            None => env.remove(*key),
        };
    }
    env
}

fn kafka(config: &Config) -> &KafkaConfig {
    config.kafka.as_ref().expect("a Kafka source")
}

fn load(env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    Config::from_sources(env, None)
}

#[test]
fn defaults_follow_the_design() {
    let config = load(&base()).expect("valid");
    assert_eq!(kafka(&config).auth, KafkaAuth::MskIam);
    assert!(kafka(&config).tls, "TLS defaults to on with msk-iam");
    assert_eq!(kafka(&config).start_from, StartFrom::Earliest);
    assert_eq!(kafka(&config).region.as_deref(), Some("eu-west-1"), "region read from the broker host");
    assert_eq!(config.delivery.timeout, Duration::from_secs(20), "shorter than the 23 s drain");
    assert_eq!(config.ordering, Ordering::Partition);
    assert_eq!(config.max_in_flight, 256);
    assert_eq!(config.max_uncommitted, 20_000);
    assert!(!config.trace_record_keys, "keys stay out of spans unless asked for");
    assert_eq!(
        config.retry,
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30)
        }
    );
    assert_eq!(config.dlq.topic.as_deref(), Some("orders.dlq"));
    assert_eq!(config.dlq.archive, ArchiveTarget::None);
    assert_eq!(config.admin_addr.to_string(), "127.0.0.1:9464");
    assert_eq!(config.shutdown_grace, Duration::from_secs(25));
    assert_eq!(config.log_format, LogFormat::Json);
}

#[test]
fn tls_defaults_to_off_without_iam() {
    let config = load(&with(&[("KAFKA_AUTH", Some("none"))])).expect("valid");
    assert!(!kafka(&config).tls);
    let config = load(&with(&[("KAFKA_AUTH", Some("none")), ("KAFKA_TLS", Some("true"))])).expect("valid");
    assert!(kafka(&config).tls);
}

#[test]
fn explicit_values_are_parsed() {
    let env = with(&[
        ("KAFKA_AUTH", Some("none")),
        ("KAFKA_START_FROM", Some("latest")),
        ("AWS_REGION", Some("us-east-2")),
        ("SIDECAR_DELIVERY_URL", None),
        ("SIDECAR_DELIVERY_SQS_QUEUE_URL", Some("http://127.0.0.1:4566/000000000000/work")),
        ("SIDECAR_DELIVERY_TIMEOUT", Some("250ms")),
        ("SIDECAR_ORDERING", Some("key")),
        ("SIDECAR_MAX_IN_FLIGHT", Some("1024")),
        ("SIDECAR_RETRY_MAX_ATTEMPTS", Some("3")),
        ("SIDECAR_RETRY_INITIAL_BACKOFF", Some("1s")),
        ("SIDECAR_RETRY_MAX_BACKOFF", Some("5m")),
        ("SIDECAR_DLQ_TOPIC", Some("dead")),
        ("SIDECAR_DLQ_ARCHIVE", Some("s3://archive-bucket/dlq")),
        ("SIDECAR_ADMIN_ADDR", Some("0.0.0.0:9000")),
        ("SIDECAR_SHUTDOWN_GRACE", Some("10s")),
        ("SIDECAR_LOG_FORMAT", Some("text")),
        ("SIDECAR_LIBRDKAFKA_FETCH_MIN_BYTES", Some("1024")),
    ]);
    let config = load(&env).expect("valid");
    assert_eq!(kafka(&config).start_from, StartFrom::Latest);
    assert_eq!(kafka(&config).region.as_deref(), Some("us-east-2"), "AWS_REGION wins over the host");
    assert!(matches!(config.delivery.target, DeliveryTarget::Sqs(_)));
    assert_eq!(config.delivery.timeout, Duration::from_millis(250));
    assert_eq!(config.ordering, Ordering::Key);
    assert_eq!(config.max_in_flight, 1024);
    assert_eq!(config.retry.max_attempts, 3);
    assert_eq!(config.retry.max_backoff, Duration::from_secs(300));
    assert_eq!(config.dlq.topic.as_deref(), Some("dead"));
    assert_eq!(
        config.dlq.archive,
        ArchiveTarget::S3 { bucket: "archive-bucket".into(), prefix: "dlq".into() }
    );
    assert_eq!(config.admin_addr.port(), 9000);
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(
        kafka(&config).librdkafka,
        vec![LibrdkafkaProperty { name: "fetch.min.bytes".into(), value: "1024".into() }]
    );
}

/// Changes applied to the valid base environment (`None` removes the variable).
type Changes = &'static [(&'static str, Option<&'static str>)];

/// Each case: the change, the variable the error must name, a fragment of the message.
const INVALID: &[(Changes, &str, &str)] = &[
    (&[("KAFKA_BROKERS", None)], "KAFKA_BROKERS", "required"),
    (&[("KAFKA_BROKERS", Some("localhost"))], "KAFKA_BROKERS", "host:port"),
    (&[("KAFKA_BROKERS", Some("a:1,,b:2"))], "KAFKA_BROKERS", "empty entry"),
    (&[("KAFKA_TOPICS", None)], "KAFKA_TOPICS", "required"),
    (&[("KAFKA_TOPICS", Some("orders/v1"))], "KAFKA_TOPICS", "legal Kafka topic"),
    (&[("KAFKA_CONSUMER_GROUP", None)], "KAFKA_CONSUMER_GROUP", "required"),
    (&[("KAFKA_AUTH", Some("plain"))], "KAFKA_AUTH", "msk-iam or none"),
    (&[("KAFKA_TLS", Some("maybe"))], "KAFKA_TLS", "true or false"),
    (&[("KAFKA_TLS", Some("false"))], "KAFKA_TLS", "requires TLS"),
    (&[("KAFKA_START_FROM", Some("middle"))], "KAFKA_START_FROM", "earliest or latest"),
    (&[("AWS_REGION", Some("Europe"))], "AWS_REGION", "AWS region"),
    (&[("KAFKA_BROKERS", Some("localhost:9092"))], "AWS_REGION", "cannot be read"),
    (
        &[("MSK_CLUSTER_ARN", Some("arn:aws:kafka:eu-west-1:123:cluster/x"))],
        "MSK_CLUSTER_ARN",
        "expected arn:aws:kafka",
    ),
    (
        &[("MSK_CLUSTER_ARN", Some("arn:aws:kafka:us-east-1:123456789012:cluster/demo/abc"))],
        "MSK_CLUSTER_ARN",
        "another region than eu-west-1",
    ),
    (&[("SIDECAR_DELIVERY_URL", None)], "SIDECAR_DELIVERY_URL", "required"),
    (
        &[("SIDECAR_DELIVERY_SQS_QUEUE_URL", Some("https://sqs.eu-west-1.amazonaws.com/1/q"))],
        "SIDECAR_DELIVERY_URL",
        "not both",
    ),
    (&[("SIDECAR_DELIVERY_URL", Some("ftp://app/x"))], "SIDECAR_DELIVERY_URL", "http://"),
    (
        &[("SIDECAR_DELIVERY_URL", None), ("SIDECAR_DELIVERY_SQS_QUEUE_URL", Some("queue"))],
        "SIDECAR_DELIVERY_SQS_QUEUE_URL",
        "not a URL",
    ),
    (&[("SIDECAR_DELIVERY_TIMEOUT", Some("0s"))], "SIDECAR_DELIVERY_TIMEOUT", "greater than zero"),
    (&[("SIDECAR_DELIVERY_TIMEOUT", Some("soon"))], "SIDECAR_DELIVERY_TIMEOUT", "duration"),
    (&[("SIDECAR_ORDERING", Some("random"))], "SIDECAR_ORDERING", "partition, key or none"),
    (&[("SIDECAR_MAX_IN_FLIGHT", Some("0"))], "SIDECAR_MAX_IN_FLIGHT", "1 to 65536"),
    (&[("SIDECAR_MAX_IN_FLIGHT", Some("many"))], "SIDECAR_MAX_IN_FLIGHT", "whole number"),
    (&[("SIDECAR_MAX_IN_FLIGHT", Some("100000"))], "SIDECAR_MAX_IN_FLIGHT", "1 to 65536"),
    (&[("SIDECAR_RETRY_MAX_ATTEMPTS", Some("0"))], "SIDECAR_RETRY_MAX_ATTEMPTS", "1 to 1000"),
    (&[("SIDECAR_RETRY_INITIAL_BACKOFF", Some("x"))], "SIDECAR_RETRY_INITIAL_BACKOFF", "duration"),
    (
        &[("SIDECAR_RETRY_INITIAL_BACKOFF", Some("1m")), ("SIDECAR_RETRY_MAX_BACKOFF", Some("10s"))],
        "SIDECAR_RETRY_MAX_BACKOFF",
        "at least SIDECAR_RETRY_INITIAL_BACKOFF",
    ),
    (&[("SIDECAR_RETRY_INITIAL_BACKOFF", Some("1m"))], "SIDECAR_RETRY_MAX_BACKOFF", "at least"),
    (&[("SIDECAR_DLQ_TOPIC", Some("dead letters"))], "SIDECAR_DLQ_TOPIC", "legal Kafka topic"),
    (&[("SIDECAR_DLQ_TOPIC", Some("payments"))], "SIDECAR_DLQ_TOPIC", "consumed by KAFKA_TOPICS"),
    (&[("SIDECAR_DLQ_TOPIC", Some("^dead.*"))], "SIDECAR_DLQ_TOPIC", "not a pattern"),
    (&[("KAFKA_TOPICS", Some("^orders.*"))], "SIDECAR_DLQ_TOPIC", "is a pattern"),
    (&[("SIDECAR_DLQ_ARCHIVE", Some("gs://bucket"))], "SIDECAR_DLQ_ARCHIVE", "s3://bucket/prefix"),
    (&[("SIDECAR_DLQ_ARCHIVE", Some("s3://B/x"))], "SIDECAR_DLQ_ARCHIVE", "bucket name"),
    (&[("SIDECAR_ADMIN_ADDR", Some("localhost"))], "SIDECAR_ADMIN_ADDR", "ip:port"),
    (&[("SIDECAR_SHUTDOWN_GRACE", Some("forever"))], "SIDECAR_SHUTDOWN_GRACE", "duration"),
    (&[("SIDECAR_LOG_FORMAT", Some("xml"))], "SIDECAR_LOG_FORMAT", "json or text"),
    (
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", Some("http/json"))],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "grpc or http/protobuf",
    ),
    (&[("OTEL_EXPORTER_OTLP_ENDPOINT", Some("collector:4317"))], "OTEL_EXPORTER_OTLP_ENDPOINT", "http"),
    (&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Some("x"))], "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a URL"),
    (&[("OTEL_TRACES_SAMPLER", Some("sometimes"))], "OTEL_TRACES_SAMPLER", "always_on"),
    (&[("OTEL_TRACES_SAMPLER_ARG", Some("1.5"))], "OTEL_TRACES_SAMPLER_ARG", "0.0 to 1.0"),
    (
        &[("SIDECAR_LIBRDKAFKA_ENABLE_AUTO_OFFSET_STORE", Some("true"))],
        "SIDECAR_LIBRDKAFKA_ENABLE_AUTO_OFFSET_STORE",
        "cannot be overridden",
    ),
    (&[("SIDECAR_LIBRDKAFKA_GROUP_ID", Some("x"))], "SIDECAR_LIBRDKAFKA_GROUP_ID", "KAFKA_CONSUMER_GROUP"),
    (&[("SIDECAR_LIBRDKAFKA_", Some("x"))], "SIDECAR_LIBRDKAFKA_", "names no librdkafka property"),
    (&[("SIDECAR_MAX_INFLIGHT", Some("3"))], "SIDECAR_MAX_INFLIGHT", "unknown variable"),
    (&[("SIDECAR_LIBRDKAFKA_ACKS", Some("1"))], "SIDECAR_LIBRDKAFKA_ACKS", "in-sync replica"),
    (
        &[("SIDECAR_LIBRDKAFKA_ENABLE_IDEMPOTENCE", Some("false"))],
        "SIDECAR_LIBRDKAFKA_ENABLE_IDEMPOTENCE",
        "idempotent",
    ),
    (
        &[("SIDECAR_LIBRDKAFKA_PARTITION_ASSIGNMENT_STRATEGY", Some("range"))],
        "SIDECAR_LIBRDKAFKA_PARTITION_ASSIGNMENT_STRATEGY",
        "cooperative-sticky",
    ),
    (
        &[("SIDECAR_LIBRDKAFKA_GROUP_PROTOCOL", Some("consumer"))],
        "SIDECAR_LIBRDKAFKA_GROUP_PROTOCOL",
        "classic",
    ),
    (
        &[("SIDECAR_LIBRDKAFKA_ISOLATION_LEVEL", Some("read_uncommitted"))],
        "SIDECAR_LIBRDKAFKA_ISOLATION_LEVEL",
        "aborted transactions",
    ),
    (
        &[("SIDECAR_LIBRDKAFKA_SECURITY_PROTOCOL", Some("PLAINTEXT"))],
        "SIDECAR_LIBRDKAFKA_SECURITY_PROTOCOL",
        "KAFKA_AUTH=msk-iam",
    ),
    (&[("SIDECAR_MAX_UNCOMMITTED", Some("10"))], "SIDECAR_MAX_UNCOMMITTED", "from 100"),
    (&[("SIDECAR_MAX_UNCOMMITTED", Some("100000000"))], "SIDECAR_MAX_UNCOMMITTED", "to 1000000"),
    (
        &[("SIDECAR_LIBRDKAFKA_MAX_POLL_INTERVAL_MS", Some("20000"))],
        "SIDECAR_LIBRDKAFKA_MAX_POLL_INTERVAL_MS",
        "1.5 x SIDECAR_DELIVERY_TIMEOUT",
    ),
    (&[("SIDECAR_TRACE_RECORD_KEYS", Some("maybe"))], "SIDECAR_TRACE_RECORD_KEYS", "true"),
    (
        &[("SIDECAR_DELIVERY_TIMEOUT", Some("30s"))],
        "SIDECAR_DELIVERY_TIMEOUT",
        "shorter than the shutdown drain",
    ),
    (
        &[("SIDECAR_SHUTDOWN_GRACE", Some("10s")), ("SIDECAR_DELIVERY_TIMEOUT", Some("9s"))],
        "SIDECAR_DELIVERY_TIMEOUT",
        "shorter than the shutdown drain (8s: SIDECAR_SHUTDOWN_GRACE 10s minus 2s)",
    ),
    (
        &[("KAFKA_TOPICS", Some("^orders.*")), ("SIDECAR_DLQ_TOPIC", Some("orders.dlq"))],
        "SIDECAR_DLQ_TOPIC",
        "KAFKA_TOPICS (\"^orders.*\")",
    ),
];

#[test]
fn the_default_delivery_timeout_fits_a_short_grace() {
    let short = load(&with(&[("SIDECAR_SHUTDOWN_GRACE", Some("10s"))])).expect("the default adapts");
    assert_eq!(short.delivery.timeout, Duration::from_secs(7), "the 8 s drain minus a second");
    let tiny = load(&with(&[("SIDECAR_SHUTDOWN_GRACE", Some("1s"))])).expect("the default adapts");
    assert_eq!(tiny.delivery.timeout, Duration::from_millis(250), "half the 500 ms drain");
    let long = load(&with(&[("SIDECAR_SHUTDOWN_GRACE", Some("60s"))])).expect("valid");
    assert_eq!(long.delivery.timeout, Duration::from_secs(20));
}

#[test]
fn an_unknown_variable_is_named_without_its_value() {
    let err = load(&with(&[("SIDECAR_API_TOKN", Some("s3cret-value"))])).expect_err("unknown");
    let text = err.to_string();
    assert!(text.contains("SIDECAR_API_TOKN") && text.contains("unknown variable"), "{text}");
    assert!(!text.contains("s3cret-value"), "the value may be a secret: {text}");
}

#[test]
fn a_rejected_value_that_may_be_secret_is_not_printed() {
    let err = load(&with(&[
        ("SIDECAR_LIBRDKAFKA_SASL_OAUTHBEARER_CONFIG", Some("clientSecret=s3cret")),
        ("SIDECAR_DELIVERY_URL", Some("https://user:s3cret@app.internal:99999/events")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", Some("ftp://collector/?token=s3cret")),
    ]))
    .expect_err("invalid");
    let text = err.to_string();
    assert!(err.names("SIDECAR_LIBRDKAFKA_SASL_OAUTHBEARER_CONFIG"), "{text}");
    assert!(err.names("SIDECAR_DELIVERY_URL") && err.names("OTEL_EXPORTER_OTLP_ENDPOINT"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let route = Config::from_sources(
        &base(),
        Some((
            Path::new("r.toml"),
            "[[routes]]\ntopic = \"orders\"\ndelivery_url = \"ftp://u:s3cret@x/?k=s3cret\"\n",
        )),
    )
    .expect_err("invalid route");
    assert!(!route.to_string().contains("s3cret"), "{route}");
}

#[test]
fn security_settings_are_free_without_iam() {
    let config = load(&with(&[
        ("KAFKA_AUTH", Some("none")),
        ("SIDECAR_LIBRDKAFKA_SECURITY_PROTOCOL", Some("SASL_SSL")),
        ("SIDECAR_LIBRDKAFKA_SASL_USERNAME", Some("u")),
    ]))
    .expect("valid without IAM");
    assert_eq!(kafka(&config).librdkafka.len(), 2);
}

#[test]
fn urls_lose_user_info_and_query_values_wherever_they_are_shown() {
    let url = url::Url::parse("https://me:pw@app.internal:8443/events?api_key=s3cret&mode=x#frag").unwrap();
    assert_eq!(
        redact_url(&url),
        "https://redacted:redacted@app.internal:8443/events?api_key=redacted&mode=redacted"
    );
    assert_eq!(
        redact_text_url("http://collector:4318/v1/traces?token=s3cret"),
        "http://collector:4318/v1/traces?token=redacted"
    );
    assert_eq!(redact_text_url("not a url?token=s3cret"), "not a url");
    let text = "error sending to http://c:4318/v1/traces?token=s3cret: refused (http://x/?a=b)";
    assert!(!redact_urls_in(text).contains("s3cret"), "{}", redact_urls_in(text));
    let config = load(&with(&[
        ("SIDECAR_DELIVERY_URL", Some("https://app.internal/events?api_key=s3cret")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", Some("https://collector:4318/?token=s3cret")),
    ]))
    .expect("valid");
    let shown = format!("{:?} {:?}", config.effective(), config);
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn every_invalid_value_is_named_with_its_value() {
    for (changes, variable, fragment) in INVALID {
        let env = with(changes);
        let err = load(&env).expect_err(&format!("{changes:?} must be rejected"));
        let line = err
            .0
            .iter()
            .find(|p| p.variable == *variable)
            .unwrap_or_else(|| panic!("{changes:?}: no problem names {variable}: {err}"))
            .to_string();
        assert!(line.contains(fragment), "{changes:?}: {line:?} lacks {fragment:?}");
        if let Some((_, Some(value))) = changes.iter().find(|(k, _)| k == variable)
            && !fragment.contains("unknown")
        {
            assert!(line.contains(&format!("{value:?}")), "{line:?} does not show the bad value");
        }
        assert!(!err.to_string().contains('\r'));
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let env =
        with(&[("KAFKA_TOPICS", None), ("SIDECAR_ORDERING", Some("x")), ("SIDECAR_LOG_FORMAT", Some("y"))]);
    let err = load(&env).expect_err("invalid");
    for variable in ["KAFKA_TOPICS", "SIDECAR_ORDERING", "SIDECAR_LOG_FORMAT"] {
        assert!(err.names(variable), "{variable} missing from {err}");
    }
    assert_eq!(err.0.len(), 3, "{err}");
}

#[test]
fn toml_file_provides_values_and_rejects_unknown_keys() {
    let mut env = base();
    env.remove("KAFKA_TOPICS");
    let text = "kafka_topics = [\"a\", \"b\"]\nSIDECAR_MAX_IN_FLIGHT = 8\n[librdkafka]\n\"fetch.wait.max.ms\" = 10\n";
    let config = Config::from_sources(&env, Some((Path::new("s.toml"), text))).expect("valid");
    assert_eq!(kafka(&config).topics, vec!["a", "b"]);
    assert_eq!(config.max_in_flight, 8);
    assert_eq!(kafka(&config).librdkafka[0].name, "fetch.wait.max.ms");

    let err = Config::from_sources(&base(), Some((Path::new("s.toml"), "max_in_flight = 8\n")))
        .expect_err("unknown");
    assert_eq!(err.0[0].variable, "max_in_flight in s.toml");

    let err = Config::load(&base(), Some(Path::new("/nonexistent/sidecar.toml"))).expect_err("missing file");
    assert!(err.names("--config"), "{err}");
}

#[test]
fn errors_say_where_the_value_came_from() {
    let text = "SIDECAR_ORDERING = \"sideways\"\n";
    let err = Config::from_sources(&base(), Some((Path::new("/etc/s.toml"), text))).expect_err("invalid");
    assert_eq!(
        err.0[0].to_string(),
        "SIDECAR_ORDERING=\"sideways\" (from /etc/s.toml): expected partition, key or none"
    );
}

#[test]
fn secrets_are_redacted_in_debug_and_effective_output() {
    let env = with(&[
        ("SIDECAR_DELIVERY_URL", Some("https://user:hunter2@app.internal/events")),
        ("SIDECAR_LIBRDKAFKA_SSL_KEY_PASSWORD", Some("hunter2")),
        ("SIDECAR_LIBRDKAFKA_SASL_PASSWORD", Some("hunter2")),
    ]);
    let config = load(&env).expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let effective = config.effective();
    assert!(effective.iter().all(|(_, v)| !v.contains("hunter2")), "{effective:?}");
    assert!(effective.iter().any(|(k, v)| k == "SIDECAR_LIBRDKAFKA_SASL_PASSWORD" && v == "[redacted]"));
}

#[test]
fn effective_configuration_lists_every_variable() {
    let config = load(&base()).expect("valid");
    let effective = config.effective();
    for (variable, _) in keys::ALL {
        assert!(effective.iter().any(|(k, _)| k == variable), "{variable} missing");
    }
    let dlq = effective.iter().find(|(k, _)| k == "SIDECAR_DLQ_TOPIC").map(|(_, v)| v.as_str());
    assert_eq!(dlq, Some("orders.dlq"));
}

#[test]
fn telemetry_follows_the_opentelemetry_variables() {
    let config = load(&base()).expect("valid");
    assert_eq!(config.telemetry.traces_endpoint, None, "no endpoint, no export");
    assert_eq!(config.telemetry.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(config.telemetry.service_name, "msk-sidecar");
    assert_eq!(config.telemetry.sampler, SamplerConfig::ParentBased(RootSampler::AlwaysOn));

    let config =
        load(&with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", Some("http://collector:4318/"))])).expect("valid");
    assert_eq!(config.telemetry.traces_endpoint.as_deref(), Some("http://collector:4318/v1/traces"));
    assert_eq!(config.telemetry.metrics_endpoint.as_deref(), Some("http://collector:4318/v1/metrics"));

    let config = load(&with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", Some("http://collector:4317")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", Some("grpc")),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", Some("http://metrics:4317")),
        ("OTEL_TRACES_SAMPLER", Some("parentbased_traceidratio")),
        ("OTEL_TRACES_SAMPLER_ARG", Some("0.25")),
    ]))
    .expect("valid");
    assert_eq!(config.telemetry.traces_endpoint.as_deref(), Some("http://collector:4317"));
    assert_eq!(config.telemetry.metrics_endpoint.as_deref(), Some("http://metrics:4317"));
    assert_eq!(config.telemetry.sampler, SamplerConfig::ParentBased(RootSampler::TraceIdRatio(0.25)));
}

#[test]
fn the_effective_group_carries_the_environment_prefix_and_suffix_everywhere() {
    let env = with(&[
        ("ENVIRONMENT", Some("staging")),
        ("KAFKA_CONSUMER_GROUP_PREFIX", Some("team-")),
        ("KAFKA_CONSUMER_GROUP_SUFFIX", Some("-v2")),
    ]);
    let config = load(&env).expect("valid");
    assert_eq!(kafka(&config).group, "staging-team-orders-sidecar-v2");
    assert_eq!(config.group(), "staging-team-orders-sidecar-v2", "dead letters and spans name it");
    let effective: BTreeMap<String, String> = config.effective().into_iter().collect();
    assert_eq!(effective["KAFKA_CONSUMER_GROUP"], "staging-team-orders-sidecar-v2");
    assert_eq!(effective["ENVIRONMENT"], "staging");
    let policy = serde_json::to_string(&crate::auth::policy::iam_policy(&config)).expect("json");
    assert!(policy.contains("group/CLUSTER_NAME/CLUSTER_UUID/staging-team-orders-sidecar-v2"), "{policy}");
    // Already in the name: not twice.
    let named = load(&with(&[("ENVIRONMENT", Some("orders"))])).expect("valid");
    assert_eq!(kafka(&named).group, "orders-sidecar");
}
