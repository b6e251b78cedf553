//! `msk-sidecar redrive`: dead letters back where they came from. This version reads the
//! dead-letter topic (the archive is the next step): with its own consumer group,
//! `<group>.redrive`, so a rerun continues where the last one stopped and never sends a
//! finished record twice; up to the topic's end as it was when the run began.
//!
//! A record matches the filters (error class, source topic, source partition, a time window on
//! its last failure), and goes back to its source topic and partition (order kept) or to `--to`,
//! with its key, value and headers but no `dlq-*` facts, plus `dlq-redrive-count` (one more
//! than it had) and `dlq-redrive-id` (this run). A record whose count reached `--max-redrives` is
//! skipped (the loop guard). The producer waits for every replica (`acks=all`) and is
//! idempotent; the group's offset moves only past records sent or deliberately skipped.

pub mod topic;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::dlq::letter::{REDRIVE_COUNT, REDRIVE_ID};

/// What to send back.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Only these error classes (`dlq-error-class`); empty: all.
    pub classes: Vec<String>,
    /// Only records from this source topic (`dlq-source-topic`).
    pub source: Option<String>,
    /// Only records from this source partition.
    pub partition: Option<i32>,
    /// Only records whose last failure is at or after this.
    pub since: Option<SystemTime>,
    /// Only records whose last failure is before this.
    pub until: Option<SystemTime>,
}

/// The facts of one dead letter the filters read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// `dlq-error-class`.
    pub class: String,
    /// `dlq-source-topic`.
    pub source: String,
    /// `dlq-source-partition`.
    pub partition: Option<i32>,
    /// `dlq-last-failure`.
    pub last_failure: Option<SystemTime>,
    /// `dlq-redrive-count` (0 when never redriven).
    pub redrives: u32,
}

impl Facts {
    /// Reads the facts from a dead letter's headers.
    pub fn from_headers<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Facts {
        let mut facts = Facts::default();
        for (name, value) in headers {
            let text = String::from_utf8_lossy(value);
            match name {
                "dlq-error-class" => facts.class = text.into_owned(),
                "dlq-source-topic" => facts.source = text.into_owned(),
                "dlq-source-partition" => facts.partition = text.trim().parse().ok(),
                "dlq-last-failure" => {
                    facts.last_failure =
                        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                            .ok()
                            .map(SystemTime::from);
                }
                REDRIVE_COUNT => facts.redrives = text.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        facts
    }
}

impl Filters {
    /// Whether a dead letter with `facts` is one to send back.
    pub fn matches(&self, facts: &Facts) -> bool {
        (self.classes.is_empty() || self.classes.contains(&facts.class))
            && self.source.as_ref().is_none_or(|s| *s == facts.source)
            && self.partition.is_none_or(|p| Some(p) == facts.partition)
            && self.since.is_none_or(|since| facts.last_failure.is_some_and(|t| t >= since))
            && self.until.is_none_or(|until| facts.last_failure.is_some_and(|t| t < until))
    }
}

/// The headers a record goes back with: its own, without `dlq-*` facts, with the loop guard.
pub fn redriven_headers<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    redrives: u32,
    run: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = headers
        .filter(|(name, _)| !name.starts_with("dlq-"))
        .map(|(name, value)| (name.to_string(), value.to_vec()))
        .collect();
    out.push((REDRIVE_COUNT.to_string(), (redrives + 1).to_string().into_bytes()));
    out.push((REDRIVE_ID.to_string(), run.as_bytes().to_vec()));
    out
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Dead letters read.
    pub read: u64,
    /// Those the filters matched.
    pub matched: u64,
    /// Sent back (or, in a dry run, would be).
    pub sent: u64,
    /// Skipped by the loop guard (`--max-redrives`).
    pub skipped_loop_guard: u64,
    /// Could not be sent.
    pub failed: u64,
    /// Matched, by error class.
    pub by_class: BTreeMap<String, u64>,
    /// Matched, by source topic.
    pub by_source: BTreeMap<String, u64>,
    /// Whether nothing was sent or committed.
    pub dry_run: bool,
    /// The run's id (`dlq-redrive-id`).
    pub run: String,
    /// Records sent per second, measured over the run.
    pub rate_per_s: f64,
    /// Whether the run stopped early (Ctrl-C, `--limit`).
    pub stopped_early: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(class: &str, source: &str, partition: i32, at: u64, redrives: u32) -> Facts {
        Facts {
            class: class.into(),
            source: source.into(),
            partition: Some(partition),
            last_failure: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at)),
            redrives,
        }
    }

    #[test]
    fn headers_give_the_facts_and_the_filters_select_on_them() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("app", b"x"),
            ("dlq-error-class", b"permanent"),
            ("dlq-source-topic", b"orders"),
            ("dlq-source-partition", b"3"),
            ("dlq-last-failure", b"2023-11-14T22:13:29.5Z"),
            ("dlq-redrive-count", b"2"),
        ];
        let read = Facts::from_headers(headers.iter().copied());
        assert_eq!(read.class, "permanent");
        assert_eq!((read.source.as_str(), read.partition, read.redrives), ("orders", Some(3), 2));
        assert!(read.last_failure.is_some());
        let at = |s: u64| Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        let f = facts("permanent", "orders", 3, 100, 0);
        assert!(Filters::default().matches(&f));
        assert!(
            Filters { classes: vec!["expired".into(), "permanent".into()], ..Filters::default() }.matches(&f)
        );
        assert!(!Filters { classes: vec!["expired".into()], ..Filters::default() }.matches(&f));
        assert!(!Filters { source: Some("payments".into()), ..Filters::default() }.matches(&f));
        assert!(!Filters { partition: Some(1), ..Filters::default() }.matches(&f));
        assert!(Filters { since: at(100), until: at(101), ..Filters::default() }.matches(&f));
        assert!(!Filters { since: at(101), ..Filters::default() }.matches(&f));
        assert!(!Filters { until: at(100), ..Filters::default() }.matches(&f), "until is exclusive");
    }

    #[test]
    fn a_record_goes_back_without_dlq_facts_and_with_one_more_redrive() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("app", b"x"),
            ("dlq-error-class", b"permanent"),
            ("dlq-redrive-count", b"1"),
            ("traceparent", b"t"),
        ];
        let out = redriven_headers(headers.iter().copied(), 1, "run-7");
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["app", "traceparent", "dlq-redrive-count", "dlq-redrive-id"]);
        assert_eq!(out[2].1, b"2");
        assert_eq!(out[3].1, b"run-7");
    }
}
