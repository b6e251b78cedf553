//! Offsets: per partition, the contiguous watermark of records that reached a terminal state,
//! and the map of records finished above it.
//!
//! A record is *tracked* when the consumer hands it to the dispatcher and *completed* when it
//! is delivered or durably dead-lettered. The offset to commit for a partition is the lowest
//! tracked offset not yet completed, or one past the highest tracked offset when none is
//! outstanding: a commit never passes a record that is not done, whatever order records finish
//! in, and gaps in the offsets (compaction, transaction markers) need no special case. The
//! records finished above it travel in the commit's metadata ([`map`]), so whoever resumes the
//! partition skips them instead of delivering them twice.
//!
//! Each assignment of a partition gets a new epoch; completions that carry an older epoch
//! (records of a revoked assignment finishing late) are ignored.

pub mod map;
mod window;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use crate::record::TopicPartition;
use crate::source::Ledger;
pub use crate::source::Tracked;
pub use map::{DoneRanges, MapError};
pub use window::{Commit, PartitionOffsets};

/// The default of `SIDECAR_MAX_UNCOMMITTED`: offsets a partition may run ahead of its commit
/// point. Below about 24,000 every finished record fits the 4 KiB offset map.
pub const DEFAULT_MAX_UNCOMMITTED: u64 = 20_000;

/// One assignment: its epoch and its offsets.
#[derive(Debug)]
struct Assigned {
    /// Epoch of this assignment.
    epoch: u64,
    /// Watermark state.
    offsets: PartitionOffsets,
}

/// The watermarks of every assigned partition, shared by the poll loop and the workers.
#[derive(Debug)]
pub struct OffsetTracker {
    /// Assigned partitions.
    partitions: Mutex<FxHashMap<TopicPartition, Assigned>>,
    /// Source of epochs.
    epochs: AtomicU64,
    /// Offsets a partition may run ahead of its commit point before it pauses.
    max_uncommitted: u64,
    /// Set once the brokers refused a commit for the size of its metadata: maps are left out.
    maps_refused: std::sync::atomic::AtomicBool,
}

impl Default for OffsetTracker {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_UNCOMMITTED)
    }
}

