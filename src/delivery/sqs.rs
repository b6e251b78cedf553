//! SQS delivery (`SIDECAR_DELIVERY_SQS_QUEUE_URL`): records become messages, sent with
//! `SendMessageBatch` (up to 10 per call and 256 KiB), each entry's failure retried on its own.
//!
//! The body is the record value when it is text SQS accepts, else base64 (attribute
//! `kafka.value-encoding=base64`). Attributes: `kafka.topic`, `kafka.partition`, `kafka.offset`,
//! `kafka.timestamp`, `kafka.key` (base64), `traceparent`. FIFO queues (`.fifo`) get
//! `MessageGroupId` = the key (or `<topic>-<partition>`), so SQS keeps per-key order, and
//! `MessageDeduplicationId` = `<topic>-<partition>-<offset>`, so a record delivered again after
//! a crash is not enqueued twice within SQS's five-minute window. A record over the size limit
//! goes to the archive bucket and the message carries a pointer (claim check); without an S3
//! archive it is dead-lettered as `oversized`. A missing queue or denied access stops the
//! partition and shows on `/ready` instead of producing dead letters.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata as _, SdkError};
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use url::Url;

use super::batcher::{BatchSender, Batcher, Limits, Pending};
use super::{Attempt, AttemptOutcome, Delivery, Failure, FailureKind};
use crate::archive::Archive;
use crate::config::Ordering;
use crate::record::Record;

/// SQS's message size limit (body and attributes).
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// Entries per `SendMessageBatch` call.
const MAX_ENTRIES: usize = 10;

/// Sends records to one queue.
pub struct SqsDelivery {
    batcher: Batcher,
    url: Url,
    /// The client, for the circuit breaker's probe.
    client: aws_sdk_sqs::Client,
}

impl SqsDelivery {
    /// Builds the target; `claim_checks` is the S3 archive for records over the size limit.
    pub async fn new(
        url: Url,
        timeout: Duration,
        linger: Duration,
        ordering: Ordering,
        claim_checks: Option<Archive>,
    ) -> SqsDelivery {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let timeouts =
            aws_sdk_sqs::config::timeout::TimeoutConfig::builder().operation_timeout(timeout).build();
        let client = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&config).timeout_config(timeouts).build(),
        );
        let claim_checks = claim_checks.filter(|a| matches!(a, Archive::S3 { .. }));
        let sender = Arc::new(Sender {
            client: client.clone(),
            fifo: is_fifo(&url),
            queue_url: url.to_string(),
            claim_checks,
        });
        let limits = Limits { max_records: MAX_ENTRIES, max_bytes: MAX_MESSAGE_BYTES, linger, ordering };
        SqsDelivery { batcher: Batcher::start(sender, limits), url, client }
    }
}

/// Whether `url` names a FIFO queue.
fn is_fifo(url: &Url) -> bool {
    url.path().ends_with(".fifo")
}

/// How many consecutive records of one lane are handed over together. A standard queue keeps no
/// order, so a lane hands over a whole `SendMessageBatch`. A FIFO queue gets one record per lane
/// at a time: batches are sent concurrently, so two records of one message group split across
/// two batches could be enqueued out of order. Concurrent lanes (other keys, other partitions)
/// still share batches.
pub fn lane_chunk(url: &Url) -> usize {
    if is_fifo(url) { 1 } else { MAX_ENTRIES }
}

impl Delivery for SqsDelivery {
    fn deliver<'a>(&'a self, record: &'a Record, attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        self.batcher.submit(record, attempt).boxed()
    }

    /// A `GetQueueAttributes` call within the attempt timeout: any answer of the service, an
    /// error included (access denied, the queue missing), means SQS is reachable again; a
    /// connection that opens and answers nothing (a black hole, a hung proxy) does not.
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let asked = self
                .client
                .get_queue_attributes()
                .queue_url(self.url.as_str())
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await;
            probe_answer(asked.map(|_| ()))
        }
        .boxed()
    }

    fn describe(&self) -> String {
        crate::config::redact_url(&self.url)
    }
}

struct Sender {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
    claim_checks: Option<Archive>,
}

fn string_attribute(value: impl Into<String>) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().ok()
}

fn number_attribute(value: i64) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder().data_type("Number").string_value(value.to_string()).build().ok()
}

/// Whether SQS accepts `text` as a message body (its XML character set, at least one char).
fn sqs_text(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}'))
}

