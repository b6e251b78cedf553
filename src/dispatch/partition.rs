//! One assignment of a partition as the dispatcher sees it.
//!
//! An assignment's lifecycle is named by types: a [`Partition`] is *consuming* from the assign
//! until a revoke, a newer assignment or shutdown turns it, by value, into [`Draining`]:
//! records arriving for it are dropped, what has not started is dropped, and it is *complete*
//! (dropped) when no lane task of it runs any more. The dispatcher keeps the consuming
//! assignments by partition and the draining ones apart, so a draining assignment can never be
//! mistaken for a consuming one.
//! Each assignment carries the offset tracker's epoch, so a lane task of an old assignment that
//! outlives its drain can never touch a newer assignment of the same partition.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::RouteEntry;
use crate::health::Latch;
use crate::pipeline::Cancel;
use crate::record::TopicPartition;
use crate::telemetry::metrics::TopicCounters;

/// One assignment of a partition, consuming.
pub(super) struct Partition {
    /// The partition.
    pub(super) tp: TopicPartition,
    /// Offset tracker epoch of this assignment.
    pub(super) epoch: u64,
    /// Cancellation of this assignment's records.
    pub(super) cancel: Cancel,
    /// Records buffered (queued or handed to a lane task).
    pub(super) buffered: usize,
    /// Their bytes.
    pub(super) bytes: usize,
    /// Lane tasks running.
    pub(super) active: usize,
    /// Over its buffer bound.
    pub(super) over_buffer: bool,
    /// Too far ahead of its commit point (`SIDECAR_MAX_UNCOMMITTED`).
    pub(super) over_window: bool,
    /// Whether we asked the consumer to pause it.
    pub(super) paused: bool,
    /// Set when draining starts, read by its lane tasks before each record (cheaper than the
    /// token).
    pub(super) stopped: Arc<AtomicBool>,
    /// Counters of the topic.
    pub(super) counters: Arc<TopicCounters>,
    /// The route of the topic: pipeline, ordering, chunk.
    pub(super) route: Arc<RouteEntry>,
    /// Readiness problems of this assignment (a record held after a panic); cleared when the
    /// assignment ends.
    pub(super) held: Vec<Latch>,
}

impl Partition {
    /// A consuming assignment.
    pub(super) fn new(
        tp: TopicPartition,
        epoch: u64,
        cancel: Cancel,
        counters: Arc<TopicCounters>,
        route: Arc<RouteEntry>,
    ) -> Self {
        Partition {
            tp,
            epoch,
            cancel,
            buffered: 0,
            bytes: 0,
            active: 0,
            over_buffer: false,
            over_window: false,
            paused: false,
            stopped: Arc::default(),
            counters,
            route,
            held: Vec::new(),
        }
    }

    /// Starts draining: lane tasks stop before their next record, waiting records give up.
    pub(super) fn start_draining(self) -> Draining {
        self.stopped.store(true, std::sync::atomic::Ordering::Release);
        self.cancel.soft.cancel();
        Draining(self)
    }

    /// Whether it should be paused now.
    pub(super) fn wants_pause(&self) -> bool {
        self.over_buffer || self.over_window
    }
}

/// An assignment being drained: no new records, its running lanes finishing; complete when
/// none runs.
pub(super) struct Draining(pub(super) Partition);