impl OffsetTracker {
    /// An empty tracker whose partitions pause `max_uncommitted` offsets ahead of their commit.
    pub fn new(max_uncommitted: u64) -> Self {
        OffsetTracker {
            partitions: Mutex::default(),
            epochs: AtomicU64::new(0),
            max_uncommitted,
            maps_refused: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<TopicPartition, Assigned>> {
        // A panic while holding this lock leaves plain data (sets and integers) that is still
        // consistent, so a poisoned lock is used as is.
        self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a new assignment of `tp` and returns its epoch. Any previous state is dropped.
    /// `inherited` is the offset map the previous owner committed, if any.
    pub fn assign(&self, tp: &TopicPartition, inherited: Option<DoneRanges>) -> u64 {
        let mut partitions = self.lock();
        let epoch = self.epochs.fetch_add(1, Ordering::AcqRel) + 1;
        let mut offsets = PartitionOffsets::inheriting(inherited);
        if self.maps_refused.load(Ordering::Acquire) {
            offsets.drop_maps();
        }
        partitions.insert(tp.clone(), Assigned { epoch, offsets });
        epoch
    }

    /// The epoch of the newest assignment of any partition: records polled now belong to no
    /// assignment newer than this.
    pub fn last_epoch(&self) -> u64 {
        self.epochs.load(Ordering::Acquire)
    }

    /// Ends the assignment of `tp`, returning its final commit unless the broker already
    /// acknowledged exactly it (see [`PartitionOffsets::final_commit`]).
    pub fn revoke(&self, tp: &TopicPartition) -> Option<Commit> {
        self.lock().remove(tp).and_then(|a| a.offsets.final_commit())
    }

    /// Ends the assignment of `tp` without a commit (it was lost to another member).
    pub fn forget(&self, tp: &TopicPartition) {
        self.lock().remove(tp);
    }

    /// The epoch of the current assignment of `tp`.
    pub fn epoch(&self, tp: &TopicPartition) -> Option<u64> {
        self.lock().get(tp).map(|a| a.epoch)
    }

    /// Tracks consumed records of one partition (offset, timestamp) under one lock. `None` (and
    /// nothing tracked) if `tp` is not assigned under `epoch`.
    pub fn track_many(
        &self,
        tp: &TopicPartition,
        epoch: u64,
        records: &[(i64, Option<i64>)],
    ) -> Option<Tracked> {
        let mut partitions = self.lock();
        let a = partitions.get_mut(tp).filter(|a| a.epoch == epoch)?;
        let mut tracked = Tracked::default();
        for (index, (offset, timestamp)) in records.iter().enumerate() {
            if a.offsets.track(*offset, *timestamp) {
                tracked.skipped.push(index);
            }
        }
        tracked.full = a.offsets.uncommitted() >= self.max_uncommitted;
        Some(tracked)
    }

    /// Whether `tp` (under `epoch`) has come back to half its cap of uncommitted offsets, so a
    /// partition paused for the cap may resume.
    pub fn has_room(&self, tp: &TopicPartition, epoch: u64) -> bool {
        self.lock()
            .get(tp)
            .filter(|a| a.epoch == epoch)
            .is_none_or(|a| a.offsets.uncommitted() <= self.max_uncommitted / 2)
    }

    /// Completes records of one partition under one lock. Completions from another epoch are
    /// ignored.
    pub fn complete_many(&self, tp: &TopicPartition, epoch: u64, offsets: &[i64]) {
        if let Some(a) = self.lock().get_mut(tp)
            && a.epoch == epoch
        {
            for offset in offsets {
                a.offsets.complete(*offset);
            }
        }
    }

    /// The current watermark of `tp`.
    pub fn watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.lock().get(tp).and_then(|a| a.offsets.watermark())
    }

    /// Outstanding records of `tp`.
    pub fn pending(&self, tp: &TopicPartition) -> usize {
        self.lock().get(tp).map_or(0, |a| a.offsets.pending())
    }

    /// The lowest outstanding offset of every partition that has one.
    pub fn oldest_pending(&self) -> Vec<(TopicPartition, i64)> {
        self.lock().iter().filter_map(|(tp, a)| Some((tp.clone(), a.offsets.oldest_pending()?))).collect()
    }

    /// Per assigned partition, the timestamp of the oldest record not yet done (`None`: none).
    pub fn oldest_timestamps(&self) -> Vec<(TopicPartition, Option<i64>)> {
        self.lock().iter().map(|(tp, a)| (tp.clone(), a.offsets.oldest_pending_timestamp())).collect()
    }

    /// Commits that changed since they were last taken, marked as handed out; restricted to
    /// `only` when given.
    pub fn take_commits(&self, only: Option<&[TopicPartition]>) -> Vec<(TopicPartition, Commit)> {
        let mut partitions = self.lock();
        let mut commits: Vec<_> = partitions
            .iter_mut()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|(tp, a)| a.offsets.take_commit().map(|c| (tp.clone(), c)))
            .collect();
        commits.sort_by(|a, b| a.0.cmp(&b.0));
        commits
    }

    /// The brokers refused a commit for the size of its metadata (`OFFSET_METADATA_TOO_LARGE`,
    /// `INVALID_COMMIT_OFFSET_SIZE`): from now on commits carry no offset maps. Records finished
    /// above a commit point are then delivered again after a handover, never skipped. Returns
    /// true the first time.
    pub fn refuse_maps(&self) -> bool {
        let first = !self.maps_refused.swap(true, Ordering::AcqRel);
        self.lock().values_mut().for_each(|a| a.offsets.drop_maps());
        first
    }

    /// Forgets a failed commit so that it is retried.
    pub fn commit_failed(&self, tp: &TopicPartition, offset: i64) {
        if let Some(a) = self.lock().get_mut(tp) {
            a.offsets.commit_failed(offset);
        }
    }

    /// Records that the broker acknowledged a commit of `offset` (with `metadata`, when it could
    /// be read) for `tp`.
    pub fn commit_confirmed(&self, tp: &TopicPartition, offset: i64, metadata: Option<String>) {
        if let Some(a) = self.lock().get_mut(tp) {
            a.offsets.commit_confirmed(offset, metadata);
        }
    }
}

#[cfg(test)]
mod tracker_tests;

/// The Kafka source's ledger: tracking and completing move the watermark.
impl Ledger for OffsetTracker {
    fn track(&self, tp: &TopicPartition, epoch: u64, records: &[(i64, Option<i64>)]) -> Option<Tracked> {
        self.track_many(tp, epoch, records)
    }

