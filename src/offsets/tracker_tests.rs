//! The tracker against a model of a broker and its group: records fetched from the committed
//! offset, finished in any order, commits sent, acknowledged or lost, the partition revoked
//! (gracefully: a final commit) or lost (no commit) and assigned again, and the next owner
//! resuming from what was committed. Over any such history, every record is delivered at least
//! once; with graceful revokes only, exactly once.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    /// Fetch up to n more records.
    Fetch(u8),
    /// Finish the n-th record in flight (modulo).
    Finish(u16),
    /// A periodic commit: acknowledged, or its answer lost.
    Commit(bool),
    /// A graceful revoke (final commit), then the partition is assigned again.
    Revoke,
    /// The assignment is lost (no commit), then assigned again.
    Lost,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (1u8..20).prop_map(Step::Fetch),
        8 => any::<u16>().prop_map(Step::Finish),
        2 => any::<bool>().prop_map(Step::Commit),
        1 => Just(Step::Revoke),
        1 => Just(Step::Lost),
    ]
}

/// The records of the partition: offsets with gaps (compaction), every fifth offset missing.
fn log(len: i64) -> Vec<i64> {
    (0..len).filter(|o| o % 5 != 3).collect()
}

struct World {
    tracker: OffsetTracker,
    tp: TopicPartition,
    epoch: u64,
    /// What the group has committed (the broker's copy).
    committed: Option<Commit>,
    /// Index into the log of the next record to fetch.
    position: usize,
    /// Records fetched and not finished, in fetch order.
    in_flight: Vec<i64>,
    /// Deliveries per offset.
    delivered: BTreeMap<i64, u32>,
}

impl World {
    fn resume(&mut self, records: &[i64]) {
        let inherited =
            self.committed.as_ref().and_then(|c| map::decode(c.offset, &c.metadata).expect("ours"));
        self.epoch = self.tracker.assign(&self.tp, inherited);
        let from = self.committed.as_ref().map_or(0, |c| c.offset);
        self.position = records.iter().position(|o| *o >= from).unwrap_or(records.len());
        self.in_flight.clear();
    }

    fn fetch(&mut self, records: &[i64], n: usize) {
        let batch: Vec<(i64, Option<i64>)> = records[self.position..(self.position + n).min(records.len())]
            .iter()
            .map(|o| (*o, None))
            .collect();
        self.position += batch.len();
        let tracked = self.tracker.track_many(&self.tp, self.epoch, &batch).expect("assigned");
        for (index, (offset, _)) in batch.iter().enumerate() {
            if tracked.skipped.binary_search(&index).is_err() {
                self.in_flight.push(*offset);
            }
        }
    }

    fn finish(&mut self, index: usize) {
        let offset = self.in_flight.remove(index);
        *self.delivered.entry(offset).or_default() += 1;
        self.tracker.complete_many(&self.tp, self.epoch, &[offset]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_record_is_delivered_and_graceful_handovers_deliver_none_twice(
        steps in prop::collection::vec(step(), 1..200),
        len in 10i64..200,
    ) {
        let records = log(len);
        let mut world = World {
            tracker: OffsetTracker::new(100_000),
            tp: TopicPartition::new("t", 0),
            epoch: 0,
            committed: None,
            position: 0,
            in_flight: Vec::new(),
            delivered: BTreeMap::new(),
        };
        world.resume(&records);
        let mut lost = false;
        for step in steps {
            match step {
                Step::Fetch(n) => world.fetch(&records, usize::from(n)),
                Step::Finish(n) => {
                    if !world.in_flight.is_empty() {
                        let index = usize::from(n) % world.in_flight.len();
                        world.finish(index);
                    }
                }
                Step::Commit(acknowledged) => {
                    for (tp, commit) in world.tracker.take_commits(None) {
                        if acknowledged {
                            world.tracker.commit_confirmed(&tp, commit.offset, Some(commit.metadata.clone()));
                            world.committed = Some(commit);
                        }
                    }
                }
                Step::Revoke => {
                    if let Some(commit) = world.tracker.revoke(&world.tp) {
                        world.committed = Some(commit);
                    }
                    world.resume(&records);
                }
                Step::Lost => {
                    world.tracker.forget(&world.tp);
                    lost |= !world.delivered.is_empty();
                    world.resume(&records);
                }
            }
        }
        // Run to the end: fetch and finish everything, then hand over once more.
        while world.position < records.len() || !world.in_flight.is_empty() {
            world.fetch(&records, 50);
            while !world.in_flight.is_empty() {
                world.finish(0);
            }
        }
        if let Some(commit) = world.tracker.revoke(&world.tp) {
            world.committed = Some(commit);
        }
        let missing: Vec<&i64> = records.iter().filter(|o| !world.delivered.contains_key(o)).collect();
        prop_assert!(missing.is_empty(), "never delivered: {:?}", missing);
        prop_assert_eq!(world.committed.as_ref().map(|c| c.offset), records.last().map(|o| o + 1));
        if !lost {
            let twice: Vec<(&i64, &u32)> = world.delivered.iter().filter(|(_, n)| **n > 1).collect();
            prop_assert!(twice.is_empty(), "delivered twice without a lost assignment: {:?}", twice);
        }
    }
}
