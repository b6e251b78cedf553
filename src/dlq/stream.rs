//! Dead letters of a Redis Streams source: the archive object, then the stream `<stream>.dlq`,
//! as `DESIGN.md` says.
//!
//! The dead-letter entry holds the entry's `data` (the record value) and its other fields
//! (names as the `x-redis-field-*` headers have them, lower case), then the `dlq-*` facts as
//! fields: error class, error, attempts, first and last failure, source stream and entry id,
//! consumer group, archive key, trace context. A try fails unless every place has the letter;
//! writing the same letter twice (a retried `XADD` whose answer was lost) adds a second entry,
//! which the `dlq-source-id` field tells apart.

use super::letter::{self, DeadLetter};
use super::{DlqError, Written};
use crate::archive::{Archive, ArchiveError};

/// Writes the dead letters of one stream.
pub struct StreamDeadLetters {
    /// Writes `XADD`s.
    writer: Box<dyn StreamWriter>,
    /// The source stream.
    stream: String,
    /// `<stream>.dlq`.
    dead_letter_stream: String,
    /// The consumer group, recorded in each letter.
    group: String,
    /// The archive, if one is configured.
    archive: Option<Archive>,
}

/// Adds an entry to a stream (the source's Redis connection; a fake in tests).
pub trait StreamWriter: Send + Sync + 'static {
    /// `XADD <stream> * <fields>`.
    fn add<'a>(
        &'a self,
        stream: &'a str,
        fields: Vec<(String, Vec<u8>)>,
    ) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

impl StreamDeadLetters {
    /// A writer for `stream` of `group`.
    pub fn new(writer: Box<dyn StreamWriter>, stream: &str, group: &str, archive: Option<Archive>) -> Self {
        StreamDeadLetters {
            writer,
            stream: stream.to_string(),
            dead_letter_stream: format!("{stream}.dlq"),
            group: group.to_string(),
            archive,
        }
    }

    /// Where dead letters go, for spans and logs.
    pub fn destination(&self) -> &str {
        &self.dead_letter_stream
    }

    /// One try at writing `letter`: archive, then the dead-letter stream.
    pub async fn write(&self, letter: &DeadLetter<'_>) -> Result<Written, DlqError> {
        let key = match &self.archive {
            Some(archive) => {
                let key = letter.archive_key(archive.prefix());
                let body = serde_json::to_vec(&letter.archive_document())
                    .map_err(|err| DlqError::Archive(ArchiveError::Encode(err.to_string())))?;
                archive.put(&key, body).await?;
                Some(key)
            }
            None => None,
        };
        let fields = self.fields(letter, key.as_deref());
        self.writer
            .add(&self.dead_letter_stream, fields)
            .await
            .map_err(|error| DlqError::Queue { queue: self.dead_letter_stream.clone(), error })?;
        Ok(Written {
            class: letter.class,
            archive_location: self.archive.as_ref().zip(key.as_deref()).map(|(a, k)| a.location(k)),
        })
    }

    /// The fields of the dead-letter entry.
    fn fields(&self, letter: &DeadLetter<'_>, archive_key: Option<&str>) -> Vec<(String, Vec<u8>)> {
        let record = letter.record;
        let mut fields: Vec<(String, Vec<u8>)> =
            vec![("data".to_string(), record.value.as_deref().unwrap_or_default().to_vec())];
        for header in &record.headers {
            if let Some(name) = header.name.strip_prefix("x-redis-field-") {
                fields.push((name.to_string(), header.value.as_deref().unwrap_or_default().to_vec()));
            }
        }
        let mut add = |name: &str, value: String| fields.push((name.to_string(), value.into_bytes()));
        add("dlq-error-class", letter.class.as_str().to_string());
        add("dlq-error", letter::truncate_line(&letter.error, letter::MAX_ERROR_BYTES));
        add("dlq-attempts", letter.attempts.to_string());
        add("dlq-first-failure", letter::rfc3339(letter.first_failure));
        add("dlq-last-failure", letter::rfc3339(letter.last_failure));
        add("dlq-source-stream", self.stream.clone());
        if let Some(id) = record.header_text("x-redis-id") {
            add("dlq-source-id", id.to_string());
        }
        add("dlq-consumer-group", self.group.clone());
        if let Some(key) = archive_key {
            add("dlq-archive-key", key.to_string());
        }
        if let Some(traceparent) = &letter.traceparent {
            add("traceparent", traceparent.clone());
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::dlq::ErrorClass;
    use crate::record::TopicPartition;

    type Added = Arc<Mutex<Vec<(String, Vec<(String, Vec<u8>)>)>>>;

    struct Fake(Added);

    impl StreamWriter for Fake {
        fn add<'a>(
            &'a self,
            stream: &'a str,
            fields: Vec<(String, Vec<u8>)>,
        ) -> futures::future::BoxFuture<'a, Result<(), String>> {
            self.0.lock().unwrap().push((stream.to_string(), fields));
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn a_dead_letter_keeps_the_entry_and_adds_the_facts_to_the_dlq_stream() {
        let added = Added::default();
        let letters = StreamDeadLetters::new(Box::new(Fake(added.clone())), "orders", "g", None);
        let tp = TopicPartition::new("orders", 0);
        let header = |name: &str, value: &str| crate::record::Header {
            name: name.to_string(),
            value: Some(bytes::Bytes::from(value.to_string())),
        };
        let record = crate::record::Record {
            tp,
            offset: 4,
            timestamp: Some(17),
            key: None,
            value: Some(bytes::Bytes::from_static(b"payload")),
            headers: vec![header("x-redis-id", "17-3"), header("x-redis-field-kind", "order")],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Redis,
        };
        let now = std::time::SystemTime::now();
        let letter = DeadLetter {
            record: &record,
            group: "",
            class: ErrorClass::Permanent,
            error: "400 Bad Request".into(),
            attempts: 1,
            first_failure: now,
            last_failure: now + Duration::from_millis(5),
            traceparent: None,
        };
        let written = letters.write(&letter).await.expect("written");
        assert_eq!(written.class, ErrorClass::Permanent);
        let added = added.lock().unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].0, "orders.dlq");
        let get = |name: &str| {
            added[0].1.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("data").as_deref(), Some("payload"));
        assert_eq!(get("kind").as_deref(), Some("order"));
        assert_eq!(get("dlq-error-class").as_deref(), Some("permanent"));
        assert_eq!(get("dlq-source-stream").as_deref(), Some("orders"));
        assert_eq!(get("dlq-source-id").as_deref(), Some("17-3"));
        assert_eq!(get("dlq-consumer-group").as_deref(), Some("g"));
    }
}
