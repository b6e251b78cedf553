//! A consumer group seen from outside: its members, its committed offsets against the
//! partitions' ends (`msk-sidecar offsets describe`), and moving those offsets (`offsets
//! reset`, `KAFKA_RESET_OFFSETS_ON_START`) with kafka-consumer-groups' rule: only while the
//! group has no member, so no running consumer commits over the reset or misses it.
//!
//! The client is a consumer with the group's id that never subscribes: it reads the group's
//! offsets and commits new ones as a non-member (generation -1), which brokers accept only for
//! an empty group. Every call blocks; callers run them on a blocking thread.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::kafka::{self, KafkaContext};

/// How long one call to the brokers may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    /// librdkafka could not make the client.
    #[error("cannot create the Kafka client: {0}")]
    Client(rdkafka::error::KafkaError),
    /// A call to the brokers failed.
    #[error("{what}: {error}")]
    Kafka {
        /// What was asked.
        what: &'static str,
        /// The error.
        error: rdkafka::error::KafkaError,
    },
    /// The group has members: resetting under them would be lost or undone.
    #[error("the group {group} has {} member(s): {}; stop them first (a reset applies only to an empty group)", .members.len(), .members.join(", "))]
    Active {
        /// The group.
        group: String,
        /// `client-id@host (member id)`.
        members: Vec<String>,
    },
    /// A topic or partition to reset is not one of the group's.
    #[error("{0}")]
    Selection(String),
}

pub use crate::config::ResetTo;

/// One partition of the group's topics.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionState {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: none).
    pub committed: Option<i64>,
    /// First offset.
    pub start: i64,
    /// End offset (the high watermark).
    pub end: i64,
}

impl PartitionState {
    /// Records between the committed offset (or the start) and the end.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.start).max(self.start)).max(0)
    }
}

/// A planned move of one partition's offset.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset now.
    pub old: Option<i64>,
    /// The offset after the reset.
    pub new: i64,
}

/// The group tool's client.
pub struct Group {
    consumer: BaseConsumer<KafkaContext>,
    name: String,
    topics: Vec<String>,
}

impl Group {
    /// A client for `kafka`'s group and topics.
    pub fn connect(kafka: &KafkaConfig, context: KafkaContext) -> Result<Group, GroupsError> {
        let mut config: ClientConfig = kafka::client_config(kafka, "msk-sidecar-offsets");
        config.set("group.id", &kafka.group).set("enable.auto.commit", "false");
        kafka::apply_passthrough(&mut config, kafka);
        let consumer: BaseConsumer<KafkaContext> =
            config.create_with_context(context).map_err(GroupsError::Client)?;
        if kafka.auth == crate::config::KafkaAuth::MskIam {
            // librdkafka asks for the first MSK IAM token through an event that only a poll
            // serves: without it every call below waits for authentication until it times out.
            let _ = consumer.poll(Duration::from_millis(500));
        }
        Ok(Group { consumer, name: kafka.group.clone(), topics: kafka.topics.clone() })
    }

    /// The group's members: `client-id@host (member id)`. A group in any state but empty
    /// (or unknown to the coordinator) counts as having members even when none is listed (a
    /// rebalance in progress, a coordinator still loading).
    pub fn members(&self) -> Result<Vec<String>, GroupsError> {
        let list = self
            .consumer
            .fetch_group_list(Some(&self.name), TIMEOUT)
            .map_err(|error| GroupsError::Kafka { what: "describing the group", error })?;
        let mut members = Vec::new();
        for group in list.groups().iter().filter(|g| g.name() == self.name) {
            members.extend(group.members().iter().map(|m| {
                format!("{}@{} ({})", m.client_id(), m.client_host().trim_start_matches('/'), m.id())
            }));
            let state = group.state();
            if members.is_empty() && !matches!(state, "Empty" | "Dead" | "") {
                members.push(format!("(none listed; the group is {state})"));
            }
        }
        Ok(members)
    }

