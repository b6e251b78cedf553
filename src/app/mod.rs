//! The application: wires configuration, sources (Kafka, SQS: each optional, at least one),
//! dispatchers, pipelines, delivery, dead letters and the admin server for `msk-sidecar run`.
//!
//! [`start`] builds everything and returns a [`Running`] handle (the demo and the integration
//! tests read its metrics and admin address); [`run`] starts and waits. Shutdown is a
//! parameter: cancelling the token drains in-flight records, commits and stops.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminError, AdminServer};
use crate::archive::Archive;
use crate::config::Config;
use crate::consumer::ConsumerError;
use crate::delivery::http::HttpError;
use crate::dlq::DeadLetterWriter;
use crate::health::Health;
use crate::kafka;
use crate::telemetry::metrics::{Metrics, MetricsError};
use crate::telemetry::otlp::{self, OtlpError};
use crate::telemetry::spans::{TargetInfo, Tracing};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

mod kafka_source;
mod routes;

/// Why the application could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The admin server could not start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Metrics could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The delivery target could not be built.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The dead-letter producer could not be created.
    #[error("cannot create the dead-letter producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    /// The consumer failed.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// An OTLP exporter could not be built.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    /// The SQS source could not start.
    #[error(transparent)]
    SqsSource(#[from] crate::sqs_source::SqsSourceError),
    /// The Redis Streams source could not start.
    #[error(transparent)]
    RedisSource(#[from] crate::redis_source::RedisSourceError),
    /// A Kafka client failed fatally: the sidecar stopped and must be restarted.
    #[error("fatal Kafka client error: {0}")]
    Fatal(String),
    /// KAFKA_RESET_OFFSETS_ON_START could not be done: starting anyway would consume from
    /// offsets the operator asked to leave.
    #[error("KAFKA_RESET_OFFSETS_ON_START: {0}")]
    Reset(crate::groups::GroupsError),
}

/// A started sidecar.
pub struct Running {
    /// Metrics of this instance.
    pub metrics: Metrics,
    /// Readiness of this instance.
    pub health: Arc<Health>,
    /// Where the admin server listens.
    pub admin_addr: SocketAddr,
    /// Resolves when the sidecar has stopped.
    done: oneshot::Receiver<Result<(), AppError>>,
}

impl Running {
    /// Waits until the sidecar has drained, committed and stopped.
    pub async fn wait(self) -> Result<(), AppError> {
        self.done.await.unwrap_or(Err(AppError::Consumer(ConsumerError::Vanished)))
    }
}

/// Runs the sidecar until `shutdown` is cancelled and everything has drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    start(config, shutdown).await?.wait().await
}

