//! One RabbitMQ delivery as a [`Record`]: the queue as its topic (partition 0), a sequence
//! number of the receiver as its offset, the body as its value, and its facts as `x-amqp-*`
//! headers (`DESIGN.md`): queue, exchange, routing key, message id, redelivered, and each
//! message header as `x-amqp-header-<name>`; the content type as the message has it. The
//! message's timestamp property (seconds) is the record's timestamp.

use bytes::Bytes;
use lapin::message::Delivery;
use lapin::types::AMQPValue;

use crate::record::{Header, Origin, Record, TopicPartition};

/// The deliveries of a message by the broker, this one included ([`AMQP_DELIVERIES`]): quorum
/// queues' `x-delivery-count` plus one, else 2 for a redelivered message and 1 for a first.
use crate::record::AMQP_DELIVERIES as DELIVERIES;

/// A header value as text: strings as they are, numbers and booleans written out, anything
/// else (tables, arrays, bytes) as its debug form.
fn text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// A whole number header value (`x-delivery-count`).
fn number(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        _ => None,
    }
}

/// A delivery from `tp` as a record numbered `sequence`.
pub fn to_record(tp: &TopicPartition, sequence: i64, delivery: &Delivery) -> Record {
    let properties = &delivery.properties;
    let mut headers = Vec::with_capacity(8);
    let mut add =
        |name: String, value: String| headers.push(Header { name, value: Some(Bytes::from(value)) });
    add("x-amqp-queue".into(), tp.topic.to_string());
    add("x-amqp-exchange".into(), delivery.exchange.as_str().to_string());
    add("x-amqp-routing-key".into(), delivery.routing_key.as_str().to_string());
    if let Some(id) = properties.message_id() {
        add("x-amqp-message-id".into(), id.as_str().to_string());
    }
    add("x-amqp-redelivered".into(), delivery.redelivered.to_string());
    if let Some(content_type) = properties.content_type() {
        add("x-amqp-content-type".into(), content_type.as_str().to_string());
    }
    let mut earlier = u64::from(delivery.redelivered);
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            if name.as_str() == "x-delivery-count"
                && let Some(count) = number(value)
            {
                earlier = count;
            }
            add(format!("x-amqp-header-{}", name.as_str().to_ascii_lowercase()), text(value));
        }
    }
    add(DELIVERIES.into(), (earlier + 1).to_string());
    Record {
        tp: tp.clone(),
        offset: sequence,
        timestamp: properties.timestamp().and_then(|s| i64::try_from(s).ok()).map(|s| s.saturating_mul(1000)),
        key: None,
        value: Some(Bytes::from(delivery.data.clone())),
        headers,
        malformed: None,
        decoded: None,
        origin: Origin::Amqp,
    }
}
