//! The dead letter itself: its Kafka headers and its archive document, as `DESIGN.md` fixes them.
//!
//! Both are built from one [`DeadLetter`], so the topic copy and the archive copy always agree.
//! The archive key depends only on the source coordinates and timestamp, so writing the same
//! dead letter again writes the same object.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::record::{Origin, Record};

/// Longest `dlq-error` value, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;

/// Why a record was dead-lettered (`dlq-error-class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The application rejected the record (a 4xx other than 408/429).
    Permanent,
    /// Every attempt failed with a retryable error.
    RetriesExhausted,
    /// The record is larger than the dead-letter topic accepts: archived in full, the topic copy
    /// has an empty value.
    Oversized,
    /// Part of the record cannot be read (a header name that is not UTF-8): never delivered.
    Malformed,
    /// The record's processing panicked (a bug of ours that this record triggers).
    Panic,
    /// Its value or key does not decode in the configured format: never delivered.
    Undecodable,
    /// The filter failed on it (a missing field, a type mismatch): never delivered unfiltered.
    FilterError,
    /// It is older than the maximum record age.
    Expired,
}

impl ErrorClass {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::RetriesExhausted => "retries-exhausted",
            ErrorClass::Oversized => "oversized",
            ErrorClass::Malformed => "malformed",
            ErrorClass::Panic => "panic",
            ErrorClass::Undecodable => "undecodable",
            ErrorClass::FilterError => "filter-error",
            ErrorClass::Expired => "expired",
        }
    }
}

/// A record that reached the end of its retries, with what happened to it.
#[derive(Clone, Debug)]
pub struct DeadLetter<'a> {
    /// The source record.
    pub record: &'a Record,
    /// The consumer group that gave up on it.
    pub group: &'a str,
    /// Why.
    pub class: ErrorClass,
    /// The last error, one line.
    pub error: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: SystemTime,
    /// When the last attempt failed.
    pub last_failure: SystemTime,
    /// Trace context of the dead-lettering span.
    pub traceparent: Option<String>,
}

/// How many times `msk-sidecar redrive` sent the record back (kept across dead-letterings).
pub const REDRIVE_COUNT: &str = "dlq-redrive-count";
/// The redrive run that last sent it back.
pub const REDRIVE_ID: &str = "dlq-redrive-id";

/// RFC 3339 text of a time (UTC, with fraction).
pub fn rfc3339(time: SystemTime) -> String {
    OffsetDateTime::from(time).format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Cuts `text` to one line of at most `max` bytes, on a character boundary.
pub fn truncate_line(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// When this process started, in ms since the epoch (once per run).
fn run_started_ms() -> u128 {
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
    })
}