    fn has_room(&self, tp: &TopicPartition, epoch: u64) -> bool {
        OffsetTracker::has_room(self, tp, epoch)
    }

    fn complete(&self, tp: &TopicPartition, epoch: u64, offsets: &[i64]) {
        self.complete_many(tp, epoch, offsets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_ignores_completions_from_a_revoked_assignment() {
        let tracker = OffsetTracker::default();
        let tp = TopicPartition::new("t", 0);
        let old = tracker.assign(&tp, None);
        assert!(tracker.track_many(&tp, old, &[(0, None)]).is_some());
        assert_eq!(
            tracker.revoke(&tp).map(|c| c.offset),
            Some(0),
            "final watermark of the revoked assignment"
        );
        assert!(tracker.track_many(&tp, old, &[(1, None)]).is_none(), "not assigned");

        let new = tracker.assign(&tp, None);
        assert_ne!(old, new);
        assert!(tracker.track_many(&tp, new, &[(0, None)]).is_some());
        tracker.complete_many(&tp, old, &[0]); // late completion of the old assignment
        assert_eq!(tracker.watermark(&tp), Some(0), "stale completion ignored");
        tracker.complete_many(&tp, new, &[0]);
        assert_eq!(tracker.watermark(&tp), Some(1));
        assert_eq!(tracker.pending(&tp), 0);
    }

    #[test]
    fn tracker_takes_commits_per_partition() {
        let tracker = OffsetTracker::default();
        let a = TopicPartition::new("t", 0);
        let b = TopicPartition::new("t", 1);
        let (ea, eb) = (tracker.assign(&a, None), tracker.assign(&b, None));
        tracker.track_many(&a, ea, &[(5, None)]);
        tracker.track_many(&b, eb, &[(9, None)]);
        tracker.complete_many(&a, ea, &[5]);
        let offsets = |commits: Vec<(TopicPartition, Commit)>| -> Vec<(TopicPartition, i64)> {
            commits.into_iter().map(|(tp, c)| (tp, c.offset)).collect()
        };
        assert_eq!(offsets(tracker.take_commits(Some(std::slice::from_ref(&a)))), vec![(a.clone(), 6)]);
        assert_eq!(offsets(tracker.take_commits(None)), vec![(b.clone(), 9)]);
        assert_eq!(offsets(tracker.take_commits(None)), vec![]);
        assert_eq!(tracker.oldest_pending(), vec![(b.clone(), 9)]);
        tracker.complete_many(&b, eb, &[9]);
        assert_eq!(tracker.revoke(&b).map(|c| c.offset), Some(10));
        tracker.commit_confirmed(&a, 6, Some(String::new()));
        assert_eq!(tracker.revoke(&a), None, "already committed");
    }

    #[test]
    fn revoke_commits_again_a_watermark_whose_commit_was_sent_but_not_acknowledged() {
        let tracker = OffsetTracker::default();
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp, None);
        for offset in 0..4 {
            tracker.track_many(&tp, epoch, &[(offset, None)]);
            tracker.complete_many(&tp, epoch, &[offset]);
        }
        // The periodic commit sends 4; the rebalance starts before the broker answers.
        assert_eq!(tracker.take_commits(None).len(), 1);
        assert_eq!(tracker.take_commits(None), vec![], "nothing new for the periodic commit");
        assert_eq!(tracker.revoke(&tp).map(|c| c.offset), Some(4), "the revoke commits 4 itself");

        let epoch = tracker.assign(&tp, None);
        tracker.track_many(&tp, epoch, &[(4, None)]);
        tracker.complete_many(&tp, epoch, &[4]);
        assert_eq!(tracker.take_commits(None).len(), 1);
        tracker.commit_confirmed(&tp, 3, Some(String::new())); // an older commit's late acknowledgement
        tracker.commit_confirmed(&tp, 5, Some(String::new()));
        assert_eq!(tracker.revoke(&tp), None, "acknowledged: nothing left to commit");
    }

    #[test]
    fn a_partition_too_far_ahead_of_its_commit_is_full_until_it_catches_up() {
        let tracker = OffsetTracker::new(100);
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp, None);
        let records: Vec<(i64, Option<i64>)> = (0..99).map(|o| (o, None)).collect();
        assert!(!tracker.track_many(&tp, epoch, &records).unwrap().full);
        tracker.complete_many(&tp, epoch, &(1..99).collect::<Vec<_>>());
        assert!(tracker.track_many(&tp, epoch, &[(99, None)]).unwrap().full, "offset 0 holds 100");
        assert!(!tracker.has_room(&tp, epoch));
        tracker.complete_many(&tp, epoch, &[0]);
        assert!(tracker.has_room(&tp, epoch));
    }

