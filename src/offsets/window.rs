//! One partition assignment's offsets: the window of records tracked above the commit point,
//! the watermark to commit, the offset map of records finished above it, and what was sent to
//! and acknowledged by the broker.
//!
//! Offsets arrive in increasing order, so the outstanding ones live in a window starting at the
//! lowest of them: tracking appends, completing marks a slot, and finished slots fall off the
//! front. Both are O(1). Offsets that arrive out of order (a seek back) or after a long gap while
//! others are outstanding go to a small ordered side set, disjoint from the window.

use std::collections::{BTreeMap, VecDeque};

use super::map::{DoneRanges, Runs};

/// Gaps longer than this (compaction, transaction markers) are not stored slot by slot.
const MAX_GAP: i64 = 4096;

/// A commit with no answer (acknowledged or failed) after this long is sent again: its request
/// can be lost with a broker that went away, and librdkafka does not always report that.
pub const RESEND_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// One offset of the window, in eight bytes: a record's timestamp while it is pending, or one of
/// the markers below the smallest timestamp kept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Slot(i64);

impl Slot {
    /// No record at this offset (compaction, a transaction marker, an aborted record).
    const GAP: Slot = Slot(i64::MIN);
    /// Done.
    const DONE: Slot = Slot(i64::MIN + 1);
    /// Pending without a timestamp.
    const UNTIMED: Slot = Slot(i64::MIN + 2);

    fn pending(timestamp: Option<i64>) -> Slot {
        match timestamp {
            Some(t) if t > Self::UNTIMED.0 => Slot(t),
            _ => Self::UNTIMED,
        }
    }

    fn is_pending(self) -> bool {
        self.0 >= Self::UNTIMED.0
    }

    fn timestamp(self) -> Option<i64> {
        (self.0 > Self::UNTIMED.0).then_some(self.0)
    }
}

/// A commit: the offset and its metadata (the offset map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Every record below it is done.
    pub offset: i64,
    /// The offset map of records done above it (empty: none).
    pub metadata: String,
}

/// The offsets of one partition assignment.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    /// The offset of the window's first slot; the front slot is always pending.
    base: i64,
    /// Slots for `base..base + window.len()`.
    window: VecDeque<Slot>,
    /// Pending slots in the window.
    window_pending: usize,
    /// Outstanding offsets outside the window, with their timestamps.
    outliers: BTreeMap<i64, Option<i64>>,
    /// One past the highest tracked offset.
    next: Option<i64>,
    /// Records the previous owner finished above its commit (from the commit's offset map):
    /// skipped when they arrive, and carried into this assignment's own maps until then.
    inherited: Option<DoneRanges>,
    /// The last commit handed out.
    sent: Option<Commit>,
    /// When it was handed out: a commit neither acknowledged nor failed by then (its request
    /// lost with a broker that went away) is sent again.
    sent_at: Option<std::time::Instant>,
    /// The last commit of this assignment the broker acknowledged.
    acknowledged: Option<Commit>,
    /// The brokers refuse commit metadata this large: commit without maps.
    without_maps: bool,
}

impl PartitionOffsets {
    /// An assignment that starts from the previous owner's offset map, if it left one.
    pub fn inheriting(inherited: Option<DoneRanges>) -> Self {
        PartitionOffsets { inherited, ..Self::default() }
    }

    fn end(&self) -> i64 {
        self.base + self.window.len() as i64
    }

    /// Records that `offset` (record timestamp `timestamp`, ms) was consumed. Returns true when
    /// the record was finished before (the inherited offset map says so): it is done already
    /// and must not be delivered again.
    pub fn track(&mut self, offset: i64, timestamp: Option<i64>) -> bool {
        let done_before = self.inherited.as_mut().is_some_and(|map| map.take(offset));
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
        self.insert(offset, timestamp);
        if done_before {
            self.complete(offset);
        }
        done_before
    }

    fn insert(&mut self, offset: i64, timestamp: Option<i64>) {
        let slot = Slot::pending(timestamp);
        let end = self.end();
        if self.window.is_empty() {
            if !self.outliers.contains_key(&offset) {
                self.base = offset;
                self.window.push_back(slot);
                self.window_pending += 1;
            }
        } else if offset >= self.base && offset < end {
            let index = usize::try_from(offset - self.base).unwrap_or(usize::MAX);
            if let Some(existing) = self.window.get_mut(index) {
                if !existing.is_pending() {
                    self.window_pending += 1;
                }
                *existing = slot;
            }
        } else if offset >= end && offset - end <= MAX_GAP {
            // Outliers inside the stretch the window now covers move into it.
            let absorbed: Vec<(i64, Option<i64>)> =
                self.outliers.range(end..offset).map(|(o, t)| (*o, *t)).collect();
            for position in end..offset {
                let moved = absorbed.iter().find(|(o, _)| *o == position);
                self.window.push_back(moved.map_or(Slot::GAP, |(_, t)| Slot::pending(*t)));
            }
            for (outlier, _) in &absorbed {
                self.outliers.remove(outlier);
                self.window_pending += 1;
            }
            let slot = self.outliers.remove(&offset).map_or(slot, Slot::pending);
            self.window.push_back(slot);
            self.window_pending += 1;
        } else {
            self.outliers.insert(offset, timestamp);
        }
    }

