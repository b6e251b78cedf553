//! Configuration: the typed, validated settings of one sidecar process.
//!
//! Values come from the environment and an optional TOML file (`--config`, same names, the
//! environment wins), see [`raw`]. [`Config::load`] parses every variable, checks the
//! cross-field rules and returns either a complete [`Config`] or every problem at once, one
//! line each naming the variable and its bad value; the binary prints them and exits 64.
//! Tests pass a map instead of touching the process environment.

pub mod keys;
pub mod parse;
pub mod raw;
mod render;
mod reset;
mod routes;
pub mod rules;

pub use reset::ResetTo;
mod sources;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use url::Url;

pub use parse::ArchiveTarget;
use raw::{RawProblem, RawSettings};

/// How the consumer authenticates to the brokers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaAuth {
    /// SASL/OAUTHBEARER with MSK IAM tokens signed by SigV4.
    MskIam,
    /// No authentication (plaintext or TLS only).
    None,
}

/// Where a group without a committed offset starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest retained record.
    Earliest,
    /// Only records produced after the consumer joins.
    Latest,
}

/// Which records may be delivered concurrently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    /// One record at a time per partition, in offset order.
    Partition,
    /// One record at a time per key, in offset order; different keys concurrently.
    Key,
    /// No order: any record may be delivered concurrently with any other.
    None,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    Text,
}

/// A librdkafka property passed through from `SIDECAR_LIBRDKAFKA_<KEY>`.
#[derive(Clone, PartialEq, Eq)]
pub struct LibrdkafkaProperty {
    /// The librdkafka property name (`fetch.min.bytes`).
    pub name: String,
    /// The value, handed to librdkafka as is.
    pub value: String,
}

impl LibrdkafkaProperty {
    /// Whether the value must not be printed (passwords, keys, tokens).
    pub fn is_secret(&self) -> bool {
        ["password", "secret", "pem", "token", "oauthbearer.config", "credentials"]
            .iter()
            .any(|word| self.name.contains(word))
    }

    /// The value as it may be shown in logs and output.
    pub fn display_value(&self) -> &str {
        if self.is_secret() { "[redacted]" } else { &self.value }
    }
}

impl fmt::Debug for LibrdkafkaProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.display_value())
    }
}

impl KafkaConfig {
    /// The `KAFKA_TOPICS` entry (a name or a `^regex`) that subscribes to `topic`, if any.
    pub fn consumed_by(&self, topic: &str) -> Option<&str> {
        self.topics
            .iter()
            .find(|t| {
                *t == topic
                    || (t.starts_with('^')
                        && regex::Regex::new(t).is_ok_and(|pattern| pattern.is_match(topic)))
            })
            .map(String::as_str)
    }
}

/// What the consumer group's name is made of besides `KAFKA_CONSUMER_GROUP` (seed 001).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupNaming {
    /// `ENVIRONMENT`.
    pub environment: String,
    /// `KAFKA_CONSUMER_GROUP_PREFIX`.
    pub prefix: String,
    /// `KAFKA_CONSUMER_GROUP_SUFFIX`.
    pub suffix: String,
}

/// Kafka connection and group settings.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port`.
    pub brokers: Vec<String>,
    /// Topics to consume (a `^` prefix makes a regex subscription).
    pub topics: Vec<String>,
    /// Consumer group id: offsets are committed under it (the effective name: environment,
    /// prefix and suffix applied).
    pub group: String,
    /// What the name was made of.
    pub naming: GroupNaming,
    /// `KAFKA_RESET_OFFSETS_ON_START`: where the group's offsets move when this member joins an
    /// empty group.
    pub reset_on_start: Option<ResetTo>,
    /// Authentication mechanism.
    pub auth: KafkaAuth,
    /// Whether connections use TLS.
    pub tls: bool,
    /// Start position for a group without committed offsets.
    pub start_from: StartFrom,
    /// Region for IAM signing: `AWS_REGION`, else read from the MSK broker host names.
    pub region: Option<String>,
    /// The MSK cluster ARN (`MSK_CLUSTER_ARN`), for the IAM policy `check-config` prints.
    pub cluster_arn: Option<String>,
    /// Extra librdkafka properties from `SIDECAR_LIBRDKAFKA_*`.
    pub librdkafka: Vec<LibrdkafkaProperty>,
}

