//! Test helpers: the test bed's addresses, random names, Kafka/S3/SQS clients and bounded waits.
//!
//! Every wait has a deadline and every missing service fails the test loudly with what to do.

#![allow(dead_code)]

pub mod amqp;
pub mod app;
pub mod credentials_endpoint;
pub mod kafka_wire;
pub mod mock;
pub mod oracle;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod raw_produce;
pub mod redis;
pub mod registry;
pub mod sasl_gateway;
pub mod sidecar;
pub mod sigv4_check;
pub mod sqs;
pub mod tansu;

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
    kafka_config_at(&bootstrap())
}

/// Client settings for the broker at `bootstrap`.
pub fn kafka_config_at(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// Creates a topic with `partitions` partitions and waits until the broker confirms it.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_at(&bootstrap(), name, partitions).await;
}

/// Creates a topic on the broker at `bootstrap`.
pub async fn create_topic_at(bootstrap: &str, name: &str, partitions: i32) {
    require_tcp("the Kafka broker", bootstrap).await;
    let admin: AdminClient<DefaultClientContext> = kafka_config_at(bootstrap).create().expect("admin client");
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
    consumer_at(&bootstrap(), group)
}

/// The same on the broker at `bootstrap`.
pub fn consumer_at(bootstrap: &str, group: &str) -> StreamConsumer {
    kafka_config_at(bootstrap)
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

/// A record to produce: partition, key, value, headers.
pub struct Produce {
    /// Partition.
    pub partition: i32,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None`: tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers (`None` value: null header).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Produce {
    /// A record with a text key and value, no headers.
    pub fn text(partition: i32, key: &str, value: &str) -> Produce {
        Produce {
            partition,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }
}

/// Produces `records` in order (one per batch) and waits for every acknowledgement.
pub async fn produce(topic: &str, records: Vec<Produce>) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let producer = producer();
    for record in &records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header { key: name, value: value.as_deref() });
        }
        let mut message = FutureRecord::<[u8], [u8]>::to(topic).partition(record.partition).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        if let Some(value) = &record.value {
            message = message.payload(value);
        }
        within(Duration::from_secs(30), "produce", producer.send(message, Duration::from_secs(10)))
            .await
            .unwrap_or_else(|(err, _)| panic!("produce to {topic}: {err}"));
    }
}

/// Reads `count` records from every partition of `topic` with a fresh group (fails after 60 s).
pub async fn consume(topic: &str, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::Message as _;
    use rdkafka::consumer::Consumer as _;
    let consumer = consumer(&random_name("reader"));
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < count {
        let message =
            within(Duration::from_secs(60), &format!("{count} records from {topic}"), consumer.recv())
                .await
                .expect("consume");
        out.push(message.detach());
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    out
}

/// The committed offsets of `group` for partitions `0..partitions` of `topic` (-1: none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_at(&bootstrap(), group, topic, partitions)
}

/// The same on the broker at `bootstrap`.
pub fn committed_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::Consumer as _;
    let consumer = consumer_at(bootstrap, group);
    let mut wanted = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let list = consumer.committed_offsets(wanted, Duration::from_secs(10)).expect("committed offsets");
    let offsets = list
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => -1,
        })
        .collect();
    drop(list); // before the consumer: a live list keeps the consumer from closing
    offsets
}

/// Waits until `group` has committed `expected` for `topic`.
pub async fn wait_committed(group: &str, topic: &str, expected: &[i64]) {
    let partitions = i32::try_from(expected.len()).expect("partitions");
    let mut last = Vec::new();
    for _ in 0..300 {
        let (g, t) = (group.to_string(), topic.to_string());
        last = tokio::task::spawn_blocking(move || committed(&g, &t, partitions)).await.expect("join");
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("committed offsets of {group} on {topic}: {last:?}, expected {expected:?}");
}

/// The value of the first header `name` of a Kafka message, as text.
pub fn header_text(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::Message as _;
    use rdkafka::message::Headers as _;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).to_string())
}

/// Reads whatever `topic` holds until nothing new arrives for `quiet`.
pub async fn consume_available(topic: &str, quiet: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    consume_available_at(&bootstrap(), topic, quiet).await
}

/// The same on the broker at `bootstrap`.
pub async fn consume_available_at(
    bootstrap: &str,
    topic: &str,
    quiet: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::Message as _;
    use rdkafka::consumer::Consumer as _;
    let consumer = consumer_at(bootstrap, &random_name("reader"));
    consumer.subscribe(&[topic]).expect("subscribe");
    // The first records can only come after the group join (about a second on tansu).
    let mut out = Vec::new();
    let mut limit = quiet + Duration::from_secs(3);
    while let Ok(result) = tokio::time::timeout(limit, consumer.recv()).await {
        out.push(result.expect("consume").detach());
        limit = quiet;
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    out
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `GET url`, returning the status and body; `None` while nothing answers (a child starting).
pub async fn try_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// `GET url`, returning the status and body.
pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// `msk_sidecar_rebalances_total{kind="lost"}` in a Prometheus page: how many times the sidecar
/// lost its assignment.
pub fn lost_rebalances(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("msk_sidecar_rebalances_total{kind=\"lost\"} ")?.parse().ok())
}

/// How many times the application accepted (2xx) each body of the requests that carry
/// `header` (one source's messages).
pub fn accepted_bodies(app: &app::TestApp, header: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for received in app.received().iter().filter(|r| r.status == 200 && r.header(header).is_some()) {
        *counts.entry(received.text()).or_insert(0) += 1;
    }
    counts
}

/// `count` bodies `<prefix>-<i>`.
pub fn bodies(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}
