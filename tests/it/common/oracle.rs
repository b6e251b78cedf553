//! The oracle: one judge for every fault test. It knows every record produced (partition,
//! offset, key) and, at the end of a run, reads what the application accepted (in the order it
//! accepted them), what the dead-letter topic and the archive hold, and what the group committed.
//! Each record ends as **delivered**, **dead-lettered** (the topic and, when there is one, the
//! archive) or **pending** (neither, not committed past: the sidecar still owes it). Anomalies:
//! **lost** (neither, but committed past), **half dead-lettered** (topic or archive, not both),
//! **duplicated** (accepted more than once; justified only by a cause the run really had:
//! SIGKILL, a lost assignment, an answer lost in a reset connection, a commit the broker
//! refused and the sidecar logged), **reordered** (within a
//! lane, partition or key, a record first accepted after a later one) and **stalled** (still
//! pending when the run's bound after the last fault has passed). [`Verdict::assert_clean`] fails
//! the test on any of them and prints the table. Later fault tests (new sources, new targets)
//! use this rather than writing their own checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// A cause that can justify a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The sidecar was killed (SIGKILL): records finished since the last commit come again.
    SigKill,
    /// A member lost its assignment (session expired): the same.
    LostAssignment,
    /// The application's answer was lost (a connection reset after it handled the request).
    AnswerLost,
    /// The broker refused a commit (a commit during a rebalance can fail with
    /// `REBALANCE_IN_PROGRESS` or `ILLEGAL_GENERATION`): what finished since the last
    /// acknowledged commit comes again. Justified only when a sidecar logged the refusal.
    CommitRefused,
    /// A source's acknowledgement got no answer (an SQS delete during an outage): the message
    /// comes again when its lease lapses.
    AckLost,
}

/// How records are grouped into lanes for the order check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// One lane per partition.
    Partition,
    /// One lane per key within a partition.
    Key,
    /// No order promised.
    None,
}

/// What a run left behind, read from the real parts.
#[derive(Debug, Default)]
pub struct Evidence {
    /// (partition, offset) of every request the application answered 2xx, in order.
    pub accepted: Vec<(i32, i64)>,
    /// (partition, offset) of every record in the dead-letter topic.
    pub dead_letters: Vec<(i32, i64)>,
    /// (partition, offset) of every archived dead letter; `None` without an archive.
    pub archived: Option<BTreeSet<(i32, i64)>>,
    /// Committed offset per partition (-1: none).
    pub committed: Vec<i64>,
    /// The target accepts everything without an application (`null://`): a record committed
    /// past and not dead-lettered counts as delivered.
    pub null_target: bool,
}

/// Every record produced: (partition, offset) → key.
#[derive(Debug, Default, Clone)]
pub struct Oracle {
    /// The records, with their keys.
    pub produced: BTreeMap<(i32, i64), Option<Vec<u8>>>,
}

/// The judgement of one run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Records produced.
    pub records: usize,
    /// Delivered (at least once).
    pub delivered: usize,
    /// Dead-lettered (topic and archive).
    pub dead_lettered: usize,
    /// Neither, and not committed past.
    pub pending: Vec<(i32, i64)>,
    /// Neither, but committed past.
    pub lost: Vec<(i32, i64)>,
    /// In the topic or the archive, not both.
    pub half_dead_lettered: Vec<(i32, i64)>,
    /// Accepted more than once: (record, times).
    pub duplicated: Vec<((i32, i64), usize)>,
    /// Within a lane, first accepted after a later record: (record, the later one before it).
    pub reordered: Vec<((i32, i64), (i32, i64))>,
}

impl Oracle {
    /// Records that `(partition, offset)` with `key` was produced.
    pub fn produced(&mut self, partition: i32, offset: i64, key: Option<Vec<u8>>) {
        self.produced.insert((partition, offset), key);
    }

    /// Judges a run.
    pub fn judge(&self, evidence: &Evidence, lanes: Lanes) -> Verdict {
        let mut times: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for record in &evidence.accepted {
            *times.entry(*record).or_default() += 1;
        }
        let in_topic: BTreeSet<(i32, i64)> = evidence.dead_letters.iter().copied().collect();
        let mut verdict = Verdict { records: self.produced.len(), ..Verdict::default() };
        for record in self.produced.keys() {
            let topic = in_topic.contains(record);
            let archive = evidence.archived.as_ref().is_none_or(|a| a.contains(record));
            let committed_past = evidence
                .committed
                .get(usize::try_from(record.0).unwrap_or(usize::MAX))
                .is_some_and(|c| *c > record.1);
            if topic && archive {
                verdict.dead_lettered += 1;
            } else if topic || (evidence.archived.as_ref().is_some_and(|a| a.contains(record))) {
                verdict.half_dead_lettered.push(*record);
            } else if times.contains_key(record) || (evidence.null_target && committed_past) {
                verdict.delivered += 1;
            } else if committed_past {
                verdict.lost.push(*record);
            } else {
                verdict.pending.push(*record);
            }
        }
        verdict.duplicated = times.iter().filter(|(_, n)| **n > 1).map(|(r, n)| (*r, *n)).collect();
        if lanes != Lanes::None {
            // Lane (partition, key) → the highest record first accepted in it so far.
            type Lane = (i32, Option<Vec<u8>>);
            let mut last: BTreeMap<Lane, (i32, i64)> = BTreeMap::new();
            let mut seen = BTreeSet::new();
            for record in &evidence.accepted {
                if !seen.insert(*record) {
                    continue; // a duplicate: order is about first deliveries
                }
                let key = match lanes {
                    Lanes::Key => self.produced.get(record).cloned().flatten(),
                    _ => None,
                };
                let lane = (record.0, key);
                if let Some(previous) = last.get(&lane)
                    && previous.1 > record.1
                {
                    verdict.reordered.push((*record, *previous));
                }
                let entry = last.entry(lane).or_insert(*record);
                if entry.1 < record.1 {
                    *entry = *record;
                }
            }
        }
        verdict
    }
}

