//! Dispatch: decides which records may be processed concurrently, bounds the work, and drains
//! partitions on revoke and shutdown.
//!
//! Records are queued in *lanes*; a lane is processed by one task at a time, in offset order.
//! The ordering mode picks the lane: `partition` (one lane per partition), `key` (one lane per
//! key within a partition; keyless records share the partition's lane) or `none` (one lane per
//! record). At most `SIDECAR_MAX_IN_FLIGHT` lanes run at once. Finished records are completed in
//! the source's [`Ledger`] directly by the lane task (for Kafka the offset tracker, so the
//! commit watermark follows them); records the ledger says an earlier owner finished (the
//! offset map) are completed without running.
//!
//! Back-pressure never stops the poll loop: when buffered records of a partition (or of all
//! partitions) pass a bound, or a partition runs `SIDECAR_MAX_UNCOMMITTED` offsets ahead of its
//! commit point, the dispatcher asks the consumer to pause fetching ([`Flow`]) and to resume
//! when the buffer has drained to half.
//!
//! The dispatcher is one task that owns all lane state; the consumer talks to it through
//! [`DispatchHandle`] and lane tasks report back on a channel, so no lock guards the lanes.

pub mod leased;
mod paused;
pub use paused::Paused;
mod lane_task;
mod lanes;
mod partition;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{Ordering, TopicMatcher};
use crate::pipeline::Pipeline;
use crate::record::{Record, TopicPartition};
use crate::source::Ledger;
use crate::telemetry::metrics::Metrics;
use lane_task::LaneDone;
use lanes::Dispatcher;

/// Signals a drain finished (sent from the dispatcher task, awaited in a librdkafka callback
/// thread, so a std channel rather than an async one).
pub type DrainDone = std::sync::mpsc::SyncSender<()>;

/// What the consumer tells the dispatcher.
#[derive(Debug)]
pub enum Command {
    /// Partitions assigned, with the offset tracker's epoch of each assignment.
    Assigned(Vec<(TopicPartition, u64)>),
    /// Records in partition order, as polled.
    Records {
        /// The records.
        records: Vec<Record>,
        /// The newest assignment epoch when they were polled: a record polled before its
        /// partition's current assignment began belongs to an earlier one and is dropped (the
        /// current one fetches it again from the committed offset).
        polled_at: u64,
    },
    /// Stop these partitions: drop what has not started, let what runs finish, then signal.
    Revoke {
        /// The revoked partitions.
        tps: Vec<TopicPartition>,
        /// Signalled when nothing of them runs any more.
        done: DrainDone,
    },
    /// Cancel everything still running for these partitions (the drain deadline passed).
    Abort(Vec<TopicPartition>),
    /// Drain every partition, signal, and stop the dispatcher.
    Shutdown {
        /// Signalled when nothing runs any more.
        done: oneshot::Sender<()>,
    },
    /// Cancel everything still running (the shutdown grace is over).
    AbortAll,
}

/// What the dispatcher asks of the consumer's fetching. Per-partition requests name the
/// assignment (its epoch): a request about an earlier assignment no longer applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Too much buffered for this partition, or too far ahead of its commit point.
    Pause(TopicPartition, u64),
    /// Back under its bounds.
    Resume(TopicPartition, u64),
    /// Too much buffered overall.
    PauseAll,
    /// The overall buffer drained.
    ResumeAll,
}

/// Buffer bounds derived from the in-flight limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Buffered records of one partition before it is paused.
    pub partition_records: usize,
    /// Buffered bytes of one partition before it is paused.
    pub partition_bytes: usize,
    /// Buffered records overall before every partition is paused.
    pub total_records: usize,
    /// Buffered bytes overall before every partition is paused.
    pub total_bytes: usize,
}

impl Limits {
    /// Bounds that keep `max_in_flight` lanes busy while holding memory to a few tens of MiB.
    pub fn for_in_flight(max_in_flight: usize) -> Self {
        let total_records = (64 * max_in_flight).max(65_536);
        Limits {
            partition_records: total_records / 4,
            partition_bytes: 16 << 20,
            total_records,
            total_bytes: 64 << 20,
        }
    }

    /// Buffered records at which the poll loop stops taking more for a while (see [`Backlog`]).
    pub fn soft_records(&self) -> usize {
        (self.total_records / 8).max(1)
    }
}