/// An id of at most 128 characters from `text` (long ones are shortened with a hash).
fn bounded_id(text: String) -> String {
    if text.len() <= 128 {
        return text;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("{}-{:016x}", &text[..100], hasher.finish())
}

/// `MessageGroupId` of a record on a FIFO queue.
pub fn group_id(record: &Record) -> String {
    match &record.key {
        Some(key) if !key.is_empty() => match std::str::from_utf8(key) {
            Ok(text) if text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()) => text.to_string(),
            _ => bounded_id(format!("k-{}", URL_SAFE_NO_PAD.encode(key))),
        },
        _ => format!("{}-{}", record.tp.topic, record.tp.partition),
    }
}

/// `MessageDeduplicationId` of a record: its coordinates.
pub fn deduplication_id(record: &Record) -> String {
    bounded_id(format!("{}-{}-{}", record.tp.topic, record.tp.partition, record.offset))
}

/// The message body and attributes of a record, and their size as SQS counts it.
fn message(
    record: &Record,
    attempt: &Attempt,
) -> (String, Vec<(&'static str, MessageAttributeValue)>, usize) {
    let mut attributes = Vec::with_capacity(8);
    attributes.extend(string_attribute(record.tp.topic.to_string()).map(|v| ("kafka.topic", v)));
    attributes.extend(number_attribute(i64::from(record.tp.partition)).map(|v| ("kafka.partition", v)));
    attributes.extend(number_attribute(record.offset).map(|v| ("kafka.offset", v)));
    if let Some(timestamp) = record.timestamp {
        attributes.extend(number_attribute(timestamp).map(|v| ("kafka.timestamp", v)));
    }
    if let Some(key) = &record.key {
        attributes.extend(string_attribute(BASE64.encode(key)).map(|v| ("kafka.key", v)));
    }
    if let Some(traceparent) = &attempt.traceparent {
        attributes.extend(string_attribute(traceparent.clone()).map(|v| ("traceparent", v)));
    }
    let body = match record.value.as_deref() {
        None => {
            attributes.extend(string_attribute("true").map(|v| ("kafka.tombstone", v)));
            "-".to_string()
        }
        Some([]) => {
            attributes.extend(string_attribute("empty").map(|v| ("kafka.value-encoding", v)));
            "-".to_string()
        }
        Some(value) => match std::str::from_utf8(value) {
            Ok(text) if sqs_text(text) => text.to_string(),
            _ => {
                attributes.extend(string_attribute("base64").map(|v| ("kafka.value-encoding", v)));
                BASE64.encode(value)
            }
        },
    };
    let size = body.len()
        + attributes
            .iter()
            .map(|(name, v)| name.len() + v.data_type().len() + v.string_value().map_or(0, str::len))
            .sum::<usize>();
    (body, attributes, size)
}

/// Whether an error code means the queue cannot be used as configured: it is missing, access
/// is denied, the credentials are invalid or expired, or the queue's KMS key cannot be used.
/// Retrying helps only once someone fixes it, so the record is held (never dead-lettered).
fn blocked(code: &str) -> bool {
    const CODES: &[&str] = &[
        "NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "InvalidAddress",
        "InvalidSecurity",
        "KmsAccessDenied",
        "KmsDisabled",
        "KmsInvalidKeyUsage",
        "KmsInvalidState",
        "KmsNotFound",
        "KmsOptInRequired",
        "ExpiredToken",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClient",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "RequestExpired",
        "AuthFailure",
        "OptInRequired",
    ];
    // `KMS.AccessDeniedException` and the like: every KMS error but throttling.
    (code.starts_with("KMS.") && !code.contains("Throttl")) || CODES.iter().any(|c| code.contains(c))
}

/// The failure kind of one entry that `SendMessageBatch` reports as failed.
fn classify_entry(code: &str, sender_fault: bool) -> FailureKind {
    if code.contains("MessageTooLong") {
        FailureKind::Oversized
    } else if blocked(code) {
        FailureKind::Blocked
    } else if sender_fault && !code.contains("Throttl") {
        FailureKind::Permanent
    } else {
        FailureKind::Retryable
    }
}

/// Whether a probe call got an answer from SQS (see [`SqsDelivery::probe`]).
fn probe_answer(asked: Result<(), SdkError<GetQueueAttributesError>>) -> Result<(), String> {
    match asked {
        Ok(()) | Err(SdkError::ServiceError(_) | SdkError::ResponseError(_)) => Ok(()),
        Err(err) => Err(format!("SQS did not answer: {}", crate::archive::describe_sdk_error(&err))),
    }
}

fn classify_call(err: &SdkError<SendMessageBatchError>) -> Failure {
    let text = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("SQS {code}: {message}"),
        (Some(code), None) => format!("SQS {code}"),
        _ => format!("SQS request failed: {}", crate::archive::describe_sdk_error(err)),
    };
    let kind = match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => FailureKind::Unreachable,
        // The request could not even be built: no credentials or region.
        SdkError::ConstructionFailure(_) => FailureKind::Blocked,
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if service.err().is_queue_does_not_exist() || blocked(code) {
                FailureKind::Blocked
            } else if code.contains("BatchRequestTooLong") {
                FailureKind::BatchFailed
            } else {
                FailureKind::Retryable
            }
        }
        _ => FailureKind::Retryable,
    };
    Failure::new(kind, text)
}

