//! The boundary between a source and the pipeline: what a source hands over and what it gets
//! back.
//!
//! A source (the Kafka consumer, an SQS receiver) yields [`Record`](crate::record::Record)s in runs per
//! partition, each run tracked in the source's [`Ledger`] before the dispatcher queues it, and
//! it receives every record back, through the same ledger, exactly when the record is delivered
//! or durably dead-lettered. What "done" means is the source's business: for Kafka the offset
//! tracker moves the commit watermark and the offset map; a queue would delete or acknowledge
//! the message. Lanes, retries, the breaker, dead letters, tracing and metrics see only records
//! and this trait, never which source they came from.
//!
//! A partition stands for the source's unit of order and assignment (a Kafka partition); its
//! epoch names one assignment of it, so a completion that arrives after the partition was taken
//! away and given back is recognised as belonging to the earlier assignment and ignored.

pub mod leases;

use crate::record::TopicPartition;

/// What tracking a run of records found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Indexes (in the run) of records finished by an earlier owner: done, not to be delivered.
    pub skipped: Vec<usize>,
    /// The partition has run as far ahead of its acknowledged point as the source allows:
    /// pause it.
    pub full: bool,
}

/// Where a source keeps the state of the records it handed over.
pub trait Ledger: Send + Sync + 'static {
    /// Tracks a run of records of one partition, as (offset, timestamp), before they are queued.
    /// `None` (and nothing tracked) if `tp` is not assigned under `epoch`: the run is dropped.
    fn track(&self, tp: &TopicPartition, epoch: u64, records: &[(i64, Option<i64>)]) -> Option<Tracked>;

    /// Whether a partition paused for being too far ahead ([`Tracked::full`]) may resume.
    fn has_room(&self, tp: &TopicPartition, epoch: u64) -> bool;

    /// Records of one partition that reached a terminal outcome (delivered or durably
    /// dead-lettered). Completions of another epoch are ignored.
    fn complete(&self, tp: &TopicPartition, epoch: u64, offsets: &[i64]);
}
