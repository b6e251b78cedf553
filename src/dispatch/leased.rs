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
