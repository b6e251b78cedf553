//! Gathers concurrent single-record attempts into batch requests.
//!
//! Each `deliver` call hands its record to a collector task and waits for that record's own
//! outcome. The collector sends a batch when it holds as many records as the batch allows, as
//! many bytes, or when the first record has waited `linger`. A record on its n-th attempt only
//! joins batches of at most `max_records >> (n-1)` records: after whole-batch failures the
//! batches a record travels in halve, so a poison record ends up alone and the records around
//! it get through (bisection by retry).
//!
//! A lane (the route's ordering: a partition, or a key) never has records in two batches at
//! once: when a lane's records do not all fit one batch, the rest wait in the buffer until that
//! batch is answered. Batches go out concurrently, and an application may handle concurrent
//! requests in parallel, so this keeps a lane's records in order at the application.

use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rustc_hash::{FxBuildHasher, FxHashSet};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Attempt, AttemptOutcome, Failure, FailureKind};
use crate::config::Ordering;
use crate::record::{Origin, Record};

/// One record waiting for a batch.
pub struct Pending {
    /// The record (cheap to clone: its payloads are shared).
    pub record: Record,
    /// The attempt it is on.
    pub attempt: Attempt,
    /// Where its outcome goes.
    reply: oneshot::Sender<AttemptOutcome>,
    /// Its lane, hashed (two lanes sharing a hash only wait for each other); none without order.
    lane: Option<u64>,
    /// Its lane has a batch in flight: it waits.
    held: bool,
}

impl Pending {
    /// Answers the waiting attempt.
    pub fn reply(self, outcome: AttemptOutcome) {
        // The attempt may have been abandoned (hard cancel): nobody waits then.
        drop(self.reply.send(outcome));
    }

    fn size(&self) -> usize {
        self.record.size()
    }

    /// A record on its first attempt whose answer nobody waits for (tests of senders).
    #[cfg(test)]
    pub fn for_test(record: Record) -> Pending {
        let (reply, _) = oneshot::channel();
        Pending {
            record,
            attempt: Attempt { number: 1, ..Attempt::default() },
            reply,
            lane: None,
            held: false,
        }
    }
}

/// Sends one batch and answers every record in it.
pub trait BatchSender: Send + Sync + 'static {
    /// Sends `batch`; must call [`Pending::reply`] on each entry.
    fn send(&self, batch: Vec<Pending>) -> BoxFuture<'_, ()>;
}

/// Limits of one batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Records per batch at most.
    pub max_records: usize,
    /// Bytes per batch at most (a single larger record still goes, alone).
    pub max_bytes: usize,
    /// How long the first record waits for company.
    pub linger: Duration,
    /// The route's ordering, which decides the lanes that keep to one batch at a time.
    pub ordering: Ordering,
}

/// The handle `deliver` uses.
#[derive(Clone)]
pub struct Batcher {
    /// To the collector task.
    tx: mpsc::UnboundedSender<Pending>,
    /// The route's ordering.
    ordering: Ordering,
}

impl Batcher {
    /// Starts a collector that sends batches with `sender`.
    pub fn start(sender: Arc<dyn BatchSender>, limits: Limits) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(rx, sender, limits));
        Batcher { tx, ordering: limits.ordering }
    }

    /// Submits one attempt and waits for its outcome.
    pub async fn submit(&self, record: &Record, attempt: &Attempt) -> AttemptOutcome {
        let (reply, outcome) = oneshot::channel();
        // The order a source promises wins over the route's: a FIFO queue's message group is
        // a lane, a standard queue's messages have none (as the source's dispatcher runs them).
        let ordering = match record.origin {
            Origin::Sqs if record.key.is_some() => Ordering::Key,
            Origin::Sqs => Ordering::None,
            Origin::Kafka | Origin::Redis | Origin::Amqp => self.ordering,
        };
        let lane = (ordering != Ordering::None).then(|| {
            let in_partition = record.lane_in_partition(ordering);
            FxBuildHasher.hash_one((&*record.tp.topic, record.tp.partition, in_partition))
        });
        let pending = Pending { record: record.clone(), attempt: attempt.clone(), reply, lane, held: false };
        if self.tx.send(pending).is_err() {
            return AttemptOutcome::Failed(Failure::new(
                FailureKind::Unreachable,
                "the batch sender stopped",
            ));
        }
        outcome.await.unwrap_or_else(|_| {
            AttemptOutcome::Failed(Failure::new(
                FailureKind::Retryable,
                "the batch was dropped before an answer",
            ))
        })
    }
}

/// The largest batch a record on attempt `number` may join.
pub fn cap_for(limits: &Limits, number: u32) -> usize {
    let shift = number.saturating_sub(1).min(31);
    (limits.max_records >> shift).max(1)
}