    /// The partitions of the group's topics (`^patterns` matched against the cluster's topics).
    fn partitions(&self) -> Result<Vec<(String, i32)>, GroupsError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, TIMEOUT)
            .map_err(|error| GroupsError::Kafka { what: "reading the cluster's topics", error })?;
        let wanted = |name: &str| {
            self.topics.iter().any(|t| match t.strip_prefix('^') {
                Some(_) => regex::Regex::new(t).is_ok_and(|r| r.is_match(name)),
                None => t == name,
            })
        };
        let mut out: Vec<(String, i32)> = metadata
            .topics()
            .iter()
            .filter(|t| wanted(t.name()))
            .flat_map(|t| t.partitions().iter().map(|p| (t.name().to_string(), p.id())))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every partition of the group's topics with its committed offset, start and end.
    pub fn describe(&self) -> Result<Vec<PartitionState>, GroupsError> {
        let partitions = self.partitions()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in &partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, TIMEOUT)
            .map_err(|error| GroupsError::Kafka { what: "reading the committed offsets", error })?;
        partitions
            .into_iter()
            .map(|(topic, partition)| {
                let (start, end) = self
                    .consumer
                    .fetch_watermarks(&topic, partition, TIMEOUT)
                    .map_err(|error| GroupsError::Kafka { what: "reading a partition's ends", error })?;
                let committed = committed.find_partition(&topic, partition).and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
                Ok(PartitionState { topic, partition, committed, start, end })
            })
            .collect()
    }

    /// Where `to` moves each partition of `only` (every partition of the group's topics when
    /// empty: `topic` or `topic:0,3`).
    pub fn plan(&self, to: ResetTo, only: &[String]) -> Result<Vec<Move>, GroupsError> {
        let states = self.describe()?;
        let selected = select(&states, only)?;
        let mut times = TopicPartitionList::new();
        if let ResetTo::Time(ms) = to {
            let mut failed = None;
            for state in &selected {
                times
                    .add_partition_offset(&state.topic, state.partition, Offset::Offset(ms))
                    .map_err(|error| GroupsError::Kafka { what: "preparing the time lookup", error })?;
            }
            times = self
                .consumer
                .offsets_for_times(times, TIMEOUT)
                .map_err(|error| GroupsError::Kafka { what: "finding offsets by time", error })?;
            // A partition whose lookup failed must not silently go to its end.
            for element in times.elements() {
                if let Err(error) = element.error() {
                    failed = Some(error);
                }
            }
            if let Some(error) = failed {
                return Err(GroupsError::Kafka { what: "finding offsets by time", error });
            }
        }
        Ok(selected
            .into_iter()
            .map(|state| {
                let new = match to {
                    ResetTo::Earliest => state.start,
                    ResetTo::Latest => state.end,
                    // Not `clamp`: the two ends are read apart and may cross.
                    ResetTo::Offset(offset) => offset.max(state.start).min(state.end),
                    // No record at or after the time: the end.
                    ResetTo::Time(_) => {
                        match times.find_partition(&state.topic, state.partition).map(|e| e.offset()) {
                            Some(Offset::Offset(offset)) if offset >= 0 => offset,
                            _ => state.end,
                        }
                    }
                };
                Move { topic: state.topic.clone(), partition: state.partition, old: state.committed, new }
            })
            .collect())
    }

    /// Commits `moves`, refusing while the group has members.
    pub fn apply(&self, moves: &[Move]) -> Result<(), GroupsError> {
        let members = self.members()?;
        if !members.is_empty() {
            return Err(GroupsError::Active { group: self.name.clone(), members });
        }
        let mut tpl = TopicPartitionList::new();
        for m in moves {
            tpl.add_partition_offset(&m.topic, m.partition, Offset::Offset(m.new))
                .map_err(|error| GroupsError::Kafka { what: "preparing the commit", error })?;
        }
        if moves.is_empty() {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|error| GroupsError::Kafka { what: "committing the new offsets", error })
    }
}

/// The partitions `only` names (`topic` or `topic:0,3`), all when empty.
fn select(states: &[PartitionState], only: &[String]) -> Result<Vec<PartitionState>, GroupsError> {
    if only.is_empty() {
        return Ok(states.to_vec());
    }
    let mut out = Vec::new();
    for item in only {
        let (topic, partitions) = match item.split_once(':') {
            Some((topic, list)) => {
                let parsed: Result<Vec<i32>, _> = list.split(',').map(|p| p.trim().parse::<i32>()).collect();
                (
                    topic,
                    Some(parsed.map_err(|_| {
                        GroupsError::Selection(format!("{item:?}: expected topic:partition,.."))
                    })?),
                )
            }
            None => (item.as_str(), None),
        };
        let matching: Vec<&PartitionState> = states
            .iter()
            .filter(|s| s.topic == topic && partitions.as_ref().is_none_or(|ps| ps.contains(&s.partition)))
            .collect();
        if matching.is_empty() {
            return Err(GroupsError::Selection(format!("{item:?} is not a partition of the group's topics")));
        }
        if let Some(ps) = &partitions
            && ps.len() != matching.len()
        {
            return Err(GroupsError::Selection(format!("{item:?} names a partition {topic} does not have")));
        }
        out.extend(matching.into_iter().cloned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(topic: &str, partition: i32, committed: Option<i64>) -> PartitionState {
        PartitionState { topic: topic.into(), partition, committed, start: 10, end: 100 }
    }

    #[test]
    fn targets_parse_and_lag_counts_from_the_start() {
        assert_eq!(ResetTo::parse("earliest"), Ok(ResetTo::Earliest));
        assert_eq!(ResetTo::parse(" latest "), Ok(ResetTo::Latest));
        assert_eq!(ResetTo::parse("42"), Ok(ResetTo::Offset(42)));
        assert_eq!(ResetTo::parse("2026-11-30T10:00:00Z"), Ok(ResetTo::Time(1_796_032_800_000)));
        assert!(ResetTo::parse("-1").is_err() && ResetTo::parse("yesterday").is_err());
        assert_eq!(state("t", 0, Some(40)).lag(), 60);
        assert_eq!(state("t", 0, None).lag(), 90, "no commit: from the start");
        assert_eq!(state("t", 0, Some(3)).lag(), 90, "a commit before the start (deleted records)");
    }

    #[test]
    fn a_selection_names_topics_or_partitions_of_the_group() {
        let states = [state("a", 0, None), state("a", 1, None), state("b", 0, None)];
        assert_eq!(select(&states, &[]).expect("all").len(), 3);
        assert_eq!(select(&states, &["a".into()]).expect("a").len(), 2);
        assert_eq!(select(&states, &["a:1".into(), "b".into()]).expect("a:1, b").len(), 2);
        assert!(select(&states, &["c".into()]).is_err());
        assert!(select(&states, &["a:7".into()]).is_err());
        assert!(select(&states, &["a:x".into()]).is_err());
    }
}