impl DeadLetter<'_> {
    /// The archive object key: `<prefix>/<topic>/<yyyy>/<mm>/<dd>/<partition>-<offset>.json`
    /// (an SQS message: `<prefix>/sqs/<queue>/<yyyy>/<mm>/<dd>/<message-id>.json`), the date
    /// taken from the record timestamp in UTC. A record without one: epoch 0, so a rewrite
    /// still lands on the same key; but a RabbitMQ message without the timestamp property: the
    /// day of its first failure (its key names the delivery of this run anyway).
    pub fn archive_key(&self, prefix: &str) -> String {
        let failed_ms = || {
            self.first_failure
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let ms = match (self.record.timestamp, self.record.origin) {
            (Some(ms), _) => ms,
            // Its key holds the delivery's sequence of this run: it cannot be rewritten anyway.
            (None, Origin::Amqp) => failed_ms(),
            (None, _) => 0,
        };
        let date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let day = format!("{:04}/{:02}/{:02}", date.year(), u8::from(date.month()), date.day());
        let record = self.record;
        let path = match record.origin {
            Origin::Kafka => {
                format!("{}/{day}/{}-{}.json", record.tp.topic, record.tp.partition, record.offset)
            }
            Origin::Sqs => format!("sqs/{}/{day}/{}.json", record.tp.topic, self.message_id()),
            Origin::Redis => format!("redis/{}/{day}/{}.json", record.tp.topic, self.message_id()),
            Origin::Amqp => format!("amqp/{}/{day}/{}.json", record.tp.topic, self.message_id()),
        };
        if prefix.is_empty() { path } else { format!("{prefix}/{path}") }
    }

    /// The headers of the dead-letter record: the source headers (without earlier `dlq-*`
    /// headers, and without the source trace context when we add ours; none at all when
    /// `source_headers` is false), then ours.
    pub fn headers(&self, archive_key: Option<&str>, source_headers: bool) -> Vec<(String, Vec<u8>)> {
        let replace_trace = self.traceparent.is_some();
        let mut headers: Vec<(String, Vec<u8>)> = self
            .record
            .headers
            .iter()
            .filter(|_| source_headers)
            // Earlier dead-letter facts go, but not the redrive loop guard: a record redriven
            // and dead-lettered again keeps its count (`msk-sidecar redrive --max-redrives`).
            .filter(|h| !h.name.starts_with("dlq-") || h.name == REDRIVE_COUNT || h.name == REDRIVE_ID)
            .filter(|h| !(replace_trace && (h.name == "traceparent" || h.name == "tracestate")))
            .map(|h| (h.name.clone(), h.value.as_ref().map(|v| v.to_vec()).unwrap_or_default()))
            .collect();
        let mut add = |name: &str, value: String| headers.push((name.to_string(), value.into_bytes()));
        add("dlq-source-topic", self.record.tp.topic.to_string());
        add("dlq-source-partition", self.record.tp.partition.to_string());
        add("dlq-source-offset", self.record.offset.to_string());
        if let Some(timestamp) = self.record.timestamp {
            add("dlq-source-timestamp", timestamp.to_string());
        }
        add("dlq-consumer-group", self.group.to_string());
        add("dlq-attempts", self.attempts.to_string());
        add("dlq-error-class", self.class.as_str().to_string());
        add("dlq-error", truncate_line(&self.error, MAX_ERROR_BYTES));
        add("dlq-first-failure", rfc3339(self.first_failure));
        add("dlq-last-failure", rfc3339(self.last_failure));
        if let Some(key) = archive_key {
            add("dlq-archive-key", key.to_string());
        }
        if let Some(traceparent) = &self.traceparent {
            add("traceparent", traceparent.clone());
        }
        headers
    }

    /// The source's id of a message: an SQS message id, a Redis entry id.
    fn source_message_id(&self) -> Option<&str> {
        match self.record.origin {
            Origin::Kafka => None,
            Origin::Sqs => self.record.header_text("x-sqs-message-id"),
            Origin::Redis => self.record.header_text("x-redis-id"),
            Origin::Amqp => self.record.header_text("x-amqp-message-id"),
        }
    }

    /// An SQS message's (or Redis entry's) id, made safe as an object name (ids are UUIDs or
    /// `<ms>-<seq>`; anything else is percent-encoded); the receiver's sequence number if it
    /// has none.
    pub fn message_id(&self) -> String {
        match self.source_message_id().filter(|id| !id.is_empty()) {
            // A RabbitMQ message id is the publisher's and need not be unique: the run and the
            // sequence number keep two letters with one id apart (one letter written twice
            // within a run still writes one object).
            Some(id) if self.record.origin == Origin::Amqp => {
                format!("{}-{}-{}", safe_name(id), run_started_ms(), self.record.offset)
            }
            Some(id) => safe_name(id),
            // Sequence numbers start again with each run: the run's start tells them apart.
            None => format!("seq-{}-{}", run_started_ms(), self.record.offset),
        }
    }
}

