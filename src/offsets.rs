//! Offsets: per partition, the contiguous watermark of records that reached a terminal state.
//!
//! A record is *tracked* when the consumer hands it to the dispatcher and *completed* when it
//! is delivered or durably dead-lettered. The offset to commit for a partition is the lowest
//! tracked offset not yet completed, or one past the highest tracked offset when none is
//! outstanding: a commit never passes a record that is not done, whatever order records finish
//! in, and gaps in the offsets (compaction, transaction markers) need no special case.
//!
//! Each assignment of a partition gets a new epoch; completions that carry an older epoch
//! (records of a revoked assignment finishing late) are ignored.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::sync::Mutex;

use crate::record::TopicPartition;

/// Gaps longer than this (compaction, transaction markers) are not stored slot by slot.
const MAX_GAP: i64 = 4096;

/// One offset of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// No record at this offset (or not ours).
    Gap,
    /// Tracked, not done; the record's timestamp (ms).
    Pending(Option<i64>),
    /// Done.
    Done,
}

/// The watermark state of one partition assignment.
///
/// Offsets arrive in increasing order, so the outstanding ones live in a window starting at the
/// lowest of them: tracking appends, completing marks a slot, and finished slots fall off the
/// front. Both are O(1). Offsets that arrive out of order (a seek back) or after a long gap while
/// others are outstanding go to a small ordered side set.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    /// The offset of the window's first slot; the front slot is always pending.
    base: i64,
    /// Slots for `base..base + window.len()`.
    window: std::collections::VecDeque<Slot>,
    /// Pending slots in the window.
    window_pending: usize,
    /// Outstanding offsets that do not fit the window.
    outliers: BTreeMap<i64, Option<i64>>,
    /// One past the highest tracked offset.
    next: Option<i64>,
    /// The last offset handed out for commit.
    committed: Option<i64>,
    /// The highest offset the broker acknowledged as committed.
    confirmed: Option<i64>,
}

impl PartitionOffsets {
    fn end(&self) -> i64 {
        self.base + self.window.len() as i64
    }

    /// Records that `offset` (with record timestamp `timestamp`, ms) was consumed and is now
    /// outstanding.
    pub fn track(&mut self, offset: i64, timestamp: Option<i64>) {
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
        if self.window.is_empty() && self.outliers.range(offset..).next().is_none() {
            self.base = offset;
        }
        let end = self.end();
        if offset >= end && (self.window.is_empty() || offset - end <= MAX_GAP) {
            self.window.extend(std::iter::repeat_n(Slot::Gap, (offset - end) as usize));
            self.window.push_back(Slot::Pending(timestamp));
            self.window_pending += 1;
        } else if offset >= self.base && offset < end {
            let slot = &mut self.window[(offset - self.base) as usize];
            if !matches!(slot, Slot::Pending(_)) {
                self.window_pending += 1;
            }
            *slot = Slot::Pending(timestamp);
        } else {
            self.outliers.insert(offset, timestamp);
        }
    }

    /// Records that `offset` reached a terminal state. Unknown offsets are ignored.
    pub fn complete(&mut self, offset: i64) -> bool {
        if offset >= self.base && offset < self.end() {
            let slot = &mut self.window[(offset - self.base) as usize];
            if !matches!(slot, Slot::Pending(_)) {
                return false;
            }
            *slot = Slot::Done;
            self.window_pending -= 1;
            while matches!(self.window.front(), Some(Slot::Done | Slot::Gap)) {
                self.window.pop_front();
                self.base += 1;
            }
            return true;
        }
        self.outliers.remove(&offset).is_some()
    }

