//! The consumer: one rdkafka `StreamConsumer` in the consumer group, polled without pause by
//! one task on its own thread.
//!
//! The poll loop copies each message into a [`Record`] and hands batches to the dispatcher. It
//! never stops polling for back-pressure: it pauses and resumes partitions as the dispatcher
//! and the circuit breaker ask, so the member stays in the group and keeps its token fresh.
//! Offsets are never stored or committed by librdkafka itself: the loop commits the offset
//! tracker's watermarks every second, and synchronously on revoke and shutdown.
//!
//! The loop runs on a dedicated thread with a current-thread runtime because librdkafka's
//! rebalance callback blocks while revoked partitions drain; that must not block a worker of
//! the runtime that runs the deliveries.

mod context;
mod pause;
mod record;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::TopicMatcher;
use tokio_util::sync::CancellationToken;

pub use context::ConsumerContext;
use pause::PauseState;
pub use record::{TopicNames, read_headers, to_record};

use crate::config::{KafkaConfig, StartFrom};
use crate::dispatch::{Command, DispatchHandle, Flow};
use crate::health::Health;
use crate::kafka;
use crate::offsets::{self, OffsetTracker};
use crate::record::TopicPartition;
use crate::telemetry::metrics::Metrics;

/// How often the watermarks are committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Longest the poll loop leaves records in librdkafka's queue while the dispatcher is full.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// The same while the dispatcher has idle slots: the records it holds belong to too few lanes,
/// so the next ones, likely of other partitions, are taken soon (see [`crate::dispatch::Backlog`]).
const IDLE_HOLD: Duration = Duration::from_millis(10);

/// Most records handed to the dispatcher in one batch.
const POLL_BATCH: usize = 512;

/// Why the consumer could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// librdkafka rejected the configuration or the subscription.
    #[error("cannot start the Kafka consumer: {0}")]
    Create(#[from] rdkafka::error::KafkaError),
    /// The consumer thread could not be started.
    #[error("cannot start the consumer thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The consumer thread ended without reporting.
    #[error("the consumer thread stopped unexpectedly")]
    Vanished,
}

/// The librdkafka consumer settings.
pub fn consumer_config(kafka_config: &KafkaConfig) -> ClientConfig {
    let mut c = kafka::client_config(kafka_config, "msk-sidecar");
    c.set("group.id", &kafka_config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match kafka_config.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        )
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        // Drain backlogs without librdkafka's default 1 s fetch back-off when its queue fills,
        // and keep its pre-fetch queue small: the dispatcher buffers what runs.
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.min.messages", "20000")
        .set("queued.max.messages.kbytes", "16384");
    kafka::apply_passthrough(&mut c, kafka_config);
    c
}

/// How long a revoke waits for the revoked partitions' attempts in progress: as long as a
/// shutdown does (so a delivery timeout that fits the shutdown drain fits this one), but within
/// two thirds of `max.poll.interval.ms`, the group's rebalance timeout: the member keeps
/// heartbeating while it drains (librdkafka heartbeats from its own thread), and the group
/// waits for it at most that long.
pub fn revoke_drain(kafka: &KafkaConfig, grace: Duration) -> Duration {
    let max_poll_interval = kafka
        .librdkafka
        .iter()
        .find(|p| p.name == "max.poll.interval.ms")
        .and_then(|p| p.value.parse::<u64>().ok())
        .map_or(Duration::from_secs(300), Duration::from_millis);
    crate::shutdown::drain_deadline(grace).min(max_poll_interval * 2 / 3)
}

/// Everything the poll loop works with.
pub struct Parts {
    /// Watermarks.
    pub tracker: Arc<OffsetTracker>,
    /// The dispatcher.
    pub dispatch: DispatchHandle,
    /// Pause/resume requests from the dispatcher.
    pub flow: mpsc::UnboundedReceiver<Flow>,
    /// Each route's circuit breaker (open = pause that route's partitions), routes in order.
    pub breakers: Vec<(Option<TopicMatcher>, watch::Receiver<bool>)>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Metrics,
    /// Token signing and error routing.
    pub shared: kafka::Shared,
    /// Records the dispatcher holds.
    pub backlog: Arc<crate::dispatch::Backlog>,
    /// Above this many buffered records, records wait in librdkafka's queue.
    pub soft_limit: usize,
}