/// The SQS source (`SQS_QUEUE_URLS`): queues whose messages are delivered like records.
#[derive(Clone, PartialEq, Eq)]
pub struct SqsSourceConfig {
    /// The queues, standard or FIFO (`.fifo`).
    pub queues: Vec<Url>,
    /// Messages per `ReceiveMessage` (1-10).
    pub max_messages: i32,
    /// Long-poll wait of a receive (0-20 s).
    pub wait_time: Duration,
    /// The lease kept on a message in flight, extended before it lapses.
    pub visibility_timeout: Duration,
}

/// The Redis Streams source (`REDIS_URL`): streams read through a consumer group.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSourceConfig {
    /// `redis://` or `rediss://`, with the password in its user info when there is one.
    pub url: Url,
    /// The streams, in order.
    pub streams: Vec<String>,
    /// The consumer group (created if missing).
    pub group: String,
    /// This consumer's name in the group (`None`: the host name, resolved at start).
    pub consumer: Option<String>,
    /// Pending entries idle this long are claimed from consumers that stopped answering; the
    /// sidecar keeps its own entries from reaching it while they are in flight.
    pub claim_min_idle: Duration,
    /// Where a group created by the sidecar starts: the stream's start (`earliest`) or its end.
    pub start_from: StartFrom,
    /// `REDIS_AUTH=iam`: each connection authenticates with an IAM token for this cache.
    pub iam: Option<RedisIamConfig>,
}

/// The cache an ElastiCache / MemoryDB IAM token is signed for (`REDIS_AUTH=iam`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisIamConfig {
    /// `elasticache` or `memorydb`.
    pub service: &'static str,
    /// The replication group, serverless cache or MemoryDB cluster.
    pub name: String,
    /// An ElastiCache Serverless cache.
    pub serverless: bool,
    /// The Redis user (REDIS_URL's user name).
    pub user: String,
    /// The signing region.
    pub region: String,
}

/// The RabbitMQ source (`AMQP_URL`): queues consumed with manual acknowledgements.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpSourceConfig {
    /// `amqp://` or `amqps://` (Amazon MQ), with credentials in its user info.
    pub url: Url,
    /// The queues, in order.
    pub queues: Vec<String>,
    /// Unacknowledged messages per queue's channel (`basic.qos`).
    pub prefetch: u16,
}

impl fmt::Debug for AmqpSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("queues", &self.queues)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl fmt::Debug for RedisSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("streams", &self.streams)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("claim_min_idle", &self.claim_min_idle)
            .field("start_from", &self.start_from)
            .field("iam", &self.iam)
            .finish()
    }
}

impl fmt::Debug for SqsSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queues: Vec<String> = self.queues.iter().map(redact_url).collect();
        f.debug_struct("SqsSourceConfig")
            .field("queues", &queues)
            .field("max_messages", &self.max_messages)
            .field("wait_time", &self.wait_time)
            .field("visibility_timeout", &self.visibility_timeout)
            .finish()
    }
}

/// Where records are delivered.
#[derive(Clone, PartialEq, Eq)]
pub enum DeliveryTarget {
    /// POST each record to the application's HTTP endpoint.
    Http(Url),
    /// Send each record to an SQS queue.
    Sqs(Url),
    /// Accept every record at once without I/O (`null://`): for benchmarks of the sidecar itself.
    /// `null://?fail_permille=N` rejects (permanently) the records whose offset mod 1000 < N;
    /// `panic_permille=N` panics on them instead (a test hook for the panic containment).
    Null {
        /// Records per thousand that fail permanently (by offset).
        fail_permille: u32,
        /// Records per thousand whose delivery panics (by offset).
        panic_permille: u32,
    },
}

impl fmt::Debug for DeliveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryTarget::Http(url) => write!(f, "Http({})", redact_url(url)),
            DeliveryTarget::Sqs(url) => write!(f, "Sqs({})", redact_url(url)),
            DeliveryTarget::Null { fail_permille, panic_permille } => {
                write!(f, "Null(fail_permille={fail_permille}, panic_permille={panic_permille})")
            }
        }
    }
}

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// The application endpoint or queue.
    pub target: DeliveryTarget,
    /// Time limit of one delivery attempt.
    pub timeout: Duration,
    /// Batching of records into one request.
    pub batch: BatchConfig,
}

