//! One SQS message as a [`Record`]: the queue as its topic (partition 0), a sequence number of
//! the receiver as its offset, the body as its value, the message group as its key (FIFO order
//! per group is key order), and its facts as `x-sqs-*` headers (`DESIGN.md`): queue, message
//! id, receive count, group, sent time, and each message attribute (`Binary` ones base64).

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::record::{Header, Origin, Record, TopicPartition};

/// A received message as a record and its lease, the receipt handle that deletes the message
/// or changes its visibility; `None` for an answer without a receipt handle (it cannot be
/// acknowledged, so it is left to become visible again).
pub fn to_record(tp: &TopicPartition, sequence: i64, message: &Message) -> Option<(Record, String)> {
    let receipt_handle = message.receipt_handle()?.to_string();
    let system = message.attributes();
    let system_attribute = |name: MessageSystemAttributeName| system.and_then(|a| a.get(&name)).cloned();
    let group = system_attribute(MessageSystemAttributeName::MessageGroupId);
    let sent = system_attribute(MessageSystemAttributeName::SentTimestamp);
    let mut headers = Vec::with_capacity(6);
    let mut add = |name: &str, value: String| {
        headers.push(Header { name: name.to_string(), value: Some(Bytes::from(value)) });
    };
    add("x-sqs-queue", tp.topic.to_string());
    add("x-sqs-message-id", message.message_id().unwrap_or_default().to_string());
    add(
        "x-sqs-receive-count",
        system_attribute(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or_else(|| "1".into()),
    );
    if let Some(group) = &group {
        add("x-sqs-message-group-id", group.clone());
    }
    if let Some(sent) = &sent {
        add("x-sqs-sent-timestamp", sent.clone());
    }
    headers.extend(attributes(message.message_attributes()));
    let record = Record {
        tp: tp.clone(),
        offset: sequence,
        timestamp: sent.and_then(|s| s.parse().ok()),
        key: group.map(Bytes::from),
        value: Some(Bytes::from(message.body().unwrap_or_default().to_string())),
        headers,
        malformed: None,
        decoded: None,
        origin: Origin::Sqs,
    };
    Some((record, receipt_handle))
}

/// Message attributes as `x-sqs-attribute-<name>` headers in name order: strings and numbers
/// as they are, binary values base64.
fn attributes(attributes: Option<&HashMap<String, MessageAttributeValue>>) -> Vec<Header> {
    let mut headers: Vec<Header> = attributes
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let text = match (value.string_value(), value.binary_value()) {
                (Some(text), _) => text.to_string(),
                (None, Some(blob)) => BASE64.encode(blob.as_ref()),
                (None, None) => String::new(),
            };
            Header { name: format!("x-sqs-attribute-{name}"), value: Some(Bytes::from(text)) }
        })
        .collect();
    headers.sort_by(|a, b| a.name.cmp(&b.name));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_becomes_a_record_with_its_facts_as_headers() {
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("handle-1")
            .body("hello")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::MessageGroupId, "customer-7")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("order")
                    .build()
                    .expect("valid"),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![0xff, 0x00]))
                    .build()
                    .expect("valid"),
            )
            .build();
        let tp = TopicPartition::new("tasks.fifo", 0);
        let (record, lease) = to_record(&tp, 7, &message).expect("has a receipt handle");
        assert_eq!(lease, "handle-1");
        assert_eq!(
            (record.offset, record.timestamp, record.origin),
            (7, Some(1_700_000_000_123), Origin::Sqs)
        );
        assert_eq!(record.key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"hello"[..]));
        let get = |name: &str| record.header_text(name).map(str::to_string);
        assert_eq!(get("x-sqs-queue").as_deref(), Some("tasks.fifo"));
        assert_eq!(get("x-sqs-message-id").as_deref(), Some("m-1"));
        assert_eq!(get("x-sqs-receive-count").as_deref(), Some("3"));
        assert_eq!(get("x-sqs-message-group-id").as_deref(), Some("customer-7"));
        assert_eq!(get("x-sqs-sent-timestamp").as_deref(), Some("1700000000123"));
        assert_eq!(get("x-sqs-attribute-kind").as_deref(), Some("order"));
        assert_eq!(get("x-sqs-attribute-blob").as_deref(), Some("/wA="));
    }

    #[test]
    fn a_message_without_a_receipt_handle_is_not_taken() {
        let message = Message::builder().message_id("m-1").body("x").build();
        assert!(to_record(&TopicPartition::new("q", 0), 1, &message).is_none());
    }
}