/// Starts the consumer thread. Returns once the consumer is created and subscribed; the
/// receiver reports when it has drained, committed and closed.
pub fn spawn(
    kafka: &KafkaConfig,
    grace: Duration,
    parts: Parts,
    shutdown: CancellationToken,
) -> Result<oneshot::Receiver<Result<(), ConsumerError>>, ConsumerError> {
    let client_config = consumer_config(kafka);
    let topics = kafka.topics.clone();
    let drain_timeout = revoke_drain(kafka, grace);
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new().name("msk-sidecar-consumer".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                drop(started_tx.send(Err(ConsumerError::Thread(err))));
                return;
            }
        };
        runtime.block_on(async move {
            let context = ConsumerContext {
                shared: parts.shared.clone(),
                tracker: parts.tracker.clone(),
                dispatch: parts.dispatch.clone(),
                health: parts.health.clone(),
                metrics: parts.metrics.clone(),
                drain_timeout,
                assignment_changed: AtomicBool::new(false),
                newly_assigned: std::sync::Mutex::default(),
            };
            let consumer: StreamConsumer<ConsumerContext> = match client_config.create_with_context(context) {
                Ok(consumer) => consumer,
                Err(err) => {
                    drop(started_tx.send(Err(ConsumerError::Create(err))));
                    return;
                }
            };
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if let Err(err) = consumer.subscribe(&names) {
                drop(started_tx.send(Err(ConsumerError::Create(err))));
                return;
            }
            drop(started_tx.send(Ok(())));
            let drained = poll_loop(&consumer, parts, shutdown).await;
            shut_down(&consumer, drained, grace).await;
            drop(consumer);
            drop(done_tx.send(Ok(())));
        });
    })?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok(done_rx),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(ConsumerError::Vanished),
    }
}

/// Polls until shutdown; returns the signal of the shutdown drain it started.
async fn poll_loop(
    consumer: &StreamConsumer<ConsumerContext>,
    mut parts: Parts,
    shutdown: CancellationToken,
) -> Option<oneshot::Receiver<()>> {
    let mut topics = TopicNames::default();
    let mut stream = consumer.stream();
    let mut commit_tick = tokio::time::interval(COMMIT_INTERVAL);
    let mut reconcile_tick = tokio::time::interval(Duration::from_millis(100));
    let mut pauses = PauseState::new(parts.metrics.clone(), std::mem::take(&mut parts.breakers));
    // Above the soft level, records wait in librdkafka's queue until the dispatcher catches up,
    // but never longer than a second at a time: polling must go on.
    let mut full_since: Option<tokio::time::Instant> = None;
    loop {
        let full = parts.backlog.records() >= parts.soft_limit;
        let hold = if parts.backlog.has_idle_slots() { IDLE_HOLD } else { MAX_HOLD };
        let wait_until = match (full, full_since) {
            (false, _) => {
                full_since = None;
                None
            }
            (true, Some(since)) => Some(since + hold),
            (true, None) => {
                let now = tokio::time::Instant::now();
                full_since = Some(now);
                Some(now + hold)
            }
        };
        let take = wait_until.is_none_or(|until| tokio::time::Instant::now() >= until);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(flow) = parts.flow.recv() => {
                pauses.apply(consumer, flow);
                pauses.reconcile(consumer);
            }
            _ = commit_tick.tick() => commit(consumer, &parts.tracker, CommitMode::Async),
            _ = reconcile_tick.tick() => {
                if consumer.context().assignment_changed.swap(false, std::sync::atomic::Ordering::AcqRel) {
                    pauses.reassigned(consumer);
                } else if pauses.breakers_changed() {
                    pauses.reconcile(consumer);
                }
            }
            () = parts.backlog.drained(), if !take => {}
            () = tokio::time::sleep_until(wait_until.unwrap_or_else(tokio::time::Instant::now)), if !take => {}
            item = stream.next(), if take => match item {
                Some(Ok(message)) => {
                    full_since = None;
                    // A rebalance callback can run inside any poll: records polled before it may
                    // belong to an assignment it ended, so a batch never spans one. Each batch
                    // says when it was polled (the last assignment epoch issued by then).
                    let mut polled_at = parts.tracker.last_epoch();
                    let mut batch = Vec::with_capacity(64);
                    batch.push(to_record(&message, &mut topics));
                    drop(message);
                    while batch.len() < POLL_BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(message))) => {
                                let now = parts.tracker.last_epoch();
                                if now != polled_at {
                                    let before = std::mem::replace(&mut batch, Vec::with_capacity(64));
                                    parts.dispatch.send(Command::Records { records: before, polled_at });
                                    polled_at = now;
                                }
                                batch.push(to_record(&message, &mut topics));
                            }
                            Some(Some(Err(err))) => consumer_error(consumer, &parts.shared, &err),
                            _ => break,
                        }
                    }
                    parts.dispatch.send(Command::Records { records: batch, polled_at });
                    // Records arriving prove the brokers accept this consumer (again).
                    parts.shared.authentication.clear();
                }
                Some(Err(err)) => consumer_error(consumer, &parts.shared, &err),
                None => break,
            },
        }
    }
    drop(stream);
    let (done, drained) = oneshot::channel();
    parts.health.mark_stopping();
    parts.dispatch.send(Command::Shutdown { done }).then_some(drained)
}

