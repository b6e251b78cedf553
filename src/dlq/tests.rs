//! The dead-letter writer against librdkafka's in-process mock cluster: what an oversized record
//! leaves out of its topic copy, and that without an archive nothing is left out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::mocking::MockCluster;

use super::*;
use crate::health::{Health, Problem};
use crate::kafka::{Fatal, Shared};
use crate::record::{Header as RecordHeader, Record, TopicPartition};
use crate::telemetry::metrics::Metrics;

fn writer(bootstrap: &str, archive: Option<Archive>) -> DeadLetterWriter {
    let health = Arc::new(Health::new());
    let authentication = Arc::new(Problem::new(&health, crate::health::Component::Authentication, ""));
    let shared = Shared {
        auth: None,
        authentication: authentication.clone(),
        token_failed: Arc::default(),
        fatal: Arc::new(Fatal::new(&health, tokio_util::sync::CancellationToken::new())),
        metrics: Metrics::new().expect("metrics"),
    };
    let producer: FutureProducer<KafkaContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create_with_context(KafkaContext { shared })
        .expect("producer");
    DeadLetterWriter::new(producer, "dead".to_string(), archive, authentication).with_max_message_bytes(2_000)
}

fn record(key: usize, value: usize, header: usize) -> Record {
    Record {
        tp: TopicPartition::new("orders", 0),
        offset: 7,
        timestamp: Some(1_700_000_000_000),
        key: Some(Bytes::from(vec![b'k'; key])),
        value: Some(Bytes::from(vec![b'v'; value])),
        headers: vec![RecordHeader { name: "h".into(), value: Some(Bytes::from(vec![b'h'; header])) }],
        malformed: None,
        decoded: None,
        origin: crate::record::Origin::Kafka,
    }
}

fn letter(record: &Record) -> DeadLetter<'_> {
    DeadLetter {
        record,
        group: "g",
        class: ErrorClass::Permanent,
        error: "HTTP 400".into(),
        attempts: 1,
        first_failure: SystemTime::now(),
        last_failure: SystemTime::now(),
        traceparent: None,
    }
}

/// The dead letters in the mock's topic: (key length, value length, source header present).
fn read_back(bootstrap: &str, count: usize) -> Vec<(usize, usize, bool, Option<String>)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["dead"]).expect("subscribe");
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    while out.len() < count && started.elapsed() < Duration::from_secs(20) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let headers = message.headers().map(|h| h.iter().map(|h| h.key.to_string()).collect::<Vec<_>>());
            let headers = headers.unwrap_or_default();
            let archived = message.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "dlq-archive-key")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
            });
            out.push((
                message.key().map_or(0, <[u8]>::len),
                message.payload().map_or(0, <[u8]>::len),
                headers.iter().any(|h| h == "h"),
                archived,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_leaves_out_only_what_does_not_fit_and_stays_whole_in_the_archive() {
    let cluster = MockCluster::new(1).expect("mock");
    cluster.create_topic("dead", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = writer(&bootstrap, Some(Archive::Dir { root: dir.path().to_path_buf() }));
    // A big value; then a big header too; then a big key too.
    for (key, value, header) in [(10, 5_000, 10), (10, 5_000, 5_000), (5_000, 5_000, 5_000)] {
        let record = record(key, value, header);
        let written = writer.write(&letter(&record)).await.expect("written");
        assert_eq!(written.class, ErrorClass::Oversized);
    }
    let letters = read_back(&bootstrap, 3);
    assert_eq!(letters.len(), 3);
    assert_eq!((letters[0].0, letters[0].1, letters[0].2), (10, 0, true), "value left out");
    assert_eq!((letters[1].0, letters[1].1, letters[1].2), (10, 0, false), "headers left out too");
    assert_eq!((letters[2].0, letters[2].1, letters[2].2), (0, 0, false), "the key too");
    let key = letters[2].3.clone().expect("archive key");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(key)).expect("archived")).expect("json");
    assert_eq!(document["error_class"], "oversized");
    assert_eq!(document["key_b64"].as_str().map(str::len), Some(6_668), "the whole key is archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_archive_an_oversized_record_is_never_dead_lettered_in_part() {
    let cluster = MockCluster::new(1).expect("mock");
    cluster.create_topic("dead", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let writer = writer(&bootstrap, None);
    let record = record(10, 5_000, 10);
    let err = writer.write(&letter(&record)).await.expect_err("held");
    assert!(matches!(err, DlqError::TooLarge { .. }), "{err}");
    assert_eq!(err.component(), crate::health::Component::DeadLetterTopic);
    assert!(err.to_string().contains("SIDECAR_DLQ_ARCHIVE"), "{err}");
    let small = Record { value: Some(Bytes::from_static(b"small")), ..record };
    writer.write(&letter(&small)).await.expect("a record that fits is written whole");
    let letters = read_back(&bootstrap, 1);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, 5, "the only dead letter is the whole small record");
}