/// `id` as an object name: letters, digits, `-` and `_` kept, any other byte percent-encoded.
fn safe_name(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl DeadLetter<'_> {
    /// The archive document (JSON).
    pub fn archive_document(&self) -> ArchiveDocument {
        let record = self.record;
        let sqs = matches!(record.origin, Origin::Sqs | Origin::Amqp);
        let redis = record.origin == Origin::Redis;
        ArchiveDocument {
            source_kind: (record.origin != Origin::Kafka).then(|| record.origin.name().to_string()),
            source_queue: sqs.then(|| record.tp.topic.to_string()),
            source_stream: redis.then(|| record.tp.topic.to_string()),
            source_message_id: self.source_message_id().map(str::to_string),
            source_topic: record.tp.topic.to_string(),
            source_partition: record.tp.partition,
            source_offset: record.offset,
            source_timestamp: record.timestamp,
            consumer_group: self.group.to_string(),
            attempts: self.attempts,
            error_class: self.class.as_str().to_string(),
            error: truncate_line(&self.error, MAX_ERROR_BYTES),
            first_failure: rfc3339(self.first_failure),
            last_failure: rfc3339(self.last_failure),
            traceparent: self.traceparent.clone(),
            key_b64: record.key.as_ref().map(|k| BASE64.encode(k)),
            value_b64: record.value.as_ref().map(|v| BASE64.encode(v)),
            headers: record
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.as_ref().map(|v| BASE64.encode(v)).unwrap_or_default()))
                .collect(),
        }
    }
}

