//! Builds what each route needs: its delivery target, dead-letter writer, circuit breaker with
//! its prober, and pipeline. Topic routes go to the Kafka dispatcher, queue routes to the SQS
//! source; the default route (top-level settings) comes last in both.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::AppError;
use crate::archive::Archive;
use crate::config::{Config, DeliveryTarget, Route, Selects, TopicMatcher};
use crate::delivery::Delivery;
use crate::delivery::batcher::Limits as BatchLimits;
use crate::delivery::http::HttpDelivery;
use crate::delivery::http_batch::HttpBatchDelivery;
use crate::delivery::null::NullDelivery;
use crate::delivery::sqs::{self, SqsDelivery};
use crate::dispatch::RouteEntry;
use crate::dlq::DeadLetterWriter;
use crate::health::Health;
use crate::pipeline::breaker::{self, Breaker};
use crate::pipeline::{DeadLetterSink, Pipeline, backoff};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::spans::{TargetInfo, Tracing};

/// What every route shares.
pub(super) struct Common<'a> {
    pub(super) config: &'a Config,
    /// The Kafka clients (the dead-letter producer), when there is a Kafka source.
    pub(super) kafka: Option<&'a super::kafka_source::Clients>,
    pub(super) archive: &'a Option<Archive>,
    pub(super) health: &'a Arc<Health>,
    pub(super) metrics: &'a Metrics,
    pub(super) tracing: &'a Tracing,
    pub(super) background: &'a CancellationToken,
}

/// The built routes.
pub(super) struct Built {
    /// Topic routes for the Kafka dispatcher, in order, the default last.
    pub(super) routes: Vec<Arc<RouteEntry>>,
    /// Queue routes for the SQS and RabbitMQ sources, in order, the default last.
    pub(super) queue_routes: Vec<Arc<RouteEntry>>,
    /// Stream routes for the Redis source, in order, the default last.
    pub(super) stream_routes: Vec<Arc<RouteEntry>>,
    /// Each route's breaker state, for the consumer's pauses.
    pub(super) breakers: Vec<(Option<TopicMatcher>, watch::Receiver<bool>)>,
    /// Dead-letter writers (one producer underneath).
    pub(super) writers: Vec<Arc<DeadLetterWriter>>,
    /// Breaker probers, stopped on shutdown.
    pub(super) probers: Vec<JoinHandle<()>>,
}

/// The dead letters of a route without a dead-letter topic (no Kafka source): every source
/// replaces them with its own place, so a write here means a record reached a route its source
/// did not set up; it fails, and the pipeline holds the record rather than lose it.
struct Unplaced;

impl DeadLetterSink for Unplaced {
    fn topic(&self) -> &str {
        ""
    }

    fn write<'a>(
        &'a self,
        letter: &'a crate::dlq::DeadLetter<'a>,
    ) -> futures::future::BoxFuture<'a, Result<crate::dlq::Written, crate::dlq::DlqError>> {
        let source_kind = letter.record.origin.name();
        Box::pin(async move { Err(crate::dlq::DlqError::Unplaced { source_kind }) })
    }
}

/// What the attempt spans record about a delivery target.
fn target_info(target: &DeliveryTarget) -> TargetInfo {
    match target {
        DeliveryTarget::Http(url) | DeliveryTarget::Sqs(url) => TargetInfo {
            url: crate::config::redact_url(url),
            address: url.host_str().unwrap_or_default().to_string(),
            port: url.port_or_known_default().map_or(0, i64::from),
        },
        DeliveryTarget::Null { .. } => TargetInfo { url: "null://".into(), ..TargetInfo::default() },
    }
}

