//! Dead letters of an SQS source: the archive object, then the queue's own dead-letter queue
//! (the one its `RedrivePolicy` names), as `DESIGN.md` says.
//!
//! The dead-letter message keeps the body and carries the `dlq-*` facts as message attributes
//! (SQS allows ten: error class, error, attempts, first and last failure, source queue and
//! message id, archive key, trace context); the original message attributes are whole in the
//! archive document. A FIFO dead-letter queue gets the original message group and the message
//! id as deduplication id, so writing the same dead letter again within SQS's five minutes is
//! not a second message. A try fails unless every configured place has the letter.
//!
//! Attribute values keep only the characters SQS accepts (an application's error text may hold
//! control characters). A message that would be larger than SQS accepts (the body near the
//! limit, plus the attributes) goes to the dead-letter queue as a pointer to its archive copy
//! (class `oversized`), like an oversized Kafka dead letter; without an archive the try fails
//! and the message holds, shown on `/ready`.

use aws_sdk_sqs::types::MessageAttributeValue;

use super::letter::{self, DeadLetter, ErrorClass};
use super::{DlqError, Written};
use crate::archive::{Archive, ArchiveError};

/// The largest message the dead-letter queue is sure to take (SQS's long-standing limit).
const MAX_MESSAGE_BYTES: usize = 262_144;

/// Writes the dead letters of one queue.
pub struct QueueDeadLetters {
    /// The client.
    client: aws_sdk_sqs::Client,
    /// The source queue's name (for messages and spans).
    queue: String,
    /// The dead-letter queue from the source queue's `RedrivePolicy`, if it has one.
    dead_letter_queue: Option<String>,
    /// The archive, if one is configured.
    archive: Option<Archive>,
}

impl QueueDeadLetters {
    /// A writer for `queue`; at least one of `dead_letter_queue` and `archive` must be set (the
    /// source is refused at start otherwise).
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue: String,
        dead_letter_queue: Option<String>,
        archive: Option<Archive>,
    ) -> Self {
        QueueDeadLetters { client, queue, dead_letter_queue, archive }
    }

    /// Where dead letters go, for spans and logs (the dead-letter queue's URL, else the archive).
    pub fn destination(&self) -> &str {
        self.dead_letter_queue.as_deref().unwrap_or("archive")
    }

    /// One try at writing `letter`: archive, then dead-letter queue.
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
        let mut class = letter.class;
        if let Some(url) = &self.dead_letter_queue {
            class = self.send(url, letter, key.as_deref()).await?;
        }
        Ok(Written {
            class,
            archive_location: self.archive.as_ref().zip(key.as_deref()).map(|(a, k)| a.location(k)),
        })
    }

    /// Sends the dead-letter message; the class it went with.
    async fn send(
        &self,
        url: &str,
        letter: &DeadLetter<'_>,
        archive_key: Option<&str>,
    ) -> Result<ErrorClass, DlqError> {
        let record = letter.record;
        let mut body = record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
        if body.is_empty() {
            body.push('-'); // SQS refuses an empty body
        }
        let mut attributes = attributes(letter, &self.queue, archive_key);
        let size = body.len() + attributes.iter().map(|(n, v)| n.len() + v.len() + 16).sum::<usize>();
        let mut class = letter.class;
        if size > MAX_MESSAGE_BYTES {
            let Some(key) = archive_key else {
                return Err(DlqError::TooLarge {
                    record: format!("{}@{}", record.tp, record.offset),
                    size,
                    topic: crate::config::redact_text_url(url),
                });
            };
            body = serde_json::json!({ "oversized": true, "archive_key": key, "size": size }).to_string();
            class = ErrorClass::Oversized;
            for (name, value) in &mut attributes {
                if *name == "dlq-error-class" {
                    *value = class.as_str().to_string();
                }
            }
        }
        let mut request = self.client.send_message().queue_url(url).message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder().data_type("String").string_value(value).build();
            // A String attribute with a value always builds.
            if let Ok(value) = value {
                request = request.message_attributes(name, value);
            }
        }
        if url.ends_with(".fifo") {
            let group = record.header_text("x-sqs-message-group-id").unwrap_or(&self.queue).to_string();
            request = request.message_group_id(group).message_deduplication_id(letter.message_id());
        }
        request.send().await.map(|_| class).map_err(|err| DlqError::Queue {
            queue: crate::config::redact_text_url(url),
            error: crate::archive::describe_sdk_error(&err),
        })
    }
}

