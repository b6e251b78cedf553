//! Unusual records are delivered faithfully or dead-lettered; none crashes or blocks the partition.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rdkafka::Message as _;
use rdkafka::producer::FutureRecord;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

/// Produces one record with key `big` and `value` (over librdkafka's default 1 MB limit) to
/// partition 0 of `topic`.
async fn produce_big(topic: &str, value: &[u8]) {
    let producer: rdkafka::producer::FutureProducer =
        common::kafka_config().set("message.max.bytes", "5000000").create().expect("producer");
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic).partition(0).key(b"big").payload(value),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("produce big record: {err}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_records_are_delivered_faithfully_and_oversized_ones_take_the_archive_path() {
    let topic = common::random_name("odd");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    let archive = tempfile::tempdir().expect("tempdir");
    let app = TestApp::start().await;
    app.behave(|r| if r.body.len() > 1_000_000 { Reply::Status(413) } else { Reply::Status(200) });

    common::produce(
        &topic,
        vec![
            Produce { partition: 0, key: Some(b"t".to_vec()), value: None, headers: vec![] },
            Produce { partition: 0, key: None, value: Some(vec![]), headers: vec![] },
            Produce { partition: 0, key: Some(vec![0, 255, 1]), value: Some(b"x".to_vec()), headers: vec![] },
            Produce {
                partition: 0,
                key: Some(b"h".to_vec()),
                value: Some(b"y".to_vec()),
                headers: vec![
                    ("bin".into(), Some(vec![0xc3, 0x28])),
                    ("x-kafka-topic".into(), Some(b"spoof".to_vec())),
                    ("nothing".into(), None),
                ],
            },
        ],
    )
    .await;
    // A record larger than the dead-letter producer accepts (1 MB), which the source topic took.
    let big = vec![b'z'; 1_200_000];
    produce_big(&topic, &big).await;
    common::produce(&topic, vec![Produce::text(0, "after", "after")]).await;

    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[6]).await;

    let received = app.received();
    let at = |offset: i64| {
        received.iter().find(|r| r.coordinates().1 == offset).unwrap_or_else(|| panic!("offset {offset}"))
    };
    let tombstone = at(0);
    assert_eq!(tombstone.header("x-kafka-tombstone"), Some("true"));
    assert!(tombstone.body.is_empty());
    let empty = at(1);
    assert!(empty.body.is_empty());
    assert_eq!(empty.header("x-kafka-tombstone"), None, "empty is not null");
    assert_eq!(empty.header("x-kafka-key"), None);
    assert_eq!(at(2).header("x-kafka-key"), Some("AP8B"));
    let headers = at(3);
    assert_eq!(headers.header("x-kafka-header-bin"), Some("wyg="));
    assert_eq!(
        headers.header("x-kafka-topic"),
        Some(topic.as_str()),
        "a record header cannot spoof the contract"
    );
    assert_eq!(headers.header("x-kafka-header-x-kafka-topic"), Some(BASE64.encode("spoof").as_str()));
    assert_eq!(headers.header("x-kafka-header-nothing"), Some(""));
    assert_eq!(at(4).body.len(), big.len(), "the big record reached the application whole");
    assert_eq!(at(5).text(), "after", "the partition went on after the oversized record");

    let letters = common::consume(&dlq, 1).await;
    let letter = &letters[0];
    assert_eq!(common::header_text(letter, "dlq-error-class").as_deref(), Some("oversized"));
    assert_eq!(common::header_text(letter, "dlq-source-offset").as_deref(), Some("4"));
    assert!(letter.payload().is_none_or(<[u8]>::is_empty), "the topic copy has no value");
    let key = common::header_text(letter, "dlq-archive-key").expect("archive key");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.path().join(&key)).expect("archive file"))
            .expect("json");
    assert_eq!(document["error_class"], "oversized");
    let value = BASE64.decode(document["value_b64"].as_str().expect("value")).expect("base64");
    assert_eq!(value, big, "the archive holds the whole value");
    assert!(document["error"].as_str().is_some_and(|e| e.contains("HTTP 413")));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_neither_stops_the_process_nor_loses_the_record() {
    let topic = common::random_name("hostile");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    // A Go or C producer can write any bytes as a header name; librdkafka hands them on as is.
    let hostile = common::raw_produce::RawRecord {
        key: Some(b"k".to_vec()),
        value: Some(b"hostile".to_vec()),
        headers: vec![(b"ok".to_vec(), Some(b"1".to_vec())), (vec![0xff, 0xfe, b'n'], Some(b"v".to_vec()))],
    };
    common::raw_produce::produce(&common::bootstrap(), &topic, 0, &[hostile]).await.expect("raw produce");
    common::produce(&topic, vec![Produce::text(0, "k", "after")]).await;
    let app = TestApp::start().await;
    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, &app.url())).await;
    common::wait_committed(&group, &topic, &[2]).await;

    assert_eq!(app.received().iter().map(|r| r.text()).collect::<Vec<_>>(), vec!["after"]);
    let letters = common::consume(&dlq, 1).await;
    let letter = &letters[0];
    assert_eq!(common::header_text(letter, "dlq-error-class").as_deref(), Some("malformed"));
    assert_eq!(common::header_text(letter, "dlq-source-offset").as_deref(), Some("0"));
    assert_eq!(letter.payload(), Some(&b"hostile"[..]), "the dead letter holds the value");
    assert_eq!(common::header_text(letter, "ok").as_deref(), Some("1"), "readable headers are kept");
    let error = common::header_text(letter, "dlq-error").expect("dlq-error");
    assert!(error.contains("not UTF-8"), "{error}");
    let (status, _) = common::get(&format!("{}/live", sidecar.admin())).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_dead_letter_without_an_archive_holds_its_partition_and_says_why() {
    let topic = common::random_name("huge");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.body.len() > 1_000_000 { Reply::Status(413) } else { Reply::Status(200) });
    let big = vec![b'z'; 1_200_000];
    produce_big(&topic, &big).await;
    common::produce(&topic, vec![Produce::text(0, "after", "after")]).await;

    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, &app.url())).await;
    let reason =
        common::eventually(Duration::from_secs(30), "the partition reports why it holds", || async {
            let (status, body) = common::get(&format!("{}/ready", sidecar.admin())).await;
            (status == 503 && body.contains("SIDECAR_DLQ_ARCHIVE")).then_some(body)
        })
        .await;
    assert!(reason.contains("dead-letter topic"), "{reason}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (g, t) = (group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || common::committed(&g, &t, 1)).await.expect("join");
    assert!(committed[0] <= 0, "nothing past the held record is committed: {committed:?}");
    assert!(app.received().iter().all(|r| r.text() != "after"), "the partition keeps its order");
    let letters = common::consume_available(&dlq, Duration::from_secs(2)).await;
    assert!(letters.is_empty(), "no dead letter without its value: {}", letters.len());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_delivery_panics_is_dead_lettered_and_the_partition_goes_on() {
    let topic = common::random_name("panics");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    common::produce(&topic, (0..5).map(|i| Produce::text(0, "k", &format!("{i}"))).collect()).await;
    // The null target's test hook: the record at offset 0 panics in delivery.
    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, "null://?panic_permille=1")).await;
    common::wait_committed(&group, &topic, &[5]).await;
    let letters = common::consume(&dlq, 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-error-class").as_deref(), Some("panic"));
    assert_eq!(common::header_text(&letters[0], "dlq-source-offset").as_deref(), Some("0"));
    let metrics = sidecar.running().metrics.render_prometheus();
    assert!(metrics.contains("msk_sidecar_panics_total 1"), "{metrics}");
    let (status, body) = common::get(&format!("{}/ready", sidecar.admin())).await;
    assert_eq!(status, 200, "a contained panic does not make the sidecar unready: {body}");
    assert!(body.contains("warnings") && body.contains("panic"), "{body}");
    sidecar.stop().await;
}
