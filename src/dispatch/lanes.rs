//! The dispatcher task's state: assignments, lanes, the ready queue, drains and back-pressure.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::lane_task::{LaneDone, LaneTask};
use super::partition::{Draining, Partition};
use super::{Command, DoneReceiver, DrainDone, Flow, Limits, RouteEntry};
use crate::config::Ordering;
use crate::pipeline::Cancel;
use crate::record::{Record, TopicPartition};
use crate::source::Ledger;
use crate::telemetry::metrics::Metrics;

/// Records handed to one lane task at most.
const BATCH: usize = 128;

/// A lane: the partition, the epoch of its assignment, and a lane number within it.
pub(super) type LaneKey = (TopicPartition, u64, u64);

/// A queue of records processed one at a time.
#[derive(Default)]
struct Lane {
    /// Records not yet handed to a task.
    queue: VecDeque<Record>,
    /// Whether a task runs this lane.
    running: bool,
    /// Whether the lane sits in the ready queue.
    ready: bool,
    /// A record of the lane could neither be processed nor dead-lettered: nothing after it may
    /// run in this assignment.
    held: bool,
}

/// A pending drain.
struct Drain {
    /// Assignments (partition, epoch) that must have no running task.
    parts: Vec<(TopicPartition, u64)>,
    /// Whom to tell.
    done: DrainSignal,
}

enum DrainSignal {
    Revoke(DrainDone),
    Shutdown(oneshot::Sender<()>),
}

/// The dispatcher task's state.
pub(super) struct Dispatcher {
    routes: Vec<Arc<RouteEntry>>,
    max_in_flight: usize,
    limits: Limits,
    ledger: Arc<dyn Ledger>,
    metrics: Metrics,
    /// The kind of source (the `source` label).
    source: crate::record::Origin,
    flow: mpsc::UnboundedSender<Flow>,
    backlog: Arc<super::Backlog>,
    done_tx: mpsc::UnboundedSender<LaneDone>,
    /// Every lane task, so that shutdown knows when all of them have ended.
    tasks: TaskTracker,
    /// Parent of every assignment's cancellation.
    root: Cancel,
    /// The consuming assignment of each partition.
    partitions: FxHashMap<TopicPartition, Partition>,
    /// Assignments being drained (revoked, or shutting down) until their lanes end.
    draining: Vec<Draining>,
    lanes: FxHashMap<LaneKey, Lane>,
    /// Lanes with queued records waiting for a free slot, oldest first.
    ready: VecDeque<LaneKey>,
    /// Lane tasks running.
    running: usize,
    total_records: usize,
    total_bytes: usize,
    /// Whether every partition is paused for the overall bound.
    all_paused: bool,
    drains: Vec<Drain>,
    /// Set once shutdown starts.
    stopping: bool,
}

