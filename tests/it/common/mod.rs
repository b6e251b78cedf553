//! Test helpers: the test bed's addresses, random names, Kafka/S3/SQS clients and bounded waits.
//!
//! Every wait has a deadline and every missing service fails the test loudly with what to do.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;

/// What to tell a developer whose environment lacks the test bed.
const HOW: &str = "run the tests with scripts/test.sh (it starts the broker and LocalStack), or \
                   `localstack/testbed.sh up && set -a && . .testbed/env && set +a` first";

/// The broker's bootstrap address (`KAFKA_BOOTSTRAP`, written by the test-bed script).
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| panic!("KAFKA_BOOTSTRAP is not set: {HOW}"))
}

/// LocalStack's endpoint (`AWS_ENDPOINT_URL`, which the AWS SDK also reads itself).
pub fn aws_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set: {HOW}"))
}

/// A unique lower-case name for a topic, group, bucket or queue.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Fails with a clear message when a TCP service does not accept connections.
pub async fn require_tcp(what: &str, addr: &str) {
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => panic!("{what} at {addr} is not reachable ({err}): {HOW}"),
        Err(_) => panic!("{what} at {addr} did not accept a connection within 5s: {HOW}"),
    }
}

/// Awaits `future` or fails the test after `limit`, naming what it waited for.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(limit, what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Client settings shared by test producers and consumers.
pub fn kafka_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

/// Creates a topic with `partitions` partitions and waits until the broker confirms it.
pub async fn create_topic(name: &str, partitions: i32) {
    require_tcp("the Kafka broker", &bootstrap()).await;
    let admin: AdminClient<DefaultClientContext> = kafka_config().create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = within(Duration::from_secs(30), "CreateTopics", admin.create_topics([&topic], &options))
        .await
        .expect("CreateTopics request");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
    }
}

/// A producer that sends one record per batch, so that tansu's batch-based high watermark
/// equals the record count (see the test-bed notes in the README).
pub fn producer() -> FutureProducer {
    kafka_config()
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// A consumer in `group` with the short session timeout the test bed needs (joins take about
/// half of it on tansu) and manual commits.
pub fn consumer(group: &str) -> StreamConsumer {
    kafka_config()
        .set("group.id", group)
        .set("session.timeout.ms", "2000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// An S3 client configured only by the environment (`AWS_ENDPOINT_URL` points at LocalStack).
pub async fn s3() -> aws_sdk_s3::Client {
    require_tcp("LocalStack", aws_endpoint().trim_start_matches("http://")).await;
    let config = aws_config::load_from_env().await;
    aws_sdk_s3::Client::new(&config)
}

/// An SQS client configured only by the environment.
pub async fn sqs() -> aws_sdk_sqs::Client {
    require_tcp("LocalStack", aws_endpoint().trim_start_matches("http://")).await;
    let config = aws_config::load_from_env().await;
    aws_sdk_sqs::Client::new(&config)
}
