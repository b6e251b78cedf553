//! What the Redis Streams source does with pending entries: acknowledges (`XACK`) the entries
//! that are done, keeps those in flight from looking abandoned, and hands the rest to another
//! consumer on shutdown.
//!
//! Acknowledgements go in one `XACK` per stream of what completed within a few milliseconds;
//! one that fails is tried again with backoff, a few times, while the keeper keeps its entry
//! fresh; after that the entry stays pending and comes back (at least once). The keeper resets
//! the idle time of every entry in flight (`XCLAIM ... 0 ... JUSTID`) every third of
//! `REDIS_CLAIM_MIN_IDLE`, so a slow application or a long retry never lets another consumer's
//! `XAUTOCLAIM` take an entry this one is still delivering. The release on shutdown marks the
//! entries not done as idle for the claim time (`XCLAIM ... IDLE`), so a running consumer claims
//! them at once instead of after the idle time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::link::Link;
use crate::source::leases::{Done, LeaseLedger};

/// How long the acknowledger waits for more completions before it sends what it has.
const LINGER: Duration = Duration::from_millis(5);
/// Tries of one acknowledgement before it is left pending.
const ACK_TRIES: u32 = 5;

/// The group and consumer the commands act for.
#[derive(Clone, Debug)]
pub struct Member {
    /// The consumer group.
    pub group: String,
    /// This consumer.
    pub consumer: String,
}

/// Acknowledges completed entries until the ledger closes its side and everything sent is
/// tried.
pub async fn acknowledge(
    link: Arc<Link>,
    ledger: Arc<LeaseLedger>,
    member: Member,
    mut done: mpsc::UnboundedReceiver<Done>,
) {
    while let Some(first) = done.recv().await {
        let mut waiting = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while waiting.len() < 500 {
            match tokio::time::timeout_at(until, done.recv()).await {
                Ok(Some(more)) => waiting.push(more),
                Ok(None) | Err(_) => break,
            }
        }
        waiting.sort_by(|a, b| a.address.cmp(&b.address));
        let mut batches: Vec<Vec<Done>> = Vec::new();
        for item in waiting {
            match batches.last_mut() {
                Some(last) if last[0].address == item.address => last.push(item),
                _ => batches.push(vec![item]),
            }
        }
        let acks = batches.into_iter().map(|batch| acknowledge_batch(&link, &ledger, &member, batch));
        futures::future::join_all(acks).await;
    }
}

/// One stream's `XACK`, tried again while it may succeed later.
async fn acknowledge_batch(link: &Link, ledger: &LeaseLedger, member: &Member, batch: Vec<Done>) {
    let stream = batch[0].address.clone();
    let mut ack = redis::cmd("XACK");
    ack.arg(&stream).arg(&member.group);
    for item in &batch {
        ack.arg(&item.lease);
    }
    for attempt in 1..=ACK_TRIES {
        match link.query(&ack).await {
            Ok(_) => {
                for item in &batch {
                    ledger.deleted(&item.tp, item.sequence);
                }
                return;
            }
            Err(err) => {
                tracing::warn!(stream = %stream, entries = batch.len(), attempt, error = %err, "Acknowledging finished entries failed; trying again.");
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            }
        }
    }
    tracing::warn!(stream = %stream, entries = batch.len(), "Finished entries could not be acknowledged: they stay pending and will be delivered again.");
    for item in &batch {
        ledger.deleted(&item.tp, item.sequence);
    }
}

/// `XCLAIM <stream> <group> <consumer> 0 <ids> [IDLE ms] JUSTID`: the entries stay (or become)
/// this consumer's, with their idle time set (0 unless `idle`).
async fn touch(
    link: &Link,
    member: &Member,
    stream: &str,
    ids: &[String],
    idle: Option<Duration>,
) -> Result<(), String> {
    let mut claim = redis::cmd("XCLAIM");
    claim.arg(stream).arg(&member.group).arg(&member.consumer).arg(0);
    for id in ids {
        claim.arg(id);
    }
    if let Some(idle) = idle {
        claim.arg("IDLE").arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
    }
    claim.arg("JUSTID");
    link.query(&claim).await.map(drop).map_err(|err| err.to_string())
}

/// Resets the idle time of every entry in flight every third of `min_idle`. Runs until
/// aborted.
pub async fn keep(link: Arc<Link>, ledger: Arc<LeaseLedger>, member: Member, min_idle: Duration) {
    let every = (min_idle / 3).max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for (stream, ids) in ledger.snapshot() {
            for chunk in ids.chunks(500) {
                if let Err(error) = touch(&link, &member, &stream, chunk, None).await {
                    tracing::warn!(stream = %stream, error = %error, "Keeping entries in flight from looking abandoned failed: another consumer may claim them.");
                }
            }
        }
    }
}

/// Hands every entry still in the ledger to whoever claims next (on shutdown); how many.
pub async fn release(link: &Link, ledger: &LeaseLedger, member: &Member, min_idle: Duration) -> usize {
    let mut released = 0;
    for (stream, ids) in ledger.take_unfinished() {
        for chunk in ids.chunks(500) {
            match touch(link, member, &stream, chunk, Some(min_idle + Duration::from_secs(1))).await {
                Ok(()) => released += chunk.len(),
                Err(error) => {
                    tracing::warn!(stream = %stream, error = %error, "Releasing unfinished entries failed: they are claimed after REDIS_CLAIM_MIN_IDLE.")
                }
            }
        }
    }
    released
}