impl Dispatcher {
    pub(super) fn new(setup: super::Setup, done_tx: mpsc::UnboundedSender<LaneDone>) -> Self {
        Dispatcher {
            routes: setup.routes,
            max_in_flight: setup.max_in_flight.max(1),
            limits: setup.limits,
            ledger: setup.ledger,
            metrics: setup.metrics,
            source: setup.source,
            flow: setup.flow,
            backlog: setup.backlog,
            done_tx,
            tasks: setup.tasks,
            root: Cancel::default(),
            partitions: FxHashMap::default(),
            draining: Vec::new(),
            lanes: FxHashMap::default(),
            ready: VecDeque::new(),
            running: 0,
            total_records: 0,
            total_bytes: 0,
            all_paused: false,
            drains: Vec::new(),
            stopping: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut done: DoneReceiver,
    ) {
        loop {
            tokio::select! {
                biased;
                Some(lane) = done.recv() => self.on_lane_done(lane),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        self.root.soft.cancel();
                        self.root.hard.cancel();
                        break;
                    }
                },
            }
            if self.stopping && self.running == 0 && self.drains.is_empty() {
                break;
            }
        }
        self.tasks.close();
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Assigned(tps) => {
                for (tp, epoch) in tps {
                    let Some(route) = self.route_for(&tp.topic) else { continue };
                    let counters = self.metrics.counters(self.source, &tp.topic);
                    let partition = Partition::new(tp.clone(), epoch, self.root.child(), counters, route);
                    // A consuming assignment it replaces (a revoke librdkafka never reported)
                    // drains like a revoked one.
                    if let Some(old) = self.partitions.insert(tp, partition) {
                        self.retire(old);
                    }
                }
            }
            Command::Records { records, polled_at } => self.on_records(records, polled_at),
            Command::Revoke { tps, done } => self.drain(&tps, DrainSignal::Revoke(done)),
            Command::Abort(tps) => {
                let all = self.partitions.values().chain(self.draining.iter().map(|d| &d.0));
                all.filter(|p| tps.contains(&p.tp)).for_each(|p| p.cancel.hard.cancel());
            }
            Command::Shutdown { done } => {
                self.stopping = true;
                let tps: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
                self.drain(&tps, DrainSignal::Shutdown(done));
            }
            Command::AbortAll => self.root.hard.cancel(),
        }
    }

    fn route_for(&self, topic: &str) -> Option<Arc<RouteEntry>> {
        self.routes.iter().find(|r| r.matcher.as_ref().is_none_or(|m| m.matches(topic))).cloned()
    }

    fn on_records(&mut self, records: Vec<Record>, polled_at: u64) {
        let mut touched: Vec<TopicPartition> = Vec::new();
        let mut records = records.into_iter().peekable();
        let mut run: Vec<Record> = Vec::new();
        let mut marks: Vec<(i64, Option<i64>)> = Vec::new();
        while let Some(record) = records.next() {
            // Records come in runs per partition: track each run under one lock.
            let same_next = records.peek().is_some_and(|next| next.tp == record.tp);
            run.push(record);
            if same_next {
                continue;
            }
            let tp = run[0].tp.clone();
            let Some(partition) = self.partitions.get_mut(&tp).filter(|p| p.epoch <= polled_at) else {
                // Not ours (any more), or polled for an earlier assignment: not tracked, so
                // never committed; the current owner fetches it from the committed offset.
                run.clear();
                continue;
            };
            marks.clear();
            marks.extend(run.iter().map(|r| (r.offset, r.timestamp)));
            let Some(tracked) = self.ledger.track(&tp, partition.epoch, &marks) else {
                run.clear();
                continue;
            };
            partition.counters.consumed.fetch_add(run.len() as u64, std::sync::atomic::Ordering::Relaxed);
            partition.over_window |= tracked.full;
            if !tracked.skipped.is_empty() {
                // Finished by an earlier owner (the offset map): done, not delivered again.
                self.metrics.records_skipped(tracked.skipped.len());
                let mut index = 0;
                let skipped = &tracked.skipped;
                run.retain(|_| {
                    index += 1;
                    skipped.binary_search(&(index - 1)).is_err()
                });
            }
            let ordering = partition.route.ordering;
            let epoch = partition.epoch;
            let (count, size) = (run.len(), run.iter().map(Record::size).sum::<usize>());
            partition.buffered += count;
            partition.bytes += size;
            self.total_records += count;
            self.total_bytes += size;
            self.backlog.add(count);
            touched.push(tp.clone());
            if ordering == Ordering::Partition {
                // One lane for the whole partition: append the run at once.
                let key: LaneKey = (tp, epoch, 0);
                let lane = self.lanes.entry(key.clone()).or_default();
                lane.queue.extend(run.drain(..));
                if !lane.running && !lane.ready && !lane.held {
                    lane.ready = true;
                    self.ready.push_back(key);
                }
                continue;
            }
            for record in run.drain(..) {
                let key = (tp.clone(), epoch, record.lane_in_partition(ordering));
                let lane = self.lanes.entry(key.clone()).or_default();
                lane.queue.push_back(record);
                if !lane.running && !lane.ready && !lane.held {
                    lane.ready = true;
                    self.ready.push_back(key);
                }
            }
        }
        self.schedule();
        touched.sort();
        touched.dedup();
        for tp in touched {
            self.update_flow(&tp);
        }
    }

    fn schedule(&mut self) {
        while self.running < self.max_in_flight {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(lane) = self.lanes.get_mut(&key) else { continue };
            lane.ready = false;
            if lane.running || lane.held || lane.queue.is_empty() {
                continue;
            }
            let Some(partition) = self.partitions.get_mut(&key.0).filter(|p| p.epoch == key.1) else {
                continue;
            };
            let take = lane.queue.len().min(BATCH);
            let batch: Vec<Record> = lane.queue.drain(..take).collect();
            lane.running = true;
            partition.active += 1;
            self.running += 1;
            self.metrics.add_in_flight(1);
            let task = LaneTask {
                key,
                batch,
                cancel: partition.cancel.clone(),
                stopped: partition.stopped.clone(),
                counters: partition.counters.clone(),
                route: partition.route.clone(),
                ledger: self.ledger.clone(),
                done: self.done_tx.clone(),
            };
            self.tasks.spawn(task.run());
        }
        // Every ready lane has started unless the limit stopped it. More records can only use a
        // free slot if they may start a lane: in partition order that takes a partition with
        // nothing buffered; in key order or none, new keys or records can.
        let idle = self.running < self.max_in_flight
            && self.partitions.values().any(|p| p.buffered == 0 || p.route.ordering != Ordering::Partition);
        self.backlog.set_idle_slots(idle);
    }

    /// The assignment a lane task of `(tp, epoch)` belongs to: consuming or draining.
    fn assignment_mut(&mut self, tp: &TopicPartition, epoch: u64) -> Option<&mut Partition> {
        match self.partitions.get_mut(tp) {
            Some(p) if p.epoch == epoch => Some(p),
            _ => self.draining.iter_mut().map(|d| &mut d.0).find(|p| p.tp == *tp && p.epoch == epoch),
        }
    }

    fn on_lane_done(&mut self, done: LaneDone) {
        self.running -= 1;
        self.metrics.add_in_flight(-1);
        self.total_records -= done.records;
        self.backlog.remove(done.records);
        self.total_bytes -= done.bytes;
        let (tp, epoch) = (done.key.0.clone(), done.key.1);
        let ledger = self.ledger.clone();
        let consuming = self.partitions.get(&tp).is_some_and(|p| p.epoch == epoch);
        if let Some(partition) = self.assignment_mut(&tp, epoch) {
            partition.active -= 1;
            partition.buffered -= done.records;
            partition.bytes -= done.bytes;
            if partition.over_window && ledger.has_room(&tp, epoch) {
                partition.over_window = false;
            }
            if let Some(reason) = &done.held
                && consuming
            {
                let latch = partition.route.pipeline.hold(reason);
                partition.held.push(latch);
            }
        }
        if let Some(lane) = self.lanes.get_mut(&done.key) {
            lane.running = false;
            lane.held |= done.held.is_some();
            if !consuming || (lane.queue.is_empty() && !lane.held) {
                self.lanes.remove(&done.key);
            } else if !lane.ready && !lane.held {
                lane.ready = true;
                self.ready.push_back(done.key);
            }
        }
        self.schedule();
        self.update_flow(&tp);
        self.check_drains();
    }

    /// Starts draining an assignment, dropping what has not started: it is tracked but not
    /// done, so the source acknowledges none of it and the next owner delivers it.
    fn retire(&mut self, partition: Partition) {
        let Draining(mut partition) = partition.start_draining();
        let (tp, epoch) = (partition.tp.clone(), partition.epoch);
        let mut records = 0;
        let mut bytes = 0;
        self.lanes.retain(|key, lane| {
            if key.0 != tp || key.1 != epoch {
                return true;
            }
            records += lane.queue.len();
            bytes += lane.queue.iter().map(Record::size).sum::<usize>();
            lane.queue.clear();
            lane.running
        });
        partition.buffered -= records;
        partition.bytes -= bytes;
        self.total_records -= records;
        self.backlog.remove(records);
        self.total_bytes -= bytes;
        self.draining.push(Draining(partition));
    }

    fn drain(&mut self, tps: &[TopicPartition], done: DrainSignal) {
        let mut parts = Vec::with_capacity(tps.len());
        for tp in tps {
            let Some(partition) = self.partitions.remove(tp) else { continue };
            parts.push((tp.clone(), partition.epoch));
            self.retire(partition);
        }
        self.drains.push(Drain { parts, done });
        self.check_drains();
    }

    fn check_drains(&mut self) {
        let draining = &self.draining;
        let idle = |(tp, epoch): &(TopicPartition, u64)| {
            draining.iter().find(|d| d.0.tp == *tp && d.0.epoch == *epoch).is_none_or(|d| d.0.active == 0)
        };
        let (finished, pending): (Vec<Drain>, Vec<Drain>) =
            std::mem::take(&mut self.drains).into_iter().partition(|d| d.parts.iter().all(idle));
        self.drains = pending;
        // A draining assignment with no lane running is complete: gone for good.
        self.draining.retain(|d| d.0.active > 0);
        for drain in finished {
            match drain.done {
                // The receiver may have given up waiting (deadline passed): nothing to do then.
                DrainSignal::Revoke(done) => drop(done.try_send(())),
                DrainSignal::Shutdown(done) => drop(done.send(())),
            }
        }
    }

    /// Pauses or resumes `tp` and the whole consumer as the bounds say.
    fn update_flow(&mut self, tp: &TopicPartition) {
        let limits = self.limits;
        if let Some(p) = self.partitions.get_mut(tp) {
            if p.buffered >= limits.partition_records || p.bytes >= limits.partition_bytes {
                p.over_buffer = true;
            } else if p.buffered <= limits.partition_records / 2 && p.bytes <= limits.partition_bytes / 2 {
                p.over_buffer = false;
            }
            if p.wants_pause() != p.paused {
                p.paused = p.wants_pause();
                let flow = if p.paused {
                    Flow::Pause(tp.clone(), p.epoch)
                } else {
                    Flow::Resume(tp.clone(), p.epoch)
                };
                drop(self.flow.send(flow));
            }
        }
        if !self.all_paused
            && (self.total_records >= limits.total_records || self.total_bytes >= limits.total_bytes)
        {
            self.all_paused = true;
            drop(self.flow.send(Flow::PauseAll));
        } else if self.all_paused
            && self.total_records <= limits.total_records / 2
            && self.total_bytes <= limits.total_bytes / 2
        {
            self.all_paused = false;
            drop(self.flow.send(Flow::ResumeAll));
        }
    }
}