/// The collector's state: records waiting, lanes with a batch in flight.
struct Collector {
    /// Records not yet in a batch, in arrival order.
    buffer: Vec<Pending>,
    /// Lanes with a batch in flight: their other records wait.
    busy: FxHashSet<u64>,
    /// Sends batches.
    sender: Arc<dyn BatchSender>,
    /// Batch limits.
    limits: Limits,
    /// Where a sent batch reports its lanes once answered.
    answered: mpsc::UnboundedSender<Vec<u64>>,
}

/// Frees a batch's lanes when the batch is answered (or its task ends any other way).
struct Release {
    /// The batch's lanes.
    lanes: Vec<u64>,
    /// To the collector.
    answered: mpsc::UnboundedSender<Vec<u64>>,
}

impl Drop for Release {
    fn drop(&mut self) {
        // A collector that has stopped (input closed, nothing buffered) needs no answer.
        drop(self.answered.send(std::mem::take(&mut self.lanes)));
    }
}

async fn collect(mut rx: mpsc::UnboundedReceiver<Pending>, sender: Arc<dyn BatchSender>, limits: Limits) {
    let (answered, mut answers) = mpsc::unbounded_channel();
    let mut c = Collector { buffer: Vec::new(), busy: FxHashSet::default(), sender, limits, answered };
    let mut deadline: Option<Instant> = None;
    let mut open = true;
    loop {
        if !open && c.buffer.is_empty() {
            return;
        }
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(mut pending) => {
                    pending.held = pending.lane.is_some_and(|lane| c.busy.contains(&lane));
                    c.buffer.push(pending);
                    c.flush(false);
                }
                None => {
                    open = false;
                    c.flush(true);
                }
            },
            Some(lanes) = answers.recv() => {
                for lane in &lanes {
                    c.busy.remove(lane);
                }
                let mut waited = false;
                for pending in c.buffer.iter_mut().filter(|p| p.held && in_lanes(p, &lanes)) {
                    pending.held = false;
                    waited = true;
                }
                // Records that waited for their lane have waited long enough: they go now.
                c.flush(waited || !open);
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                c.flush(true);
                deadline = None;
            }
        }
        // Records waiting for company go at the latest one linger from now; records waiting
        // for their lane go when its batch is answered.
        if !c.buffer.iter().any(|p| !p.held) {
            deadline = None;
        } else if deadline.is_none() {
            deadline = Some(Instant::now() + c.limits.linger);
        }
    }
}

/// Whether `pending` belongs to one of `lanes` (sorted).
fn in_lanes(pending: &Pending, lanes: &[u64]) -> bool {
    pending.lane.is_some_and(|lane| lanes.binary_search(&lane).is_ok())
}

impl Collector {
    /// Sends every full batch (and, with `all`, the rest too) of the records whose lane is free.
    fn flush(&mut self, all: bool) {
        loop {
            let mut cap = usize::MAX;
            let mut bytes = 0;
            let mut chosen = Vec::new();
            let mut more = false;
            for (index, pending) in self.buffer.iter().enumerate() {
                if pending.held {
                    continue;
                }
                let entry_cap = cap_for(&self.limits, pending.attempt.number);
                if !chosen.is_empty()
                    && (chosen.len() + 1 > cap.min(entry_cap)
                        || bytes + pending.size() > self.limits.max_bytes)
                {
                    more = true;
                    break;
                }
                cap = cap.min(entry_cap);
                bytes += pending.size();
                chosen.push(index);
                if chosen.len() >= cap {
                    break;
                }
            }
            let full = chosen.len() >= cap || more || bytes >= self.limits.max_bytes;
            if chosen.is_empty() || !(full || all) {
                return;
            }
            self.send(&chosen);
        }
    }

