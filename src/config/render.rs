//! The effective configuration as `VARIABLE = value` lines, with secrets redacted.
//!
//! `check-config` prints it and `run` logs it at start, so an operator sees every default
//! that applied and every derived value (the DLQ topic, the region, TLS) in one place.

use super::{
    Config, DeliveryTarget, KafkaAuth, LogFormat, Ordering, OtlpProtocol, RootSampler, SamplerConfig,
    StartFrom, TelemetryConfig, keys, redact_text_url, redact_url,
};

use std::time::Duration;

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A decoder's format as configured (`raw` without one).
fn format_name(decoder: Option<&crate::codec::decode::Decoder>) -> String {
    use crate::codec::decode::Decoder;
    match decoder {
        None => "raw",
        Some(Decoder::Json) => "json",
        Some(Decoder::Protobuf { .. }) => "protobuf",
        Some(Decoder::Registry { format, .. }) => format.name(),
    }
    .to_string()
}

/// The `[[routes]]` tables as TOML, with every record rule a route ends up with (its own or
/// the top-level one): what `check-config` shows under the variables.
pub(super) fn routes(config: &Config) -> Vec<String> {
    use super::TopicMatcher;
    let mut lines = Vec::new();
    for route in &config.routes {
        lines.push(String::new());
        lines.push(format!("[[routes]]  # {}", route.name));
        let selector = match route.selects {
            super::Selects::Topics => "topic",
            super::Selects::Queues => "queue",
            super::Selects::Streams => "stream",
        };
        match &route.matcher {
            Some(TopicMatcher::Exact(name)) => lines.push(format!("{selector} = {name:?}")),
            Some(TopicMatcher::Pattern(pattern)) => {
                lines.push(format!("{selector}_pattern = {:?}", pattern.as_str()))
            }
            None => {}
        }
        let rules = &route.rules;
        lines.push(format!("value_format = {:?}", format_name(rules.value.as_deref())));
        if let Some(crate::codec::decode::Decoder::Protobuf { message, .. }) = rules.value.as_deref() {
            lines.push(format!("protobuf_message = {:?}", message.full_name()));
        }
        lines.push(format!("key_format = {:?}", format_name(rules.key.as_deref())));
        lines.push(format!("filter = {:?}", rules.filter.as_ref().map_or("", |f| f.text())));
        lines.push(format!(
            "max_record_age = {:?}",
            rules.max_age.map_or_else(|| "none".to_string(), duration)
        ));
    }
    lines
}

