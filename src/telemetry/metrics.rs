//! Metrics: counters the data path bumps cheaply, exposed through OpenTelemetry.
//!
//! The hot path touches only atomics ([`TopicCounters`], one per topic, cached by the caller);
//! OpenTelemetry observable instruments read them when a reader collects. The Prometheus
//! exporter is the reader behind `GET /metrics`; an OTLP reader can be added to the same
//! provider. Labels are bounded: topic, partition, error class, never offsets or keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

use crate::record::TopicPartition;

/// Dead-letter error classes, as in the `dlq-error-class` header.
pub const ERROR_CLASSES: [&str; 3] = ["permanent", "retries-exhausted", "oversized"];

/// Why the metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus exporter could not be built.
    #[error("cannot build the Prometheus exporter: {0}")]
    Exporter(String),
}

/// Counters of one topic.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Records received from Kafka.
    pub consumed: AtomicU64,
    /// Records the application accepted.
    pub delivered: AtomicU64,
    /// Retry attempts (attempts after the first).
    pub retried: AtomicU64,
    /// Dead letters by class, indexed like [`ERROR_CLASSES`].
    pub dead_lettered: [AtomicU64; 3],
}

impl TopicCounters {
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

#[derive(Debug, Default)]
struct Shared {
    /// Counters per topic.
    topics: RwLock<HashMap<Arc<str>, Arc<TopicCounters>>>,
    /// Records being delivered right now.
    in_flight: AtomicI64,
    /// Partitions paused by back-pressure or the circuit breaker.
    paused_partitions: AtomicI64,
    /// Consumer lag in offsets per partition (from librdkafka statistics).
    lag: Mutex<HashMap<TopicPartition, i64>>,
    /// Offset commits that failed.
    commit_failures: AtomicU64,
    /// Expiry of the current MSK IAM token, seconds since the epoch (0: none).
    token_expiry: AtomicI64,
    /// Token generation failures.
    auth_failures: AtomicU64,
    /// 1 while the circuit breaker is open.
    breaker_open: AtomicI64,
    /// Rebalance callbacks that assigned partitions.
    assigns: AtomicU64,
    /// Rebalance callbacks that revoked partitions.
    revokes: AtomicU64,
}

/// The metrics of one sidecar process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// Atomics read by the observable instruments.
    shared: Arc<Shared>,
    /// Per-attempt delivery latency.
    delivery_latency: Histogram<f64>,
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
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("msk-sidecar");
        let shared = Arc::new(Shared::default());
        register_observers(&meter, &shared);
        let delivery_latency = meter
            .f64_histogram("msk_sidecar.delivery.duration")
            .with_unit("s")
            .with_description("Duration of one delivery attempt")
            .with_boundaries(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .build();
        Ok(Metrics { shared, delivery_latency, provider, registry })
    }

    /// The counters of `topic`, created on first use. Callers cache the returned handle.
    pub fn topic(&self, topic: &Arc<str>) -> Arc<TopicCounters> {
        if let Some(counters) =
            self.shared.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(topic)
        {
            return counters.clone();
        }
        let mut topics = self.shared.topics.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.entry(topic.clone()).or_default().clone()
    }

    /// Sum of a counter over all topics (for summaries and tests).
    pub fn total(&self, counter: impl Fn(&TopicCounters) -> u64) -> u64 {
        let topics = self.shared.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        topics.values().map(|c| counter(c)).sum()
    }

    /// Records the duration of one delivery attempt.
    pub fn delivery_attempt(&self, topic: &Arc<str>, outcome: &'static str, elapsed: Duration) {
        self.delivery_latency.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("topic", topic.to_string()), KeyValue::new("outcome", outcome)],
        );
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

/// A named instrument reading one value of the shared state.
type Instrument<T> = (&'static str, &'static str, fn(&Shared) -> T);

