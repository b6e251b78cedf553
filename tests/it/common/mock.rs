//! librdkafka's `MockCluster` as a broker for tests that need what the tansu test broker lacks:
//! commit metadata kept and returned (as Apache Kafka and MSK do), and injected request errors.
//!
//! The cluster lives in the test process and listens on loopback, so real sidecar processes
//! connect to it like to any broker. It stops when the value is dropped.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};

/// A running mock cluster.
pub struct MockKafka {
    /// The cluster (kept alive: dropping it stops the brokers).
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    /// Its bootstrap servers.
    pub bootstrap: String,
}

impl MockKafka {
    /// A cluster of one broker with `topics` (name, partitions).
    pub fn start(topics: &[(&str, i32)]) -> MockKafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for (topic, partitions) in topics {
            cluster.create_topic(topic, *partitions, 1).expect("mock topic");
        }
        let bootstrap = cluster.bootstrap_servers();
        MockKafka { cluster, bootstrap }
    }

    /// The environment of a test sidecar against this cluster: its sessions at the 6 s the mock
    /// cluster allows at least (Kafka's `group.min.session.timeout.ms`).
    pub fn sidecar_env(
        &self,
        topic: &str,
        group: &str,
        url: &str,
    ) -> std::collections::BTreeMap<String, String> {
        let mut env = super::sidecar::env(topic, group, url);
        env.insert("KAFKA_BROKERS".into(), self.bootstrap.clone());
        env.insert("SIDECAR_LIBRDKAFKA_SESSION_TIMEOUT_MS".into(), "6000".into());
        env.insert("SIDECAR_LIBRDKAFKA_HEARTBEAT_INTERVAL_MS".into(), "1000".into());
        env
    }

    /// Client settings for this cluster.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Produces `(partition, key, value)` records in order, waiting for each acknowledgement.
    pub async fn produce(&self, topic: &str, records: &[(i32, String, String)]) {
        let producer: FutureProducer = self.config().set("linger.ms", "0").create().expect("mock producer");
        for (partition, key, value) in records {
            let record = FutureRecord::to(topic).partition(*partition).key(key).payload(value);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(err, _)| panic!("produce to mock {topic}: {err}"));
        }
    }

    /// The committed offsets (-1: none) and metadata of `group` for partitions `0..partitions`.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<(i64, String)> {
        committed_at(&self.bootstrap, group, topic, partitions)
    }

    /// Waits until `group` has committed `expected` offsets for `topic`.
    pub async fn wait_committed(&self, group: &str, topic: &str, expected: &[i64]) {
        let partitions = i32::try_from(expected.len()).expect("partitions");
        let mut last = Vec::new();
        for _ in 0..300 {
            last = self.committed(group, topic, partitions).into_iter().map(|(o, _)| o).collect();
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("committed offsets of {group} on {topic}: {last:?}, expected {expected:?}");
    }
}

impl MockKafka {
    /// Every record of `topic` (partitions `0..partitions`), read by assignment (no group) until
    /// nothing new arrives for `quiet`.
    pub async fn read_available(
        &self,
        topic: &str,
        partitions: i32,
        quiet: Duration,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        use rdkafka::Message as _;
        let consumer: rdkafka::consumer::StreamConsumer = self
            .config()
            .set("group.id", super::random_name("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, rdkafka::Offset::Beginning).expect("offset");
        }
        consumer.assign(&list).expect("assign");
        let mut out = Vec::new();
        while let Ok(Ok(message)) = tokio::time::timeout(quiet, consumer.recv()).await {
            out.push(message.detach());
        }
        out.sort_by_key(|m| (m.partition(), m.offset()));
        out
    }
}

/// The committed offsets (-1: none) and metadata of `group` on the mock cluster at `bootstrap`
/// (for callers that do not own the cluster value, such as blocking closures).
pub fn committed_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i64, String)> {
    let consumer: BaseConsumer =
        super::kafka_config_at(bootstrap).set("group.id", group).create().expect("consumer");
    let mut wanted = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let list = consumer.committed_offsets(wanted, Duration::from_secs(10)).expect("committed offsets");
    let offsets = list
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => -1,
            };
            (offset, e.metadata().to_string())
        })
        .collect();
    drop(list);
    offsets
}

/// Only the offsets of [`committed_at`].
pub fn offsets_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_at(bootstrap, group, topic, partitions).into_iter().map(|(o, _)| o).collect()
}
