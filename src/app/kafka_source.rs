//! The Kafka source's wiring: its clients (the consumer and the dead-letter producer, sharing
//! token signing and error routing), then its offset tracker, dispatcher and consumer thread.
//!
//! Built only when `KAFKA_*` configure a Kafka source; an SQS-only sidecar has none of it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::AppError;
use crate::config::{Config, KafkaConfig};
use crate::consumer::{self, ConsumerError};
use crate::dispatch::{self, Limits, RouteEntry};
use crate::health::{Component, Health, Problem};
use crate::kafka::{self, KafkaContext};
use crate::offsets::OffsetTracker;
use crate::telemetry::metrics::Metrics;

/// The Kafka clients' shared parts, made before the routes (their dead-letter writers use the
/// producer).
pub(super) struct Clients {
    /// The dead-letter producer.
    pub(super) producer: FutureProducer<KafkaContext>,
    /// The producer's authentication problem (cleared by an acknowledged dead letter).
    pub(super) producer_authentication: Arc<Problem>,
    /// The consumer's context parts.
    shared: kafka::Shared,
}

impl Clients {
    /// Creates the dead-letter producer; the consumer follows in [`start`].
    pub(super) async fn create(
        config: &Config,
        kafka: &KafkaConfig,
        health: &Arc<Health>,
        metrics: &Metrics,
        fatal: Arc<kafka::Fatal>,
        background: CancellationToken,
    ) -> Result<Clients, AppError> {
        let auth = crate::auth::start(config, health, metrics, background).await;
        // Each client reports its own authentication problem; what proves it fixed is that
        // client's own success (records arriving, a dead letter acknowledged, or a token made
        // when the failure was that none could be).
        let authentication = |client: &str| Arc::new(Problem::new(health, Component::Authentication, client));
        let shared = kafka::Shared {
            auth,
            authentication: authentication("consumer"),
            token_failed: Arc::default(),
            fatal,
            metrics: metrics.clone(),
        };
        let producer_shared = kafka::Shared {
            authentication: authentication("dead-letter producer"),
            token_failed: Arc::default(),
            ..shared.clone()
        };
        if let Some(target) = kafka.reset_on_start {
            reset_on_start(kafka, target, &shared).await?;
        }
        let producer_authentication = producer_shared.authentication.clone();
        let producer = kafka::producer_config(kafka)
            .create_with_context(KafkaContext { shared: producer_shared })
            .map_err(AppError::Producer)?;
        Ok(Clients { producer, producer_authentication, shared })
    }
}

/// `KAFKA_RESET_OFFSETS_ON_START`: moves the group's offsets to `target` when nobody consumes in
/// the group (this member is about to be the first); otherwise the running members' offsets stay.
async fn reset_on_start(
    kafka: &KafkaConfig,
    target: crate::groups::ResetTo,
    shared: &kafka::Shared,
) -> Result<(), AppError> {
    let (kafka, context) = (kafka.clone(), KafkaContext { shared: shared.clone() });
    let outcome = tokio::task::spawn_blocking(move || {
        let group = crate::groups::Group::connect(&kafka, context)?;
        let members = group.members()?;
        if !members.is_empty() {
            return Ok(Err(members));
        }
        let moves = group.plan(target, &[])?;
        match group.apply(&moves) {
            Ok(()) => Ok(Ok(moves)),
            // Another replica joined while this one planned: the group is theirs now.
            Err(crate::groups::GroupsError::Active { members, .. }) => Ok(Err(members)),
            Err(crate::groups::GroupsError::Kafka { error, .. })
                if matches!(
                    error.rdkafka_error_code(),
                    Some(
                        rdkafka::types::RDKafkaErrorCode::UnknownMemberId
                            | rdkafka::types::RDKafkaErrorCode::RebalanceInProgress
                            | rdkafka::types::RDKafkaErrorCode::IllegalGeneration
                    )
                ) =>
            {
                Ok(Err(vec![format!("(a member joined during the reset: {error})")]))
            }
            Err(err) => Err(err),
        }
    })
    .await
    .map_err(|err| AppError::Fatal(format!("the offset reset task failed: {err}")))?
    .map_err(AppError::Reset)?;
    match outcome {
        Ok(moves) => {
            let moved: Vec<String> = moves
                .iter()
                .map(|m| {
                    format!(
                        "{}:{} {}->{}",
                        m.topic,
                        m.partition,
                        m.old.map_or("-".into(), |o| o.to_string()),
                        m.new
                    )
                })
                .collect();
            tracing::warn!(to = %target, partitions = moves.len(), moves = %moved.join(" "), "Reset the group's offsets on start (KAFKA_RESET_OFFSETS_ON_START).");
        }
        Err(members) => {
            tracing::warn!(members = %members.join(", "), "KAFKA_RESET_OFFSETS_ON_START: the group has members; their offsets stay.");
        }
    }
    Ok(())
}