/// An error from the poll: a fatal one (the client cannot go on) stops the sidecar.
fn consumer_error(
    consumer: &StreamConsumer<ConsumerContext>,
    shared: &kafka::Shared,
    err: &rdkafka::error::KafkaError,
) {
    match consumer.client().fatal_error() {
        Some((code, reason)) => shared.fatal.raise(format!("{code:?}: {reason}")),
        None => tracing::warn!(error = %err, "Consumer error."),
    }
}

/// Waits for the shutdown drain (within the grace period), commits, and leaves the group.
async fn shut_down(
    consumer: &StreamConsumer<ConsumerContext>,
    drained: Option<oneshot::Receiver<()>>,
    grace: Duration,
) {
    let deadline = crate::shutdown::drain_deadline(grace);
    if let Some(mut drained) = drained {
        match tokio::time::timeout(deadline, &mut drained).await {
            Ok(_) => tracing::info!("In-flight records finished."),
            Err(_) => {
                tracing::warn!(grace = ?grace, "Shutdown grace over: abandoning records still in flight; they will be delivered again.");
                consumer.context().dispatch.send(Command::AbortAll);
                let _ = tokio::time::timeout(Duration::from_secs(1), drained).await;
            }
        }
    }
    commit(consumer, &consumer.context().tracker, CommitMode::Sync);
    consumer.unsubscribe();
}

fn commit(consumer: &StreamConsumer<ConsumerContext>, tracker: &OffsetTracker, mode: CommitMode) {
    let commits = tracker.take_commits(None);
    for list in context::commit_lists(&commits) {
        let sent = context::partitions_of(&list);
        let sent: Vec<&(TopicPartition, offsets::Commit)> =
            commits.iter().filter(|(tp, _)| sent.contains(tp)).collect();
        match consumer.commit(&list, mode) {
            // An asynchronous commit is only queued here: its result arrives in the commit callback.
            Ok(()) if matches!(mode, CommitMode::Sync) => {
                sent.iter()
                    .for_each(|(tp, c)| tracker.commit_confirmed(tp, c.offset, Some(c.metadata.clone())));
            }
            Ok(()) => {}
            Err(err) => {
                consumer.context().metrics.commit_failed();
                context::report_maps_refused(tracker, &err);
                sent.iter().for_each(|(tp, c)| tracker.commit_failed(tp, c.offset));
                match mode {
                    // The shutdown's commit: the revoke that follows tries once more.
                    CommitMode::Sync => {
                        tracing::warn!(error = %err, "Final offset commit failed: the revoke commits once more; what neither commits is delivered again.")
                    }
                    CommitMode::Async => {
                        tracing::warn!(error = %err, "Offset commit failed: it is retried at the next commit.")
                    }
                }
            }
        }
    }
}