/// Every variable with its effective value.
pub(super) fn effective(config: &Config) -> Vec<(String, String)> {
    // Without a Kafka source its variables show empty, as an unset source's do.
    let of_kafka = |value: fn(&crate::config::KafkaConfig) -> String| {
        config.kafka.as_ref().map_or_else(String::new, value)
    };
    let sqs_source = config.sqs_source.as_ref();
    let redis = config.redis_source.as_ref();
    let amqp = config.amqp_source.as_ref();
    let (http, sqs) = match &config.delivery.target {
        DeliveryTarget::Http(url) => (redact_url(url), String::new()),
        DeliveryTarget::Sqs(url) => (String::new(), redact_url(url)),
        DeliveryTarget::Null { fail_permille: 0, panic_permille: 0 } => {
            ("null://".to_string(), String::new())
        }
        DeliveryTarget::Null { fail_permille, panic_permille } => {
            (format!("null://?fail_permille={fail_permille}&panic_permille={panic_permille}"), String::new())
        }
    };
    let mut lines = vec![
        (keys::KAFKA_BROKERS, of_kafka(|k| k.brokers.join(","))),
        (keys::KAFKA_TOPICS, of_kafka(|k| k.topics.join(","))),
        // The effective group (environment, prefix and suffix applied), next to its parts.
        (keys::KAFKA_CONSUMER_GROUP, of_kafka(|k| k.group.clone())),
        (keys::KAFKA_CONSUMER_GROUP_PREFIX, of_kafka(|k| k.naming.prefix.clone())),
        (keys::KAFKA_CONSUMER_GROUP_SUFFIX, of_kafka(|k| k.naming.suffix.clone())),
        (keys::ENVIRONMENT, of_kafka(|k| k.naming.environment.clone())),
        (
            keys::KAFKA_AUTH,
            of_kafka(|k| {
                match k.auth {
                    KafkaAuth::MskIam => "msk-iam",
                    KafkaAuth::None => "none",
                }
                .to_string()
            }),
        ),
        (keys::KAFKA_TLS, of_kafka(|k| k.tls.to_string())),
        (
            keys::KAFKA_START_FROM,
            of_kafka(|k| {
                match k.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                }
                .to_string()
            }),
        ),
        (
            keys::KAFKA_RESET_OFFSETS_ON_START,
            of_kafka(|k| k.reset_on_start.map(|t| t.to_string()).unwrap_or_default()),
        ),
        (keys::AWS_REGION, of_kafka(|k| k.region.clone().unwrap_or_default())),
        (keys::MSK_CLUSTER_ARN, of_kafka(|k| k.cluster_arn.clone().unwrap_or_default())),
        (keys::SIDECAR_DELIVERY_URL, http),
        (keys::SIDECAR_DELIVERY_SQS_QUEUE_URL, sqs),
        (keys::SIDECAR_DELIVERY_TIMEOUT, duration(config.delivery.timeout)),
        (keys::SIDECAR_DELIVERY_BATCH_MAX_RECORDS, config.delivery.batch.max_records.to_string()),
        (keys::SIDECAR_DELIVERY_BATCH_MAX_BYTES, config.delivery.batch.max_bytes.to_string()),
        (keys::SIDECAR_DELIVERY_BATCH_LINGER, duration(config.delivery.batch.linger)),
        (
            keys::SIDECAR_ORDERING,
            match config.ordering {
                Ordering::Partition => "partition",
                Ordering::Key => "key",
                Ordering::None => "none",
            }
            .to_string(),
        ),
        (keys::SIDECAR_MAX_IN_FLIGHT, config.max_in_flight.to_string()),
        (keys::SIDECAR_MAX_UNCOMMITTED, config.max_uncommitted.to_string()),
        (keys::SIDECAR_RETRY_MAX_ATTEMPTS, config.retry.max_attempts.to_string()),
        (keys::SIDECAR_RETRY_INITIAL_BACKOFF, duration(config.retry.initial_backoff)),
        (keys::SIDECAR_RETRY_MAX_BACKOFF, duration(config.retry.max_backoff)),
        (keys::SIDECAR_DLQ_TOPIC, config.dlq.topic.clone().unwrap_or_default()),
        (keys::SIDECAR_DLQ_ARCHIVE, config.dlq.archive.to_string()),
        (keys::SIDECAR_ADMIN_ADDR, config.admin_addr.to_string()),
        (keys::SIDECAR_SHUTDOWN_GRACE, duration(config.shutdown_grace)),
        (
            keys::SIDECAR_LOG_FORMAT,
            match config.log_format {
                LogFormat::Json => "json",
                LogFormat::Text => "text",
            }
            .to_string(),
        ),
        (keys::SIDECAR_TRACE_RECORD_KEYS, config.trace_record_keys.to_string()),
        (keys::SIDECAR_VALUE_FORMAT, format_name(config.rules.value.as_deref())),
        (keys::SIDECAR_KEY_FORMAT, format_name(config.rules.key.as_deref())),
        (
            keys::SIDECAR_SCHEMA_REGISTRY,
            config.schemas.registry.as_ref().map(|r| r.describe()).unwrap_or_default(),
        ),
        (
            keys::SIDECAR_PROTOBUF_DESCRIPTOR,
            config.schemas.descriptor.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        ),
        (keys::SIDECAR_PROTOBUF_MESSAGE, config.schemas.message.clone().unwrap_or_default()),
        (
            keys::SIDECAR_FILTER,
            config.rules.filter.as_ref().map(|f| f.text().to_string()).unwrap_or_default(),
        ),
        (keys::SIDECAR_MAX_RECORD_AGE, config.rules.max_age.map(duration).unwrap_or_default()),
        (
            keys::SQS_QUEUE_URLS,
            sqs_source
                .map(|s| s.queues.iter().map(redact_url).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
        ),
        (keys::SQS_MAX_MESSAGES, sqs_source.map_or(10, |s| s.max_messages).to_string()),
        (keys::SQS_WAIT_TIME, duration(sqs_source.map_or(Duration::from_secs(20), |s| s.wait_time))),
        (
            keys::SQS_VISIBILITY_TIMEOUT,
            duration(sqs_source.map_or(Duration::from_secs(30), |s| s.visibility_timeout)),
        ),
        (keys::REDIS_URL, redis.map(|r| redact_url(&r.url)).unwrap_or_default()),
        (
            keys::REDIS_AUTH,
            if redis.is_some_and(|r| r.iam.is_some()) { "iam" } else { "password" }.to_string(),
        ),
        (
            keys::REDIS_IAM_CACHE,
            redis
                .and_then(|r| r.iam.as_ref())
                .map(|i| match (i.service, i.serverless) {
                    ("memorydb", _) => format!("memorydb:{}", i.name),
                    (_, true) => format!("serverless:{}", i.name),
                    _ => i.name.clone(),
                })
                .unwrap_or_default(),
        ),
        (keys::REDIS_STREAMS, redis.map(|r| r.streams.join(",")).unwrap_or_default()),
        (keys::REDIS_CONSUMER_GROUP, redis.map(|r| r.group.clone()).unwrap_or_default()),
        (keys::REDIS_CONSUMER_NAME, redis.and_then(|r| r.consumer.clone()).unwrap_or_default()),
        (keys::REDIS_CLAIM_MIN_IDLE, duration(redis.map_or(Duration::from_secs(60), |r| r.claim_min_idle))),
        (keys::AMQP_URL, amqp.map(|a| redact_url(&a.url)).unwrap_or_default()),
        (keys::AMQP_QUEUES, amqp.map(|a| a.queues.join(",")).unwrap_or_default()),
        (keys::AMQP_PREFETCH, amqp.map(|a| a.prefetch.to_string()).unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    lines.extend(telemetry(&config.telemetry));
    for property in config.kafka.iter().flat_map(|k| &k.librdkafka) {
        let variable =
            format!("{}{}", keys::LIBRDKAFKA_PREFIX, property.name.replace('.', "_").to_ascii_uppercase());
        lines.push((variable, property.display_value().to_string()));
    }
    lines
}

fn telemetry(t: &TelemetryConfig) -> Vec<(String, String)> {
    let sampler = match t.sampler {
        SamplerConfig::AlwaysOn => ("always_on", None),
        SamplerConfig::AlwaysOff => ("always_off", None),
        SamplerConfig::TraceIdRatio(r) => ("traceidratio", Some(r)),
        SamplerConfig::ParentBased(RootSampler::AlwaysOn) => ("parentbased_always_on", None),
        SamplerConfig::ParentBased(RootSampler::AlwaysOff) => ("parentbased_always_off", None),
        SamplerConfig::ParentBased(RootSampler::TraceIdRatio(r)) => ("parentbased_traceidratio", Some(r)),
    };
    [
        (keys::OTEL_EXPORTER_OTLP_ENDPOINT, t.endpoint.as_deref().map(redact_text_url).unwrap_or_default()),
        (
            keys::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            t.traces_endpoint.as_deref().map(redact_text_url).unwrap_or_default(),
        ),
        (
            keys::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
            t.metrics_endpoint.as_deref().map(redact_text_url).unwrap_or_default(),
        ),
        (
            keys::OTEL_EXPORTER_OTLP_PROTOCOL,
            match t.protocol {
                OtlpProtocol::Grpc => "grpc",
                OtlpProtocol::HttpProtobuf => "http/protobuf",
            }
            .to_string(),
        ),
        (keys::OTEL_SERVICE_NAME, t.service_name.clone()),
        (keys::OTEL_TRACES_SAMPLER, sampler.0.to_string()),
        (keys::OTEL_TRACES_SAMPLER_ARG, sampler.1.map(|r| r.to_string()).unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
