//! Dead letters of a RabbitMQ source: the archive object, then `basic.reject(requeue=false)`
//! of the delivery so the queue's dead-letter exchange receives it, as `DESIGN.md` says.
//!
//! The reject itself travels with the delivery's completion (on the channel that received it):
//! a try here writes the archive object and marks the delivery; the source rejects instead of
//! acknowledging. A queue without a dead-letter exchange drops what is rejected: with no
//! archive, the source warns at start (AMQP cannot tell whether a queue has one).

use super::letter::DeadLetter;
use super::{DlqError, Written};
use crate::archive::{Archive, ArchiveError};

/// Marks a delivery to be rejected instead of acknowledged (the source's reject list).
pub trait RejectMarker: Send + Sync + 'static {
    /// Marks delivery `sequence` of `queue`.
    fn mark(&self, queue: &str, sequence: i64);
}

/// Writes the dead letters of one queue.
pub struct RejectDeadLetters {
    marker: std::sync::Arc<dyn RejectMarker>,
    queue: String,
    /// What spans name as the destination.
    destination: String,
    archive: Option<Archive>,
}

impl RejectDeadLetters {
    /// A writer for `queue`.
    pub fn new(marker: std::sync::Arc<dyn RejectMarker>, queue: &str, archive: Option<Archive>) -> Self {
        RejectDeadLetters {
            marker,
            queue: queue.to_string(),
            destination: format!("{queue} (dead-letter exchange)"),
            archive,
        }
    }

    /// Where dead letters go, for spans and logs.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// One try at writing `letter`: archive, then the mark that turns its acknowledgement into a
    /// reject.
    pub async fn write(&self, letter: &DeadLetter<'_>) -> Result<Written, DlqError> {
        let location = match &self.archive {
            Some(archive) => {
                let key = letter.archive_key(archive.prefix());
                let body = serde_json::to_vec(&letter.archive_document())
                    .map_err(|err| DlqError::Archive(ArchiveError::Encode(err.to_string())))?;
                archive.put(&key, body).await?;
                Some(archive.location(&key))
            }
            None => None,
        };
        self.marker.mark(&self.queue, letter.record.offset);
        Ok(Written { class: letter.class, archive_location: location })
    }
}