impl Verdict {
    /// Duplicated records in all (extra deliveries).
    pub fn extra_deliveries(&self) -> usize {
        self.duplicated.iter().map(|(_, n)| n - 1).sum()
    }

    /// The table of the run.
    pub fn table(&self, name: &str, causes: &[Cause]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "oracle: {name}");
        let _ = writeln!(
            out,
            "| records | delivered | dead-lettered | pending | lost | half dead-lettered | duplicated (extra) | reordered | duplicate causes in the run |"
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} | {:?} |",
            self.records,
            self.delivered,
            self.dead_lettered,
            self.pending.len(),
            self.lost.len(),
            self.half_dead_lettered.len(),
            self.duplicated.len(),
            self.extra_deliveries(),
            self.reordered.len(),
            causes
        );
        let mut examples = |what: &str, list: &dyn std::fmt::Debug, empty: bool| {
            if !empty {
                let _ = writeln!(out, "{what}: {list:?}");
            }
        };
        examples("lost", &self.lost.iter().take(20).collect::<Vec<_>>(), self.lost.is_empty());
        examples(
            "pending (stalled)",
            &self.pending.iter().take(20).collect::<Vec<_>>(),
            self.pending.is_empty(),
        );
        examples(
            "half dead-lettered",
            &self.half_dead_lettered.iter().take(20).collect::<Vec<_>>(),
            self.half_dead_lettered.is_empty(),
        );
        examples(
            "duplicated",
            &self.duplicated.iter().take(20).collect::<Vec<_>>(),
            self.duplicated.is_empty(),
        );
        examples("reordered", &self.reordered.iter().take(20).collect::<Vec<_>>(), self.reordered.is_empty());
        out
    }

    /// Fails (with the table) on any loss, half dead letter, reorder, stall (a pending record at
    /// the end of a run that waited for everything), or a duplicate no cause in `causes`
    /// justifies. Prints the table either way.
    pub fn assert_clean(&self, name: &str, causes: &[Cause]) {
        let table = self.table(name, causes);
        println!("{table}");
        let unjustified_duplicates = !self.duplicated.is_empty() && causes.is_empty();
        assert!(
            self.lost.is_empty()
                && self.pending.is_empty()
                && self.half_dead_lettered.is_empty()
                && self.reordered.is_empty()
                && !unjustified_duplicates,
            "{table}"
        );
    }
}

/// The archived dead letters under a `file://` archive directory: (partition, offset) from the
/// `<partition>-<offset>.json` names.
pub fn archived_in(dir: &Path) -> BTreeSet<(i32, i64)> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) =
                path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json"))
                && let Some((p, o)) =
                    name.split_once('-').and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
            {
                found.insert((p, o));
            }
        }
    }
    found
}

/// (partition, offset) of each dead letter, from its `dlq-source-*` headers.
pub fn dead_letters_of(messages: &[rdkafka::message::OwnedMessage]) -> Vec<(i32, i64)> {
    messages
        .iter()
        .filter_map(|m| {
            let partition = super::header_text(m, "dlq-source-partition")?.parse().ok()?;
            let offset = super::header_text(m, "dlq-source-offset")?.parse().ok()?;
            Some((partition, offset))
        })
        .collect()
}

#[test]
fn the_oracle_tells_each_anomaly_apart() {
    let mut oracle = Oracle::default();
    for offset in 0..6 {
        oracle.produced(0, offset, Some(if offset % 2 == 0 { b"a".to_vec() } else { b"b".to_vec() }));
    }
    let evidence = Evidence {
        // 0 twice; 3 (key b) before 1 (key b): reordered; 2 dead-lettered in the topic only.
        accepted: vec![(0, 0), (0, 3), (0, 1), (0, 0)],
        dead_letters: vec![(0, 2)],
        archived: Some(BTreeSet::new()),
        committed: vec![5],
        null_target: false,
    };
    let verdict = oracle.judge(&evidence, Lanes::Key);
    assert_eq!(verdict.delivered, 3);
    assert_eq!(verdict.lost, vec![(0, 4)], "committed past, never delivered");
    assert_eq!(verdict.pending, vec![(0, 5)]);
    assert_eq!(verdict.half_dead_lettered, vec![(0, 2)]);
    assert_eq!(verdict.duplicated, vec![((0, 0), 2)]);
    assert_eq!(verdict.reordered, vec![((0, 1), (0, 3))]);
    assert!(oracle.judge(&evidence, Lanes::None).reordered.is_empty());
    let clean = std::panic::catch_unwind(|| verdict.assert_clean("anomalies", &[Cause::SigKill]));
    assert!(clean.is_err(), "a lost record fails the run whatever the causes");
}