    #[test]
    fn once_the_brokers_refuse_maps_commits_carry_none() {
        let tracker = OffsetTracker::default();
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp, None);
        tracker.track_many(&tp, epoch, &[(0, None), (1, None)]);
        tracker.complete_many(&tp, epoch, &[1]);
        assert!(!tracker.take_commits(None)[0].1.metadata.is_empty());
        assert!(tracker.refuse_maps());
        assert!(!tracker.refuse_maps(), "reported once");
        let commits = tracker.take_commits(None);
        assert_eq!((commits[0].1.offset, commits[0].1.metadata.as_str()), (0, ""));
        let epoch = tracker.assign(&tp, None);
        tracker.track_many(&tp, epoch, &[(0, None), (1, None)]);
        tracker.complete_many(&tp, epoch, &[1]);
        assert_eq!(tracker.revoke(&tp).map(|c| c.metadata), Some(String::new()), "new assignments too");
    }

    #[test]
    fn skipped_records_are_reported_by_their_index_in_the_run() {
        let tracker = OffsetTracker::default();
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp, None);
        tracker.track_many(&tp, epoch, &[(0, None), (1, None), (2, None)]);
        tracker.complete_many(&tp, epoch, &[1]);
        let handed_over = tracker.revoke(&tp).expect("final commit");
        let inherited = map::decode(handed_over.offset, &handed_over.metadata).expect("map");
        let epoch = tracker.assign(&tp, inherited);
        let tracked = tracker.track_many(&tp, epoch, &[(0, None), (1, None), (2, None)]).expect("assigned");
        assert_eq!(tracked.skipped, vec![1]);
        assert_eq!(tracker.pending(&tp), 2);
    }

    #[test]
    fn oldest_timestamp_follows_the_lowest_unfinished_record() {
        let tracker = OffsetTracker::default();
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp, None);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp.clone(), None)]);
        tracker.track_many(&tp, epoch, &[(1, Some(1_000)), (2, Some(2_000))]);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp.clone(), Some(1_000))]);
        tracker.complete_many(&tp, epoch, &[1]);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp.clone(), Some(2_000))]);
        tracker.complete_many(&tp, epoch, &[2]);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp, None)]);
    }
}
