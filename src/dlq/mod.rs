//! Dead letters: the DLQ topic record and the archive object for a record that cannot be
//! delivered.
//!
//! [`DeadLetterWriter::write`] makes one try: archive object first (so an oversized record is
//! kept whole), then the DLQ record, acknowledged by all in-sync replicas. The caller retries a
//! failed try with backoff and treats the record as terminal only after a successful one.
//!
//! A record larger than the dead-letter topic accepts is archived whole, and the topic gets a
//! copy without its value (class `oversized`); if even that is too large, without its source
//! headers, then without its key: the `dlq-*` headers always fit and name the archive object.
//! Without an archive the record is never committed with a part of it missing: the write fails
//! (`/ready` says why) and the partition holds until an archive is configured.

pub mod letter;
pub mod queue;
pub mod reject;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::archive::{Archive, ArchiveError};
pub use letter::{DeadLetter, ErrorClass};

use crate::health::{Component, Problem};
use crate::kafka::KafkaContext;

/// Bytes added to a record's key, value and headers to estimate its size on the wire.
const RECORD_OVERHEAD: usize = 512;

/// Why a dead-letter try failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The archive object could not be written.
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    /// The DLQ topic did not acknowledge the record.
    #[error("producing to dead-letter topic {topic} failed: {error}")]
    Produce {
        /// The DLQ topic.
        topic: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// The dead-letter queue of an SQS source did not take the message.
    #[error("sending to dead-letter queue {queue} failed: {error}")]
    Queue {
        /// The dead-letter queue (URL, redacted).
        queue: String,
        /// The SDK's error, one line.
        error: String,
    },
    /// The record is larger than the topic accepts and there is no archive to keep it whole.
    #[error(
        "the record at {record} (about {size} bytes) is larger than dead-letter topic {topic} accepts and no archive is set: the partition holds until SIDECAR_DLQ_ARCHIVE is set"
    )]
    TooLarge {
        /// The record's coordinates.
        record: String,
        /// Its estimated size.
        size: usize,
        /// The DLQ topic.
        topic: String,
    },
    /// A record reached a route without a dead-letter place for its source (a Kafka record
    /// with no dead-letter topic): not expected, since every source gives its routes their own
    /// place; the record is held, never dropped.
    #[error("no dead-letter place for a record from {source_kind}")]
    Unplaced {
        /// The record's source kind.
        source_kind: &'static str,
    },
}

impl DlqError {
    /// The health component this failure belongs to.
    pub fn component(&self) -> Component {
        match self {
            DlqError::Archive(_) => Component::Archive,
            DlqError::Produce { .. }
            | DlqError::Queue { .. }
            | DlqError::TooLarge { .. }
            | DlqError::Unplaced { .. } => Component::DeadLetterTopic,
        }
    }

    fn is_too_large(&self) -> bool {
        matches!(self, DlqError::Produce { error, .. } if error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge))
    }
}

/// How much of the source record the topic copy keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Key, value and headers.
    Whole,
    /// Key and headers.
    NoValue,
    /// Key only.
    NoHeaders,
    /// Only the `dlq-*` headers.
    Bare,
}

impl Shape {
    fn keeps_value(self) -> bool {
        self == Shape::Whole
    }

    fn keeps_headers(self) -> bool {
        matches!(self, Shape::Whole | Shape::NoValue)
    }

    fn keeps_key(self) -> bool {
        self != Shape::Bare
    }

    /// The size of the topic copy on the wire, estimated.
    fn size(self, letter: &DeadLetter<'_>) -> usize {
        let record = letter.record;
        let headers: usize = if self.keeps_headers() {
            record.headers.iter().map(|h| h.name.len() + h.value.as_ref().map_or(0, |v| v.len())).sum()
        } else {
            0
        };
        RECORD_OVERHEAD
            + if self.keeps_key() { record.key.as_ref().map_or(0, |k| k.len()) } else { 0 }
            + if self.keeps_value() { record.value.as_ref().map_or(0, |v| v.len()) } else { 0 }
            + headers
            + letter.error.len().min(letter::MAX_ERROR_BYTES)
    }
}

/// What a successful write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The class recorded (`oversized` replaces the original class when the value was left out).
    pub class: ErrorClass,
    /// Where the archive object went, if an archive is configured.
    pub archive_location: Option<String>,
}

/// Writes dead letters to the DLQ topic and the archive.
pub struct DeadLetterWriter {
    /// Producer with `acks=all`.
    producer: FutureProducer<KafkaContext>,
    /// The DLQ topic.
    topic: String,
    /// Optional archive.
    archive: Option<Archive>,
    /// Records larger than this go the oversized path without trying the topic.
    max_message_bytes: usize,
    /// The producer's authentication problem (set by its error callback), cleared when a dead
    /// letter is acknowledged.
    authentication: Arc<Problem>,
}