    /// Takes the entries at `chosen` (ascending) out of the buffer and sends them as one batch.
    /// Entries whose attempt was abandoned (a hard cancel: the partition was revoked or the
    /// process is stopping) are dropped instead: their next owner delivers them.
    fn send(&mut self, chosen: &[usize]) {
        let mut batch = Vec::with_capacity(chosen.len());
        let mut kept = Vec::with_capacity(self.buffer.len() - chosen.len());
        let mut next = chosen.iter().peekable();
        for (index, pending) in std::mem::take(&mut self.buffer).into_iter().enumerate() {
            if next.next_if_eq(&&index).is_none() {
                kept.push(pending);
            } else if !pending.reply.is_closed() {
                batch.push(pending);
            }
        }
        self.buffer = kept;
        if batch.is_empty() {
            return;
        }
        let mut lanes: Vec<u64> = batch.iter().filter_map(|p| p.lane).collect();
        lanes.sort_unstable();
        lanes.dedup();
        self.busy.extend(lanes.iter().copied());
        for pending in self.buffer.iter_mut().filter(|p| in_lanes(p, &lanes)) {
            pending.held = true;
        }
        let release = (!lanes.is_empty()).then(|| Release { lanes, answered: self.answered.clone() });
        let sender = self.sender.clone();
        tokio::spawn(async move {
            sender.send(batch).await;
            drop(release);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use futures::FutureExt as _;

    use super::*;
    use crate::record::TopicPartition;

    struct Recording(Mutex<Vec<Vec<i64>>>);

    impl BatchSender for Recording {
        fn send(&self, batch: Vec<Pending>) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push(batch.iter().map(|p| p.record.offset).collect());
            for pending in batch {
                pending.reply(AttemptOutcome::Delivered);
            }
            async {}.boxed()
        }
    }

    fn record(offset: i64, size: usize) -> Record {
        Record {
            tp: TopicPartition::new("t", 0),
            offset,
            timestamp: None,
            key: None,
            value: Some(Bytes::from(vec![b'x'; size])),
            headers: vec![],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Kafka,
        }
    }

    fn limits(max_records: usize) -> Limits {
        Limits { max_records, max_bytes: 10_000, linger: Duration::from_millis(20), ordering: Ordering::None }
    }

    async fn run(limits: Limits, records: Vec<(Record, u32)>) -> Vec<Vec<i64>> {
        let sender = Arc::new(Recording(Mutex::new(Vec::new())));
        let batcher = Batcher::start(sender.clone(), limits);
        let attempts = records.into_iter().map(|(record, number)| {
            let batcher = batcher.clone();
            async move { batcher.submit(&record, &Attempt { number, ..Attempt::default() }).await }
        });
        let outcomes = futures::future::join_all(attempts).await;
        assert!(outcomes.iter().all(|o| *o == AttemptOutcome::Delivered));
        let mut batches = sender.0.lock().unwrap().clone();
        batches.sort();
        batches
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_attempts_share_batches_up_to_the_record_limit() {
        let batches = run(limits(4), (0..10).map(|o| (record(o, 10), 1)).collect()).await;
        assert_eq!(batches, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    }

    #[tokio::test(start_paused = true)]
    async fn byte_limit_splits_batches() {
        let batches = run(limits(100), (0..4).map(|o| (record(o, 3_000), 1)).collect()).await;
        assert_eq!(batches.len(), 2, "{batches:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_travel_in_halved_batches() {
        assert_eq!(cap_for(&limits(100), 1), 100);
        assert_eq!(cap_for(&limits(100), 2), 50);
        assert_eq!(cap_for(&limits(100), 8), 1);
        let batches = run(limits(8), (0..8).map(|o| (record(o, 10), 3)).collect()).await;
        assert_eq!(
            batches,
            vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7]],
            "third attempts: batches of 2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_record_goes_after_the_linger() {
        let started = Instant::now();
        let batches = run(limits(10), vec![(record(7, 10), 1)]).await;
        assert_eq!(batches, vec![vec![7]]);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    /// A sent batch: its records' (partition, offset), and its answer until given.
    type Held = (Vec<(i32, i64)>, Option<oneshot::Sender<()>>);

    /// Holds every batch until the test answers it.
    #[derive(Default)]
    struct Holding(Mutex<Vec<Held>>);

    impl BatchSender for Holding {
        fn send(&self, batch: Vec<Pending>) -> BoxFuture<'_, ()> {
            let (answer, answered) = oneshot::channel();
            let coordinates = batch.iter().map(|p| (p.record.tp.partition, p.record.offset)).collect();
            self.0.lock().unwrap().push((coordinates, Some(answer)));
            async move {
                let _ = answered.await;
                for pending in batch {
                    pending.reply(AttemptOutcome::Delivered);
                }
            }
            .boxed()
        }
    }

    impl Holding {
        fn sent(&self) -> Vec<Vec<(i32, i64)>> {
            self.0.lock().unwrap().iter().map(|(c, _)| c.clone()).collect()
        }

        fn answer(&self, index: usize) {
            let answer = self.0.lock().unwrap()[index].1.take().expect("not answered yet");
            answer.send(()).unwrap();
        }
    }

    /// Submits `records` (partition, offset, key) in order on a task; returns its handle.
    fn submit_all(
        ordering: Ordering,
        max_records: usize,
        records: &[(i32, i64, &str)],
    ) -> (Arc<Holding>, tokio::task::JoinHandle<Vec<AttemptOutcome>>) {
        submit_all_from(crate::record::Origin::Kafka, ordering, max_records, records)
    }

    /// [`submit_all`] for records of a source of kind `origin`.
    fn submit_all_from(
        origin: crate::record::Origin,
        ordering: Ordering,
        max_records: usize,
        records: &[(i32, i64, &str)],
    ) -> (Arc<Holding>, tokio::task::JoinHandle<Vec<AttemptOutcome>>) {
        let sender = Arc::new(Holding::default());
        let batcher = Batcher::start(sender.clone(), Limits { ordering, ..limits(max_records) });
        let records: Vec<Record> = records
            .iter()
            .map(|(partition, offset, key)| Record {
                tp: TopicPartition::new("t", *partition),
                key: Some(Bytes::copy_from_slice(key.as_bytes())),
                origin,
                ..record(*offset, 10)
            })
            .collect();
        let task = tokio::spawn(async move {
            let attempt = Attempt { number: 1, ..Attempt::default() };
            futures::future::join_all(records.iter().map(|r| batcher.submit(r, &attempt))).await
        });
        (sender, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_waits_for_its_batch_before_its_next_records_go() {
        let records = [
            (1, 0, "k"),
            (1, 1, "k"),
            (0, 0, "k"),
            (0, 1, "k"),
            (0, 2, "k"),
            (0, 3, "k"),
            (0, 4, "k"),
            (0, 5, "k"),
        ];
        let (sender, task) = submit_all(Ordering::Partition, 4, &records);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            sender.sent(),
            vec![vec![(1, 0), (1, 1), (0, 0), (0, 1)]],
            "partition 0's next records wait for the batch that holds its first ones"
        );
        sender.answer(0);
        tokio::time::sleep(Duration::from_millis(1)).await; // less than the linger: it waited enough
        assert_eq!(sender.sent().get(1), Some(&vec![(0, 2), (0, 3), (0, 4), (0, 5)]));
        sender.answer(1);
        let outcomes = task.await.unwrap();
        assert!(outcomes.iter().all(|o| *o == AttemptOutcome::Delivered));
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_same_key_waits_under_key_order() {
        let records = [(0, 0, "a"), (0, 1, "a"), (0, 2, "a"), (0, 3, "b")];
        let (sender, task) = submit_all(Ordering::Key, 2, &records);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            sender.sent(),
            vec![vec![(0, 0), (0, 1)], vec![(0, 3)]],
            "key b goes, a's third record waits"
        );
        sender.answer(0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(sender.sent().get(2), Some(&vec![(0, 2)]));
        sender.answer(1);
        sender.answer(2);
        assert_eq!(task.await.unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fifo_message_group_keeps_its_order_whatever_the_route_says() {
        // An SQS FIFO queue served by a route with `ordering = "none"`: the group is still a lane.
        let records = [(0, 0, "g1"), (0, 1, "g1"), (0, 2, "g1"), (0, 3, "g2")];
        let (sender, task) = submit_all_from(crate::record::Origin::Sqs, Ordering::None, 2, &records);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sender.sent(), vec![vec![(0, 0), (0, 1)], vec![(0, 3)]], "g1's third message waits");
        sender.answer(0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(sender.sent().get(2), Some(&vec![(0, 2)]));
        sender.answer(1);
        sender.answer(2);
        assert_eq!(task.await.unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn without_order_a_split_goes_at_once() {
        let records = [(0, 0, "k"), (0, 1, "k"), (0, 2, "k")];
        let (sender, task) = submit_all(Ordering::None, 2, &records);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sender.sent(), vec![vec![(0, 0), (0, 1)], vec![(0, 2)]]);
        sender.answer(0);
        sender.answer(1);
        assert_eq!(task.await.unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_record_waiting_for_its_lane_is_not_sent() {
        let sender = Arc::new(Holding::default());
        let batcher = Batcher::start(sender.clone(), Limits { ordering: Ordering::Partition, ..limits(2) });
        let attempt = Attempt { number: 1, ..Attempt::default() };
        let first = {
            let (batcher, attempt) = (batcher.clone(), attempt.clone());
            tokio::spawn(async move {
                let (a, b) = (record(0, 10), record(1, 10));
                futures::future::join(batcher.submit(&a, &attempt), batcher.submit(&b, &attempt)).await
            })
        };
        let abandoned = tokio::spawn(async move { batcher.submit(&record(2, 10), &attempt).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(sender.sent(), vec![vec![(0, 0), (0, 1)]], "offset 2 waits for its partition");
        abandoned.abort(); // a hard cancel: the partition was revoked
        assert!(abandoned.await.unwrap_err().is_cancelled());
        sender.answer(0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sender.sent().len(), 1, "nobody waits for offset 2: it is not sent");
        assert_eq!(first.await.unwrap(), (AttemptOutcome::Delivered, AttemptOutcome::Delivered));
    }
}