impl Sender {
    /// A claim check for a record too large for a message: the value goes to the archive bucket.
    async fn claim_check(&self, record: &Record) -> Result<String, AttemptOutcome> {
        let Some(archive) = &self.claim_checks else {
            return Err(AttemptOutcome::Failed(Failure::new(
                FailureKind::Oversized,
                format!(
                    "record larger than SQS accepts ({MAX_MESSAGE_BYTES} bytes) and no S3 archive for a claim check"
                ),
            )));
        };
        let prefix = archive.prefix();
        let path = format!("claim-checks/{}/{}-{}", record.tp.topic, record.tp.partition, record.offset);
        let key = if prefix.is_empty() { path } else { format!("{prefix}/{path}") };
        let value = record.value.as_ref().map(|v| v.to_vec()).unwrap_or_default();
        archive.put(&key, value).await.map_err(|err| {
            AttemptOutcome::Failed(Failure::new(FailureKind::Retryable, format!("claim check: {err}")))
        })?;
        Ok(archive.location(&key))
    }
}

impl BatchSender for Sender {
    fn send(&self, batch: Vec<Pending>) -> BoxFuture<'_, ()> {
        async move {
            let mut waiting: Vec<Option<Pending>> = Vec::with_capacity(batch.len());
            let mut entries = Vec::with_capacity(batch.len());
            for (index, pending) in batch.into_iter().enumerate() {
                let (mut body, mut attributes, size) = message(&pending.record, &pending.attempt);
                if size > MAX_MESSAGE_BYTES {
                    match self.claim_check(&pending.record).await {
                        Ok(location) => {
                            body = serde_json::json!({ "claim_check": location, "size": pending.record.value.as_ref().map_or(0, |v| v.len()) }).to_string();
                            attributes.retain(|(name, _)| *name != "kafka.value-encoding");
                            attributes.extend(string_attribute(location).map(|v| ("kafka.claim-check", v)));
                        }
                        Err(outcome) => {
                            pending.reply(outcome);
                            waiting.push(None);
                            continue;
                        }
                    }
                }
                let mut entry = SendMessageBatchRequestEntry::builder().id(index.to_string()).message_body(body);
                for (name, value) in attributes {
                    entry = entry.message_attributes(name, value);
                }
                if self.fifo {
                    entry = entry.message_group_id(group_id(&pending.record)).message_deduplication_id(deduplication_id(&pending.record));
                }
                match entry.build() {
                    Ok(entry) => {
                        entries.push(entry);
                        waiting.push(Some(pending));
                    }
                    Err(err) => {
                        pending.reply(AttemptOutcome::Failed(Failure::new(FailureKind::Permanent, format!("cannot build the message: {err}"))));
                        waiting.push(None);
                    }
                }
            }
            if entries.is_empty() {
                return;
            }
            let result = self.client.send_message_batch().queue_url(&self.queue_url).set_entries(Some(entries)).send().await;
            let take = |waiting: &mut Vec<Option<Pending>>, id: &str| id.parse::<usize>().ok().and_then(|i| waiting.get_mut(i)?.take());
            match result {
                Ok(output) => {
                    for ok in output.successful() {
                        if let Some(pending) = take(&mut waiting, ok.id()) {
                            pending.reply(AttemptOutcome::Delivered);
                        }
                    }
                    for failed in output.failed() {
                        if let Some(pending) = take(&mut waiting, failed.id()) {
                            let code = failed.code();
                            let kind = classify_entry(code, failed.sender_fault());
                            let text = format!("SQS {code}: {}", failed.message().unwrap_or_default());
                            pending.reply(AttemptOutcome::Failed(Failure::new(kind, text)));
                        }
                    }
                    for pending in waiting.into_iter().flatten() {
                        pending.reply(AttemptOutcome::Failed(Failure::new(FailureKind::Retryable, "SQS did not report this entry")));
                    }
                }
                Err(err) => {
                    let failure = classify_call(&err);
                    for pending in waiting.into_iter().flatten() {
                        pending.reply(AttemptOutcome::Failed(failure.clone()));
                    }
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::record::TopicPartition;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        Record {
            tp: TopicPartition::new("orders", 3),
            offset: 42,
            timestamp: Some(1_700_000_000_000),
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: vec![],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Kafka,
        }
    }

    fn attribute<'a>(attributes: &'a [(&'static str, MessageAttributeValue)], name: &str) -> Option<&'a str> {
        attributes.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.string_value())
    }

    #[test]
    fn messages_carry_the_record_coordinates() {
        let attempt = Attempt { number: 1, traceparent: Some("00-a-b-01".into()), tracestate: None };
        let (body, attributes, size) = message(&record(Some(b"k1"), Some(b"{\"a\":1}")), &attempt);
        assert_eq!(body, "{\"a\":1}");
        assert_eq!(attribute(&attributes, "kafka.topic"), Some("orders"));
        assert_eq!(attribute(&attributes, "kafka.partition"), Some("3"));
        assert_eq!(attribute(&attributes, "kafka.offset"), Some("42"));
        assert_eq!(attribute(&attributes, "kafka.timestamp"), Some("1700000000000"));
        assert_eq!(attribute(&attributes, "kafka.key"), Some("azE="));
        assert_eq!(attribute(&attributes, "traceparent"), Some("00-a-b-01"));
        assert!(size > body.len());
    }

    #[test]
    fn values_sqs_cannot_carry_are_encoded() {
        let attempt = Attempt::default();
        let (body, attributes, _) = message(&record(None, Some(&[0xff, 0x00])), &attempt);
        assert_eq!((body.as_str(), attribute(&attributes, "kafka.value-encoding")), ("/wA=", Some("base64")));
        let (body, attributes, _) = message(&record(None, Some(b"a\x01b")), &attempt);
        assert_eq!(attribute(&attributes, "kafka.value-encoding"), Some("base64"), "{body}");
        let (body, attributes, _) = message(&record(None, None), &attempt);
        assert_eq!((body.as_str(), attribute(&attributes, "kafka.tombstone")), ("-", Some("true")));
        let (_, attributes, _) = message(&record(None, Some(b"")), &attempt);
        assert_eq!(attribute(&attributes, "kafka.value-encoding"), Some("empty"));
    }

    #[test]
    fn fifo_ids_follow_the_key_and_the_coordinates() {
        assert_eq!(group_id(&record(Some(b"customer-7"), None)), "customer-7");
        assert_eq!(group_id(&record(None, None)), "orders-3");
        assert!(group_id(&record(Some(&[0u8, 1, 2]), None)).starts_with("k-"));
        assert!(group_id(&record(Some(&[b'x'; 400]), None)).len() <= 128);
        assert_eq!(deduplication_id(&record(None, None)), "orders-3-42");
    }

    #[test]
    fn a_fifo_queue_takes_one_record_of_a_lane_at_a_time() {
        let fifo = Url::parse("http://127.0.0.1:4566/000000000000/orders.fifo").unwrap();
        let standard = Url::parse("http://127.0.0.1:4566/000000000000/orders").unwrap();
        assert_eq!(lane_chunk(&fifo), 1, "a group's next message waits for the previous one");
        assert_eq!(lane_chunk(&standard), MAX_ENTRIES);
    }

    #[test]
    fn configuration_errors_block_instead_of_dead_lettering() {
        assert!(blocked("AWS.SimpleQueueService.NonExistentQueue"));
        assert!(blocked("AccessDenied"));
        assert!(!blocked("ThrottlingException"));
    }

    #[test]
    fn denied_access_expired_credentials_and_kms_errors_hold_instead_of_dead_lettering() {
        for code in [
            "KMS.AccessDeniedException",
            "KMS.DisabledException",
            "KMS.NotFoundException",
            "KmsAccessDenied",
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "UnrecognizedClientException",
            "AccessDeniedException",
            "AWS.SimpleQueueService.NonExistentQueue",
        ] {
            assert_eq!(classify_entry(code, true), FailureKind::Blocked, "{code}");
            assert!(blocked(code), "{code}");
        }
        assert_eq!(classify_entry("KMS.ThrottlingException", false), FailureKind::Retryable);
        assert_eq!(classify_entry("InvalidParameterValue", true), FailureKind::Permanent);
        assert_eq!(classify_entry("InternalError", false), FailureKind::Retryable);
        assert_eq!(classify_entry("AWS.SimpleQueueService.MessageTooLong", true), FailureKind::Oversized);
    }
}