/// A running Kafka source.
pub(super) struct KafkaSource {
    /// Reports when the consumer has drained, committed and closed.
    pub(super) consumer: oneshot::Receiver<Result<(), ConsumerError>>,
    /// The dispatcher task.
    pub(super) dispatcher: tokio::task::JoinHandle<()>,
    /// Every lane task (closed by the dispatcher when it stops).
    pub(super) lane_tasks: tokio_util::task::TaskTracker,
}

/// What the Kafka source is started with.
pub(super) struct Setup<'a> {
    pub(super) config: &'a Config,
    pub(super) kafka: &'a KafkaConfig,
    pub(super) clients: Clients,
    pub(super) routes: Vec<Arc<RouteEntry>>,
    pub(super) breakers: Vec<(Option<crate::config::TopicMatcher>, tokio::sync::watch::Receiver<bool>)>,
    pub(super) health: &'a Arc<Health>,
    pub(super) metrics: &'a Metrics,
}

/// Starts the offset tracker, the dispatcher and the consumer thread; returns once the consumer
/// has subscribed.
pub(super) fn start(setup: Setup<'_>, stop: CancellationToken) -> Result<KafkaSource, AppError> {
    let Setup { config, kafka, clients, routes, breakers, health, metrics } = setup;
    let tracker = Arc::new(OffsetTracker::new(config.max_uncommitted));
    let oldest = tracker.clone();
    metrics.set_oldest_source(Box::new(move || oldest.oldest_timestamps()));
    let (flow_tx, flow_rx) = mpsc::unbounded_channel();
    let limits = Limits::for_in_flight(config.max_in_flight);
    let backlog = Arc::new(dispatch::Backlog::default());
    let lane_tasks = tokio_util::task::TaskTracker::new();
    let (dispatch, dispatcher) = dispatch::spawn(dispatch::Setup {
        source: crate::record::Origin::Kafka,
        tasks: lane_tasks.clone(),
        routes,
        max_in_flight: config.max_in_flight,
        limits,
        backlog: backlog.clone(),
        ledger: tracker.clone(),
        metrics: metrics.clone(),
        flow: flow_tx,
    });
    let parts = consumer::Parts {
        tracker,
        dispatch,
        flow: flow_rx,
        breakers,
        health: health.clone(),
        metrics: metrics.clone(),
        shared: clients.shared,
        backlog,
        soft_limit: limits.soft_records(),
    };
    let consumer = consumer::spawn(kafka, config.shutdown_grace, parts, stop)?;
    Ok(KafkaSource { consumer, dispatcher, lane_tasks })
}

impl KafkaSource {
    /// Waits for the consumer to drain, commit and close.
    pub(super) async fn consumer_done(&mut self) -> Result<(), ConsumerError> {
        (&mut self.consumer).await.unwrap_or(Err(ConsumerError::Vanished))
    }

    /// Waits for the dispatcher, then for every lane task (at most five seconds: lane tasks
    /// abandoned at the end of the grace period stop at their next await).
    pub(super) async fn finish(self) {
        drop(self.dispatcher.await);
        self.lane_tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.lane_tasks.wait()).await.is_err() {
            tracing::warn!(running = self.lane_tasks.len(), "Lane tasks still running at shutdown.");
        }
    }
}
