//! The observable instruments behind [`Metrics`](super::metrics::Metrics): callbacks that read the
//! atomics the data path bumps, so that recording costs nothing until a reader collects.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::metrics::{ERROR_CLASSES, Shared, TopicCounters};

/// A named instrument reading one value of the shared state.
type Instrument<T> = (&'static str, &'static str, fn(&Shared) -> T);

/// Registers every observable instrument on `meter`.
pub(super) fn register(meter: &Meter, shared: &Arc<Shared>) {
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
                for counters in
                    shared.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).values()
                {
                    observer.observe(pick(counters), &counters.attributes);
                }
            })
            .build();
    }
    let dead = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.records.dead_lettered")
        .with_description("Records written to the dead-letter topic (and archive)")
        .with_callback(move |observer| {
            for counters in dead.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
                for (index, class) in ERROR_CLASSES.iter().enumerate() {
                    let value = counters.dead_lettered[index].load(Ordering::Relaxed);
                    let [source, topic] = counters.attributes.clone();
                    observer.observe(value, &[source, topic, KeyValue::new("error_class", *class)]);
                }
            }
        })
        .build();
    let filtered = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.records.filtered")
        .with_description("Records a route's filter turned away (finished, never delivered)")
        .with_callback(move |observer| {
            for counters in filtered.topics.read().unwrap_or_else(std::sync::PoisonError::into_inner).values()
            {
                if let Some(route) = counters.filter_route.get() {
                    let [source, topic] = counters.attributes.clone();
                    let route = KeyValue::new("route", opentelemetry::StringValue::from(route.clone()));
                    observer.observe(counters.filtered.load(Ordering::Relaxed), &[source, topic, route]);
                }
            }
        })
        .build();
    let spans = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.spans.exported")
        .with_description("Spans the OTLP collector accepted")
        .with_callback(move |observer| {
            if let Some(counters) = spans.spans.get() {
                observer.observe(counters.exported.load(Ordering::Relaxed), &[]);
            }
        })
        .build();
    let spans = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.spans.dropped")
        .with_description("Spans lost because the export queue was full or the export failed")
        .with_callback(move |observer| {
            if let Some(counters) = spans.spans.get() {
                observer.observe(counters.dropped.load(Ordering::Relaxed), &[]);
            }
        })
        .build();
    let oldest = shared.clone();
    meter
        .f64_observable_gauge("msk_sidecar.consumer.lag.time")
        .with_unit("s")
        .with_description(
            "Age of the oldest record not yet delivered or dead-lettered, per partition (0 when none waits)",
        )
        .with_callback(move |observer| {
            let Some(source) = oldest.oldest.get() else { return };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            for (tp, timestamp) in source() {
                let age = timestamp.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
                observer.observe(
                    age,
                    &[
                        KeyValue::new("topic", tp.topic.to_string()),
                        KeyValue::new("partition", i64::from(tp.partition)),
                    ],
                );
            }
        })
        .build();
    let rebalances = shared.clone();
    meter
        .u64_observable_counter("msk_sidecar.rebalances")
        .with_description("Rebalance callbacks, by kind (assign, revoke, lost)")
        .with_callback(move |observer| {
            observer.observe(rebalances.assigns.load(Ordering::Relaxed), &[KeyValue::new("kind", "assign")]);
            observer.observe(rebalances.revokes.load(Ordering::Relaxed), &[KeyValue::new("kind", "revoke")]);
            observer.observe(rebalances.losses.load(Ordering::Relaxed), &[KeyValue::new("kind", "lost")]);
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
    let totals: [Instrument<u64>; 5] = [
        ("msk_sidecar.commit.failures", "Offset commits that failed", |s| {
            s.commit_failures.load(Ordering::Relaxed)
        }),
        (
            "msk_sidecar.panics",
            "Panics contained in a record's processing (each record dead-lettered as panic)",
            |s| s.panics.load(Ordering::Relaxed),
        ),
        (
            "msk_sidecar.records.skipped",
            "Records skipped because an earlier owner finished them (offset map)",
            |s| s.skipped.load(Ordering::Relaxed),
        ),
        (
            "msk_sidecar.unreadable_answers",
            "2xx answers to a batch that could not be read (the batch failed)",
            |s| s.unreadable_answers.load(Ordering::Relaxed),
        ),
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