    /// Records that `offset` reached a terminal state. Unknown offsets are ignored.
    pub fn complete(&mut self, offset: i64) -> bool {
        if offset >= self.base && offset < self.end() {
            let index = usize::try_from(offset - self.base).unwrap_or(usize::MAX);
            let Some(slot) = self.window.get_mut(index) else { return false };
            if !slot.is_pending() {
                return false;
            }
            *slot = Slot::DONE;
            self.window_pending -= 1;
            while self.window.front().is_some_and(|s| !s.is_pending()) {
                self.window.pop_front();
                self.base += 1;
            }
            return true;
        }
        self.outliers.remove(&offset).is_some()
    }

    /// The lowest outstanding offset and its timestamp.
    fn oldest(&self) -> Option<(i64, Option<i64>)> {
        let in_window = self.window.front().map(|slot| (self.base, slot.timestamp()));
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

    /// Offsets consumed above the commit point, finished or not: what the memory cap bounds.
    pub fn uncommitted(&self) -> u64 {
        match (self.watermark(), self.next) {
            (Some(watermark), Some(next)) => (next - watermark).unsigned_abs(),
            _ => 0,
        }
    }

    /// The commit for now: the watermark and the map of what is done above it. Records with
    /// outstanding offsets outside the window (after a seek back) get no map: plain redelivery.
    fn current(&self) -> Option<Commit> {
        let watermark = self.watermark()?;
        let mut runs = Runs::default();
        let mut covered = watermark;
        if self.outliers.is_empty() && !self.without_maps {
            if !self.window.is_empty() {
                let mut run: Option<(bool, u64)> = None;
                for slot in &self.window {
                    let done = !slot.is_pending();
                    match &mut run {
                        Some((d, len)) if *d == done => *len += 1,
                        _ => {
                            if let Some((d, len)) = run.take() {
                                runs.push(d, len);
                            }
                            run = Some((done, 1));
                        }
                    }
                }
                if let Some((d, len)) = run {
                    runs.push(d, len);
                }
                covered = self.end();
            }
            if let Some(inherited) = &self.inherited {
                for (start, end) in inherited.from(covered) {
                    runs.push(false, (start - covered).unsigned_abs());
                    runs.push(true, (end - start).unsigned_abs());
                    covered = end;
                }
            }
        }
        Some(Commit { offset: watermark, metadata: runs.encode(watermark) })
    }

    /// From now on, commits carry no offset map (the brokers refuse the metadata).
    pub fn drop_maps(&mut self) {
        self.without_maps = true;
    }

    /// The commit to send if it differs from the last one handed out, or if that one has had
    /// no answer for [`RESEND_AFTER`]; marks it handed out.
    pub fn take_commit(&mut self) -> Option<Commit> {
        let current = self.current()?;
        let unanswered = self.acknowledged.as_ref() != Some(&current)
            && self.sent_at.is_some_and(|at| at.elapsed() >= RESEND_AFTER);
        if self.sent.as_ref() == Some(&current) && !unanswered {
            return None;
        }
        self.sent = Some(current.clone());
        self.sent_at = Some(std::time::Instant::now());
        Some(current)
    }

    /// Forgets a commit of `offset` that failed so that the next
    /// [`take_commit`](Self::take_commit) sends it again.
    pub fn commit_failed(&mut self, offset: i64) {
        if self.sent.as_ref().is_some_and(|s| s.offset == offset) {
            self.sent = None;
            self.sent_at = None;
        }
    }

    /// Records that the broker acknowledged a commit. Only commits this assignment handed out
    /// count: a late acknowledgement of an earlier assignment's commit is ignored.
    pub fn commit_confirmed(&mut self, offset: i64, metadata: Option<String>) {
        let ours = self.sent.as_ref().is_some_and(|s| offset <= s.offset);
        if ours && self.acknowledged.as_ref().is_none_or(|a| a.offset <= offset) {
            // Unknown metadata never matches a commit: the final commit then goes again.
            self.acknowledged = Some(Commit { offset, metadata: metadata.unwrap_or_else(|| "\0".into()) });
        }
    }

    /// The last commit before the partition goes to another member, unless the broker already
    /// acknowledged exactly it. Unlike [`take_commit`](Self::take_commit), a commit that was
    /// only sent does not count: it may still fail (a commit that meets a rebalance fails with
    /// `REBALANCE_IN_PROGRESS`). It never goes below a commit already handed out (everything
    /// below that was done then), so a watermark that moved back (records seen again) does not
    /// move the group back.
    pub fn final_commit(&self) -> Option<Commit> {
        let current = self.current()?;
        let chosen = match &self.sent {
            Some(sent) if sent.offset > current.offset => sent.clone(),
            _ => current,
        };
        (self.acknowledged.as_ref() != Some(&chosen)).then_some(chosen)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
