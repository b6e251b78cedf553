//! Redrive from the dead-letter topic: a consumer of the redrive group assigned every partition
//! at the group's committed offsets (its start the first time), reading up to the ends the
//! partitions had when the run began, and the dead-letter producer's settings for sending back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{Facts, Filters, Summary, redriven_headers};
use crate::config::KafkaConfig;
use crate::kafka::{self, KafkaContext};

/// How long a call to the brokers may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// No record for this long: the topic is read to its end (a broker's end offset may count past
/// the last record).
const IDLE: Duration = Duration::from_secs(3);

/// What a run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// The dead-letter topic.
    pub from: String,
    /// Send everything here instead of each record's source topic and partition.
    pub to: Option<String>,
    /// Which records.
    pub filters: Filters,
    /// Stop after this many matched records.
    pub limit: Option<u64>,
    /// Send at most this many records a second.
    pub rate: Option<f64>,
    /// Skip records redriven this many times already.
    pub max_redrives: u32,
    /// Send and commit nothing.
    pub dry_run: bool,
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// librdkafka could not make a client.
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
    /// The dead-letter topic does not exist.
    #[error("the topic {0} does not exist")]
    NoTopic(String),
}

/// The redrive group of the sidecar's group.
pub fn group_of(kafka: &KafkaConfig) -> String {
    format!("{}.redrive", kafka.group)
}

