//! Gathers concurrent single-record attempts into batch requests.
//!
//! Each `deliver` call hands its record to a collector task and waits for that record's own
//! outcome. The collector sends a batch when it holds as many records as the batch allows, as
//! many bytes, or when the first record has waited `linger`. A record on its n-th attempt only
//! joins batches of at most `max_records >> (n-1)` records: after whole-batch failures the
//! batches a record travels in halve, so a poison record ends up alone and the records around
//! it get through (bisection by retry).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Attempt, AttemptOutcome, Failure, FailureKind};
use crate::record::Record;

/// One record waiting for a batch.
pub struct Pending {
    /// The record (cheap to clone: its payloads are shared).
    pub record: Record,
    /// The attempt it is on.
    pub attempt: Attempt,
    /// Where its outcome goes.
    reply: oneshot::Sender<AttemptOutcome>,
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
}

/// The handle `deliver` uses.
#[derive(Clone)]
pub struct Batcher {
    /// To the collector task.
    tx: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Starts a collector that sends batches with `sender`.
    pub fn start(sender: Arc<dyn BatchSender>, limits: Limits) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(rx, sender, limits));
        Batcher { tx }
    }

    /// Submits one attempt and waits for its outcome.
    pub async fn submit(&self, record: &Record, attempt: &Attempt) -> AttemptOutcome {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { record: record.clone(), attempt: attempt.clone(), reply };
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

async fn collect(mut rx: mpsc::UnboundedReceiver<Pending>, sender: Arc<dyn BatchSender>, limits: Limits) {
    let mut buffer: Vec<Pending> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let received = match deadline {
            None => rx.recv().await,
            Some(at) => tokio::select! {
                received = rx.recv() => received,
                () = tokio::time::sleep_until(at) => {
                    flush(&mut buffer, &sender, &limits, true);
                    deadline = None;
                    continue;
                }
            },
        };
        let Some(pending) = received else {
            flush(&mut buffer, &sender, &limits, true);
            return;
        };
        buffer.push(pending);
        if deadline.is_none() {
            deadline = Some(Instant::now() + limits.linger);
        }
        flush(&mut buffer, &sender, &limits, false);
        if buffer.is_empty() {
            deadline = None;
        }
    }
}

/// Sends every full batch in `buffer` (and, with `all`, the rest too).
fn flush(buffer: &mut Vec<Pending>, sender: &Arc<dyn BatchSender>, limits: &Limits, all: bool) {
    loop {
        let mut cap = usize::MAX;
        let mut bytes = 0;
        let mut take = 0;
        for pending in buffer.iter() {
            let entry_cap = cap_for(limits, pending.attempt.number);
            if take > 0 && (take + 1 > cap.min(entry_cap) || bytes + pending.size() > limits.max_bytes) {
                break;
            }
            cap = cap.min(entry_cap);
            bytes += pending.size();
            take += 1;
            if take >= cap {
                break;
            }
        }
        let full = take > 0 && (take >= cap || take < buffer.len() || bytes >= limits.max_bytes);
        if take == 0 || !(full || all) {
            return;
        }
        let batch: Vec<Pending> = buffer.drain(..take).collect();
        let sender = sender.clone();
        tokio::spawn(async move { sender.send(batch).await });
        if buffer.is_empty() {
            return;
        }
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
        }
    }

    fn limits(max_records: usize) -> Limits {
        Limits { max_records, max_bytes: 10_000, linger: Duration::from_millis(20) }
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
}
