//! The ledger of a source whose messages are leased (SQS, Redis Streams): the lease of every
//! message handed to the pipeline, until the source has acknowledged it.
//!
//! A lease is a handle the source acknowledges by (an SQS receipt handle, a Redis entry id). A
//! message is registered when it is received, before its record reaches the dispatcher. When
//! the lane task completes it (delivered or durably dead-lettered), its lease is marked
//! *acknowledging* and goes to the source's acknowledger (SQS deletes, Redis `XACK`); it leaves
//! the ledger only when the source confirms (or says the lease is gone). Every lease in the
//! ledger is kept from lapsing by the source's keeper, acknowledging ones included: an
//! acknowledgement that lags never lets a delivered message come back. On shutdown the leases
//! not done are released for another consumer; acknowledging ones are not (they were
//! delivered). The count per queue or stream, acknowledging ones included, bounds what the
//! receiver takes (`SIDECAR_MAX_IN_FLIGHT`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use tokio::sync::{Notify, mpsc};

use super::{Ledger, Tracked};
use crate::record::TopicPartition;

/// A lease to acknowledge: its queue (or stream), the queue's address, the message's sequence
/// number and the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// The queue or stream.
    pub tp: TopicPartition,
    /// Where it is: an SQS queue's URL, a Redis stream's key.
    pub address: String,
    /// The message's sequence number.
    pub sequence: i64,
    /// Its lease: the receipt handle or entry id.
    pub lease: String,
}

/// A lease in the ledger.
#[derive(Debug)]
struct Held {
    lease: String,
    /// Completed: its acknowledgement is under way.
    deleting: bool,
}

/// One queue's (or stream's) leases.
#[derive(Debug)]
struct Queue {
    /// Its address.
    url: String,
    /// Epoch of the queue's single assignment.
    epoch: u64,
    /// Leases of messages in flight or being deleted, by sequence number.
    leases: BTreeMap<i64, Held>,
}

/// The leases of every queue (or stream) of a source.
#[derive(Debug)]
pub struct LeaseLedger {
    queues: Mutex<FxHashMap<TopicPartition, Queue>>,
    /// Completed leases, to the deleter; taken on [`close`](Self::close).
    done: Mutex<Option<mpsc::UnboundedSender<Done>>>,
    /// Wakes receivers waiting for room.
    room: Notify,
}