/// Batching of records into one request (HTTP batch mode; SQS batches by itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Records per request at most (1: one POST per record).
    pub max_records: usize,
    /// Bytes of record values per request at most.
    pub max_bytes: usize,
    /// How long a request waits for more records before it goes.
    pub linger: Duration,
}

/// Which topics a route applies to.
#[derive(Clone, Debug)]
pub enum TopicMatcher {
    /// Exactly this topic.
    Exact(String),
    /// Topics matching this regular expression.
    Pattern(regex::Regex),
}

impl TopicMatcher {
    /// Whether `topic` belongs to the route.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicMatcher::Exact(name) => name == topic,
            TopicMatcher::Pattern(regex) => regex.is_match(topic),
        }
    }
}

/// What a route's matcher selects by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selects {
    /// Kafka topics (`topic`, `topic_pattern`).
    Topics,
    /// SQS and RabbitMQ queues (`queue`, `queue_pattern`).
    Queues,
    /// Redis streams (`stream`, `stream_pattern`).
    Streams,
}

/// Where and how the records of some topics or queues are delivered (a `[[routes]]` table, or
/// the defaults from the environment for everything else).
#[derive(Clone, Debug)]
pub struct Route {
    /// `routes[i]`, or `default`: named in logs and errors.
    pub name: String,
    /// The topics or queues it applies to (`None`: everything; the default route).
    pub matcher: Option<TopicMatcher>,
    /// Whether the matcher names topics or queues.
    pub selects: Selects,
    /// Target, timeout and batching.
    pub delivery: DeliveryConfig,
    /// Ordering mode.
    pub ordering: Ordering,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Dead-letter topic (`None` without a Kafka source).
    pub dlq_topic: Option<String>,
    /// What happens to a record before its first attempt: expiry, decoding, filtering.
    pub rules: crate::codec::Rules,
}

/// Retry policy for retryable delivery failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts including the first; the record is dead-lettered after the last one fails.
    pub max_attempts: u32,
    /// Upper bound of the first backoff (full jitter picks in `0..=bound`).
    pub initial_backoff: Duration,
    /// Cap of the exponential backoff bound.
    pub max_backoff: Duration,
}

/// Dead-letter settings.
#[derive(Clone, Debug)]
pub struct DlqConfig {
    /// Topic that receives dead letters (`None` without a Kafka source: the other sources'
    /// dead letters go to their own places).
    pub topic: Option<String>,
    /// Where the archive copy of each dead letter is written.
    pub archive: ArchiveTarget,
}

/// OTLP wire protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// gRPC (port 4317 by convention).
    Grpc,
    /// HTTP with protobuf bodies (port 4318; the specification's default).
    HttpProtobuf,
}

/// Trace sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    /// Sample everything.
    AlwaysOn,
    /// Sample nothing.
    AlwaysOff,
    /// Sample this share of traces by trace id.
    TraceIdRatio(f64),
    /// Follow the parent's decision; roots use the inner sampler.
    ParentBased(RootSampler),
}

/// The root sampler of a parent-based sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RootSampler {
    /// Sample every root.
    AlwaysOn,
    /// Sample no root.
    AlwaysOff,
    /// Sample this share of roots.
    TraceIdRatio(f64),
}

/// Telemetry export settings, from the OpenTelemetry SDK's standard variables. Shown (`Debug`)
/// with the endpoints redacted.
#[derive(Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` as given (the signal endpoints derive from it).
    pub endpoint: Option<String>,
    /// Where spans go (`None`: no trace export).
    pub traces_endpoint: Option<String>,
    /// Where metrics go (`None`: no OTLP metrics; Prometheus `/metrics` always works).
    pub metrics_endpoint: Option<String>,
    /// Wire protocol.
    pub protocol: OtlpProtocol,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Trace sampler.
    pub sampler: SamplerConfig,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |endpoint: &Option<String>| endpoint.as_deref().map(redact_text_url);
        f.debug_struct("TelemetryConfig")
            .field("endpoint", &shown(&self.endpoint))
            .field("traces_endpoint", &shown(&self.traces_endpoint))
            .field("metrics_endpoint", &shown(&self.metrics_endpoint))
            .field("protocol", &self.protocol)
            .field("service_name", &self.service_name)
            .field("sampler", &self.sampler)
            .finish()
    }
}

