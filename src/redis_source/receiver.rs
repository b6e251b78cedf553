//! One stream's receiver: reads the group's entries while fewer than `SIDECAR_MAX_IN_FLIGHT` of
//! the stream's entries are in flight and the dispatcher has not asked it to pause, registers
//! each entry's id in the ledger and hands the records to the dispatcher.
//!
//! It reads, in this order of preference: first, once, this consumer's own pending entries
//! (`XREADGROUP ... 0`: what a previous run under the same name received and never
//! acknowledged, a SIGKILL's leftovers); then, every third of `REDIS_CLAIM_MIN_IDLE`, entries
//! other consumers left idle that long (`XAUTOCLAIM`: a consumer that died); otherwise new
//! entries (`XREADGROUP ... >`, blocking up to a second). Entries it already holds are never
//! taken twice. After a failed read it reads its own pending entries again (an answer lost on
//! the way may have given it some); on stop it waits for a blocked read's answer and registers
//! what came undelivered, so the release hands those back too. A command that fails (the server went away, the group was deleted) is tried
//! again with backoff after the connection is remade (the group created again if it is
//! missing), and the stream shows on `/ready` until a read succeeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::entry::{self, Entry};
use super::link::{CommandError, Link};
use crate::dispatch::{Command, DispatchHandle, Paused, leased};
use crate::health::{Component, Health, Latch};
use crate::record::TopicPartition;
use crate::source::leases::LeaseLedger;

/// How long a read blocks waiting for new entries.
pub const BLOCK: Duration = Duration::from_secs(1);

/// What a receiver works with.
pub struct Receiver {
    /// Commands that block (`XREADGROUP ... BLOCK`), on their own connection.
    pub reads: Arc<Link>,
    /// Other commands.
    pub commands: Arc<Link>,
    /// The stream as a partition.
    pub tp: TopicPartition,
    /// Its assignment epoch.
    pub epoch: u64,
    /// The group and this consumer.
    pub group: String,
    /// This consumer's name.
    pub consumer: String,
    /// Where a group created here starts (`0` or `$`).
    pub start_id: &'static str,
    /// Pending entries idle this long are claimed.
    pub claim_min_idle: Duration,
    /// Leases.
    pub ledger: Arc<LeaseLedger>,
    /// Where records go.
    pub dispatch: DispatchHandle,
    /// Back-pressure.
    pub paused: Arc<Paused>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Entries in flight at most.
    pub max_in_flight: usize,
    /// The readiness problem the start found (Redis did not answer): it goes with the first
    /// read that does.
    pub unready: Option<Latch>,
}

/// Which entries a read asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reading {
    /// This consumer's pending entries after this id.
    Own(String),
    /// New entries.
    New,
}

