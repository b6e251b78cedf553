//! Concurrency beyond partitions: key order, back-pressure with a slow application, retries that
//! block only their key, and rebalances across several instances without duplicates.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce, process};

fn key_of(received: &crate::common::app::Received) -> String {
    let key = received.header("x-kafka-key").expect("key header");
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(key).expect("base64")).expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_mode_keeps_per_key_order_with_concurrency_beyond_partitions() {
    let topic = common::random_name("keys");
    let group = common::random_name("g");
    common::create_topic(&topic, 4).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let total = 5000;
    let records: Vec<Produce> = (0..total)
        .map(|i| Produce::text(i % 4, &format!("key-{}", (i * 7) % 200), &format!("{i}")))
        .collect();
    common::produce(&topic, records).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(rand::random_range(1..20)), 200));
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_ORDERING".into(), "key".into());
    env.insert("SIDECAR_MAX_IN_FLIGHT".into(), "64".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[1250, 1250, 1250, 1250]).await;

    let received = app.received();
    assert_eq!(received.len(), total as usize, "each record once");
    let mut per_key: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for r in &received {
        per_key.entry(key_of(r)).or_default().push(r.coordinates());
    }
    assert_eq!(per_key.len(), 200);
    for (key, coordinates) in &per_key {
        // Keys map to partitions here, and within a partition the offsets must ascend.
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (p, o) in coordinates {
            by_partition.entry(*p).or_default().push(*o);
        }
        for offsets in by_partition.values() {
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{key} out of order: {offsets:?}");
        }
    }
    let peak = app.peak_concurrency();
    assert!(peak >= 32, "peak concurrency {peak} with 4 partitions");
    assert!(peak <= 64, "peak concurrency {peak} above SIDECAR_MAX_IN_FLIGHT");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_key_mode_a_retrying_record_blocks_only_its_key() {
    let topic = common::random_name("hol");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let mut records = vec![Produce::text(0, "stuck", "first")];
    records.extend((0..50).map(|i| Produce::text(0, &format!("free-{i}"), "x")));
    records.push(Produce::text(0, "stuck", "second"));
    common::produce(&topic, records).await;
    let app = TestApp::start().await;
    app.behave(
        |r| if r.text() == "first" && r.attempt() < 4 { Reply::Status(503) } else { Reply::Status(200) },
    );
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_ORDERING".into(), "key".into());
    env.insert("SIDECAR_RETRY_INITIAL_BACKOFF".into(), "400ms".into());
    env.insert("SIDECAR_RETRY_MAX_BACKOFF".into(), "400ms".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[52]).await;

    let received = app.received();
    let position = |body: &str, attempt: u32| {
        received.iter().position(|r| r.text() == body && r.attempt() == attempt).expect("request")
    };
    let last_free = received.iter().rposition(|r| key_of(r).starts_with("free-")).expect("free keys");
    assert!(last_free < position("first", 4), "other keys did not wait for the retrying key");
    assert!(position("first", 4) < position("second", 1), "the key itself kept its order");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_does_not_push_the_consumer_out_of_the_group() {
    let topic = common::random_name("slow");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..12).map(|i| Produce::text(0, "k", &format!("{i}"))).collect()).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_secs(2), 200));
    let mut env = sidecar::env(&topic, &group, &app.url());
    // Three max poll intervals pass while the application works through the backlog.
    env.insert("SIDECAR_LIBRDKAFKA_MAX_POLL_INTERVAL_MS".into(), "6000".into());
    env.insert("SIDECAR_MAX_IN_FLIGHT".into(), "1".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[12]).await;
    let received = app.received();
    assert_eq!(received.len(), 12, "no redelivery: the member never left the group");
    let span = received.last().expect("last").at - received[0].at;
    assert!(span >= Duration::from_secs(18), "the run lasted {span:?}, over 3 x max.poll.interval.ms");
    let metrics = sidecar.running().metrics.render_prometheus();
    assert!(metrics.contains("msk_sidecar_rebalances_total{kind=\"revoke\"} 0"), "{metrics}");
    sidecar.stop().await;
}

/// How many times `sidecar` lost its assignment (`msk_sidecar_rebalances_total{kind="lost"}`).
fn lost(sidecar: &Sidecar) -> u64 {
    let metrics = sidecar.running().metrics.render_prometheus();
    common::lost_rebalances(&metrics).unwrap_or_else(|| panic!("no lost rebalance counter in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_and_leaving_one_by_one_deliver_everything_once() {
    let topic = common::random_name("rebalance");
    let group = common::random_name("g");
    common::create_topic(&topic, 6).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(10), 200));
    let mut env = sidecar::env(&topic, &group, &app.url());
    // Every member leaves gracefully; a session that expires on a loaded machine (a lost
    // assignment, whose duplicates at-least-once allows) must not pass for a graceful rebalance.
    // Leaving and joining do not wait for the session timeout.
    env.insert("SIDECAR_LIBRDKAFKA_SESSION_TIMEOUT_MS".into(), "10000".into());

    let producing = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for batch in 0..40 {
                let records = (0..30).map(|i| Produce::text(i % 6, &format!("k{batch}-{i}"), "v")).collect();
                common::produce(&topic, records).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    let a = Sidecar::start(&env).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = Sidecar::start(&env).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = Sidecar::start(&env).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut losses = vec![lost(&a)];
    a.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    losses.push(lost(&b));
    b.stop().await;
    producing.await.expect("producer");
    // 1200 records over 6 partitions: 200 each.
    common::wait_committed(&group, &topic, &[200; 6]).await;
    losses.push(lost(&c));
    c.stop().await;
    assert_eq!(losses, vec![0, 0, 0], "no member lost its assignment (lost rebalances per member)");

    let mut counts: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for coordinates in app.accepted() {
        *counts.entry(coordinates).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 1200, "every record delivered");
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates across graceful rebalances: {duplicates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_completion_never_commits_past_an_unfinished_record() {
    let topic = common::random_name("ooo");
    let group = common::random_name("g");
    common::create_topic(&topic, 2).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(
        &topic,
        (0..1200).map(|i| Produce::text(i % 2, &format!("k{}", i % 50), &format!("{i}"))).collect(),
    )
    .await;
    let app = TestApp::start().await;
    // Some keys are much slower than others, so completions come out of offset order.
    app.behave(|r| {
        let slow = r.header("x-kafka-key").is_some_and(|k| k.len() % 3 == 0);
        Reply::Slow(Duration::from_millis(if slow { 300 } else { 20 }), 200)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_ORDERING".into(), "key".into());
    env.insert("SIDECAR_MAX_IN_FLIGHT".into(), "16".into());
    for _ in 0..3 {
        let mut child = process::spawn(&env, &log);
        let before = app.received().len();
        common::eventually(Duration::from_secs(30), "progress", || {
            std::future::ready((app.received().len() > before + 20).then_some(()))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rand::random_range(200..1200))).await;
        process::signal(&child, "KILL");
        process::wait(&mut child, Duration::from_secs(10)).await;
    }
    app.behave(|_| Reply::Status(200));
    let mut last = process::spawn(&env, &log);
    common::wait_committed(&group, &topic, &[600, 600]).await;
    process::signal(&last, "TERM");
    process::wait(&mut last, Duration::from_secs(10)).await;
    let delivered: std::collections::BTreeSet<(i32, i64)> = app.accepted().into_iter().collect();
    assert_eq!(delivered.len(), 1200, "nothing lost across kills with out-of-order completion");
}
