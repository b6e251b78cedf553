//! The dispatcher task's state: partitions, lanes, the ready queue, drains and back-pressure.

use std::collections::VecDeque;
use std::hash::BuildHasher as _;
use std::sync::atomic::AtomicBool;

use rustc_hash::{FxBuildHasher, FxHashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::lane_task::{LaneDone, LaneTask};
use super::{Command, DoneReceiver, DrainDone, Flow, Limits, RouteEntry};
use crate::config::Ordering;
use crate::offsets::OffsetTracker;
use crate::pipeline::Cancel;
use crate::record::{Record, TopicPartition};
use crate::telemetry::metrics::{Metrics, TopicCounters};

/// Records handed to one lane task at most.
const BATCH: usize = 128;

/// A lane: the topic-partition and a lane number within it.
pub(super) type LaneKey = (TopicPartition, u64);

/// The lane of `record` within its partition under `ordering`: the whole partition, its key
/// (records without a key share one lane), or, with no order, the record alone.
pub fn lane_in_partition(ordering: Ordering, record: &Record) -> u64 {
    match ordering {
        Ordering::Partition => 0,
        Ordering::Key => record.key.as_ref().map_or(0, |key| FxBuildHasher.hash_one(key.as_ref()) | 1),
        Ordering::None => u64::try_from(record.offset).unwrap_or(0),
    }
}

fn lane_of(ordering: Ordering, record: &Record) -> LaneKey {
    (record.tp.clone(), lane_in_partition(ordering, record))
}

/// One assigned partition as the dispatcher sees it.
struct Partition {
    /// Offset tracker epoch of this assignment.
    epoch: u64,
    /// Cancellation of this partition's records.
    cancel: Cancel,
    /// Records buffered (queued or handed to a lane task).
    buffered: usize,
    /// Their bytes.
    bytes: usize,
    /// Lane tasks running.
    active: usize,
    /// Whether we asked the consumer to pause it.
    paused: bool,
    /// Revoked: records arriving for it are dropped.
    revoking: bool,
    /// Set with `revoking`, read by its lane tasks before each record (cheaper than the token).
    stopped: Arc<AtomicBool>,
    /// Counters of the topic.
    counters: Arc<TopicCounters>,
    /// The route of the topic: pipeline, ordering, chunk.
    route: Arc<RouteEntry>,
}

/// A queue of records processed one at a time.
#[derive(Default)]
struct Lane {
    /// Records not yet handed to a task.
    queue: VecDeque<Record>,
    /// Whether a task runs this lane.
    running: bool,
    /// Whether the lane sits in the ready queue.
    ready: bool,
}

/// A pending drain.
struct Drain {
    /// Partitions that must have no running task.
    tps: Vec<TopicPartition>,
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
    tracker: Arc<OffsetTracker>,
    metrics: Metrics,
    flow: mpsc::UnboundedSender<Flow>,
    backlog: Arc<super::Backlog>,
    done_tx: mpsc::UnboundedSender<LaneDone>,
    /// Parent of every partition's cancellation.
    root: Cancel,
    partitions: FxHashMap<TopicPartition, Partition>,
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
            tracker: setup.tracker,
            metrics: setup.metrics,
            flow: setup.flow,
            backlog: setup.backlog,
            done_tx,
            root: Cancel::default(),
            partitions: FxHashMap::default(),
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
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Assigned(tps) => {
                for (tp, epoch) in tps {
                    let counters = self.metrics.topic(&tp.topic);
                    let Some(route) = self.route_for(&tp.topic) else { continue };
                    let partition = Partition {
                        epoch,
                        cancel: self.root.child(),
                        buffered: 0,
                        bytes: 0,
                        active: 0,
                        paused: false,
                        revoking: false,
                        stopped: Arc::default(),
                        counters,
                        route,
                    };
                    self.partitions.insert(tp, partition);
                }
            }
            Command::Records(records) => self.on_records(records),
            Command::Revoke { tps, done } => self.drain(tps, DrainSignal::Revoke(done)),
            Command::Abort(tps) => {
                for tp in &tps {
                    if let Some(p) = self.partitions.get(tp) {
                        p.cancel.hard.cancel();
                    }
                }
            }
            Command::Shutdown { done } => {
                self.stopping = true;
                let tps = self.partitions.keys().cloned().collect();
                self.drain(tps, DrainSignal::Shutdown(done));
            }
            Command::AbortAll => self.root.hard.cancel(),
        }
    }

    fn route_for(&self, topic: &str) -> Option<Arc<RouteEntry>> {
        self.routes.iter().find(|r| r.matcher.as_ref().is_none_or(|m| m.matches(topic))).cloned()
    }

    fn on_records(&mut self, records: Vec<Record>) {
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
            let Some(partition) = self.partitions.get_mut(&tp) else {
                run.clear();
                continue;
            };
            marks.clear();
            marks.extend(run.iter().map(|r| (r.offset, r.timestamp)));
            if partition.revoking || !self.tracker.track_many(&tp, partition.epoch, &marks) {
                run.clear();
                continue; // not ours (any more): not tracked, so never committed
            }
            let ordering = partition.route.ordering;
            let (count, size) = (run.len(), run.iter().map(Record::size).sum::<usize>());
            partition.counters.consumed.fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
            partition.buffered += count;
            partition.bytes += size;
            self.total_records += count;
            self.total_bytes += size;
            self.backlog.add(count);
            touched.push(tp.clone());
            if ordering == Ordering::Partition {
                // One lane for the whole partition: append the run at once.
                let key: LaneKey = (tp, 0);
                let lane = self.lanes.entry(key.clone()).or_default();
                lane.queue.extend(run.drain(..));
                if !lane.running && !lane.ready {
                    lane.ready = true;
                    self.ready.push_back(key);
                }
                continue;
            }
            for record in run.drain(..) {
                let key = lane_of(ordering, &record);
                let lane = self.lanes.entry(key.clone()).or_default();
                lane.queue.push_back(record);
                if !lane.running && !lane.ready {
                    lane.ready = true;
                    self.ready.push_back(key);
                }
            }
        }
        self.schedule();
        touched.sort();
        touched.dedup();
        for tp in touched {
            self.check_pause(&tp);
        }
    }

    fn schedule(&mut self) {
        while self.running < self.max_in_flight {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(lane) = self.lanes.get_mut(&key) else { continue };
            lane.ready = false;
            if lane.running || lane.queue.is_empty() {
                continue;
            }
            let Some(partition) = self.partitions.get_mut(&key.0) else { continue };
            let take = lane.queue.len().min(BATCH);
            let batch: Vec<Record> = lane.queue.drain(..take).collect();
            lane.running = true;
            partition.active += 1;
            self.running += 1;
            self.metrics.add_in_flight(1);
            let task = LaneTask {
                key,
                batch,
                epoch: partition.epoch,
                cancel: partition.cancel.clone(),
                stopped: partition.stopped.clone(),
                counters: partition.counters.clone(),
                route: partition.route.clone(),
                tracker: self.tracker.clone(),
                done: self.done_tx.clone(),
            };
            tokio::spawn(task.run());
        }
        // Every ready lane has started unless the limit stopped it. More records can only use a
        // free slot if they may start a lane: in partition order that takes a partition with
        // nothing buffered; in key order or none, new keys or records can.
        let idle = self.running < self.max_in_flight
            && self
                .partitions
                .values()
                .any(|p| !p.revoking && (p.buffered == 0 || p.route.ordering != Ordering::Partition));
        self.backlog.set_idle_slots(idle);
    }

    fn on_lane_done(&mut self, done: LaneDone) {
        self.running -= 1;
        self.metrics.add_in_flight(-1);
        self.total_records -= done.records;
        self.backlog.remove(done.records);
        self.total_bytes -= done.bytes;
        let tp = done.key.0.clone();
        if let Some(partition) = self.partitions.get_mut(&tp) {
            partition.active -= 1;
            partition.buffered -= done.records;
            partition.bytes -= done.bytes;
        }
        if let Some(lane) = self.lanes.get_mut(&done.key) {
            lane.running = false;
            if lane.queue.is_empty() {
                self.lanes.remove(&done.key);
            } else if !lane.ready {
                lane.ready = true;
                self.ready.push_back(done.key);
            }
        }
        self.schedule();
        self.check_resume(&tp);
        self.check_drains();
    }

    fn drain(&mut self, tps: Vec<TopicPartition>, done: DrainSignal) {
        for tp in &tps {
            let Some(partition) = self.partitions.get_mut(tp) else { continue };
            partition.revoking = true;
            partition.stopped.store(true, std::sync::atomic::Ordering::Release);
            partition.cancel.soft.cancel();
        }
        // Drop what has not started: it is tracked but not done, so the committed watermark
        // stays below it and the next owner delivers it.
        let mut dropped: FxHashMap<TopicPartition, (usize, usize)> = FxHashMap::default();
        self.lanes.retain(|key, lane| {
            if !tps.contains(&key.0) {
                return true;
            }
            let entry = dropped.entry(key.0.clone()).or_default();
            entry.0 += lane.queue.len();
            entry.1 += lane.queue.iter().map(Record::size).sum::<usize>();
            lane.queue.clear();
            lane.running
        });
        for (tp, (records, bytes)) in dropped {
            if let Some(partition) = self.partitions.get_mut(&tp) {
                partition.buffered -= records;
                partition.bytes -= bytes;
            }
            self.total_records -= records;
            self.backlog.remove(records);
            self.total_bytes -= bytes;
        }
        self.drains.push(Drain { tps, done });
        self.check_drains();
    }

    fn check_drains(&mut self) {
        let partitions = &mut self.partitions;
        let (finished, pending): (Vec<Drain>, Vec<Drain>) = std::mem::take(&mut self.drains)
            .into_iter()
            .partition(|d| d.tps.iter().all(|tp| partitions.get(tp).is_none_or(|p| p.active == 0)));
        self.drains = pending;
        for drain in finished {
            for tp in &drain.tps {
                self.partitions.remove(tp);
            }
            match drain.done {
                // The receiver may have given up waiting (deadline passed): nothing to do then.
                DrainSignal::Revoke(done) => drop(done.try_send(())),
                DrainSignal::Shutdown(done) => drop(done.send(())),
            }
        }
    }

    fn check_pause(&mut self, tp: &TopicPartition) {
        let limits = self.limits;
        if let Some(p) = self.partitions.get_mut(tp)
            && !p.paused
            && (p.buffered >= limits.partition_records || p.bytes >= limits.partition_bytes)
        {
            p.paused = true;
            drop(self.flow.send(Flow::Pause(tp.clone())));
        }
        if !self.all_paused
            && (self.total_records >= limits.total_records || self.total_bytes >= limits.total_bytes)
        {
            self.all_paused = true;
            drop(self.flow.send(Flow::PauseAll));
        }
    }

    fn check_resume(&mut self, tp: &TopicPartition) {
        let limits = self.limits;
        if let Some(p) = self.partitions.get_mut(tp)
            && p.paused
            && p.buffered <= limits.partition_records / 2
            && p.bytes <= limits.partition_bytes / 2
        {
            p.paused = false;
            drop(self.flow.send(Flow::Resume(tp.clone())));
        }
        if self.all_paused
            && self.total_records <= limits.total_records / 2
            && self.total_bytes <= limits.total_bytes / 2
        {
            self.all_paused = false;
            drop(self.flow.send(Flow::ResumeAll));
        }
    }
}