impl DeadLetterWriter {
    /// A writer producing to `topic` with `producer`, whose context reports authentication
    /// failures to `authentication`.
    pub fn new(
        producer: FutureProducer<KafkaContext>,
        topic: String,
        archive: Option<Archive>,
        authentication: Arc<Problem>,
    ) -> Self {
        DeadLetterWriter {
            producer,
            topic,
            archive,
            max_message_bytes: crate::kafka::MESSAGE_MAX_BYTES,
            authentication,
        }
    }

    /// The same writer with another size limit (tests of the oversized path).
    #[cfg(test)]
    fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// The DLQ topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// One try at writing `letter`: archive, then topic.
    pub async fn write(&self, letter: &DeadLetter<'_>) -> Result<Written, DlqError> {
        let size = Shape::Whole.size(letter);
        if size > self.max_message_bytes {
            return self.write_oversized(letter, size).await;
        }
        let archive_key = self.archive(letter).await?;
        match self.produce(letter, archive_key.as_deref(), Shape::Whole).await {
            Ok(()) => {
                Ok(Written { class: letter.class, archive_location: self.location(archive_key.as_deref()) })
            }
            Err(err) if err.is_too_large() => self.write_oversized(letter, size).await,
            Err(err) => Err(err),
        }
    }

    async fn write_oversized(&self, letter: &DeadLetter<'_>, size: usize) -> Result<Written, DlqError> {
        let record = letter.record;
        if self.archive.is_none() {
            return Err(DlqError::TooLarge {
                record: format!("{}@{}", record.tp, record.offset),
                size,
                topic: self.topic.clone(),
            });
        }
        let mut oversized = letter.clone();
        oversized.class = ErrorClass::Oversized;
        oversized.error = format!(
            "{} ({}); the record (about {size} bytes) is larger than the dead-letter topic accepts, so it is whole only in the archive",
            letter.class.as_str(),
            letter.error
        );
        let archive_key = self.archive(&oversized).await?;
        // Leave out as little as fits: the value, then the source headers, then the key.
        for shape in [Shape::NoValue, Shape::NoHeaders, Shape::Bare] {
            if shape.size(&oversized) > self.max_message_bytes {
                continue;
            }
            match self.produce(&oversized, archive_key.as_deref(), shape).await {
                Ok(()) => {
                    return Ok(Written {
                        class: ErrorClass::Oversized,
                        archive_location: self.location(archive_key.as_deref()),
                    });
                }
                Err(err) if err.is_too_large() => {}
                Err(err) => return Err(err),
            }
        }
        Err(DlqError::TooLarge {
            record: format!("{}@{}", record.tp, record.offset),
            size,
            topic: self.topic.clone(),
        })
    }

    async fn archive(&self, letter: &DeadLetter<'_>) -> Result<Option<String>, DlqError> {
        let Some(archive) = &self.archive else { return Ok(None) };
        let key = letter.archive_key(archive.prefix());
        // A document of strings and numbers always serializes.
        let body = serde_json::to_vec(&letter.archive_document())
            .map_err(|err| DlqError::Archive(ArchiveError::Encode(err.to_string())))?;
        archive.put(&key, body).await?;
        Ok(Some(key))
    }

    fn location(&self, key: Option<&str>) -> Option<String> {
        Some(self.archive.as_ref()?.location(key?))
    }

    async fn produce(
        &self,
        letter: &DeadLetter<'_>,
        archive_key: Option<&str>,
        shape: Shape,
    ) -> Result<(), DlqError> {
        let header_list = letter.headers(archive_key, shape.keeps_headers());
        let mut headers = OwnedHeaders::new_with_capacity(header_list.len());
        for (name, value) in &header_list {
            headers = headers.insert(Header { key: name, value: Some(value) });
        }
        let record = letter.record;
        let empty: &[u8] = &[];
        let mut message = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = record.key.as_ref().filter(|_| shape.keeps_key()) {
            message = message.key(key.as_ref());
        }
        if !shape.keeps_value() {
            message = message.payload(empty);
        } else if let Some(value) = &record.value {
            message = message.payload(value.as_ref());
        }
        self.producer
            .send(message, Duration::from_secs(30))
            .await
            .map(|_| {
                // An acknowledged dead letter proves the brokers accept this producer (again).
                self.authentication.clear();
            })
            .map_err(|(error, _)| DlqError::Produce { topic: self.topic.clone(), error })
    }

    /// Waits until every produced dead letter is acknowledged (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer.flush(timeout) {
            tracing::warn!(error = %err, "Dead-letter producer did not flush before shutdown.");
        }
    }
}

#[cfg(test)]
mod tests;