fn register_observers(meter: &Meter, shared: &Arc<Shared>) {
    type Pick = fn(&TopicCounters) -> u64;
    let counters: [(&'static str, &'static str, Pick); 3] = [
        ("msk_sidecar.records.consumed", "Records received from Kafka", |c| {
            c.consumed.load(Ordering::Relaxed)
        }),
        ("msk_sidecar.records.delivered", "Records the application accepted", |c| {
            c.delivered.load(Ordering::Relaxed)
        }),
        ("msk_sidecar.records.retried", "Delivery attempts after the first", |c| {
            c.retried.load(Ordering::Relaxed)
        }),
    ];
    for (name, description, pick) in counters {
        let shared = shared.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| {
                for (topic, counters) in
                    shared.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
                {
                    observer.observe(pick(counters), &[KeyValue::new("topic", topic.to_string())]);
                }
            })
            .build();
    }
    let dead = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.records.dead_lettered")
        .with_description("Records written to the dead-letter topic (and archive)")
        .with_callback(move |observer| {
            for (topic, counters) in
                dead.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
            {
                for (index, class) in ERROR_CLASSES.iter().enumerate() {
                    let value = counters.dead_lettered[index].load(Ordering::Relaxed);
                    observer.observe(
                        value,
                        &[KeyValue::new("topic", topic.to_string()), KeyValue::new("error_class", *class)],
                    );
                }
            }
        })
        .build();
    let rebalances = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.rebalances")
        .with_description("Rebalance callbacks, by kind (assign, revoke)")
        .with_callback(move |observer| {
            observer.observe(rebalances.assigns.load(Ordering::Relaxed), &[KeyValue::new("kind", "assign")]);
            observer.observe(rebalances.revokes.load(Ordering::Relaxed), &[KeyValue::new("kind", "revoke")]);
        })
        .build();
    let lag = shared.clone();
    meter
        .i64_observable_gauge("msk_sidecar.consumer.lag")
        .with_description("Records behind the partition's high watermark")
        .with_callback(move |observer| {
            for (tp, value) in lag.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
                observer.observe(
                    *value,
                    &[
                        KeyValue::new("topic", tp.topic.to_string()),
                        KeyValue::new("partition", i64::from(tp.partition)),
                    ],
                );
            }
        })
        .build();
    let gauges: [Instrument<i64>; 4] = [
        ("msk_sidecar.records.in_flight", "Records being delivered now", |s| {
            s.in_flight.load(Ordering::Relaxed)
        }),
        ("msk_sidecar.partitions.paused", "Partitions paused by back-pressure or the breaker", |s| {
            s.paused_partitions.load(Ordering::Relaxed)
        }),
        ("msk_sidecar.token.expiry", "Expiry of the MSK IAM token, seconds since the epoch", |s| {
            s.token_expiry.load(Ordering::Relaxed)
        }),
        ("msk_sidecar.breaker.open", "1 while the application circuit breaker is open", |s| {
            s.breaker_open.load(Ordering::Relaxed)
        }),
    ];
    for (name, description, pick) in gauges {
        let shared = shared.clone();
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |observer| observer.observe(pick(&shared), &[]))
            .build();
    }
    let totals: [Instrument<u64>; 2] = [
        ("msk_sidecar.commit.failures", "Offset commits that failed", |s| {
            s.commit_failures.load(Ordering::Relaxed)
        }),
        ("msk_sidecar.auth.failures", "MSK IAM token generation failures", |s| {
            s.auth_failures.load(Ordering::Relaxed)
        }),
    ];
    for (name, description, pick) in totals {
        let shared = shared.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| observer.observe(pick(&shared), &[]))
            .build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_prometheus_text() {
        let metrics = Metrics::new().expect("metrics");
        let topic: Arc<str> = Arc::from("orders");
        let counters = metrics.topic(&topic);
        counters.consumed.fetch_add(3, Ordering::Relaxed);
        counters.delivered.fetch_add(2, Ordering::Relaxed);
        counters.dead_letter("permanent");
        metrics.set_lag([(TopicPartition::new("orders", 1), 7)]);
        metrics.delivery_attempt(&topic, "delivered", Duration::from_millis(3));
        let text = metrics.render_prometheus();
        assert!(text.contains("msk_sidecar_records_consumed_total{topic=\"orders\"} 3"), "{text}");
        assert!(text.contains("msk_sidecar_records_delivered_total{topic=\"orders\"} 2"), "{text}");
        assert!(
            text.contains(
                "msk_sidecar_records_dead_lettered_total{error_class=\"permanent\",topic=\"orders\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("msk_sidecar_consumer_lag{partition=\"1\",topic=\"orders\"} 7"), "{text}");
        assert!(text.contains("msk_sidecar_delivery_duration_seconds_count"), "{text}");
        assert_eq!(metrics.total(|c| c.consumed.load(Ordering::Relaxed)), 3);
    }
}