/// The complete, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Kafka source: brokers, topics, group, auth (`None`: another source only).
    pub kafka: Option<KafkaConfig>,
    /// Delivery target and per-attempt timeout.
    pub delivery: DeliveryConfig,
    /// Ordering mode of the dispatcher.
    pub ordering: Ordering,
    /// Records in flight across all partitions.
    pub max_in_flight: usize,
    /// Offsets a partition may run ahead of its commit point (finished or not) before it
    /// pauses: bounds the memory a stuck record can make the sidecar hold.
    pub max_uncommitted: u64,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Dead-letter topic and archive.
    pub dlq: DlqConfig,
    /// Admin listener address (`/live`, `/ready`, `/metrics`).
    pub admin_addr: SocketAddr,
    /// Drain time on SIGTERM.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// OTLP traces and metrics.
    pub telemetry: TelemetryConfig,
    /// Whether spans carry record keys (`messaging.kafka.message.key`): off unless asked for,
    /// since keys may be personal data.
    pub trace_record_keys: bool,
    /// Per-topic routes from the TOML file, in file order (the first match wins).
    pub routes: Vec<Route>,
    /// SQS queues consumed next to the Kafka topics, if any.
    pub sqs_source: Option<SqsSourceConfig>,
    /// Redis streams consumed next to the other sources, if any.
    pub redis_source: Option<RedisSourceConfig>,
    /// RabbitMQ queues consumed next to the other sources, if any.
    pub amqp_source: Option<AmqpSourceConfig>,
    /// The top-level record rules (expiry, decoding, filtering): the default route's.
    pub rules: crate::codec::Rules,
    /// Where schemas come from (top level and routes): the Protobuf descriptor, the registry.
    pub schemas: rules::Schemas,
}

/// One configuration problem, printed as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The variable the problem is about.
    pub variable: String,
    /// The bad value and where it came from, when there is one.
    pub value: Option<(String, String)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some((value, origin)) => {
                write!(f, "{}={value:?} (from {origin}): {}", self.variable, self.message)
            }
            None => write!(f, "{}: {}", self.variable, self.message),
        }
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<Problem>);

impl ConfigError {
    /// Whether one of the problems names `variable`.
    pub fn names(&self, variable: &str) -> bool {
        self.0.iter().any(|p| p.variable == variable)
    }
}