/// The delivery target of a route and how many records of a lane go out together.
async fn delivery(route: &Route, common: &Common<'_>) -> Result<(Arc<dyn Delivery>, usize), AppError> {
    let settings = &route.delivery;
    Ok(match &settings.target {
        DeliveryTarget::Null { fail_permille, panic_permille } => {
            (Arc::new(NullDelivery { fail_permille: *fail_permille, panic_permille: *panic_permille }), 1)
        }
        DeliveryTarget::Http(url) if settings.batch.max_records > 1 => {
            let limits = BatchLimits {
                max_records: settings.batch.max_records,
                max_bytes: settings.batch.max_bytes,
                linger: settings.batch.linger,
                ordering: route.ordering,
            };
            let target = HttpBatchDelivery::new(
                url.clone(),
                settings.timeout,
                common.config.max_in_flight,
                limits,
                common.metrics.clone(),
            )?;
            (Arc::new(target), settings.batch.max_records)
        }
        DeliveryTarget::Http(url) => {
            (Arc::new(HttpDelivery::new(url.clone(), settings.timeout, common.config.max_in_flight)?), 1)
        }
        DeliveryTarget::Sqs(url) => {
            let target = SqsDelivery::new(
                url.clone(),
                settings.timeout,
                settings.batch.linger,
                route.ordering,
                common.archive.clone(),
            )
            .await;
            (Arc::new(target), sqs::lane_chunk(url))
        }
    })
}

/// Builds every route, the default last.
pub(super) async fn build(common: &Common<'_>) -> Result<Built, AppError> {
    let mut built = Built {
        routes: Vec::new(),
        queue_routes: Vec::new(),
        stream_routes: Vec::new(),
        breakers: Vec::new(),
        writers: Vec::new(),
        probers: Vec::new(),
    };
    for route in common.config.all_routes() {
        // Readiness reasons name the route, except for the default route's.
        let scope = if route.matcher.is_some() { route.name.clone() } else { String::new() };
        let (delivery, chunk) = delivery(&route, common).await?;
        // Without a Kafka source, every route serves queues, whose sources give the pipeline
        // their own dead-letter places.
        let writer = match (common.kafka, &route.dlq_topic) {
            (Some(clients), Some(topic)) => Some(Arc::new(DeadLetterWriter::new(
                clients.producer.clone(),
                topic.clone(),
                common.archive.clone(),
                clients.producer_authentication.clone(),
            ))),
            _ => None,
        };
        let dead_letters: Arc<dyn DeadLetterSink> = match &writer {
            Some(writer) => writer.clone(),
            None => Arc::new(Unplaced),
        };
        let breaker = Arc::new(Breaker::new(breaker::DEFAULT_THRESHOLD));
        let pipeline = Arc::new(Pipeline {
            delivery: delivery.clone(),
            dead_letters,
            retry: route.retry,
            breaker: breaker.clone(),
            health: common.health.clone(),
            metrics: common.metrics.clone(),
            group: common.config.group().to_string(),
            jitter: backoff::full_jitter,
            tracing: common.tracing.for_target(target_info(&route.delivery.target)),
            route: scope.clone(),
            panics: Default::default(),
            rules: route.rules.clone(),
        });
        built.probers.push(tokio::spawn(breaker::run_prober(
            breaker.clone(),
            delivery,
            common.health.clone(),
            common.metrics.clone(),
            route.retry.initial_backoff,
            common.background.clone(),
            scope,
        )));
        let entry = Arc::new(RouteEntry {
            matcher: route.matcher.clone(),
            pipeline,
            ordering: route.ordering,
            chunk,
        });
        match (route.selects, route.matcher.is_some()) {
            (Selects::Queues, _) => built.queue_routes.push(entry),
            (Selects::Streams, _) => built.stream_routes.push(entry),
            (Selects::Topics, true) => {
                built.breakers.push((route.matcher.clone(), breaker.subscribe()));
                built.routes.push(entry);
            }
            // The default route serves topics and queues alike.
            (Selects::Topics, false) => {
                built.breakers.push((route.matcher.clone(), breaker.subscribe()));
                built.routes.push(entry.clone());
                built.queue_routes.push(entry.clone());
                built.stream_routes.push(entry);
            }
        }
        built.writers.extend(writer);
    }
    Ok(built)
}
