use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::offsets::map::{self, DoneRanges};

fn done_in(commit: &Commit) -> BTreeSet<i64> {
    map::decode(commit.offset, &commit.metadata)
        .expect("our own map decodes")
        .map(|r| r.from(i64::MIN).flat_map(|(s, e)| s..e).collect())
        .unwrap_or_default()
}

#[test]
fn empty_partition_has_no_watermark() {
    let p = PartitionOffsets::default();
    assert_eq!(p.watermark(), None);
    assert_eq!(p.clone().take_commit(), None);
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
fn out_of_order_completion_never_passes_an_unfinished_record_and_maps_the_rest() {
    let mut p = PartitionOffsets::default();
    for o in 10..20 {
        p.track(o, None);
    }
    for o in [15, 19, 11, 12] {
        p.complete(o);
        assert_eq!(p.watermark(), Some(10), "10 is not done");
    }
    let commit = p.take_commit().expect("commit");
    assert_eq!(commit.offset, 10);
    assert_eq!(done_in(&commit), BTreeSet::from([11, 12, 15, 19]));
    p.complete(10);
    assert_eq!(p.watermark(), Some(13));
    for o in [13, 14, 16, 17, 18] {
        p.complete(o);
    }
    assert_eq!(p.watermark(), Some(20), "all done: one past the highest");
    assert_eq!(p.take_commit(), Some(Commit { offset: 20, metadata: String::new() }));
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
fn commits_are_taken_once_per_change_and_retried_after_failure() {
    let mut p = PartitionOffsets::default();
    p.track(0, None);
    p.track(1, None);
    assert_eq!(p.take_commit().map(|c| c.offset), Some(0));
    assert_eq!(p.take_commit(), None, "nothing moved");
    p.complete(1);
    let with_map = p.take_commit().expect("the map changed");
    assert_eq!((with_map.offset, done_in(&with_map)), (0, BTreeSet::from([1])));
    p.complete(0);
    assert_eq!(p.take_commit().map(|c| c.offset), Some(2));
    p.commit_failed(2);
    assert_eq!(p.take_commit().map(|c| c.offset), Some(2), "a failed commit is retried");
    p.commit_failed(0); // a stale failure report does not rewind
    assert_eq!(p.take_commit(), None);
}

#[test]
fn a_commit_without_an_answer_is_sent_again() {
    let mut p = PartitionOffsets::default();
    p.track(0, None);
    p.complete(0);
    let first = p.take_commit().expect("commit");
    assert_eq!(p.take_commit(), None, "sent, waiting for its answer");
    p.sent_at = p.sent_at.map(|at| at - RESEND_AFTER);
    assert_eq!(p.take_commit(), Some(first.clone()), "no answer for a while: again");
    p.commit_confirmed(first.offset, Some(first.metadata.clone()));
    p.sent_at = p.sent_at.map(|at| at - RESEND_AFTER);
    assert_eq!(p.take_commit(), None, "acknowledged: nothing to send");
}

#[test]
fn a_seek_back_with_an_outstanding_outlier_above_never_passes_the_new_record() {
    let mut p = PartitionOffsets::default();
    p.track(10, None);
    p.track(100_000, None); // a compaction gap while 10 is outstanding: an outlier
    p.complete(10); // the window empties; the outlier stays
    p.track(500, None); // a seek back below the outlier
    assert_eq!(p.watermark(), Some(500), "500 is outstanding");
    p.track(501, None);
    p.complete(501);
    assert_eq!(p.watermark(), Some(500));
    p.complete(500);
    assert_eq!(p.watermark(), Some(100_000));
    p.complete(100_000);
    assert_eq!(p.watermark(), Some(100_001));
    assert_eq!(p.pending(), 0);
}

#[test]
fn a_window_that_grows_over_an_outlier_takes_it_in() {
    let mut p = PartitionOffsets::default();
    p.track(5000, None); // the window
    p.track(100, None); // a seek back: an outlier below
    p.complete(5000);
    p.track(120, Some(7)); // the window restarts... below nothing; 100 is still outstanding
    assert_eq!(p.watermark(), Some(100));
    p.track(103, None);
    p.complete(100);
    assert_eq!(p.watermark(), Some(103));
    p.complete(103);
    assert_eq!(p.watermark(), Some(120));
    assert_eq!(p.oldest_pending_timestamp(), Some(7));
    p.complete(120);
    assert_eq!(p.pending(), 0);
    assert_eq!(p.watermark(), Some(5001));
}

#[test]
fn long_gaps_and_seeks_back_keep_the_invariant() {
    let mut p = PartitionOffsets::default();
    p.track(10, None);
    p.track(100_000, Some(5));
    assert_eq!(p.watermark(), Some(10));
    assert_eq!(p.pending(), 2);
    p.complete(10);
    assert_eq!(p.watermark(), Some(100_000));
    assert_eq!(p.oldest_pending_timestamp(), Some(5));
    p.track(7, None);
    assert_eq!(p.watermark(), Some(7));
    p.complete(7);
    p.complete(100_000);
    assert_eq!(p.watermark(), Some(100_001));
    assert_eq!(p.pending(), 0);
    p.track(200_000, None);
    assert_eq!(p.watermark(), Some(200_000));
    p.complete(200_000);
    assert_eq!(p.watermark(), Some(200_001));
}

#[test]
fn records_finished_by_the_previous_owner_are_skipped_and_carried_forward() {
    let mut before = PartitionOffsets::default();
    for o in 0..10 {
        before.track(o, None);
    }
    for o in [1, 2, 5, 9] {
        before.complete(o);
    }
    let handed_over = before.final_commit().expect("final commit");
    assert_eq!(handed_over.offset, 0);
    let inherited = map::decode(handed_over.offset, &handed_over.metadata).unwrap();

    let mut after = PartitionOffsets::inheriting(inherited);
    assert!(!after.track(0, None));
    assert!(after.track(1, None), "finished before: skipped");
    assert!(after.track(2, None));
    assert!(!after.track(3, None));
    // Revoked again before 4..9 arrived: the map still names 5 and 9.
    let commit = after.final_commit().expect("final commit");
    assert_eq!(commit.offset, 0);
    assert_eq!(done_in(&commit), BTreeSet::from([1, 2, 5, 9]));
    after.complete(0);
    after.complete(3);
    assert_eq!(after.watermark(), Some(4));
    assert!(!after.track(4, None));
    assert!(after.track(5, None));
    after.complete(4);
    assert_eq!(after.watermark(), Some(6));
    let commit = after.take_commit().expect("commit");
    assert_eq!((commit.offset, done_in(&commit)), (6, BTreeSet::from([9])));
}

#[test]
fn the_final_commit_is_skipped_only_when_exactly_it_was_acknowledged() {
    let mut p = PartitionOffsets::default();
    for offset in 0..4 {
        p.track(offset, None);
        p.complete(offset);
    }
    let sent = p.take_commit().expect("commit");
    assert_eq!(p.final_commit(), Some(sent.clone()), "sent, not acknowledged");
    p.commit_confirmed(9, Some(String::new())); // never handed out by this assignment: ignored
    assert_eq!(p.final_commit(), Some(sent.clone()));
    p.commit_confirmed(4, Some(String::new()));
    assert_eq!(p.final_commit(), None);
    p.track(4, None);
    p.track(5, None);
    p.complete(5);
    assert!(p.final_commit().is_some_and(|c| c.offset == 4 && !c.metadata.is_empty()), "the map changed");
}

#[test]
fn the_final_commit_never_moves_the_group_back() {
    let mut p = PartitionOffsets::default();
    for offset in 0..5 {
        p.track(offset, None);
        p.complete(offset);
    }
    assert_eq!(p.take_commit().map(|c| c.offset), Some(5));
    p.track(2, None); // seen again (a seek back) while the commit of 5 is unanswered
    assert_eq!(p.watermark(), Some(2));
    assert_eq!(p.final_commit().map(|c| c.offset), Some(5), "not below what was already handed out");
    p.commit_confirmed(5, Some(String::new()));
    assert_eq!(p.final_commit(), None);
}

#[test]
fn uncommitted_counts_every_offset_above_the_commit_point() {
    let mut p = PartitionOffsets::default();
    assert_eq!(p.uncommitted(), 0);
    for o in 100..200 {
        p.track(o, None);
    }
    (101..200).for_each(|o| {
        p.complete(o);
    });
    assert_eq!(p.uncommitted(), 100, "one stuck record holds 100 offsets");
    p.complete(100);
    assert_eq!(p.uncommitted(), 0);
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Step {
    /// Consume the next offset after a gap of 0..n.
    Next(u8),
    /// Consume a long gap ahead (past the window's gap limit).
    Jump,
    /// Seek back by this much and consume from there.
    SeekBack(u16),
    /// Complete the n-th outstanding record (modulo).
    Complete(u16),
    /// Take a commit; optionally acknowledge or fail it.
    Commit(Option<bool>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..4).prop_map(Step::Next),
        1 => Just(Step::Jump),
        1 => (0u16..300).prop_map(Step::SeekBack),
        6 => any::<u16>().prop_map(Step::Complete),
        2 => prop::option::of(any::<bool>()).prop_map(Step::Commit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Against a model (the sets of outstanding and finished offsets): the watermark is the
    /// lowest outstanding offset (or one past the highest seen), a map never names a record that
    /// is outstanding, and an inheriting assignment skips exactly what the map names.
    #[test]
    fn the_window_agrees_with_a_model(steps in prop::collection::vec(step(), 1..300)) {
        let mut p = PartitionOffsets::default();
        let mut outstanding: BTreeSet<i64> = BTreeSet::new();
        let mut done: BTreeSet<i64> = BTreeSet::new();
        let mut ever_done: BTreeSet<i64> = BTreeSet::new();
        let mut ever_tracked: BTreeSet<i64> = BTreeSet::new();
        let mut position = 1_000i64;
        let mut highest: Option<i64> = None;
        for step in steps {
            match step {
                Step::Next(gap) => {
                    position += i64::from(gap);
                    p.track(position, Some(position));
                    done.remove(&position);
                    outstanding.insert(position);
                    ever_tracked.insert(position);
                    highest = Some(highest.map_or(position, |h| h.max(position)));
                    position += 1;
                }
                Step::Jump => position += 10_000,
                Step::SeekBack(back) => position = (position - i64::from(back)).max(0),
                Step::Complete(n) => {
                    if !outstanding.is_empty() {
                        let offset = *outstanding.iter().nth(usize::from(n) % outstanding.len()).unwrap();
                        prop_assert!(p.complete(offset));
                        outstanding.remove(&offset);
                        done.insert(offset);
                        ever_done.insert(offset);
                    }
                }
                Step::Commit(answer) => {
                    if let Some(commit) = p.take_commit() {
                        match answer {
                            Some(true) => p.commit_confirmed(commit.offset, Some(commit.metadata.clone())),
                            Some(false) => p.commit_failed(commit.offset),
                            None => {}
                        }
                    }
                }
            }
            let expected = outstanding.first().copied().or(highest.map(|h| h + 1));
            prop_assert_eq!(p.watermark(), expected);
            prop_assert_eq!(p.pending(), outstanding.len());
            if let Some(commit) = p.current() {
                let claimed = done_in(&commit);
                // Nothing is lost: below the commit and in the map, only records that were done
                // (or offsets that never held a record: compaction gaps).
                let never_done: Vec<&i64> =
                    claimed.iter().filter(|o| ever_tracked.contains(o) && !ever_done.contains(o)).collect();
                prop_assert!(never_done.is_empty(), "the map names a record never done: {:?}", never_done);
                prop_assert!(outstanding.iter().all(|o| *o >= commit.offset), "the commit passes an outstanding record");
                // The next owner skips exactly the claimed records and delivers the rest.
                let mut next = PartitionOffsets::inheriting(map::decode(commit.offset, &commit.metadata).unwrap());
                for offset in outstanding.iter().chain(claimed.iter()).copied().collect::<BTreeSet<_>>() {
                    if offset >= commit.offset {
                        prop_assert_eq!(next.track(offset, None), claimed.contains(&offset));
                    }
                }
                // The final commit is the current one, or an earlier one already handed out when
                // the watermark has since moved back (records seen again): never below either.
                if let Some(last) = p.final_commit() {
                    prop_assert!(last == commit || (last.offset > commit.offset && Some(&last) == p.sent.as_ref()));
                }
            }
        }
    }
}

#[test]
fn inherited_ranges_survive_a_window_that_empties() {
    let ranges = map::decode(0, &{
        let mut runs = map::Runs::default();
        runs.push(false, 3);
        runs.push(true, 2);
        runs.encode(0)
    })
    .unwrap();
    assert_eq!(ranges.as_ref().map(DoneRanges::len), Some(2));
    let mut p = PartitionOffsets::inheriting(ranges);
    p.track(0, None);
    p.complete(0);
    let commit = p.take_commit().expect("commit");
    assert_eq!((commit.offset, done_in(&commit)), (1, BTreeSet::from([3, 4])));
}