impl Config {
    /// Loads the configuration from an environment map and an optional TOML file path.
    pub fn load(env: &BTreeMap<String, String>, file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some(text),
                Err(err) => {
                    return Err(ConfigError(vec![Problem {
                        variable: "--config".to_string(),
                        value: Some((path.display().to_string(), "command line".to_string())),
                        message: format!("cannot read the file: {err}"),
                    }]));
                }
            },
            None => None,
        };
        Self::from_sources(env, file.zip(text.as_deref()))
    }

    /// Loads the configuration from an environment map and optional TOML text.
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        file: Option<(&Path, &str)>,
    ) -> Result<Config, ConfigError> {
        let (raw, raw_problems) = RawSettings::from_sources(env, file);
        let mut reader =
            validate::Reader { raw: &raw, problems: raw_problems.into_iter().map(Problem::from).collect() };
        let config = reader.config();
        match config {
            Some(config) if reader.problems.is_empty() => Ok(config),
            _ => Err(ConfigError(reader.problems)),
        }
    }

    /// The route of the records of `topic`: the first topic route of `[[routes]]` that matches,
    /// else the defaults from the environment.
    pub fn route_for(&self, topic: &str) -> Route {
        self.first_route(Selects::Topics, topic)
    }

    /// The route of the messages of SQS queue `queue` (by name): the first queue route that
    /// matches, else the defaults.
    pub fn queue_route_for(&self, queue: &str) -> Route {
        self.first_route(Selects::Queues, queue)
    }

    fn first_route(&self, selects: Selects, name: &str) -> Route {
        self.routes
            .iter()
            .filter(|r| r.selects == selects)
            .find(|r| r.matcher.as_ref().is_some_and(|m| m.matches(name)))
            .cloned()
            .unwrap_or_else(|| self.default_route())
    }

    /// The Kafka consumer group, or `""` without a Kafka source (dead letters and spans name it).
    pub fn group(&self) -> &str {
        self.kafka.as_ref().map_or("", |k| k.group.as_str())
    }

    /// The route built from the top-level settings.
    pub fn default_route(&self) -> Route {
        Route {
            name: "default".to_string(),
            matcher: None,
            selects: Selects::Topics,
            delivery: self.delivery.clone(),
            ordering: self.ordering,
            retry: self.retry,
            dlq_topic: self.dlq.topic.clone(),
            rules: self.rules.clone(),
        }
    }

    /// Every route, the default last.
    pub fn all_routes(&self) -> Vec<Route> {
        let mut routes = self.routes.clone();
        routes.push(self.default_route());
        routes
    }

    /// The routes' record rules as TOML lines (`check-config`).
    pub fn effective_routes(&self) -> Vec<String> {
        render::routes(self)
    }

    /// The effective configuration, one `(variable, value)` per line, secrets redacted.
    pub fn effective(&self) -> Vec<(String, String)> {
        render::effective(self)
    }
}

impl From<RawProblem> for Problem {
    fn from(p: RawProblem) -> Self {
        Problem { variable: p.variable, value: None, message: p.message }
    }
}

/// A URL as it may be shown in logs, output, readiness reasons and spans: the user info and
/// every query value replaced (`?api_key=...` is a common way to pass a secret).
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Setting user info only fails for URLs that cannot have any, which had none.
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    if !shown.username().is_empty() {
        let _ = shown.set_username("redacted");
    }
    if shown.query().is_some() {
        let names: Vec<String> = url.query_pairs().map(|(name, _)| name.into_owned()).collect();
        shown.set_query(None);
        if !names.is_empty() {
            let mut pairs = shown.query_pairs_mut();
            names.iter().for_each(|name| {
                pairs.append_pair(name, "redacted");
            });
        }
    }
    if shown.fragment().is_some() {
        shown.set_fragment(None);
    }
    shown.to_string()
}

/// A free text (a library's error message) with every `http(s)://` URL in it shown like
/// [`redact_url`].
pub fn redact_urls_in(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.find("http://").or_else(|| word.find("https://")) {
            Some(at) => {
                let (before, url) = word.split_at(at);
                let end = url.find(['"', '\'', ')', ',', ']']).unwrap_or(url.len());
                format!("{before}{}{}", redact_text_url(&url[..end]), &url[end..])
            }
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A text that may be a URL (an OTLP endpoint), shown like [`redact_url`]. Text that does not
/// parse loses its user info (up to the last `@`), query and fragment: what is left is the
/// scheme, host and path.
pub fn redact_text_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => redact_url(&url).trim_end_matches('/').to_string(),
        Err(_) => {
            let (scheme, rest) = text.split_once("://").map_or(("", text), |(s, r)| (s, r));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            if scheme.is_empty() { rest.to_string() } else { format!("{scheme}://{rest}") }
        }
    }
}

/// A configuration value as an error may show it: a secret-looking librdkafka property as
/// `[redacted]`, anything that looks like a URL or holds user info as [`redact_text_url`] shows it.
pub fn shown_value(variable: &str, text: &str) -> String {
    if let Some(suffix) = variable.strip_prefix(keys::LIBRDKAFKA_PREFIX) {
        let property =
            LibrdkafkaProperty { name: suffix.to_ascii_lowercase().replace('_', "."), value: String::new() };
        if property.is_secret() {
            return "[redacted]".to_string();
        }
    }
    if text.contains("://") || text.contains('@') || text.contains('?') {
        return redact_text_url(text.trim());
    }
    text.to_string()
}

#[cfg(test)]
mod tests;