impl LeaseLedger {
    /// An empty ledger sending completed leases to `done`.
    pub fn new(done: mpsc::UnboundedSender<Done>) -> Self {
        LeaseLedger { queues: Mutex::default(), done: Mutex::new(Some(done)), room: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<TopicPartition, Queue>> {
        // Maps of strings, consistent after a panic elsewhere.
        self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No more completions: the deleter finishes what it has and stops. Completions after this
    /// are left to the visibility timeout (delivered again, never lost).
    pub fn close(&self) {
        self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }

    /// Adds a queue under `epoch`.
    pub fn add_queue(&self, tp: TopicPartition, url: String, epoch: u64) {
        self.lock().insert(tp, Queue { url, epoch, leases: BTreeMap::new() });
    }

    /// Registers the lease of a received message.
    pub fn register(&self, tp: &TopicPartition, sequence: i64, lease: String) {
        if let Some(queue) = self.lock().get_mut(tp) {
            queue.leases.insert(sequence, Held { lease, deleting: false });
        }
    }

    /// Whether `lease` of `tp` is in the ledger (a claim must not take back what is in flight).
    pub fn holds(&self, tp: &TopicPartition, lease: &str) -> bool {
        self.lock().get(tp).is_some_and(|q| q.leases.values().any(|h| h.lease == lease))
    }

    /// The delete of a lease went through, or SQS no longer knows it: it leaves the ledger.
    pub fn deleted(&self, tp: &TopicPartition, sequence: i64) {
        if let Some(queue) = self.lock().get_mut(tp) {
            queue.leases.remove(&sequence);
        }
        self.room.notify_waiters();
    }

    /// Messages of `tp` in flight or being deleted.
    pub fn in_flight(&self, tp: &TopicPartition) -> usize {
        self.lock().get(tp).map_or(0, |q| q.leases.len())
    }

    /// Resolves when some message completes after the call (enable it before checking
    /// [`in_flight`](Self::in_flight), so a completion in between is not missed).
    pub fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    /// The URL and receipt handles of every lease in the ledger, per queue (for the keeper).
    pub fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        self.lock()
            .values()
            .map(|q| (q.url.clone(), q.leases.values().map(|h| h.lease.clone()).collect()))
            .collect()
    }

    /// Takes every lease not done (on shutdown, to release them); deleting ones stay.
    pub fn take_unfinished(&self) -> Vec<(String, Vec<String>)> {
        self.lock()
            .values_mut()
            .map(|q| {
                let mut handles = Vec::new();
                q.leases.retain(|_, held| {
                    if !held.deleting {
                        handles.push(held.lease.clone());
                    }
                    held.deleting
                });
                (q.url.clone(), handles)
            })
            .collect()
    }
}

impl Ledger for LeaseLedger {
    fn track(&self, tp: &TopicPartition, epoch: u64, _records: &[(i64, Option<i64>)]) -> Option<Tracked> {
        // Leases were registered on receipt; nothing is finished by an earlier owner.
        self.lock().get(tp).filter(|q| q.epoch == epoch).map(|_| Tracked::default())
    }

    fn has_room(&self, _tp: &TopicPartition, _epoch: u64) -> bool {
        true
    }

    fn complete(&self, tp: &TopicPartition, epoch: u64, offsets: &[i64]) {
        {
            let mut queues = self.lock();
            let Some(queue) = queues.get_mut(tp).filter(|q| q.epoch == epoch) else { return };
            let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for offset in offsets {
                let Some(held) = queue.leases.get_mut(offset).filter(|h| !h.deleting) else { continue };
                held.deleting = true;
                // Without a deleter (closed: the process is stopping) the message becomes
                // visible again when its lease lapses: delivered again, never lost.
                if let Some(done) = done.as_ref() {
                    let lease = held.lease.clone();
                    drop(done.send(Done {
                        tp: tp.clone(),
                        address: queue.url.clone(),
                        sequence: *offset,
                        lease,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(handle: &str) -> String {
        handle.to_string()
    }

    #[test]
    fn a_completed_message_leaves_the_ledger_for_the_deleter_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ledger = LeaseLedger::new(tx);
        let tp = TopicPartition::new("q", 0);
        ledger.add_queue(tp.clone(), "http://sqs/1/q".into(), 1);
        ledger.register(&tp, 1, lease("h1"));
        ledger.register(&tp, 2, lease("h2"));
        assert_eq!(ledger.track(&tp, 1, &[(1, None), (2, None)]), Some(Tracked::default()));
        assert_eq!(ledger.track(&tp, 2, &[(1, None)]), None, "another epoch is not this queue's");
        ledger.complete(&tp, 1, &[2]);
        ledger.complete(&tp, 1, &[2]);
        ledger.complete(&tp, 9, &[1]);
        let expected =
            Done { tp: tp.clone(), address: "http://sqs/1/q".into(), sequence: 2, lease: lease("h2") };
        assert_eq!(rx.try_recv().ok(), Some(expected));
        assert!(rx.try_recv().is_err(), "deleted once, and not by a completion of another epoch");
        assert_eq!(ledger.in_flight(&tp), 2, "a lease being deleted still counts");
        let kept: Vec<String> = ledger.snapshot().into_iter().flat_map(|(_, h)| h).collect();
        assert_eq!(kept, vec!["h1", "h2"], "the keeper extends a lease until its delete is confirmed");
        assert_eq!(
            ledger.take_unfinished(),
            vec![("http://sqs/1/q".to_string(), vec!["h1".to_string()])],
            "a delivered message is never released"
        );
        ledger.deleted(&tp, 2);
        assert_eq!(ledger.in_flight(&tp), 0);
    }
}