/// What the dispatcher holds, shared with the poll loop.
///
/// Two levels of back-pressure: above the soft level the poll loop leaves records in
/// librdkafka's own (bounded) queue and waits for the dispatcher to catch up, for at most a
/// second at a time, so a fast pipeline never pauses (pausing discards librdkafka's prefetched
/// records, which it then fetches again). A slow pipeline keeps filling up to the hard limits
/// ([`Limits`]), where partitions are paused and the poll loop keeps polling, so the member
/// stays in the group.
///
/// The soft level alone would starve a latency-bound pipeline: librdkafka's queue hands out a
/// partition's records together, so the soft level can be filled by a few partitions whose
/// lanes run one record at a time while the in-flight limit has room for more. The dispatcher
/// therefore also says when it has *idle slots* (fewer lanes running than allowed, none
/// waiting, and new records could start one: a partition-ordered partition with nothing
/// buffered, or a key-ordered or unordered route); the poll loop then holds records only
/// briefly. When every partition already has work, more records would only take memory.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Records buffered in the dispatcher (queued or running).
    records: std::sync::atomic::AtomicUsize,
    /// Fewer lanes run than the in-flight limit allows, no lane waits for a slot, and new records
    /// could start a lane.
    idle_slots: std::sync::atomic::AtomicBool,
    /// Wakes the poll loop when records finish.
    drained: tokio::sync::Notify,
}

impl Backlog {
    /// Records buffered now.
    pub fn records(&self) -> usize {
        self.records.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the dispatcher could run more lanes than it has work for.
    pub fn has_idle_slots(&self) -> bool {
        self.idle_slots.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_idle_slots(&self, idle: bool) {
        self.idle_slots.store(idle, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until some buffered records finish.
    pub async fn drained(&self) {
        self.drained.notified().await;
    }

    pub(crate) fn add(&self, count: usize) {
        self.records.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, count: usize) {
        self.records.fetch_sub(count, std::sync::atomic::Ordering::Relaxed);
        self.drained.notify_one();
    }
}

/// The consumer's side of the dispatcher.
#[derive(Clone, Debug)]
pub struct DispatchHandle {
    /// Commands to the dispatcher task.
    tx: mpsc::UnboundedSender<Command>,
}

impl DispatchHandle {
    /// Sends a command; false if the dispatcher has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.tx.send(command).is_ok()
    }
}

/// How the records of the topics a route matches are processed.
pub struct RouteEntry {
    /// The topics (`None`: every topic; the default route, last).
    pub matcher: Option<TopicMatcher>,
    /// Per-record processing.
    pub pipeline: Arc<Pipeline>,
    /// Ordering mode.
    pub ordering: Ordering,
    /// Records of one lane processed together (a batch's worth; 1 without batching).
    pub chunk: usize,
}

/// Everything the dispatcher needs.
pub struct Setup {
    /// Routes in order; the first that matches a topic wins, the last matches everything.
    pub routes: Vec<Arc<RouteEntry>>,
    /// Lanes that may run at once.
    pub max_in_flight: usize,
    /// Buffer bounds.
    pub limits: Limits,
    /// The source's ledger: where records are tracked and completed.
    pub ledger: Arc<dyn Ledger>,
    /// The kind of source whose records this dispatcher runs (metrics are labelled by it).
    pub source: crate::record::Origin,
    /// Metrics.
    pub metrics: Metrics,
    /// Pause/resume requests to the consumer.
    pub flow: mpsc::UnboundedSender<Flow>,
    /// Buffered records, shared with the poll loop.
    pub backlog: Arc<Backlog>,
    /// Where lane tasks are spawned; closed when the dispatcher stops, so `wait` on it returns
    /// once every lane task has ended.
    pub tasks: tokio_util::task::TaskTracker,
}

/// Starts the dispatcher task.
pub fn spawn(setup: Setup) -> (DispatchHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher::new(setup, done_tx);
    let task = tokio::spawn(dispatcher.run(rx, done_rx));
    (DispatchHandle { tx }, task)
}

/// Drains a leased source's dispatcher on stop (SQS, Redis): every lane finishes what it
/// holds until `drain_end`, what is still in delivery then is abandoned (its lease is released
/// with the rest), and the lane tasks end. `source` names the source in the log.
pub async fn drain(
    dispatch: &DispatchHandle,
    dispatcher: JoinHandle<()>,
    tasks: tokio_util::task::TaskTracker,
    drain_end: tokio::time::Instant,
    source: &str,
) {
    let (drained, drained_rx) = tokio::sync::oneshot::channel();
    dispatch.send(Command::Shutdown { done: drained });
    if tokio::time::timeout_at(drain_end, drained_rx).await.is_err() {
        tracing::warn!(
            source,
            "Messages still in delivery at the end of the drain: released for another consumer."
        );
        dispatch.send(Command::AbortAll);
    }
    drop(dispatcher.await);
    tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(1), tasks.wait()).await.is_err() {
        tracing::warn!(source, running = tasks.len(), "Lane tasks still running at shutdown.");
    }
}

/// Receives lane completions; kept here so `lanes` only sees the type.
pub(crate) type DoneReceiver = mpsc::UnboundedReceiver<LaneDone>;

#[cfg(test)]
mod tests;
