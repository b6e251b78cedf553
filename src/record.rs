//! The record as it flows from the consumer to delivery and dead letters.
//!
//! A [`Record`] is an owned copy of one Kafka message: the poll loop copies it out of
//! librdkafka's buffer once, and every later stage shares it by reference. Sizes are tracked so
//! the dispatcher can bound buffered memory.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

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
}

impl Record {
    /// Approximate memory held by the record, for buffer bounds.
    pub fn size(&self) -> usize {
        let headers: usize =
            self.headers.iter().map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len)).sum();
        64 + self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + headers
    }

    /// The first header with `name` (exact match).
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.name == name)
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
        };
        let shown = format!("{record:?}");
        assert_eq!(shown, "Record(orders/3@42)");
        assert!(record.size() > 64);
    }
}
