//! Per-topic routes and HTTP batch delivery with per-record results.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topics_go_to_two_targets_with_their_own_retry_policies() {
    let orders = common::random_name("orders");
    let payments = common::random_name("payments");
    for topic in [&orders, &payments] {
        common::create_topic(topic, 1).await;
        common::create_topic(&format!("{topic}.dlq"), 1).await;
    }
    common::produce(&orders, vec![Produce::text(0, "o", "order")]).await;
    common::produce(&payments, vec![Produce::text(0, "p", "payment")]).await;
    let orders_app = TestApp::start().await;
    let payments_app = TestApp::start().await;
    orders_app.behave(|_| Reply::Status(500));
    payments_app.behave(|_| Reply::Status(500));
    let group = common::random_name("g");
    let env = sidecar::env(&format!("{orders},{payments}"), &group, &orders_app.url());
    let toml = format!(
        "[[routes]]\ntopic = \"{payments}\"\ndelivery_url = \"{}\"\nretry_max_attempts = 4\nretry_initial_backoff = \"10ms\"\nretry_max_backoff = \"20ms\"\ndlq_topic = \"{payments}.dlq\"\n",
        payments_app.url()
    );
    let mut env = env;
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "2".into());
    env.insert("SIDECAR_DLQ_TOPIC".into(), format!("{orders}.dlq"));
    let sidecar = Sidecar::start_with_file(&env, Some(&toml)).await;
    common::wait_committed(&group, &orders, &[1]).await;
    common::wait_committed(&group, &payments, &[1]).await;
    assert_eq!(orders_app.received().len(), 2, "the default policy: 2 attempts");
    assert_eq!(payments_app.received().len(), 4, "the route's policy: 4 attempts");
    assert!(orders_app.received().iter().all(|r| r.text() == "order"), "each topic went to its own target");
    let letters = common::consume(&format!("{payments}.dlq"), 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-attempts").as_deref(), Some("4"));
    let letters = common::consume(&format!("{orders}.dlq"), 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-attempts").as_deref(), Some("2"));
    sidecar.stop().await;
}

/// The records of one batch request: (partition, offset, attempt).
fn batch_records(body: &str) -> Vec<(i64, i64, i64)> {
    let json: serde_json::Value = serde_json::from_str(body).expect("batch JSON");
    json["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap(), r["attempt"].as_i64().unwrap())
        })
        .collect()
}

