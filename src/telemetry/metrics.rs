//! Metrics: counters the data path bumps cheaply, exposed through OpenTelemetry.
//!
//! The hot path touches only atomics ([`TopicCounters`], one per topic, cached by the caller);
//! OpenTelemetry observable instruments read them when a reader collects. The Prometheus
//! exporter is the reader behind `GET /metrics`; an OTLP reader can be added to the same
//! provider. Labels are bounded: source kind, topic (an SQS queue's name for SQS), partition,
//! error class, never offsets or keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

use crate::record::{Origin, TopicPartition};
use crate::telemetry::otlp::SpanCounters;

/// Dead-letter error classes, as in the `dlq-error-class` header.
pub const ERROR_CLASSES: [&str; 8] = [
    "permanent",
    "retries-exhausted",
    "oversized",
    "malformed",
    "panic",
    "undecodable",
    "filter-error",
    "expired",
];

/// Why the metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus exporter could not be built.
    #[error("cannot build the Prometheus exporter: {0}")]
    Exporter(String),
}

/// Counters of one topic (or queue).
#[derive(Debug)]
pub struct TopicCounters {
    /// The `source` and `topic` attributes, built once (the strings are shared, so cloning
    /// them is cheap).
    pub attributes: [KeyValue; 2],
    /// Attempt latency of this topic's delivered attempts (attributes bound once).
    delivered_latency: Option<BoundHistogram<f64>>,
    /// Attempt latency of this topic's failed attempts.
    failed_latency: Option<BoundHistogram<f64>>,
    /// End-to-end latency of this topic's records.
    end_to_end: Option<BoundHistogram<f64>>,
    /// Records received from Kafka.
    pub consumed: AtomicU64,
    /// Records the application accepted.
    pub delivered: AtomicU64,
    /// Retry attempts (attempts after the first).
    pub retried: AtomicU64,
    /// Dead letters by class, indexed like [`ERROR_CLASSES`].
    pub dead_lettered: [AtomicU64; ERROR_CLASSES.len()],
    /// Records the route's filter turned away.
    pub filtered: AtomicU64,
    /// The route that filters this topic (one route serves a topic: the first that matches).
    pub filter_route: std::sync::OnceLock<Arc<str>>,
}

impl TopicCounters {
    /// Counters of `topic` from a source of kind `origin`, all zero, recording no latencies
    /// (tests).
    pub fn new(origin: Origin, topic: &Arc<str>) -> Self {
        TopicCounters {
            attributes: [
                KeyValue::new("source", origin.name()),
                KeyValue::new("topic", opentelemetry::StringValue::from(topic.clone())),
            ],
            delivered_latency: None,
            failed_latency: None,
            end_to_end: None,
            consumed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: Default::default(),
            filtered: AtomicU64::new(0),
            filter_route: std::sync::OnceLock::new(),
        }
    }