impl Receiver {
    /// Creates the group if it is missing (`MKSTREAM`: the stream too).
    pub async fn ensure_group(&self) -> Result<(), CommandError> {
        let mut create = redis::cmd("XGROUP");
        create.arg("CREATE").arg(self.tp.topic.as_ref()).arg(&self.group).arg(self.start_id).arg("MKSTREAM");
        match self.commands.query(&create).await {
            Ok(_) => Ok(()),
            Err(err) if err.code.as_deref() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Receives until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut sequence: i64 = 0;
        let mut reading = Reading::Own("0".into());
        let mut failing: Option<Latch> = self.unready.take();
        // Reads failed in a row: one failure is retried before it shows on /ready (ElastiCache
        // closes IAM connections after 12 hours; the next read reconnects).
        let mut failures = 0u32;
        let mut backoff = Duration::from_millis(200);
        let claim_every = self.claim_min_idle / 3;
        let mut next_claim = tokio::time::Instant::now();
        let mut claim_cursor = "0-0".to_string();
        loop {
            let Some(room) = self.room(&stop).await else { return };
            let now = tokio::time::Instant::now();
            // New entries were delivered once; claimed and own pending ones may have been more.
            let fresh = now < next_claim && reading == Reading::New;
            let read = if now >= next_claim {
                self.claim(&claim_cursor, room).await.map(|(cursor, entries)| {
                    // A full pass ends at cursor 0-0: the next one waits a third of the idle time.
                    if cursor == "0-0" {
                        next_claim = now + claim_every;
                    }
                    claim_cursor = cursor;
                    entries
                })
            } else {
                let current = reading.clone();
                let read = self.read(&current, room);
                let mut read = std::pin::pin!(read);
                let result = tokio::select! {
                    result = &mut read => result,
                    () = stop.cancelled() => {
                        // Redis hands the entries of a blocked read to this consumer even if
                        // nobody reads the answer: take it (a read blocks at most a second) and
                        // register them undelivered, so the release hands them back at once.
                        if let Ok(Ok(entries)) = tokio::time::timeout(BLOCK * 2, &mut read).await {
                            for entry in entries.into_iter().filter(|e| !self.ledger.holds(&self.tp, &e.id)) {
                                sequence += 1;
                                self.ledger.register(&self.tp, sequence, entry.id);
                            }
                        }
                        return;
                    }
                };
                result.inspect(|entries| {
                    if let Reading::Own(_) = reading {
                        reading = match entries.last() {
                            Some(last) => Reading::Own(last.id.clone()),
                            None => Reading::New,
                        };
                    }
                })
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    // A read whose answer was lost may have given this consumer entries: read
                    // its own pending ones again first (those it holds are skipped).
                    reading = Reading::Own("0".into());
                    tracing::warn!(stream = %self.tp.topic, error = %err, "Reading from the stream failed; trying again.");
                    let reason = format!("reading Redis stream {} fails: {err}", self.tp.topic);
                    failures += 1;
                    match &failing {
                        Some(latch) => latch.update(reason),
                        None if failures >= 2 => {
                            failing = Some(self.health.latch(Component::Source, &self.tp.topic, reason));
                        }
                        None => {}
                    }
                    if err.code.as_deref() == Some("NOGROUP")
                        && let Err(err) = self.ensure_group().await
                    {
                        tracing::warn!(stream = %self.tp.topic, error = %err, "Creating the consumer group failed.");
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            failing = None;
            failures = 0;
            backoff = Duration::from_millis(200);
            let counts = if fresh { HashMap::new() } else { self.delivery_counts(&entries).await };
            let mut records = Vec::with_capacity(entries.len());
            for Entry { id, fields } in entries {
                if self.ledger.holds(&self.tp, &id) {
                    continue; // in flight here already: never twice
                }
                let Some(fields) = fields else {
                    // Deleted from the stream (trimmed) while pending: nothing left to deliver.
                    tracing::warn!(stream = %self.tp.topic, id = %id, "A pending entry was deleted from the stream before it was delivered; acknowledging it.");
                    self.acknowledge_gone(&id).await;
                    continue;
                };
                sequence += 1;
                let deliveries = counts.get(&id).copied().unwrap_or(1);
                let record = entry::to_record(&self.tp, sequence, &id, &fields, deliveries);
                self.ledger.register(&self.tp, sequence, id);
                records.push(record);
            }
            if !records.is_empty() && !self.dispatch.send(Command::Records { records, polled_at: self.epoch })
            {
                return; // the dispatcher stopped: the process is stopping
            }
        }
    }

    /// One `XREADGROUP`.
    async fn read(&self, reading: &Reading, room: usize) -> Result<Vec<Entry>, CommandError> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP").arg(&self.group).arg(&self.consumer).arg("COUNT").arg(room);
        let from = match reading {
            Reading::Own(after) => after.as_str(),
            Reading::New => {
                read.arg("BLOCK").arg(u64::try_from(BLOCK.as_millis()).unwrap_or(1000));
                ">"
            }
        };
        read.arg("STREAMS").arg(self.tp.topic.as_ref()).arg(from);
        let link = if *reading == Reading::New { &self.reads } else { &self.commands };
        Ok(entry::read_reply(&link.query(&read).await?))
    }

    /// One `XAUTOCLAIM` step from `cursor`: the next cursor and what it claimed.
    async fn claim(&self, cursor: &str, room: usize) -> Result<(String, Vec<Entry>), CommandError> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(self.tp.topic.as_ref())
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(u64::try_from(self.claim_min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg(cursor)
            .arg("COUNT")
            .arg(room);
        let (next, claimed, deleted) = entry::claim_reply(&self.commands.query(&claim).await?);
        if !deleted.is_empty() {
            tracing::warn!(stream = %self.tp.topic, count = deleted.len(), "Pending entries of a stopped consumer were deleted from the stream before they were delivered.");
        }
        if !claimed.is_empty() {
            tracing::info!(stream = %self.tp.topic, count = claimed.len(), "Claimed entries another consumer left pending.");
        }
        Ok((next, claimed))
    }

    /// How often Redis delivered each of `entries` (`XPENDING` over their range), for
    /// `x-redis-delivery-count`; an entry it does not list counts as delivered once.
    async fn delivery_counts(&self, entries: &[Entry]) -> HashMap<String, u64> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return HashMap::new() };
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(self.tp.topic.as_ref())
            .arg(&self.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len().max(1) * 2)
            .arg(&self.consumer);
        let Ok(Value::Array(rows)) = self.commands.query(&pending).await else { return HashMap::new() };
        rows.iter()
            .filter_map(|row| match row {
                Value::Array(fields) => match (fields.first(), fields.get(3)) {
                    (Some(Value::BulkString(id)), Some(Value::Int(count))) => {
                        Some((String::from_utf8_lossy(id).into_owned(), u64::try_from(*count).unwrap_or(1)))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Acknowledges an entry that no longer exists, so it leaves the pending list.
    async fn acknowledge_gone(&self, id: &str) {
        let mut ack = redis::cmd("XACK");
        ack.arg(self.tp.topic.as_ref()).arg(&self.group).arg(id);
        if let Err(err) = self.commands.query(&ack).await {
            tracing::warn!(stream = %self.tp.topic, error = %err, "Acknowledging a deleted entry failed; it stays pending.");
        }
    }

    /// Waits until the stream may take more entries; how many, or `None` on stop.
    async fn room(&self, stop: &CancellationToken) -> Option<usize> {
        leased::room(&self.ledger, &self.tp, self.epoch, self.max_in_flight, &self.paused, stop).await
    }
}
