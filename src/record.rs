//! The record as it flows from the consumer to delivery and dead letters.
//!
//! A [`Record`] is an owned copy of one message: the Kafka poll loop copies it out of
//! librdkafka's buffer once (an SQS receiver out of the answer), and every later stage shares it
//! by reference. Its [`Origin`] says which kind of source it came from, which decides only the
//! headers the application sees and where its dead letter goes. Sizes are tracked so
//! the dispatcher can bound buffered memory.

use std::fmt;
use std::hash::BuildHasher as _;
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxBuildHasher;

use crate::config::Ordering;

/// A topic and partition, cheap to clone and hash.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name, shared by every record of the topic.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One record header. Kafka allows repeated names and null values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value; `None` for a null value.
    pub value: Option<Bytes>,
}

/// Which kind of source a record came from.
///
/// A Kafka record's coordinates are its topic, partition and offset. An SQS message's are its
/// queue (as the topic, partition 0) and a sequence number the receiver gives it (as the
/// offset, unique within the receiver's run); its SQS facts travel as `x-sqs-*` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A Kafka topic partition.
    #[default]
    Kafka,
    /// An SQS queue.
    Sqs,
    /// A Redis stream (read through a consumer group).
    Redis,
    /// A RabbitMQ queue.
    Amqp,
}

/// The header (not sent to the application) of a RabbitMQ message counting its deliveries by
/// the broker, this one included.
pub const AMQP_DELIVERIES: &str = "msk-sidecar-amqp-deliveries";

impl Origin {
    /// The `source` label of metrics and the name in logs: `kafka`, `sqs`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Kafka => "kafka",
            Origin::Sqs => "sqs",
            Origin::Redis => "redis",
            Origin::Amqp => "amqp",
        }
    }

    /// The OpenTelemetry `messaging.system` value (semantic conventions): `kafka`, `aws_sqs`.
    pub fn messaging_system(self) -> &'static str {
        match self {
            Origin::Kafka => "kafka",
            Origin::Sqs => "aws_sqs",
            // Not in the semantic conventions' list: the name Redis goes by.
            Origin::Redis => "redis",
            Origin::Amqp => "rabbitmq",
        }
    }
}

/// One consumed record.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Source topic and partition.
    pub tp: TopicPartition,
    /// Offset within the partition.
    pub offset: i64,
    /// Record timestamp in ms since the epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// Key; `None` when the record has no key.
    pub key: Option<Bytes>,
    /// Value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in record order.
    pub headers: Vec<Header>,
    /// What of the record could not be read (a header name that is not UTF-8): such a record
    /// is dead-lettered as `malformed`, never delivered.
    pub malformed: Option<Box<str>>,
    /// What the sidecar decoded (`SIDECAR_VALUE_FORMAT`, `SIDECAR_KEY_FORMAT`): the value, or
    /// the key, is JSON now (`None`: as the source gave it).
    pub decoded: Option<Box<Decoded>>,
    /// The kind of source.
    pub origin: Origin,
}

/// What the sidecar decoded of a record: which of its parts are JSON now, and by which schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The value is JSON; the schema it was decoded with (`None`: JSON checked, no schema).
    pub value: Option<Option<Arc<str>>>,
    /// The key is JSON; the schema it was decoded with.
    pub key: Option<Option<Arc<str>>>,
}

impl Record {
    /// Approximate memory held by the record, for buffer bounds.
    pub fn size(&self) -> usize {
        let headers: usize =
            self.headers.iter().map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len)).sum();
        64 + self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + headers
    }

    /// The record's lane within its partition under `ordering`: the whole partition, its key
    /// (records without a key share one lane), or, with no order, the record alone. The
    /// dispatcher runs a lane's records one at a time; the batcher never splits a lane over two
    /// batches in flight.
    pub fn lane_in_partition(&self, ordering: Ordering) -> u64 {
        match ordering {
            Ordering::Partition => 0,
            Ordering::Key => self.key.as_ref().map_or(0, |key| FxBuildHasher.hash_one(key.as_ref()) | 1),
            Ordering::None => u64::try_from(self.offset).unwrap_or(0),
        }
    }

    /// The first header with `name` (exact match).
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// The value of the first header `name` as text, if it is there and UTF-8.
    pub fn header_text(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.header(name)?.value.as_deref()?).ok()
    }
}

/// Records are shown by coordinates only: payloads never reach logs.
impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Record({}@{})", self.tp, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_payloads() {
        let record = Record {
            tp: TopicPartition::new("orders", 3),
            offset: 42,
            timestamp: None,
            key: Some(Bytes::from_static(b"secret-key")),
            value: Some(Bytes::from_static(b"secret-value")),
            headers: vec![Header { name: "h".into(), value: Some(Bytes::from_static(b"secret-header")) }],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Kafka,
        };
        let shown = format!("{record:?}");
        assert_eq!(shown, "Record(orders/3@42)");
        assert!(record.size() > 64);
    }
}
