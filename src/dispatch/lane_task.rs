//! One lane task: runs a lane's batch of records through the pipeline in order, stops at the
//! first record that does not finish (order), and hands finished offsets to the offset tracker in
//! small groups, never holding them back behind a record that has to wait.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::RouteEntry;
use super::lanes::LaneKey;
use crate::offsets::OffsetTracker;
use crate::pipeline::Cancel;
use crate::record::{Record, TopicPartition};
use crate::telemetry::metrics::TopicCounters;

/// Reported by a lane task when it stops.
#[derive(Debug)]
pub struct LaneDone {
    /// The lane.
    pub(super) key: LaneKey,
    /// Records the task was given (processed or not): they leave the buffer.
    pub(super) records: usize,
    /// Their bytes.
    pub(super) bytes: usize,
}

/// Finished offsets of a lane task, handed to the tracker in small groups (one lock each) while
/// records finish at once, and before any record that has to wait.
struct Completed<'a> {
    tracker: &'a OffsetTracker,
    tp: &'a TopicPartition,
    epoch: u64,
    offsets: Vec<i64>,
    since: Instant,
}

impl<'a> Completed<'a> {
    /// Groups at most this many completions or this much time.
    const MAX: usize = 64;
    const AGE: Duration = Duration::from_millis(100);

    fn new(tracker: &'a OffsetTracker, tp: &'a TopicPartition, epoch: u64) -> Self {
        Completed { tracker, tp, epoch, offsets: Vec::with_capacity(Self::MAX), since: Instant::now() }
    }

    fn push(&mut self, offset: i64) {
        if self.offsets.is_empty() {
            self.since = Instant::now();
        }
        self.offsets.push(offset);
        // Reading the clock costs as much as the rest: look every eighth record.
        if self.offsets.len() >= Self::MAX
            || (self.offsets.len().is_multiple_of(8) && self.since.elapsed() >= Self::AGE)
        {
            self.flush();
        }
    }

    /// Runs the next record's work. Work that does not finish at once (a network call, a
    /// backoff, a dead letter waiting for its archive) may take any time, so the completions held
    /// so far go to the tracker first: a record still running never holds back the commit of
    /// records that finished before it.
    async fn settle<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        if let std::task::Poll::Ready(output) = futures::poll!(work.as_mut()) {
            return output;
        }
        self.flush();
        work.await
    }

    fn flush(&mut self) {
        if !self.offsets.is_empty() {
            self.tracker.complete_many(self.tp, self.epoch, &self.offsets);
            self.offsets.clear();
        }
    }
}

/// One run of a lane: records in order until the batch ends or the partition is cancelled.
pub(super) struct LaneTask {
    pub(super) key: LaneKey,
    pub(super) batch: Vec<Record>,
    pub(super) epoch: u64,
    pub(super) cancel: Cancel,
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) counters: Arc<TopicCounters>,
    pub(super) route: Arc<RouteEntry>,
    pub(super) tracker: Arc<OffsetTracker>,
    pub(super) done: mpsc::UnboundedSender<LaneDone>,
}

impl LaneTask {
    pub(super) async fn run(self) {
        let records = self.batch.len();
        let bytes = self.batch.iter().map(Record::size).sum();
        let pipeline = &self.route.pipeline;
        let mut done = Completed::new(&self.tracker, &self.key.0, self.epoch);
        'lane: for chunk in self.batch.chunks(self.route.chunk.max(1)) {
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
                break; // not started: left for the next owner
            }
            if let [record] = chunk {
                let outcome = done.settle(pipeline.process(record, &self.counters, &self.cancel)).await;
                if !outcome.is_terminal() {
                    break; // keep order: nothing after an unfinished record runs
                }
                done.push(record.offset);
                continue;
            }
            // A batch's worth of consecutive records goes out together: one request when they
            // fit, never two requests at once (see `crate::delivery::batcher`).
            let outcomes = done
                .settle(futures::future::join_all(
                    chunk.iter().map(|r| pipeline.process(r, &self.counters, &self.cancel)),
                ))
                .await;
            let mut unfinished = false;
            for (record, outcome) in chunk.iter().zip(outcomes) {
                if outcome.is_terminal() {
                    done.push(record.offset);
                } else {
                    unfinished = true;
                }
            }
            if unfinished {
                break 'lane;
            }
        }
        // Completions must reach the tracker before the dispatcher hears the lane is done.
        done.flush();
        // The dispatcher outlives its lane tasks unless the whole process is stopping.
        drop(self.done.send(LaneDone { key: self.key, records, bytes }));
    }
}