/// The `dlq-*` facts as message attributes (at most ten, none empty).
fn attributes(
    letter: &DeadLetter<'_>,
    queue: &str,
    archive_key: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        ("dlq-error-class", letter.class.as_str().to_string()),
        ("dlq-error", letter::truncate_line(&letter.error, letter::MAX_ERROR_BYTES)),
        ("dlq-attempts", letter.attempts.to_string()),
        ("dlq-first-failure", letter::rfc3339(letter.first_failure)),
        ("dlq-last-failure", letter::rfc3339(letter.last_failure)),
        ("dlq-source-queue", queue.to_string()),
    ];
    if let Some(id) = letter.record.header_text("x-sqs-message-id") {
        attributes.push(("dlq-source-message-id", id.to_string()));
    }
    if let Some(key) = archive_key {
        attributes.push(("dlq-archive-key", key.to_string()));
    }
    if let Some(traceparent) = &letter.traceparent {
        attributes.push(("traceparent", traceparent.clone()));
    }
    for (_, value) in &mut attributes {
        *value = sqs_text(value);
    }
    attributes.retain(|(_, value)| !value.is_empty());
    attributes
}

/// `text` with every character SQS refuses in a message replaced by `?` (SQS takes tab, line
/// feed, carriage return, and U+0020 to U+D7FF, U+E000 to U+FFFD, U+10000 and above).
fn sqs_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            let allowed = matches!(c, '\t' | '\n' | '\r')
                || ('\u{20}'..='\u{D7FF}').contains(&c)
                || ('\u{E000}'..='\u{FFFD}').contains(&c)
                || c >= '\u{10000}';
            if allowed { c } else { '?' }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::*;
    use crate::dlq::ErrorClass;
    use crate::record::{Header, Origin, Record, TopicPartition};

    #[test]
    fn the_facts_fit_the_ten_attributes_sqs_allows() {
        let record = Record {
            tp: TopicPartition::new("tasks", 0),
            offset: 3,
            timestamp: Some(1_700_000_000_000),
            key: None,
            value: Some(Bytes::from_static(b"body")),
            headers: vec![Header {
                name: "x-sqs-message-id".into(),
                value: Some(Bytes::from_static(b"m-1")),
            }],
            malformed: None,
            decoded: None,
            origin: Origin::Sqs,
        };
        let letter = DeadLetter {
            record: &record,
            group: "g",
            class: ErrorClass::Permanent,
            error: "HTTP 400".into(),
            attempts: 1,
            first_failure: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            last_failure: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let attributes = attributes(&letter, "tasks", Some("sqs/tasks/2023/11/14/m-1.json"));
        assert!(attributes.len() <= 10);
        let get = |name: &str| attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("dlq-error-class"), Some("permanent"));
        assert_eq!(get("dlq-source-message-id"), Some("m-1"));
        assert_eq!(get("dlq-archive-key"), Some("sqs/tasks/2023/11/14/m-1.json"));
        assert_eq!(letter.archive_key("dead"), "dead/sqs/tasks/2023/11/14/m-1.json");
        let document = letter.archive_document();
        assert_eq!(document.source_kind.as_deref(), Some("sqs"));
        assert_eq!(document.source_message_id.as_deref(), Some("m-1"));
    }

    #[test]
    fn characters_sqs_refuses_are_replaced() {
        assert_eq!(sqs_text("HTTP 500: \u{0}bad\u{1b}[0m \u{FFFE} ok é"), "HTTP 500: ?bad?[0m ? ok é");
    }
}