/// Starts every part and returns once the consumer has subscribed.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, AppError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        configuration = %config.effective().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        "Starting msk-sidecar."
    );
    let resource = otlp::resource(&config.telemetry).await;
    let span_counters = Arc::new(otlp::SpanCounters::default());
    let tracer_provider = otlp::tracer_provider(&config.telemetry, resource.clone(), span_counters.clone())?;
    let metrics = Metrics::for_app(resource, otlp::metrics_reader(&config.telemetry)?)?;
    let tracing = match &tracer_provider {
        Some(provider) => {
            metrics.set_span_counters(span_counters);
            let tracer = provider.tracer("msk-sidecar");
            crate::telemetry::attach_tracer(tracer.clone());
            Tracing::new(tracer, config.group().to_string(), TargetInfo::default(), config.trace_record_keys)
        }
        None => Tracing::disabled(),
    };
    let health = Arc::new(Health::new());
    let admin = admin::spawn(config.admin_addr, health.clone(), metrics.clone())?;

    let background = CancellationToken::new();
    // A fatal client error stops the sidecar as SIGTERM would, then it exits with an error.
    let stop = shutdown.child_token();
    // When the stop began: the whole shutdown, telemetry flush included, fits in the grace.
    let stopped_at = Arc::new(OnceLock::new());
    tokio::spawn({
        let (stop, stopped_at, health) = (stop.clone(), stopped_at.clone(), health.clone());
        async move {
            stop.cancelled().await;
            health.mark_stopping();
            // Set once: the first stop is when the grace began.
            let _ = stopped_at.set(Instant::now());
        }
    });
    let fatal = Arc::new(kafka::Fatal::new(&health, stop.clone()));
    let clients = match &config.kafka {
        Some(kafka) => Some(
            kafka_source::Clients::create(
                &config,
                kafka,
                &health,
                &metrics,
                fatal.clone(),
                background.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let archive = Archive::from_target(&config.dlq.archive).await;
    let common = routes::Common {
        config: &config,
        kafka: clients.as_ref(),
        archive: &archive,
        health: &health,
        metrics: &metrics,
        tracing: &tracing,
        background: &background,
    };
    let built = routes::build(&common).await?;

    // The SQS source delivers as its queue routes say (the default route for the rest), with
    // its own dead letters.
    let sqs = match &config.sqs_source {
        Some(sqs_config) => {
            let setup = crate::sqs_source::Setup {
                config: sqs_config.clone(),
                max_in_flight: config.max_in_flight,
                grace: config.shutdown_grace,
                routes: built.queue_routes.clone(),
                archive: archive.clone(),
                health: health.clone(),
                metrics: metrics.clone(),
            };
            Some(crate::sqs_source::start(setup, stop.clone()).await?)
        }
        None => None,
    };
    // The Redis Streams source delivers as its stream routes say (the default route for the
    // rest), with its own dead letters.
    let redis = match &config.redis_source {
        Some(redis_config) => {
            let setup = crate::redis_source::Setup {
                config: redis_config.clone(),
                max_in_flight: config.max_in_flight,
                grace: config.shutdown_grace,
                routes: built.stream_routes.clone(),
                archive: archive.clone(),
                health: health.clone(),
                metrics: metrics.clone(),
            };
            match crate::redis_source::start(setup, stop.clone()).await {
                Ok(source) => Some(source),
                Err(err) => {
                    // What the SQS source leased goes back before the error ends the process.
                    stop.cancel();
                    if let Some(sqs) = sqs {
                        sqs.wait().await;
                    }
                    return Err(err.into());
                }
            }
        }
        None => None,
    };
    // The RabbitMQ source delivers as its queue routes say (the default route for the rest),
    // with its own dead letters; it connects in the background.
    let amqp = config.amqp_source.as_ref().map(|amqp_config| {
        let setup = crate::amqp_source::Setup {
            config: amqp_config.clone(),
            max_in_flight: config.max_in_flight,
            grace: config.shutdown_grace,
            routes: built.queue_routes.clone(),
            archive: archive.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
        };
        crate::amqp_source::start(setup, stop.clone())
    });
    let kafka = match (clients, &config.kafka) {
        (Some(clients), Some(kafka)) => {
            let setup = kafka_source::Setup {
                config: &config,
                kafka,
                clients,
                routes: built.routes,
                breakers: built.breakers,
                health: &health,
                metrics: &metrics,
            };
            match kafka_source::start(setup, stop.clone()) {
                Ok(source) => Some(source),
                Err(err) => {
                    // The other sources already leased messages: they release them before the
                    // error ends the process, not when their leases lapse.
                    stop.cancel();
                    if let Some(sqs) = sqs {
                        sqs.wait().await;
                    }
                    if let Some(redis) = redis {
                        redis.wait().await;
                    }
                    if let Some(amqp) = amqp {
                        amqp.wait().await;
                    }
                    return Err(err);
                }
            }
        }
        _ => {
            // No group to join: ready once the other sources have started.
            health.mark_joined();
            None
        }
    };
    let writers = built.writers;
    let probers = built.probers;

    let (done_tx, done) = oneshot::channel();
    let admin_addr = admin.addr;
    let telemetry = Telemetry {
        tracer: tracer_provider,
        meter: metrics.provider().clone(),
        stopped_at,
        grace: config.shutdown_grace,
    };
    tokio::spawn(async move {
        let stopped = Stopped { kafka, sqs, redis, amqp, stop };
        let result = finish(stopped, writers, admin, background, probers, telemetry)
            .await
            .and_then(|()| fatal.reason().map_or(Ok(()), |reason| Err(AppError::Fatal(reason.to_string()))));
        drop(done_tx.send(result));
    });
    Ok(Running { metrics, health, admin_addr, done })
}

/// What `finish` waits for first: the sources, their dispatchers and every lane task.
struct Stopped {
    /// The Kafka source, when there is one.
    kafka: Option<kafka_source::KafkaSource>,
    /// The SQS source, which stops with the same token.
    sqs: Option<crate::sqs_source::SqsSource>,
    /// The Redis Streams source, which stops with the same token.
    redis: Option<crate::redis_source::RedisSource>,
    /// The RabbitMQ source, which stops with the same token.
    amqp: Option<crate::amqp_source::AmqpSource>,
    /// That token: cancelled on SIGTERM, on a fatal error, and when the consumer ends by
    /// itself, so the other sources stop too.
    stop: CancellationToken,
}

/// What is flushed to the OTLP collector last, and the time it may take.
struct Telemetry {
    /// Spans still queued (when tracing is on).
    tracer: Option<SdkTracerProvider>,
    /// The final counts (exported when an OTLP metrics endpoint is configured).
    meter: SdkMeterProvider,
    /// When the stop began (unset: it has not; the consumer ended by itself).
    stopped_at: Arc<OnceLock<Instant>>,
    /// `SIDECAR_SHUTDOWN_GRACE`.
    grace: Duration,
}

/// Kept for the process to exit after the last flush.
const EXIT_MARGIN: Duration = Duration::from_millis(300);
/// The longest a telemetry flush may take, whatever is left of the grace.
const MAX_FLUSH: Duration = Duration::from_secs(5);

impl Telemetry {
    /// Flushes spans and metrics at once, within what is left of the grace (at most five
    /// seconds): a collector that answers nothing costs telemetry, never the grace.
    async fn flush(self) {
        let started = Instant::now();
        let deadline = self.stopped_at.get().copied().unwrap_or(started) + self.grace;
        let budget = deadline.saturating_duration_since(started + EXIT_MARGIN).min(MAX_FLUSH);
        let meter = self.meter;
        let metrics = tokio::time::timeout(budget, tokio::task::spawn_blocking(move || meter.force_flush()));
        let spans = async {
            match self.tracer {
                Some(tracer) => {
                    let flushed =
                        tokio::time::timeout(budget, tokio::task::spawn_blocking(move || tracer.shutdown()))
                            .await;
                    matches!(flushed, Ok(Ok(Ok(()))))
                }
                None => true,
            }
        };
        let (_, spans_flushed) = tokio::join!(metrics, spans);
        if !spans_flushed {
            tracing::warn!(
                budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                "Spans still queued at shutdown could not all be exported."
            );
        }
    }
}

/// Waits for the consumer to drain and close, then stops the rest in order.
async fn finish(
    stopped: Stopped,
    writers: Vec<Arc<DeadLetterWriter>>,
    admin: AdminServer,
    background: CancellationToken,
    probers: Vec<tokio::task::JoinHandle<()>>,
    telemetry: Telemetry,
) -> Result<(), AppError> {
    let mut kafka = stopped.kafka;
    let result = match &mut kafka {
        Some(kafka) => kafka.consumer_done().await,
        // Without Kafka, the sidecar runs until it is stopped.
        None => {
            stopped.stop.cancelled().await;
            Ok(())
        }
    };
    stopped.stop.cancel();
    // The sources stop side by side: each drains within the same grace.
    let sqs = async {
        if let Some(sqs) = stopped.sqs {
            sqs.wait().await;
        }
    };
    let redis = async {
        if let Some(redis) = stopped.redis {
            redis.wait().await;
        }
    };
    let amqp = async {
        if let Some(amqp) = stopped.amqp {
            amqp.wait().await;
        }
    };
    tokio::join!(sqs, redis, amqp);
    if let Some(kafka) = kafka {
        kafka.finish().await;
    }
    background.cancel();
    for prober in probers {
        drop(prober.await);
    }
    // Every route's writer shares one producer: flushing one flushes them all.
    if let Some(flushing) = writers.first().cloned() {
        drop(tokio::task::spawn_blocking(move || flushing.flush(Duration::from_secs(5))).await);
    }
    drop(tokio::task::spawn_blocking(move || admin.stop()).await);
    telemetry.flush().await;
    tracing::info!("msk-sidecar stopped.");
    result.map_err(AppError::from)
}