fn batch_env(topic: &str, group: &str, url: &str) -> BTreeMap<String, String> {
    let mut env = sidecar::env(topic, group, url);
    env.insert("SIDECAR_DELIVERY_BATCH_MAX_RECORDS".into(), "8".into());
    env.insert("SIDECAR_DELIVERY_BATCH_LINGER".into(), "50ms".into());
    env.insert("SIDECAR_ORDERING".into(), "none".into());
    env.insert("SIDECAR_RETRY_INITIAL_BACKOFF".into(), "20ms".into());
    env.insert("SIDECAR_RETRY_MAX_BACKOFF".into(), "50ms".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_retry_and_dead_letter_only_the_records_they_name() {
    let topic = common::random_name("batch");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..16).map(|i| Produce::text(0, &format!("k{i}"), &format!("{i}"))).collect())
        .await;
    let app = TestApp::start().await;
    app.behave(|r| {
        let records = batch_records(&r.text());
        let mut failures = Vec::new();
        for (partition, offset, attempt) in records {
            if offset == 3 && attempt == 1 {
                failures.push(serde_json::json!({"partition": partition, "offset": 3, "retryable": true}));
            }
            if offset == 7 {
                failures.push(serde_json::json!({"partition": partition, "offset": 7, "retryable": false}));
            }
        }
        Reply::Json(200, serde_json::json!({ "failures": failures }).to_string())
    });
    let group = common::random_name("g");
    let sidecar = Sidecar::start(&batch_env(&topic, &group, &app.url())).await;
    common::wait_committed(&group, &topic, &[16]).await;
    let requests = app.received();
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for request in &requests {
        assert_eq!(request.header("content-type"), Some("application/json"));
        for (_, offset, attempt) in batch_records(&request.text()) {
            seen.entry(offset).or_default().push(attempt);
        }
    }
    assert!(requests.len() < 16, "records travelled in batches: {} requests", requests.len());
    assert_eq!(seen[&3], vec![1, 2], "retried on its own after a retryable failure");
    assert_eq!(seen[&7], vec![1], "a permanent failure is not retried");
    assert!((0..16).filter(|o| *o != 3).all(|o| seen[&o].len() == 1), "{seen:?}");
    let letters = common::consume(&format!("{topic}.dlq"), 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-source-offset").as_deref(), Some("7"));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_batch_failures_bisect_down_to_the_poison_record() {
    let topic = common::random_name("bisect");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..16).map(|i| Produce::text(0, &format!("k{i}"), &format!("{i}"))).collect())
        .await;
    let app = TestApp::start().await;
    // Record 5 breaks any batch it is in; alone it is rejected for good.
    app.behave(|r| {
        let records = batch_records(&r.text());
        match records.iter().any(|(_, offset, _)| *offset == 5) {
            true if records.len() == 1 => Reply::Status(400),
            true => Reply::Status(500),
            false => Reply::Status(200),
        }
    });
    let group = common::random_name("g");
    let mut env = batch_env(&topic, &group, &app.url());
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "2".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[16]).await;
    let mut delivered = std::collections::BTreeSet::new();
    let mut sizes_with_poison = Vec::new();
    for request in app.received() {
        let records = batch_records(&request.text());
        if records.iter().any(|(_, o, _)| *o == 5) {
            sizes_with_poison.push(records.len());
        } else {
            delivered.extend(records.iter().map(|(_, o, _)| *o));
        }
    }
    assert_eq!(delivered.len(), 15, "every other record got through: {delivered:?}");
    assert_eq!(sizes_with_poison.last(), Some(&1), "the poison record ended up alone: {sizes_with_poison:?}");
    assert!(sizes_with_poison.windows(2).all(|w| w[1] <= w[0]), "batches shrank: {sizes_with_poison:?}");
    let letters = common::consume(&format!("{topic}.dlq"), 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-source-offset").as_deref(), Some("5"));
    assert_eq!(common::header_text(&letters[0], "dlq-error-class").as_deref(), Some("permanent"));
    assert_eq!(sidecar.running().metrics.total(|c| c.dead_lettered_total()), 1, "only the poison record");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_never_in_two_batch_requests_at_once() {
    let topic = common::random_name("lanes");
    common::create_topic(&topic, 4).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    // Uneven runs per partition, so partial batches fill up with other partitions' records.
    common::produce(
        &topic,
        (0..203).map(|i| Produce::text(i % 4, &format!("k{i}"), &format!("{i}"))).collect(),
    )
    .await;
    let app = TestApp::start().await;
    let busy = Duration::from_millis(30);
    app.behave(move |_| Reply::Slow(busy, 200));
    let group = common::random_name("g");
    let mut env = batch_env(&topic, &group, &app.url());
    env.insert("SIDECAR_ORDERING".into(), "partition".into());
    env.insert("SIDECAR_DELIVERY_BATCH_LINGER".into(), "10ms".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[51, 51, 51, 50]).await;
    sidecar.stop().await;

    let requests: Vec<_> = app.received().iter().map(|r| (r.at, batch_records(&r.text()))).collect();
    let mut next: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, (at, records)) in requests.iter().enumerate() {
        for (partition, offset, _) in records {
            let expected = next.entry(*partition).or_insert(0);
            assert_eq!(offset, expected, "partition {partition} arrives in order");
            *expected += 1;
        }
        // A later request that shares a partition went out after this one was answered.
        for (later, later_records) in &requests[i + 1..] {
            let shared = later_records.iter().any(|(p, _, _)| records.iter().any(|(q, _, _)| p == q));
            let gap = later.duration_since(*at);
            assert!(
                !shared || gap >= busy - Duration::from_millis(5),
                "two requests with one partition {gap:?} apart"
            );
        }
    }
    println!("{} batch requests for 203 records", requests.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answer_the_sidecar_cannot_read_fails_the_whole_batch() {
    let topic = common::random_name("garbled");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..8).map(|i| Produce::text(0, &format!("k{i}"), &format!("{i}"))).collect())
        .await;
    let app = TestApp::start().await;
    // The first answers are 2xx but wrong: a string offset, no JSON at all, JSON cut off, a
    // failure for a record that was not in the batch. Then the application gets it right.
    let garbled = [
        r#"{"failures":[{"partition":0,"offset":"3"}]}"#,
        "OK, thanks",
        r#"{"failures":[{"partition":0,"#,
        r#"{"failures":[{"partition":0,"offset":12345}]}"#,
    ];
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    app.behave(move |_| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match garbled.get(n) {
            Some(body) => Reply::Json(200, (*body).to_string()),
            None => Reply::Json(200, r#"{"failures":[]}"#.to_string()),
        }
    });
    let group = common::random_name("g");
    let mut env = batch_env(&topic, &group, &app.url());
    env.insert("SIDECAR_ORDERING".into(), "partition".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[8]).await;

    let requests = app.received();
    assert!(requests.len() > garbled.len(), "{} requests", requests.len());
    let mut accepted = std::collections::BTreeSet::new();
    for request in &requests[garbled.len()..] {
        accepted.extend(batch_records(&request.text()).into_iter().map(|(_, offset, _)| offset));
    }
    assert_eq!(accepted, (0..8).collect(), "every record went again after the unreadable answers");
    let metrics = sidecar.running().metrics.render_prometheus();
    let unreadable: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("msk_sidecar_unreadable_answers_total ")?.parse().ok())
        .unwrap_or_else(|| panic!("no unreadable-answer counter:\n{metrics}"));
    assert_eq!(unreadable, garbled.len() as u64);
    assert_eq!(sidecar.running().metrics.total(|c| c.dead_lettered_total()), 0);
    sidecar.stop().await;
}
