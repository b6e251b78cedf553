//! Validation: turns raw text values into the typed [`Config`], collecting every problem.
//!
//! Each variable is parsed on its own first (so one bad value does not hide another), then the
//! cross-field rules run: exactly one delivery target, max backoff at least the initial one,
//! TLS with IAM, a region for IAM, a dead-letter topic that no subscription (name or pattern)
//! consumes, a delivery timeout shorter than the shutdown drain, and no pass-through of the
//! librdkafka properties the guarantees rely on.

use super::raw::{self, RawSettings, RawValue};
use super::{
    ArchiveTarget, BatchConfig, Config, DeliveryConfig, DeliveryTarget, DlqConfig, KafkaAuth, KafkaConfig,
    LibrdkafkaProperty, LogFormat, Ordering, OtlpProtocol, Problem, RetryPolicy, RootSampler, SamplerConfig,
    StartFrom, TelemetryConfig, keys, parse,
};

/// librdkafka properties the sidecar owns; overriding them would break the guarantees.
const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("enable.auto.offset.store", "offsets are stored only by the offset tracker"),
    ("enable.auto.commit", "offsets are committed only by the offset tracker"),
    ("auto.commit.enable", "offsets are committed only by the offset tracker"),
    ("offset.store.method", "offsets are committed to the group only by the offset tracker"),
    ("bootstrap.servers", "set KAFKA_BROKERS"),
    ("metadata.broker.list", "set KAFKA_BROKERS"),
    ("group.id", "set KAFKA_CONSUMER_GROUP"),
    ("auto.offset.reset", "set KAFKA_START_FROM"),
    ("sasl.mechanism", "set KAFKA_AUTH"),
    ("sasl.mechanisms", "set KAFKA_AUTH"),
    ("acks", "a dead letter counts as written only when every in-sync replica has it"),
    ("request.required.acks", "a dead letter counts as written only when every in-sync replica has it"),
    ("enable.idempotence", "dead letters are written once and in order by an idempotent producer"),
    ("partition.assignment.strategy", "the revoke drain relies on cooperative-sticky assignment"),
    ("group.protocol", "the revoke drain relies on the classic protocol's cooperative rebalances"),
    ("group.remote.assignor", "the revoke drain relies on the classic protocol's cooperative rebalances"),
    ("isolation.level", "records of aborted transactions must not be delivered"),
    ("enable.partition.eof", "the poll loop does not expect end-of-partition events"),
];

/// Reserved only with `KAFKA_AUTH=msk-iam`: IAM needs SASL_SSL with OAUTHBEARER tokens.
const IAM_PROPERTIES: &[&str] = &["security.protocol", "sasl.oauthbearer.method", "sasl.oauthbearer.config"];

/// The delivery timeout when `SIDECAR_DELIVERY_TIMEOUT` is not set: 20 s, or, when the shutdown
/// drain is shorter, the drain minus a second (at least half the drain).
pub fn default_timeout(grace: std::time::Duration) -> std::time::Duration {
    let drain = crate::shutdown::drain_deadline(grace);
    let fitting = drain.saturating_sub(std::time::Duration::from_secs(1)).max(drain / 2);
    fitting.min(std::time::Duration::from_secs(20))
}

/// Reads typed values, collecting every problem instead of stopping at the first.
pub(crate) struct Reader<'a> {
    /// The merged raw values.
    pub(super) raw: &'a RawSettings,
    /// Problems found so far.
    pub(super) problems: Vec<Problem>,
}

