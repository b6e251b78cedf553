//! One lane task: runs a lane's batch of records through the pipeline in order, stops at the
//! first record that does not finish (order), and hands finished records to the source's ledger in
//! small groups, never holding them back behind a record that has to wait.
//!
//! A panic in one record's work is contained here: the record is dead-lettered as `panic` and
//! the lane goes on. If even that panics, the lane holds (nothing after the record runs in this
//! assignment) and says why. The dispatcher hears that the task ended however it ends, panics
//! included, because the report is sent when the task is dropped.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio::sync::mpsc;

use super::RouteEntry;
use super::lanes::LaneKey;
use crate::pipeline::{Cancel, Outcome};
use crate::record::{Record, TopicPartition};
use crate::source::Ledger;
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
    /// Why the lane must hold: a record could neither be processed nor dead-lettered.
    pub(super) held: Option<String>,
}

/// Sends the [`LaneDone`] when dropped: at the end of the task, or when a panic unwinds it.
struct Report {
    done: mpsc::UnboundedSender<LaneDone>,
    report: Option<LaneDone>,
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            // The dispatcher outlives its lane tasks unless the whole process is stopping.
            drop(self.done.send(report));
        }
    }
}

/// Finished records of a lane task, handed to the ledger in small groups (one lock each) while
/// records finish at once, and before any record that has to wait.
struct Completed<'a> {
    ledger: &'a dyn Ledger,
    tp: &'a TopicPartition,
    epoch: u64,
    offsets: Vec<i64>,
    since: Instant,
}

impl<'a> Completed<'a> {
    /// Groups at most this many completions or this much time.
    const MAX: usize = 64;
    const AGE: Duration = Duration::from_millis(100);

    fn new(ledger: &'a dyn Ledger, tp: &'a TopicPartition, epoch: u64) -> Self {
        Completed { ledger, tp, epoch, offsets: Vec::with_capacity(Self::MAX), since: Instant::now() }
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
    /// so far go to the ledger first: a record still running never holds back the commit of
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
            self.ledger.complete(self.tp, self.epoch, &self.offsets);
            self.offsets.clear();
        }
    }
}

/// One run of a lane: records in order until the batch ends or the partition is cancelled.
pub(super) struct LaneTask {
    pub(super) key: LaneKey,
    pub(super) batch: Vec<Record>,
    pub(super) cancel: Cancel,
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) counters: Arc<TopicCounters>,
    pub(super) route: Arc<RouteEntry>,
    pub(super) ledger: Arc<dyn Ledger>,
    pub(super) done: mpsc::UnboundedSender<LaneDone>,
}

impl LaneTask {
    pub(super) async fn run(self) {
        let records = self.batch.len();
        let bytes = self.batch.iter().map(Record::size).sum();
        let mut report = Report {
            done: self.done.clone(),
            report: Some(LaneDone { key: self.key.clone(), records, bytes, held: None }),
        };
        let mut done = Completed::new(&*self.ledger, &self.key.0, self.key.1);
        'lane: for chunk in self.batch.chunks(self.route.chunk.max(1)) {
            if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
                break; // not started: left for the next owner
            }
            if let [record] = chunk {
                match done.settle(self.contained(record)).await {
                    Ok(outcome) if outcome.is_terminal() => done.push(record.offset),
                    Ok(_) => break, // keep order: nothing after an unfinished record runs
                    Err(held) => {
                        if let Some(report) = report.report.as_mut() {
                            report.held = Some(held);
                        }
                        break;
                    }
                }
                continue;
            }
            // A batch's worth of consecutive records goes out together: one request when they
            // fit, never two requests at once (see `crate::delivery::batcher`).
            let outcomes =
                done.settle(futures::future::join_all(chunk.iter().map(|r| self.contained(r)))).await;
            let mut unfinished = false;
            for (record, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    Ok(outcome) if outcome.is_terminal() => done.push(record.offset),
                    Ok(_) => unfinished = true,
                    Err(held) => {
                        unfinished = true;
                        if let Some(report) = report.report.as_mut() {
                            report.held.get_or_insert(held);
                        }
                    }
                }
            }
            if unfinished {
                break 'lane;
            }
        }
        // Completions must reach the ledger before the dispatcher hears the lane is done.
        done.flush();
        drop(report);
    }

    /// One record's work with a panic contained: a record whose processing panics is
    /// dead-lettered as `panic`. `Err` says why the lane must hold: the dead letter panicked too.
    async fn contained(&self, record: &Record) -> Result<Outcome, String> {
        let pipeline = &self.route.pipeline;
        let work = std::panic::AssertUnwindSafe(pipeline.process(record, &self.counters, &self.cancel));
        let message = match work.catch_unwind().await {
            Ok(outcome) => return Ok(outcome),
            Err(payload) => crate::panics::message(payload.as_ref()),
        };
        if pipeline.panicked(record, &message) {
            return Err(format!(
                "more than {} records panicked within a minute (the last at {}@{}: {message}): a bug, not the records; the partition holds instead of dead-lettering them",
                crate::pipeline::PanicWindow::LIMIT,
                record.tp,
                record.offset
            ));
        }
        let letter = std::panic::AssertUnwindSafe(pipeline.dead_letter_panic(
            record,
            &self.counters,
            &self.cancel,
            &message,
        ));
        match letter.catch_unwind().await {
            Ok(outcome) => Ok(outcome),
            Err(payload) => {
                let again = crate::panics::message(payload.as_ref());
                pipeline.panicked(record, &again);
                Err(format!(
                    "the record at {}@{} panicked ({message}) and so did its dead letter ({again}): the partition holds until it is reassigned",
                    record.tp, record.offset
                ))
            }
        }
    }
}