/// Runs a redrive; `progress` sees the summary after every record.
pub async fn run(
    kafka: &KafkaConfig,
    context: KafkaContext,
    options: &Options,
    stop: CancellationToken,
    progress: &(dyn Fn(&Summary) + Sync),
) -> Result<Summary, RedriveError> {
    let mut config = kafka::client_config(kafka, "msk-sidecar-redrive");
    config
        .set("group.id", group_of(kafka))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    kafka::apply_passthrough(&mut config, kafka);
    let consumer: BaseConsumer<KafkaContext> =
        config.create_with_context(context.clone()).map_err(RedriveError::Client)?;
    if kafka.auth == crate::config::KafkaAuth::MskIam {
        // The first MSK IAM token comes through an event only a poll serves (see `groups`).
        let _ = tokio::task::block_in_place(|| {
            consumer.poll(Duration::from_millis(500)).map(|m| m.map(|m| m.detach()))
        });
    }
    let producer: FutureProducer<KafkaContext> =
        kafka::producer_config(kafka).create_with_context(context).map_err(RedriveError::Client)?;
    let kafka_err = |what: &'static str| move |error| RedriveError::Kafka { what, error };

    // Every partition, from the group's committed offset, up to its end now.
    let metadata = consumer
        .fetch_metadata(Some(&options.from), TIMEOUT)
        .map_err(kafka_err("reading the dead-letter topic"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == options.from && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(RedriveError::NoTopic(options.from.clone()));
    }
    let mut wanted = TopicPartitionList::new();
    for p in &partitions {
        wanted.add_partition(&options.from, *p);
    }
    let committed =
        consumer.committed_offsets(wanted, TIMEOUT).map_err(kafka_err("reading the redrive group"))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(&options.from, *p, TIMEOUT)
            .map_err(kafka_err("reading the topic's ends"))?;
        let start = match committed.find_partition(&options.from, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        ends.insert(*p, high);
        assignment
            .add_partition_offset(&options.from, *p, start)
            .map_err(kafka_err("preparing the assignment"))?;
    }
    consumer.assign(&assignment).map_err(kafka_err("assigning the dead-letter topic"))?;

    let run_id = format!(
        "redrive-{}-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
        std::process::id()
    );
    let mut summary = Summary { dry_run: options.dry_run, run: run_id.clone(), ..Summary::default() };
    let mut done: HashMap<i32, i64> = HashMap::new();
    let started = Instant::now();
    // The sending window, for the rate (not the wait for the end of the topic).
    let mut sending: Option<(Instant, Instant)> = None;
    loop {
        if ends.iter().all(|(p, end)| done.get(p).is_some_and(|next| next >= end)) {
            break;
        }
        if options.limit.is_some_and(|limit| summary.matched >= limit) {
            summary.stopped_early = true;
            break;
        }
        if stop.is_cancelled() {
            summary.stopped_early = true;
            break;
        }
        let message = match tokio::task::block_in_place(|| consumer.poll(IDLE).map(|m| m.map(|m| m.detach())))
        {
            None => break,
            Some(Err(error)) => {
                return Err(RedriveError::Kafka { what: "reading the dead-letter topic", error });
            }
            Some(Ok(message)) => message,
        };
        let (partition, offset) = (message.partition(), message.offset());
        if ends.get(&partition).is_some_and(|end| offset >= *end) {
            // Dead-lettered after the run began: the next run's.
            done.insert(partition, offset);
            continue;
        }
        let header_list: Vec<(&str, &[u8])> = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value.unwrap_or_default())).collect())
            .unwrap_or_default();
        let facts = Facts::from_headers(header_list.iter().copied());
        summary.read += 1;
        if options.filters.matches(&facts) {
            summary.matched += 1;
            *summary.by_class.entry(facts.class.clone()).or_default() += 1;
            *summary.by_source.entry(facts.source.clone()).or_default() += 1;
            if facts.redrives >= options.max_redrives {
                summary.skipped_loop_guard += 1;
            } else if options.dry_run {
                summary.sent += 1;
            } else {
                let target = options.to.clone().unwrap_or_else(|| facts.source.clone());
                if target.is_empty() {
                    summary.failed += 1;
                } else {
                    if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
                        // Paced from the first send: `sent` records take `sent / rate` seconds.
                        let first = sending.map_or_else(Instant::now, |(first, _)| first);
                        let due = first + Duration::from_secs_f64(summary.sent as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let mut headers = OwnedHeaders::new();
                    for (name, value) in
                        redriven_headers(header_list.iter().copied(), facts.redrives, &run_id)
                    {
                        headers = headers.insert(Header { key: &name, value: Some(&value) });
                    }
                    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target).headers(headers);
                    if let Some(key) = message.key() {
                        record = record.key(key);
                    }
                    if let Some(value) = message.payload() {
                        record = record.payload(value);
                    }
                    if options.to.is_none()
                        && let Some(p) = facts.partition
                    {
                        record = record.partition(p);
                    }
                    if let Err((error, _)) = producer.send(record, TIMEOUT).await {
                        // Not past this one: the next run starts here, the order kept.
                        summary.failed += 1;
                        tracing::error!(topic = %target, error = %error, "A dead letter could not be sent back; the run stops before it.");
                        break;
                    }
                    summary.sent += 1;
                    let now = Instant::now();
                    sending = Some((sending.map_or(now, |(first, _)| first), now));
                }
            }
        }
        done.insert(partition, offset + 1);
        if !options.dry_run && summary.read.is_multiple_of(100) {
            commit(&consumer, &options.from, &done, CommitMode::Async)?;
        }
        progress(&summary);
    }
    if !options.dry_run {
        commit(&consumer, &options.from, &done, CommitMode::Sync)?;
    }
    // Records per second between the first send and the last (n sends span n - 1 intervals).
    summary.rate_per_s = match sending {
        Some((first, last)) if summary.sent > 1 => {
            (summary.sent - 1) as f64 / last.duration_since(first).as_secs_f64().max(f64::EPSILON)
        }
        _ => 0.0,
    };
    let _ = started;
    Ok(summary)
}

/// Commits the redrive group past what was handled.
fn commit(
    consumer: &BaseConsumer<KafkaContext>,
    topic: &str,
    done: &HashMap<i32, i64>,
    mode: CommitMode,
) -> Result<(), RedriveError> {
    if done.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in done {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*next))
            .map_err(|error| RedriveError::Kafka { what: "preparing the commit", error })?;
    }
    consumer
        .commit(&tpl, mode)
        .map_err(|error| RedriveError::Kafka { what: "committing the redrive group", error })
}