impl Reader<'_> {
    pub(super) fn problem_with_value(&mut self, name: &str, value: &RawValue, message: String) {
        self.problems.push(Problem {
            variable: name.to_string(),
            // Errors are printed: a secret in the value must not be.
            value: Some((super::shown_value(name, &value.text), value.origin.to_string())),
            message,
        });
    }

    pub(super) fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(Problem { variable: name.to_string(), value: None, message: message.into() });
    }

    /// Parses a variable, falling back to its documented default; `None` if unset without
    /// default or invalid (the problem is recorded).
    pub(super) fn parse<T>(&mut self, name: &str, parser: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        match self.raw.get(name) {
            Some(value) => match parser(&value.text) {
                Ok(parsed) => Some(parsed),
                Err(message) => {
                    let value = value.clone();
                    self.problem_with_value(name, &value, message);
                    None
                }
            },
            None => keys::default_of(name).map(|default| {
                parser(default).unwrap_or_else(|err| unreachable!("default of {name} is invalid: {err}"))
            }),
        }
    }

    fn required<T>(
        &mut self,
        name: &str,
        what: &str,
        parser: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.raw.get(name).is_none() {
            self.problem(name, format!("required ({what})"));
            return None;
        }
        self.parse(name, parser)
    }

    pub(super) fn config(&mut self) -> Option<Config> {
        let kafka = self.kafka_source();
        let delivery = self.delivery();
        let ordering = self.parse(keys::SIDECAR_ORDERING, |t| match t.trim() {
            "partition" => Ok(Ordering::Partition),
            "key" => Ok(Ordering::Key),
            "none" => Ok(Ordering::None),
            _ => Err("expected partition, key or none".to_string()),
        });
        let max_in_flight = self.parse(keys::SIDECAR_MAX_IN_FLIGHT, |t| parse::bounded_int(t, 1, 65_536));
        let max_uncommitted =
            self.parse(keys::SIDECAR_MAX_UNCOMMITTED, |t| parse::bounded_int(t, 100, 1_000_000));
        let trace_record_keys = self.parse(keys::SIDECAR_TRACE_RECORD_KEYS, parse::boolean);
        let retry = self.retry();
        let dlq = self.dlq(kafka.as_ref().and_then(Option::as_ref));
        let admin_addr = self.parse(keys::SIDECAR_ADMIN_ADDR, parse::socket_addr);
        let shutdown_grace = self.parse(keys::SIDECAR_SHUTDOWN_GRACE, parse::duration);
        let telemetry = self.telemetry();
        let sqs_source = self.sqs_source();
        let redis_source = self.redis_source();
        let amqp_source = self.amqp_source(max_in_flight);
        let rules = self.rules();
        let log_format = self.parse(keys::SIDECAR_LOG_FORMAT, |t| match t.trim() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("expected json or text".to_string()),
        });
        let mut delivery = delivery;
        if let (Some(delivery), Some(grace)) = (&mut delivery, shutdown_grace) {
            if self.raw.get(keys::SIDECAR_DELIVERY_TIMEOUT).is_none() {
                // The default fits any drain: 20 s, or less when the grace is short.
                delivery.timeout = default_timeout(grace);
            }
            self.timeout_fits_the_drain(keys::SIDECAR_DELIVERY_TIMEOUT, delivery.timeout, grace);
            self.timeout_fits_the_rebalance(delivery.timeout);
        }
        let config = Config {
            kafka: kafka?,
            delivery: delivery?,
            ordering: ordering?,
            max_in_flight: usize::try_from(max_in_flight?).ok()?,
            max_uncommitted: max_uncommitted?,
            trace_record_keys: trace_record_keys?,
            retry: retry?,
            dlq: dlq?,
            admin_addr: admin_addr?,
            shutdown_grace: shutdown_grace?,
            log_format: log_format?,
            telemetry: telemetry?,
            routes: Vec::new(),
            sqs_source: sqs_source?,
            redis_source: redis_source?,
            amqp_source: amqp_source?,
            rules: Default::default(),
            schemas: Default::default(),
        };
        let (rules, schemas) = rules?;
        let config = Config { rules, schemas, ..config };
        let routes = super::routes::parse(self, &config);
        Some(Config { routes, ..config })
    }

    /// A delivery attempt must be able to finish within the drain on SIGTERM (the grace minus
    /// the two seconds kept for the commit): one cut off there may reach the application twice.
    pub(super) fn timeout_fits_the_drain(
        &mut self,
        variable: &str,
        timeout: std::time::Duration,
        grace: std::time::Duration,
    ) -> bool {
        let drain = crate::shutdown::drain_deadline(grace);
        if timeout < drain {
            return true;
        }
        let message = format!(
            "must be shorter than the shutdown drain ({}: SIDECAR_SHUTDOWN_GRACE {} minus 2s): an attempt still running when the drain ends is cancelled and may reach the application twice",
            humantime::format_duration(drain),
            humantime::format_duration(grace),
        );
        match self.raw.get(variable).cloned() {
            Some(value) => self.problem_with_value(variable, &value, message),
            None => self
                .problem(variable, format!("{variable} ({}) {message}", humantime::format_duration(timeout))),
        }
        false
    }

    /// A revoke waits at most two thirds of `max.poll.interval.ms` (the group's rebalance
    /// timeout) for attempts in progress: a delivery timeout must fit that too.
    fn timeout_fits_the_rebalance(&mut self, timeout: std::time::Duration) {
        let variable = format!("{}MAX_POLL_INTERVAL_MS", keys::LIBRDKAFKA_PREFIX);
        let Some(value) = self.raw.get(&variable).cloned() else { return };
        let Ok(ms) = value.text.trim().parse::<u64>() else { return };
        let drain = std::time::Duration::from_millis(ms) * 2 / 3;
        if timeout >= drain {
            self.problem_with_value(
                &variable,
                &value,
                format!(
                    "a revoke waits two thirds of it ({}) for attempts in progress: it must be above 1.5 x SIDECAR_DELIVERY_TIMEOUT ({})",
                    humantime::format_duration(drain),
                    humantime::format_duration(timeout)
                ),
            );
        }
    }

    fn telemetry(&mut self) -> Option<TelemetryConfig> {
        let protocol = self.parse(keys::OTEL_EXPORTER_OTLP_PROTOCOL, |t| match t.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            _ => Err("expected grpc or http/protobuf".to_string()),
        });
        let endpoint =
            |text: &str| parse::http_url(text).map(|url| url.as_str().trim_end_matches('/').to_string());
        let generic = self.parse(keys::OTEL_EXPORTER_OTLP_ENDPOINT, endpoint);
        let traces = self.parse(keys::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, endpoint);
        let metrics = self.parse(keys::OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, endpoint);
        let service_name = self.parse(keys::OTEL_SERVICE_NAME, |t| Ok(t.trim().to_string()));
        let ratio = self.parse(keys::OTEL_TRACES_SAMPLER_ARG, |t| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| "expected a ratio from 0.0 to 1.0".to_string())
        });
        let sampler = self.parse(keys::OTEL_TRACES_SAMPLER, |t| {
            let r = ratio.unwrap_or(1.0);
            match t.trim() {
                "always_on" => Ok(SamplerConfig::AlwaysOn),
                "always_off" => Ok(SamplerConfig::AlwaysOff),
                "traceidratio" => Ok(SamplerConfig::TraceIdRatio(r)),
                "parentbased_always_on" => Ok(SamplerConfig::ParentBased(RootSampler::AlwaysOn)),
                "parentbased_always_off" => Ok(SamplerConfig::ParentBased(RootSampler::AlwaysOff)),
                "parentbased_traceidratio" => Ok(SamplerConfig::ParentBased(RootSampler::TraceIdRatio(r))),
                _ => Err("expected always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio".to_string()),
            }
        });
        let protocol = protocol?;
        // Signal endpoints are used as given; the generic one gets the signal path over HTTP.
        let signal = |specific: Option<String>, path: &str| {
            specific.or_else(|| {
                generic.as_ref().map(|base| match protocol {
                    OtlpProtocol::Grpc => base.clone(),
                    // The signal path goes before any query the endpoint has.
                    OtlpProtocol::HttpProtobuf => match url::Url::parse(base) {
                        Ok(mut url) => {
                            let joined = format!("{}/v1/{path}", url.path().trim_end_matches('/'));
                            url.set_path(&joined);
                            url.to_string()
                        }
                        Err(_) => format!("{base}/v1/{path}"),
                    },
                })
            })
        };
        Some(TelemetryConfig {
            endpoint: generic.clone(),
            traces_endpoint: signal(traces, "traces"),
            metrics_endpoint: signal(metrics, "metrics"),
            protocol,
            service_name: service_name?,
            sampler: sampler?,
        })
    }

    /// The Kafka source, `Some(None)` when it is off, `None` when a value is bad. It is on when
    /// one of its three required variables is set, or when no other source is (at least one
    /// source must be configured: then the three are reported as required).
    fn kafka_source(&mut self) -> Option<Option<KafkaConfig>> {
        let named = [keys::KAFKA_BROKERS, keys::KAFKA_TOPICS, keys::KAFKA_CONSUMER_GROUP]
            .iter()
            .any(|name| self.raw.get(name).is_some());
        let other_source = [keys::SQS_QUEUE_URLS, keys::REDIS_URL, keys::AMQP_URL]
            .iter()
            .any(|name| self.raw.get(name).is_some());
        if !named && other_source {
            let kafka_only: Vec<(String, RawValue)> = [
                keys::SIDECAR_DLQ_TOPIC,
                keys::KAFKA_AUTH,
                keys::KAFKA_TLS,
                keys::MSK_CLUSTER_ARN,
                keys::KAFKA_CONSUMER_GROUP_PREFIX,
                keys::KAFKA_CONSUMER_GROUP_SUFFIX,
                keys::KAFKA_RESET_OFFSETS_ON_START,
            ]
            .iter()
            .filter_map(|name| self.raw.get(name).map(|v| (name.to_string(), v.clone())))
            .chain(self.raw.librdkafka().map(|(k, v)| (k.to_string(), v.clone())))
            .collect();
            for (name, value) in kafka_only {
                {
                    self.problem_with_value(
                        &name,
                        &value,
                        "there is no Kafka source (set KAFKA_BROKERS, KAFKA_TOPICS and KAFKA_CONSUMER_GROUP)"
                            .to_string(),
                    );
                }
            }
            return Some(None);
        }
        let brokers = if named {
            "bootstrap servers, comma separated"
        } else {
            "bootstrap servers, comma separated; at least one source must be configured: KAFKA_*, SQS_QUEUE_URLS, REDIS_URL or AMQP_URL"
        };
        self.kafka(brokers).map(Some)
    }

    fn kafka(&mut self, brokers_hint: &str) -> Option<KafkaConfig> {
        let brokers = self.required(keys::KAFKA_BROKERS, brokers_hint, |t| {
            let brokers = parse::list(t)?;
            brokers.iter().try_for_each(|b| parse::broker(b))?;
            Ok(brokers)
        });
        let topics = self.required(keys::KAFKA_TOPICS, "topics to consume, comma separated", |t| {
            let topics = parse::list(t)?;
            topics.iter().try_for_each(|name| parse::topic(name))?;
            Ok(topics)
        });
        let group =
            self.required(keys::KAFKA_CONSUMER_GROUP, "consumer group id", |t| Ok(t.trim().to_string()));
        let text = |name: &str| self.raw.get(name).map(|v| v.text.trim().to_string()).unwrap_or_default();
        let naming = super::GroupNaming {
            environment: text(keys::ENVIRONMENT),
            prefix: text(keys::KAFKA_CONSUMER_GROUP_PREFIX),
            suffix: text(keys::KAFKA_CONSUMER_GROUP_SUFFIX),
        };
        let group = group.map(|base| {
            super::parse::effective_group(&base, &naming.environment, &naming.prefix, &naming.suffix)
        });
        let auth = self.parse(keys::KAFKA_AUTH, |t| match t.trim() {
            "msk-iam" => Ok(KafkaAuth::MskIam),
            "none" => Ok(KafkaAuth::None),
            _ => Err("expected msk-iam or none".to_string()),
        });
        let tls = self.parse(keys::KAFKA_TLS, parse::boolean);
        let reset_on_start = match self.raw.get(keys::KAFKA_RESET_OFFSETS_ON_START) {
            Some(_) => self
                .parse(keys::KAFKA_RESET_OFFSETS_ON_START, |t| match super::ResetTo::parse(t)? {
                    super::ResetTo::Offset(_) => Err("expected earliest, latest or an RFC 3339 time".into()),
                    to => Ok(Some(to)),
                })
                .map(Some)
                .unwrap_or(None),
            None => Some(None),
        };
        let start_from = self.parse(keys::KAFKA_START_FROM, |t| match t.trim() {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            _ => Err("expected earliest or latest".to_string()),
        });
        let region_set = self.raw.get(keys::AWS_REGION).is_some();
        let region = if region_set {
            self.parse(keys::AWS_REGION, parse::region)
        } else {
            brokers.as_ref().and_then(|b| b.iter().find_map(|h| parse::region_from_msk_host(h)))
        };
        let cluster_arn = self.parse(keys::MSK_CLUSTER_ARN, parse::cluster_arn);
        if let (Some(arn), Some(region)) = (&cluster_arn, &region)
            && arn.split(':').nth(3) != Some(region.as_str())
            && let Some(value) = self.raw.get(keys::MSK_CLUSTER_ARN).cloned()
        {
            self.problem_with_value(
                keys::MSK_CLUSTER_ARN,
                &value,
                format!("is in another region than {region}"),
            );
        }
        let auth = auth?;
        let librdkafka = self.librdkafka(auth);

        let tls = tls.unwrap_or(auth == KafkaAuth::MskIam);
        if auth == KafkaAuth::MskIam {
            if !tls {
                let value = self.raw.get(keys::KAFKA_TLS).cloned();
                let message =
                    "MSK IAM authentication requires TLS; remove it or set KAFKA_AUTH=none".to_string();
                match value {
                    Some(value) => self.problem_with_value(keys::KAFKA_TLS, &value, message),
                    None => self.problem(keys::KAFKA_TLS, message),
                }
            }
            if region.is_none() && !region_set && brokers.is_some() {
                self.problem(
                    keys::AWS_REGION,
                    "required with KAFKA_AUTH=msk-iam: the region cannot be read from KAFKA_BROKERS",
                );
            }
        }
        Some(KafkaConfig {
            brokers: brokers?,
            topics: topics?,
            group: group?,
            auth,
            tls,
            start_from: start_from?,
            region,
            cluster_arn,
            librdkafka: librdkafka?,
            naming,
            reset_on_start: reset_on_start?,
        })
    }

    fn librdkafka(&mut self, auth: KafkaAuth) -> Option<Vec<LibrdkafkaProperty>> {
        let entries: Vec<(String, RawValue)> =
            self.raw.librdkafka().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut properties = Vec::new();
        let mut ok = true;
        for (variable, value) in entries {
            let suffix = &variable[keys::LIBRDKAFKA_PREFIX.len()..];
            let name = suffix.to_ascii_lowercase().replace('_', ".");
            if name.is_empty() {
                self.problem_with_value(&variable, &value, "names no librdkafka property".to_string());
                ok = false;
            } else if let Some((_, why)) = RESERVED_PROPERTIES.iter().find(|(p, _)| *p == name) {
                self.problem_with_value(&variable, &value, format!("{name} cannot be overridden: {why}"));
                ok = false;
            } else if auth == KafkaAuth::MskIam && IAM_PROPERTIES.contains(&name.as_str()) {
                self.problem_with_value(
                    &variable,
                    &value,
                    format!("{name} cannot be overridden with KAFKA_AUTH=msk-iam: IAM needs SASL_SSL with OAUTHBEARER tokens"),
                );
                ok = false;
            } else {
                properties.push(LibrdkafkaProperty { name, value: value.text.clone() });
            }
        }
        ok.then_some(properties)
    }

    fn delivery(&mut self) -> Option<DeliveryConfig> {
        let http = self.parse(keys::SIDECAR_DELIVERY_URL, |t| match t.trim().strip_prefix("null://") {
            Some(rest) => parse::null_target(rest).map(Some),
            None => parse::http_url(t).map(|url| Some(DeliveryTarget::Http(url))),
        });
        let sqs = self.parse(keys::SIDECAR_DELIVERY_SQS_QUEUE_URL, parse::http_url);
        let timeout = self.parse(keys::SIDECAR_DELIVERY_TIMEOUT, parse::positive_duration);
        let http_set = self.raw.get(keys::SIDECAR_DELIVERY_URL).is_some();
        let sqs_set = self.raw.get(keys::SIDECAR_DELIVERY_SQS_QUEUE_URL).is_some();
        let target = match (http_set, sqs_set) {
            (true, true) => {
                self.problem(
                    keys::SIDECAR_DELIVERY_URL,
                    "set either SIDECAR_DELIVERY_URL or SIDECAR_DELIVERY_SQS_QUEUE_URL, not both",
                );
                None
            }
            (false, false) => {
                self.problem(
                    keys::SIDECAR_DELIVERY_URL,
                    "required: set SIDECAR_DELIVERY_URL (HTTP) or SIDECAR_DELIVERY_SQS_QUEUE_URL (SQS)",
                );
                None
            }
            (true, false) => http.flatten(),
            (false, true) => sqs.map(DeliveryTarget::Sqs),
        };
        let batch = self.batch();
        Some(DeliveryConfig { target: target?, timeout: timeout?, batch: batch? })
    }

    fn batch(&mut self) -> Option<BatchConfig> {
        let max_records =
            self.parse(keys::SIDECAR_DELIVERY_BATCH_MAX_RECORDS, |t| parse::bounded_int(t, 1, 10_000));
        let max_bytes = self
            .parse(keys::SIDECAR_DELIVERY_BATCH_MAX_BYTES, |t| parse::bounded_int(t, 1024, 64 * 1024 * 1024));
        let linger = self.parse(keys::SIDECAR_DELIVERY_BATCH_LINGER, parse::duration);
        Some(BatchConfig {
            max_records: usize::try_from(max_records?).ok()?,
            max_bytes: usize::try_from(max_bytes?).ok()?,
            linger: linger?,
        })
    }

    fn retry(&mut self) -> Option<RetryPolicy> {
        let max_attempts = self.parse(keys::SIDECAR_RETRY_MAX_ATTEMPTS, |t| parse::bounded_int(t, 1, 1000));
        let initial = self.parse(keys::SIDECAR_RETRY_INITIAL_BACKOFF, parse::positive_duration);
        let max = self.parse(keys::SIDECAR_RETRY_MAX_BACKOFF, parse::positive_duration);
        let (initial, max) = (initial?, max?);
        if max < initial {
            let value = self
                .raw
                .get(keys::SIDECAR_RETRY_MAX_BACKOFF)
                .cloned()
                .unwrap_or_else(|| RawValue { text: "30s".into(), origin: raw::Origin::Default });
            self.problem_with_value(
                keys::SIDECAR_RETRY_MAX_BACKOFF,
                &value,
                format!(
                    "must be at least SIDECAR_RETRY_INITIAL_BACKOFF ({})",
                    humantime::format_duration(initial)
                ),
            );
            return None;
        }
        Some(RetryPolicy {
            max_attempts: u32::try_from(max_attempts?).ok()?,
            initial_backoff: initial,
            max_backoff: max,
        })
    }

    fn dlq(&mut self, kafka: Option<&KafkaConfig>) -> Option<DlqConfig> {
        let archive = self.parse(keys::SIDECAR_DLQ_ARCHIVE, ArchiveTarget::parse);
        let topic = match self.raw.get(keys::SIDECAR_DLQ_TOPIC) {
            Some(_) => self.parse(keys::SIDECAR_DLQ_TOPIC, |t| {
                let name = t.trim();
                if name.starts_with('^') {
                    return Err("the dead-letter topic must be a topic name, not a pattern".to_string());
                }
                parse::topic(name).map(|()| name.to_string())
            }),
            // Without a Kafka source there is no dead-letter topic.
            None if kafka.is_none() => return archive.map(|archive| DlqConfig { topic: None, archive }),
            None => {
                let first = kafka?.topics.first()?.clone();
                if first.starts_with('^') {
                    self.problem(
                        keys::SIDECAR_DLQ_TOPIC,
                        "required when the first of KAFKA_TOPICS is a pattern",
                    );
                    None
                } else {
                    Some(format!("{first}.dlq"))
                }
            }
        };
        let topic = topic?;
        if let Some(consumer) = kafka.and_then(|k| k.consumed_by(&topic)) {
            let value = self
                .raw
                .get(keys::SIDECAR_DLQ_TOPIC)
                .cloned()
                .unwrap_or_else(|| RawValue { text: topic.clone(), origin: raw::Origin::Default });
            self.problem_with_value(
                keys::SIDECAR_DLQ_TOPIC,
                &value,
                format!("is consumed by KAFKA_TOPICS ({consumer:?}): dead letters would be consumed again"),
            );
            return None;
        }
        Some(DlqConfig { topic: Some(topic), archive: archive? })
    }
}