/// One archived dead letter. Field names are the DLQ header names without `dlq-`, in snake case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ArchiveDocument {
    /// `sqs` for a message of an SQS queue, `redis` for an entry of a stream; absent for a Kafka
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<String>,
    /// The SQS queue's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_queue: Option<String>,
    /// The Redis stream's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_stream: Option<String>,
    /// The SQS message id, the Redis entry id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_message_id: Option<String>,
    /// Source topic (an SQS message: its queue).
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Source offset.
    pub source_offset: i64,
    /// Source record timestamp, ms since the epoch.
    pub source_timestamp: Option<i64>,
    /// Consumer group.
    pub consumer_group: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// `permanent`, `retries-exhausted`, `oversized`.
    pub error_class: String,
    /// Last error, one line, at most 1 KiB.
    pub error: String,
    /// RFC 3339.
    pub first_failure: String,
    /// RFC 3339.
    pub last_failure: String,
    /// Trace context of the dead-lettering span.
    pub traceparent: Option<String>,
    /// The key, base64; null when the record has no key.
    pub key_b64: Option<String>,
    /// The value, base64; null for a tombstone.
    pub value_b64: Option<String>,
    /// Header name → base64 value (the last value wins for repeated names).
    pub headers: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::record::{Header, TopicPartition};

    fn record() -> Record {
        Record {
            tp: TopicPartition::new("orders", 4),
            offset: 1234,
            timestamp: Some(1_700_000_000_000), // 2023-11-14T22:13:20Z
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(b"v1")),
            headers: vec![
                Header { name: "app".into(), value: Some(Bytes::from_static(b"x")) },
                Header { name: "dlq-error".into(), value: Some(Bytes::from_static(b"old")) },
                Header { name: "traceparent".into(), value: Some(Bytes::from_static(b"00-old-old-01")) },
            ],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Kafka,
        }
    }

    fn letter(record: &Record) -> DeadLetter<'_> {
        DeadLetter {
            record,
            group: "g1",
            class: ErrorClass::RetriesExhausted,
            error: format!("HTTP 500\n{}", "é".repeat(1000)),
            attempts: 5,
            first_failure: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            last_failure: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_009_500),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn archive_key_uses_the_record_date_in_utc() {
        let r = record();
        assert_eq!(letter(&r).archive_key("dlq/prod"), "dlq/prod/orders/2023/11/14/4-1234.json");
        assert_eq!(letter(&r).archive_key(""), "orders/2023/11/14/4-1234.json");
        let mut no_time = record();
        no_time.timestamp = None;
        assert_eq!(letter(&no_time).archive_key("p"), "p/orders/1970/01/01/4-1234.json");
        // A RabbitMQ message without a timestamp property: the day it first failed.
        no_time.origin = Origin::Amqp;
        assert!(letter(&no_time).archive_key("p").starts_with("p/amqp/orders/2023/11/14/"));
    }

    #[test]
    fn two_rabbitmq_letters_with_one_publisher_message_id_get_two_archive_objects() {
        let amqp = |offset: i64| Record {
            tp: TopicPartition::new("jobs", 0),
            offset,
            headers: vec![Header {
                name: "x-amqp-message-id".into(),
                value: Some(Bytes::from_static(b"dup/1")),
            }],
            origin: crate::record::Origin::Amqp,
            ..record()
        };
        let (first, second) = (amqp(1), amqp(2));
        let key = letter(&first).archive_key("");
        assert!(key.starts_with("amqp/jobs/2023/11/14/dup%2F1-"), "{key}");
        assert_ne!(key, letter(&second).archive_key(""), "another message, another object");
        assert_eq!(key, letter(&first).archive_key(""), "the same letter twice: one object");
    }

    #[test]
    fn headers_carry_the_contract_fields_after_the_source_headers() {
        let r = record();
        let headers = letter(&r).headers(Some("p/orders/2023/11/14/4-1234.json"), true);
        let get = |name: &str| {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(headers[0].0, "app", "source headers first");
        assert_eq!(get("dlq-source-topic"), vec!["orders"]);
        assert_eq!(get("dlq-source-partition"), vec!["4"]);
        assert_eq!(get("dlq-source-offset"), vec!["1234"]);
        assert_eq!(get("dlq-source-timestamp"), vec!["1700000000000"]);
        assert_eq!(get("dlq-consumer-group"), vec!["g1"]);
        assert_eq!(get("dlq-attempts"), vec!["5"]);
        assert_eq!(get("dlq-error-class"), vec!["retries-exhausted"]);
        assert_eq!(get("dlq-first-failure"), vec!["2023-11-14T22:13:21Z"]);
        assert_eq!(get("dlq-last-failure"), vec!["2023-11-14T22:13:29.5Z"]);
        assert_eq!(get("traceparent"), vec!["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]);
        assert_eq!(get("dlq-archive-key"), vec!["p/orders/2023/11/14/4-1234.json"]);
        let error = &get("dlq-error")[0];
        assert!(error.starts_with("HTTP 500 é"), "one line: {error}");
        assert!(error.len() <= MAX_ERROR_BYTES);
    }

    #[test]
    fn a_redriven_record_dead_lettered_again_keeps_its_redrive_count_and_loses_the_old_facts() {
        let mut r = record();
        let header = |name: &str, value: &'static [u8]| Header {
            name: name.into(),
            value: Some(Bytes::from_static(value)),
        };
        r.headers = vec![
            header("dlq-error-class", b"permanent"),
            header(REDRIVE_COUNT, b"2"),
            header(REDRIVE_ID, b"run-1"),
        ];
        let headers = letter(&r).headers(None, true);
        let values = |name: &str| {
            headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect::<Vec<_>>()
        };
        assert_eq!(values(REDRIVE_COUNT), vec![b"2".to_vec()], "the loop guard survives");
        assert_eq!(values(REDRIVE_ID), vec![b"run-1".to_vec()]);
        assert_eq!(
            values("dlq-error-class"),
            vec![b"retries-exhausted".to_vec()],
            "only this dead-lettering's class"
        );
    }

    #[test]
    fn archive_document_matches_the_headers() {
        let r = record();
        let doc = letter(&r).archive_document();
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(json["source_topic"], "orders");
        assert_eq!(json["source_partition"], 4);
        assert_eq!(json["source_offset"], 1234);
        assert_eq!(json["source_timestamp"], 1_700_000_000_000i64);
        assert_eq!(json["consumer_group"], "g1");
        assert_eq!(json["attempts"], 5);
        assert_eq!(json["error_class"], "retries-exhausted");
        assert_eq!(json["first_failure"], "2023-11-14T22:13:21Z");
        assert_eq!(json["key_b64"], "azE=");
        assert_eq!(json["value_b64"], "djE=");
        assert_eq!(json["headers"]["app"], "eA==");
        assert!(json["traceparent"].is_string());
    }
}
