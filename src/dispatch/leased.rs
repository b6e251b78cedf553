//! The dispatcher of a leased source (SQS, Redis Streams, RabbitMQ): one partition per queue or
//! stream, each with the route that names it and the source's own dead letters, and the pause
//! requests kept as a set the source's receivers check ([`Paused`]).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Backlog, DispatchHandle, Limits, Paused, RouteEntry, Setup};
use crate::config::{Ordering, TopicMatcher};
use crate::pipeline::DeadLetterSink;
use crate::record::Origin;
use crate::source::Ledger;
use crate::telemetry::metrics::Metrics;

/// What a leased source needs from the rest of the process, with its own settings `C`.
pub struct SourceSetup<C> {
    /// The source's settings (`SQS_*`, `REDIS_*`, `AMQP_*`).
    pub config: C,
    /// `SIDECAR_MAX_IN_FLIGHT`: messages in flight per queue or stream, and lanes at once.
    pub max_in_flight: usize,
    /// `SIDECAR_SHUTDOWN_GRACE`.
    pub grace: std::time::Duration,
    /// The routes in order, the default last: the first whose matcher matches a queue's or
    /// stream's name gives its pipeline (target, retries, breaker) and chunk.
    pub routes: Vec<Arc<RouteEntry>>,
    /// The dead-letter archive, if one is configured.
    pub archive: Option<crate::archive::Archive>,
    /// Readiness.
    pub health: Arc<crate::health::Health>,
    /// Metrics.
    pub metrics: Metrics,
}

/// A running leased source: resolves when it has drained, acknowledged what finished and
/// released the rest.
pub struct Running {
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Running {
    /// A source that reports on `done` when it has stopped.
    pub fn new(done: tokio::sync::oneshot::Receiver<()>) -> Self {
        Running { done }
    }

    /// Waits until the source has stopped.
    pub async fn wait(self) {
        drop(self.done.await);
    }
}

/// One queue or stream of a leased source.
pub struct Partition {
    /// Its name (the topic of its records).
    pub name: String,
    /// Where its dead letters go.
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Its order when the source decides it (an SQS queue: message groups or none); `None`: the
    /// route's.
    pub ordering: Option<Ordering>,
}

/// Each partition's route: the first of `routes` whose matcher matches its name (the default
/// route, last, matches all), with the partition's dead letters and order.
pub fn routes_for(partitions: Vec<Partition>, routes: &[Arc<RouteEntry>]) -> Vec<Arc<RouteEntry>> {
    partitions
        .into_iter()
        .filter_map(|p| {
            let route = routes.iter().find(|r| r.matcher.as_ref().is_none_or(|m| m.matches(&p.name)))?;
            Some(Arc::new(RouteEntry {
                matcher: Some(TopicMatcher::Exact(p.name)),
                pipeline: Arc::new(route.pipeline.with_dead_letters(p.dead_letters)),
                ordering: p.ordering.unwrap_or(route.ordering),
                chunk: route.chunk,
            }))
        })
        .collect()
}

/// A running leased-source dispatcher.
pub struct Leased {
    /// Commands to it.
    pub handle: DispatchHandle,
    /// The dispatcher task.
    pub task: JoinHandle<()>,
    /// Its lane tasks.
    pub tasks: tokio_util::task::TaskTracker,
    /// Its pause requests, for the receivers.
    pub paused: Arc<Paused>,
}

/// Starts the dispatcher of a leased source of kind `source`.
pub fn spawn(
    source: Origin,
    routes: Vec<Arc<RouteEntry>>,
    max_in_flight: usize,
    ledger: Arc<dyn Ledger>,
    metrics: Metrics,
) -> Leased {
    let (flow_tx, mut flow_rx) = mpsc::unbounded_channel();
    let tasks = tokio_util::task::TaskTracker::new();
    let (handle, task) = super::spawn(Setup {
        source,
        routes,
        max_in_flight,
        limits: Limits::for_in_flight(max_in_flight),
        ledger,
        metrics,
        flow: flow_tx,
        backlog: Arc::new(Backlog::default()),
        tasks: tasks.clone(),
    });
    let paused = Arc::new(Paused::default());
    tokio::spawn({
        let paused = paused.clone();
        async move {
            while let Some(flow) = flow_rx.recv().await {
                paused.apply(flow);
            }
        }
    });
    Leased { handle, task, tasks, paused }
}

/// Waits until queue (or stream) `tp`, consumed under `epoch`, may take more: fewer than
/// `max_in_flight` of its messages in the ledger and no pause; how many, or `None` on `stop`.
pub async fn room(
    ledger: &crate::source::leases::LeaseLedger,
    tp: &crate::record::TopicPartition,
    epoch: u64,
    max_in_flight: usize,
    paused: &Paused,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<usize> {
    loop {
        let completed = ledger.room();
        let mut completed = std::pin::pin!(completed);
        completed.as_mut().enable();
        let in_flight = ledger.in_flight(tp);
        if in_flight < max_in_flight && !paused.is_paused(tp, epoch) {
            return Some(max_in_flight - in_flight);
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = completed => {}
            // A pause ends without a completion.
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}

/// When the parts of a leased source's stop must be done.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// The acknowledgements of what finished (deletes, XACK, basic.ack).
    pub acknowledgements: tokio::time::Instant,
    /// The release of the rest, the end of the grace.
    pub end: tokio::time::Instant,
}

/// The first half of a leased source's stop, within `grace` from now: the receivers end, the
/// dispatcher drains as Kafka's does (the grace less two seconds) and the ledger closes (a
/// completion after that is left to the lease). Then come the acknowledgements of what
/// finished (a missed one is a duplicate: they go first, with at least a second even when the
/// drain took everything) and the release of the rest (a missed one is only a delay).
pub async fn stop(
    receivers: Vec<JoinHandle<()>>,
    dispatcher: Leased,
    ledger: &crate::source::leases::LeaseLedger,
    grace: std::time::Duration,
    source: &str,
) -> Deadlines {
    let stopped = tokio::time::Instant::now();
    let end = stopped + grace.saturating_sub(std::time::Duration::from_millis(500));
    let drain_end = stopped + crate::shutdown::drain_deadline(grace);
    for receiving in receivers {
        // A receiver ends at once on stop; should one not, the drain still starts in time.
        drop(tokio::time::timeout_at(drain_end, receiving).await);
    }
    let Leased { handle, task, tasks, .. } = dispatcher;
    super::drain(&handle, task, tasks, drain_end, source).await;
    ledger.close();
    let acknowledgements = end
        .checked_sub(std::time::Duration::from_millis(300))
        .unwrap_or(end)
        .max(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
    Deadlines { acknowledgements, end }
}