    /// Counts a record the filter of `route` turned away.
    pub fn filter(&self, route: &str) {
        self.filter_route.get_or_init(|| Arc::from(route));
        self.filtered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a dead letter of `class` (unknown classes count as the first).
    pub fn dead_letter(&self, class: &str) {
        let index = ERROR_CLASSES.iter().position(|c| *c == class).unwrap_or(0);
        self.dead_lettered[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Total dead letters of this topic.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// The counters' key: the kind of source and the topic (or queue) name.
pub(super) type CountersKey = (Origin, Arc<str>);

#[derive(Default)]
pub(super) struct Shared {
    /// Counters per source kind and topic (or queue).
    pub(super) topics: RwLock<HashMap<CountersKey, Arc<TopicCounters>>>,
    /// Records being delivered right now.
    pub(super) in_flight: AtomicI64,
    /// Partitions paused by back-pressure or the circuit breaker.
    pub(super) paused_partitions: AtomicI64,
    /// Consumer lag in offsets per partition (from librdkafka statistics).
    pub(super) lag: Mutex<HashMap<TopicPartition, i64>>,
    /// Offset commits that failed.
    pub(super) commit_failures: AtomicU64,
    /// Panics contained in a record's processing.
    pub(super) panics: AtomicU64,
    /// Records skipped because an earlier owner finished them.
    pub(super) skipped: AtomicU64,
    /// Batch answers that could not be read.
    pub(super) unreadable_answers: AtomicU64,
    /// Expiry of the current MSK IAM token, seconds since the epoch (0: none).
    pub(super) token_expiry: AtomicI64,
    /// Token generation failures.
    pub(super) auth_failures: AtomicU64,
    /// 1 while the circuit breaker is open.
    pub(super) breaker_open: AtomicI64,
    /// Rebalance callbacks that assigned partitions.
    pub(super) assigns: AtomicU64,
    /// Rebalance callbacks that revoked partitions.
    pub(super) revokes: AtomicU64,
    /// Rebalance callbacks that took partitions away as lost (the session expired).
    pub(super) losses: AtomicU64,
    /// Span export counters (when tracing is on).
    pub(super) spans: std::sync::OnceLock<Arc<SpanCounters>>,
    /// The oldest unfinished record's timestamp per partition (lag in seconds).
    pub(super) oldest: std::sync::OnceLock<OldestSource>,
}

/// Reports, per partition, the timestamp (ms) of the oldest record not yet done.
pub type OldestSource = Box<dyn Fn() -> Vec<(TopicPartition, Option<i64>)> + Send + Sync>;

/// The metrics of one sidecar process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// Atomics read by the observable instruments.
    shared: Arc<Shared>,
    /// Per-attempt delivery latency.
    delivery_latency: Histogram<f64>,
    /// Record timestamp to delivered.
    end_to_end: Histogram<f64>,
    /// The provider, kept alive for the readers.
    provider: SdkMeterProvider,
    /// Registry the Prometheus exporter writes into.
    registry: prometheus::Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Sets up the provider with the Prometheus reader and registers every instrument.
    pub fn new() -> Result<Self, MetricsError> {
        Self::build(SdkMeterProvider::builder())
    }

    /// Metrics of the running sidecar: `resource` on every point, and also exported through
    /// `reader` (OTLP) when there is one.
    pub fn for_app(
        resource: opentelemetry_sdk::Resource,
        reader: Option<impl opentelemetry_sdk::metrics::reader::MetricReader>,
    ) -> Result<Self, MetricsError> {
        let builder = SdkMeterProvider::builder().with_resource(resource);
        match reader {
            Some(reader) => Self::build(builder.with_reader(reader)),
            None => Self::build(builder),
        }
    }

    fn build(builder: opentelemetry_sdk::metrics::MeterProviderBuilder) -> Result<Self, MetricsError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let provider = builder.with_reader(exporter).build();
        let meter = provider.meter("msk-sidecar");
        let shared = Arc::new(Shared::default());
        super::observers::register(&meter, &shared);
        let delivery_latency = meter
            .f64_histogram("msk_sidecar.delivery.duration")
            .with_unit("s")
            .with_description("Duration of one delivery attempt")
            .with_boundaries(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .build();
        let end_to_end = meter
            .f64_histogram("msk_sidecar.record.end_to_end")
            .with_unit("s")
            .with_description("From the record's timestamp to its delivery")
            .with_boundaries(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                3600.0,
            ])
            .build();
        Ok(Metrics { shared, delivery_latency, end_to_end, provider, registry })
    }

    /// The counters of `topic` (a Kafka topic, an SQS queue) from a source of kind `origin`,
    /// created on first use. Callers cache the returned handle.
    pub fn counters(&self, origin: Origin, topic: &Arc<str>) -> Arc<TopicCounters> {
        let key = (origin, topic.clone());
        if let Some(counters) =
            self.shared.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key)
        {
            return counters.clone();
        }
        let mut topics = self.shared.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics
            .entry(key)
            .or_insert_with(|| {
                let mut counters = TopicCounters::new(origin, topic);
                let [source, topic] = counters.attributes.clone();
                let outcome =
                    |name: &'static str| [source.clone(), topic.clone(), KeyValue::new("outcome", name)];
                counters.delivered_latency = Some(self.delivery_latency.bind(&outcome("delivered")));
                counters.failed_latency = Some(self.delivery_latency.bind(&outcome("failed")));
                counters.end_to_end = Some(self.end_to_end.bind(&[source, topic]));
                Arc::new(counters)
            })
            .clone()
    }

    /// Sum of a counter over all topics (for summaries and tests).
    pub fn total(&self, counter: impl Fn(&TopicCounters) -> u64) -> u64 {
        let topics = self.shared.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.values().map(|c| counter(c)).sum()
    }

    /// Records the duration of one delivery attempt.
    pub fn delivery_attempt(&self, counters: &TopicCounters, delivered: bool, elapsed: Duration) {
        let histogram = if delivered { &counters.delivered_latency } else { &counters.failed_latency };
        if let Some(histogram) = histogram {
            histogram.record(elapsed.as_secs_f64());
        }
    }

    /// Records the time from a delivered record's timestamp to now.
    pub fn delivered_end_to_end(
        &self,
        counters: &TopicCounters,
        timestamp_ms: Option<i64>,
        now: std::time::SystemTime,
    ) {
        let Some(timestamp_ms) = timestamp_ms else { return };
        let now_ms = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let seconds = (now_ms - timestamp_ms).max(0) as f64 / 1000.0;
        if let Some(histogram) = &counters.end_to_end {
            histogram.record(seconds);
        }
    }

    /// Shows span export counters as metrics.
    pub fn set_span_counters(&self, counters: Arc<SpanCounters>) {
        let _ = self.shared.spans.set(counters);
    }

    /// Sets where lag in seconds comes from (the offset tracker).
    pub fn set_oldest_source(&self, source: OldestSource) {
        let _ = self.shared.oldest.set(source);
    }

    /// Adjusts the in-flight gauge.
    pub fn add_in_flight(&self, delta: i64) {
        self.shared.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Sets the paused-partitions gauge.
    pub fn set_paused_partitions(&self, count: usize) {
        self.shared.paused_partitions.store(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Replaces the consumer lag of the partitions in `lags`.
    pub fn set_lag(&self, lags: impl IntoIterator<Item = (TopicPartition, i64)>) {
        let mut lag = self.shared.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lag.extend(lags);
    }

    /// Forgets the lag of partitions no longer assigned.
    pub fn forget_lag(&self, tps: &[TopicPartition]) {
        let mut lag = self.shared.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tps.iter().for_each(|tp| {
            lag.remove(tp);
        });
    }

    /// Counts a failed offset commit.
    pub fn commit_failed(&self) {
        self.shared.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a contained panic; returns how many there were so far.
    pub fn panicked(&self) -> u64 {
        self.shared.panics.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts records skipped because an earlier owner finished them (the offset map).
    pub fn records_skipped(&self, count: usize) {
        self.shared.skipped.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// Counts a batch answer that could not be read.
    pub fn unreadable_answer(&self) {
        self.shared.unreadable_answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the expiry of the current token (seconds since the epoch).
    pub fn set_token_expiry(&self, seconds: i64) {
        self.shared.token_expiry.store(seconds, Ordering::Relaxed);
    }

    /// Counts a token generation failure.
    pub fn auth_failed(&self) {
        self.shared.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a rebalance (`true`: partitions assigned, `false`: revoked).
    pub fn rebalanced(&self, assigned: bool) {
        let counter = if assigned { &self.shared.assigns } else { &self.shared.revokes };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts partitions lost without a graceful revoke: their records may be delivered again.
    pub fn partitions_lost(&self) {
        self.shared.losses.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the circuit breaker gauge.
    pub fn set_breaker_open(&self, open: bool) {
        self.shared.breaker_open.store(i64::from(open), Ordering::Relaxed);
    }

    /// The current values in Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails for invalid metric families, which the exporter
        // does not produce; an empty page is the safe answer if it ever did.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The meter provider, for adding more readers (OTLP).
    pub fn provider(&self) -> &SdkMeterProvider {
        &self.provider
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_prometheus_text() {
        let metrics = Metrics::new().expect("metrics");
        let topic: Arc<str> = Arc::from("orders");
        let counters = metrics.counters(Origin::Kafka, &topic);
        let queue = metrics.counters(Origin::Sqs, &Arc::from("orders"));
        queue.consumed.fetch_add(5, Ordering::Relaxed);
        counters.consumed.fetch_add(3, Ordering::Relaxed);
        counters.delivered.fetch_add(2, Ordering::Relaxed);
        counters.dead_letter("permanent");
        metrics.set_lag([(TopicPartition::new("orders", 1), 7)]);
        metrics.delivery_attempt(&counters, true, Duration::from_millis(3));
        let text = metrics.render_prometheus();
        assert!(
            text.contains("msk_sidecar_records_consumed_total{source=\"kafka\",topic=\"orders\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("msk_sidecar_records_consumed_total{source=\"sqs\",topic=\"orders\"} 5"),
            "a queue named like a topic has its own series: {text}"
        );
        assert!(
            text.contains("msk_sidecar_records_delivered_total{source=\"kafka\",topic=\"orders\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "msk_sidecar_records_dead_lettered_total{error_class=\"permanent\",source=\"kafka\",topic=\"orders\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("msk_sidecar_consumer_lag{partition=\"1\",topic=\"orders\"} 7"), "{text}");
        assert!(text.contains("msk_sidecar_delivery_duration_seconds_count"), "{text}");
        assert_eq!(metrics.total(|c| c.consumed.load(Ordering::Relaxed)), 8);
    }
}