    /// The lowest outstanding offset and its timestamp.
    fn oldest(&self) -> Option<(i64, Option<i64>)> {
        let in_window = match self.window.front() {
            Some(Slot::Pending(timestamp)) => Some((self.base, *timestamp)),
            _ => None,
        };
        let outlier = self.outliers.first_key_value().map(|(o, t)| (*o, *t));
        match (in_window, outlier) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// The offset to commit: every record below it is done.
    pub fn watermark(&self) -> Option<i64> {
        self.oldest().map(|(offset, _)| offset).or(self.next)
    }

    /// Outstanding records.
    pub fn pending(&self) -> usize {
        self.window_pending + self.outliers.len()
    }

    /// The lowest outstanding offset, if any.
    pub fn oldest_pending(&self) -> Option<i64> {
        self.oldest().map(|(offset, _)| offset)
    }

    /// The timestamp (ms) of the lowest outstanding record, if any and if it has one.
    pub fn oldest_pending_timestamp(&self) -> Option<i64> {
        self.oldest().and_then(|(_, timestamp)| timestamp)
    }

    /// The watermark if it moved past the last committed offset; marks it committed.
    pub fn take_commit(&mut self) -> Option<i64> {
        let watermark = self.watermark()?;
        if self.committed.is_some_and(|c| c >= watermark) {
            return None;
        }
        self.committed = Some(watermark);
        Some(watermark)
    }

    /// Forgets a commit that failed so that the next [`take_commit`](Self::take_commit) retries it.
    pub fn commit_failed(&mut self, offset: i64) {
        if self.committed == Some(offset) {
            self.committed = None;
        }
    }

    /// Records that the broker acknowledged a commit of `offset`. Only offsets this assignment
    /// handed out count: a late acknowledgement of an earlier assignment's commit is ignored.
    pub fn commit_confirmed(&mut self, offset: i64) {
        if self.committed.is_some_and(|c| offset <= c) {
            self.confirmed = Some(self.confirmed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// The watermark unless the broker already acknowledged it. Unlike
    /// [`take_commit`](Self::take_commit), a commit that was only sent does not count: it may
    /// still fail (a commit that meets a rebalance fails with `REBALANCE_IN_PROGRESS`), and this
    /// is the last chance to commit before the partition goes to another member.
    /// It never goes below a commit already handed out (everything below that was done then),
    /// so a watermark that moved back (records seen again) does not move the group back.
    pub fn final_commit(&self) -> Option<i64> {
        let offset = self.watermark()?.max(self.committed.unwrap_or(i64::MIN));
        self.confirmed.is_none_or(|c| c < offset).then_some(offset)
    }
}

/// One assignment: its epoch and its watermark.
#[derive(Debug)]
struct Assigned {
    /// Epoch of this assignment.
    epoch: u64,
    /// Watermark state.
    offsets: PartitionOffsets,
}

/// The watermarks of every assigned partition, shared by the poll loop and the workers.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Assigned partitions.
    partitions: Mutex<FxHashMap<TopicPartition, Assigned>>,
    /// Source of epochs.
    epochs: std::sync::atomic::AtomicU64,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<TopicPartition, Assigned>> {
        // A panic while holding this lock leaves plain data (sets and integers) that is still
        // consistent, so a poisoned lock is used as is.
        self.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a new assignment of `tp` and returns its epoch. Any previous state is dropped.
    pub fn assign(&self, tp: &TopicPartition) -> u64 {
        let epoch = self.epochs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.lock().insert(tp.clone(), Assigned { epoch, offsets: PartitionOffsets::default() });
        epoch
    }

    /// Ends the assignment of `tp`, returning its final watermark unless the broker already
    /// acknowledged a commit of it (see [`PartitionOffsets::final_commit`]).
    pub fn revoke(&self, tp: &TopicPartition) -> Option<i64> {
        self.lock().remove(tp).and_then(|a| a.offsets.final_commit())
    }

    /// The epoch of the current assignment of `tp`.
    pub fn epoch(&self, tp: &TopicPartition) -> Option<u64> {
        self.lock().get(tp).map(|a| a.epoch)
    }

    /// Tracks a consumed record. Returns false (and tracks nothing) if `tp` is not assigned
    /// under `epoch`.
    pub fn track(&self, tp: &TopicPartition, epoch: u64, offset: i64, timestamp: Option<i64>) -> bool {
        match self.lock().get_mut(tp) {
            Some(a) if a.epoch == epoch => {
                a.offsets.track(offset, timestamp);
                true
            }
            _ => false,
        }
    }

    /// Tracks consumed records of one partition (offset, timestamp) under one lock. Returns
    /// false (and tracks nothing) if `tp` is not assigned under `epoch`.
    pub fn track_many(&self, tp: &TopicPartition, epoch: u64, records: &[(i64, Option<i64>)]) -> bool {
        match self.lock().get_mut(tp) {
            Some(a) if a.epoch == epoch => {
                records.iter().for_each(|(offset, timestamp)| a.offsets.track(*offset, *timestamp));
                true
            }
            _ => false,
        }
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

    /// Completes a record. Completions from another epoch are ignored.
    pub fn complete(&self, tp: &TopicPartition, epoch: u64, offset: i64) {
        if let Some(a) = self.lock().get_mut(tp)
            && a.epoch == epoch
        {
            a.offsets.complete(offset);
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

    /// Watermarks that moved since they were last taken, marked as committed; restricted to
    /// `only` when given.
    pub fn take_commits(&self, only: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64)> {
        let mut partitions = self.lock();
        let mut commits: Vec<_> = partitions
            .iter_mut()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|(tp, a)| a.offsets.take_commit().map(|o| (tp.clone(), o)))
            .collect();
        commits.sort();
        commits
    }

    /// Forgets a failed commit so that it is retried.
    pub fn commit_failed(&self, tp: &TopicPartition, offset: i64) {
        if let Some(a) = self.lock().get_mut(tp) {
            a.offsets.commit_failed(offset);
        }
    }

    /// Records that the broker acknowledged a commit of `offset` for `tp`.
    pub fn commit_confirmed(&self, tp: &TopicPartition, offset: i64) {
        if let Some(a) = self.lock().get_mut(tp) {
            a.offsets.commit_confirmed(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::seq::SliceRandom;

    use super::*;

    #[test]
    fn empty_partition_has_no_watermark() {
        let p = PartitionOffsets::default();
        assert_eq!(p.watermark(), None);
    }

    #[test]
    fn in_order_completion_advances_one_by_one() {
        let mut p = PartitionOffsets::default();
        for o in 0..5 {
            p.track(o, None);
        }
        assert_eq!(p.watermark(), Some(0));
        for o in 0..5 {
            p.complete(o);
            assert_eq!(p.watermark(), Some(o + 1));
        }
    }

    #[test]
    fn out_of_order_completion_never_passes_an_unfinished_record() {
        let mut p = PartitionOffsets::default();
        for o in 10..20 {
            p.track(o, None);
        }
        for o in [15, 19, 11, 12] {
            p.complete(o);
            assert_eq!(p.watermark(), Some(10), "10 is not done");
        }
        p.complete(10);
        assert_eq!(p.watermark(), Some(13));
        for o in [13, 14, 16, 17] {
            p.complete(o);
        }
        assert_eq!(p.watermark(), Some(18));
        p.complete(18);
        assert_eq!(p.watermark(), Some(20), "all done: one past the highest");
    }

    #[test]
    fn gaps_in_offsets_are_skipped() {
        let mut p = PartitionOffsets::default();
        for o in [3, 7, 8, 20] {
            p.track(o, None);
        }
        p.complete(3);
        assert_eq!(p.watermark(), Some(7));
        p.complete(8);
        p.complete(7);
        assert_eq!(p.watermark(), Some(20));
        p.complete(20);
        assert_eq!(p.watermark(), Some(21));
    }

    #[test]
    fn unknown_and_repeated_completions_change_nothing() {
        let mut p = PartitionOffsets::default();
        p.track(5, None);
        assert!(!p.complete(4));
        assert_eq!(p.watermark(), Some(5));
        assert!(p.complete(5));
        assert!(!p.complete(5));
        assert_eq!(p.watermark(), Some(6));
    }

    #[test]
    fn redelivered_offset_below_the_watermark_holds_it_back_again() {
        let mut p = PartitionOffsets::default();
        p.track(1, None);
        p.track(2, None);
        p.complete(1);
        p.complete(2);
        assert_eq!(p.watermark(), Some(3));
        p.track(2, None); // the same offset consumed again (a seek back)
        assert_eq!(p.watermark(), Some(2));
        p.complete(2);
        assert_eq!(p.watermark(), Some(3));
    }

    #[test]
    fn commits_are_taken_once_per_advance_and_retried_after_failure() {
        let mut p = PartitionOffsets::default();
        p.track(0, None);
        p.track(1, None);
        assert_eq!(p.take_commit(), Some(0));
        assert_eq!(p.take_commit(), None, "nothing moved");
        p.complete(0);
        assert_eq!(p.take_commit(), Some(1));
        p.commit_failed(1);
        assert_eq!(p.take_commit(), Some(1), "a failed commit is retried");
        p.commit_failed(0); // a stale failure report does not rewind
        assert_eq!(p.take_commit(), None);
    }

    #[test]
    fn random_completion_orders_keep_the_invariant() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let mut offsets: Vec<i64> = (0..64).map(|i| i * 2).collect(); // with gaps
            let mut p = PartitionOffsets::default();
            offsets.iter().for_each(|&o| p.track(o, None));
            offsets.shuffle(&mut rng);
            let mut done = std::collections::BTreeSet::new();
            for o in offsets {
                p.complete(o);
                done.insert(o);
                let watermark = p.watermark().expect("tracked");
                // Every tracked offset below the watermark is done...
                assert!((0..watermark).filter(|x| x % 2 == 0).all(|x| done.contains(&x)));
                // ...and the watermark is the first one that is not (or one past the end).
                let expected = (0..128).step_by(2).find(|x| !done.contains(x)).unwrap_or(127);
                assert_eq!(watermark, expected);
            }
        }
    }

    #[test]
    fn tracker_ignores_completions_from_a_revoked_assignment() {
        let tracker = OffsetTracker::new();
        let tp = TopicPartition::new("t", 0);
        let old = tracker.assign(&tp);
        assert!(tracker.track(&tp, old, 0, None));
        assert_eq!(tracker.revoke(&tp), Some(0), "final watermark of the revoked assignment");
        assert!(!tracker.track(&tp, old, 1, None), "not assigned");

        let new = tracker.assign(&tp);
        assert_ne!(old, new);
        assert!(tracker.track(&tp, new, 0, None));
        tracker.complete(&tp, old, 0); // late completion of the old assignment
        assert_eq!(tracker.watermark(&tp), Some(0), "stale completion ignored");
        tracker.complete(&tp, new, 0);
        assert_eq!(tracker.watermark(&tp), Some(1));
        assert_eq!(tracker.pending(&tp), 0);
    }

    #[test]
    fn tracker_takes_commits_per_partition() {
        let tracker = OffsetTracker::new();
        let a = TopicPartition::new("t", 0);
        let b = TopicPartition::new("t", 1);
        let (ea, eb) = (tracker.assign(&a), tracker.assign(&b));
        tracker.track(&a, ea, 5, None);
        tracker.track(&b, eb, 9, None);
        tracker.complete(&a, ea, 5);
        assert_eq!(tracker.take_commits(Some(std::slice::from_ref(&a))), vec![(a.clone(), 6)]);
        assert_eq!(tracker.take_commits(None), vec![(b.clone(), 9)]);
        assert_eq!(tracker.take_commits(None), vec![]);
        assert_eq!(tracker.oldest_pending(), vec![(b.clone(), 9)]);
        tracker.complete(&b, eb, 9);
        assert_eq!(tracker.revoke(&b), Some(10));
        tracker.commit_confirmed(&a, 6);
        assert_eq!(tracker.revoke(&a), None, "already committed");
    }

    #[test]
    fn revoke_commits_again_a_watermark_whose_commit_was_sent_but_not_acknowledged() {
        let tracker = OffsetTracker::new();
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp);
        for offset in 0..4 {
            tracker.track(&tp, epoch, offset, None);
            tracker.complete(&tp, epoch, offset);
        }
        // The periodic commit sends 4; the rebalance starts before the broker answers.
        assert_eq!(tracker.take_commits(None), vec![(tp.clone(), 4)]);
        assert_eq!(tracker.take_commits(None), vec![], "nothing new for the periodic commit");
        assert_eq!(tracker.revoke(&tp), Some(4), "the revoke commits 4 itself");

        let epoch = tracker.assign(&tp);
        tracker.track(&tp, epoch, 4, None);
        tracker.complete(&tp, epoch, 4);
        assert_eq!(tracker.take_commits(None), vec![(tp.clone(), 5)]);
        tracker.commit_confirmed(&tp, 3); // an older commit's late acknowledgement
        tracker.commit_confirmed(&tp, 5);
        assert_eq!(tracker.revoke(&tp), None, "acknowledged: nothing left to commit");
    }

    #[test]
    fn the_final_commit_never_moves_the_group_back() {
        let mut p = PartitionOffsets::default();
        for offset in 0..5 {
            p.track(offset, None);
            p.complete(offset);
        }
        assert_eq!(p.take_commit(), Some(5));
        p.commit_confirmed(9); // never handed out by this assignment: ignored
        p.track(2, None); // seen again (a seek back) while the commit of 5 is unanswered
        assert_eq!(p.watermark(), Some(2));
        assert_eq!(p.final_commit(), Some(5), "not below what was already handed out");
        p.commit_confirmed(5);
        assert_eq!(p.final_commit(), None);
    }
}

#[cfg(test)]
mod lag_tests {
    use super::*;

    #[test]
    fn oldest_timestamp_follows_the_lowest_unfinished_record() {
        let tracker = OffsetTracker::new();
        let tp = TopicPartition::new("t", 0);
        let epoch = tracker.assign(&tp);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp.clone(), None)]);
        tracker.track(&tp, epoch, 1, Some(1_000));
        tracker.track(&tp, epoch, 2, Some(2_000));
        assert_eq!(tracker.oldest_timestamps(), vec![(tp.clone(), Some(1_000))]);
        tracker.complete(&tp, epoch, 1);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp.clone(), Some(2_000))]);
        tracker.complete(&tp, epoch, 2);
        assert_eq!(tracker.oldest_timestamps(), vec![(tp, None)]);
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn long_gaps_and_seeks_back_keep_the_invariant() {
        let mut p = PartitionOffsets::default();
        p.track(10, None);
        p.track(100_000, Some(5)); // a compaction gap while 10 is outstanding
        assert_eq!(p.watermark(), Some(10));
        assert_eq!(p.pending(), 2);
        p.complete(10);
        assert_eq!(p.watermark(), Some(100_000));
        assert_eq!(p.oldest_pending_timestamp(), Some(5));
        p.track(7, None); // seek back below everything
        assert_eq!(p.watermark(), Some(7));
        p.complete(7);
        p.complete(100_000);
        assert_eq!(p.watermark(), Some(100_001));
        assert_eq!(p.pending(), 0);
        p.track(200_000, None); // after all done, a long gap just moves the window
        assert_eq!(p.watermark(), Some(200_000));
        p.complete(200_000);
        assert_eq!(p.watermark(), Some(200_001));
    }
}
