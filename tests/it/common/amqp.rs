//! RabbitMQ helpers for the RabbitMQ source tests: the test bed's broker, queues (classic or
//! quorum, with a dead-letter queue behind the default exchange), messages published and read
//! back, and a queue's depth.

use std::collections::BTreeMap;

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// The test bed's broker (`TESTBED_AMQP_URL`); fails loudly without it.
pub fn url() -> String {
    std::env::var("TESTBED_AMQP_URL").expect(
        "TESTBED_AMQP_URL is not set: start the test bed (localstack/testbed.sh up) and source .testbed/env",
    )
}

/// A channel on a new connection (kept alive by the returned connection).
pub async fn channel() -> (Connection, Channel) {
    let connection =
        Connection::connect(&url(), ConnectionProperties::default()).await.expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// Declares `queue` (quorum when `quorum`) whose dead letters go to `<queue>.dead`, declared too.
pub async fn declare(channel: &Channel, queue: &str, quorum: bool) -> String {
    let dead = format!("{queue}.dead");
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("declare the dead-letter queue");
    let mut arguments = FieldTable::default();
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.as_str().into()));
    if quorum {
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    channel
        .queue_declare(queue.into(), QueueDeclareOptions { durable: true, ..Default::default() }, arguments)
        .await
        .expect("declare the queue");
    dead
}

/// Publishes `bodies` to `queue` through the default exchange, each with a message id, a
/// content type and a `kind` header.
pub async fn publish(channel: &Channel, queue: &str, bodies: &[String]) {
    for body in bodies {
        let mut headers = FieldTable::default();
        headers.insert("kind".into(), AMQPValue::LongString("order".into()));
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(format!("id-{body}")))
            .with_content_type("application/json".into())
            // Persistent: a broker restart keeps them.
            .with_delivery_mode(2)
            .with_headers(headers);
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
}

/// Takes every message of `queue` (acknowledging it): body and headers as text.
pub async fn drain(channel: &Channel, queue: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions::default()).await.expect("get")
    {
        let headers = message
            .delivery
            .properties
            .headers()
            .as_ref()
            .map(|table| {
                table.inner().iter().map(|(k, v)| (k.as_str().to_string(), format!("{v:?}"))).collect()
            })
            .unwrap_or_default();
        out.push((String::from_utf8_lossy(&message.delivery.data).into_owned(), headers));
        message.delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    out
}

/// Messages ready in `queue` (not counting unacknowledged ones).
pub async fn ready(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("passive declare")
        .message_count()
}
