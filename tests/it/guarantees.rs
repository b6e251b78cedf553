//! At-least-once guarantees of the real binary: SIGTERM (zero duplicates) and SIGKILL (no loss).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar;
use crate::common::{self, Produce, process};

fn counts(app: &TestApp) -> BTreeMap<(i32, i64), usize> {
    let mut counts = BTreeMap::new();
    for coordinates in app.accepted() {
        *counts.entry(coordinates).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backlog_drains_commits_and_exits_without_duplicates() {
    let topic = common::random_name("term");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::produce(&topic, (0..100).map(|i| Produce::text(0, "k", &format!("v{i}"))).collect()).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(100), 200));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), "5s".into());

    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "10 deliveries", || {
        std::future::ready((app.received().len() >= 10).then_some(()))
    })
    .await;
    process::signal(&child, "TERM");
    let (status, took) = process::wait(&mut child, Duration::from_secs(10)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
    assert!(took <= Duration::from_secs(5), "exited after {took:?}, grace 5s");
    let first_run = app.received().len();
    assert!(first_run < 100, "stopped mid-backlog");

    app.behave(|_| Reply::Status(200));
    let mut second = process::spawn(&env, &log);
    common::wait_committed(&group, &topic, &[100]).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(10)).await;
    let counts = counts(&app);
    assert_eq!(counts.len(), 100, "every record delivered");
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates after SIGTERM: {duplicates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing() {
    let topic = common::random_name("kill");
    let group = common::random_name("g");
    common::create_topic(&topic, 3).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let total = 600;
    common::produce(
        &topic,
        (0..total).map(|i| Produce::text(i % 3, &format!("k{i}"), &format!("v{i}"))).collect(),
    )
    .await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let env = sidecar::env(&topic, &group, &app.url());

    let kills = 5;
    for _ in 0..kills {
        let mut child = process::spawn(&env, &log);
        let before = app.received().len();
        common::eventually(Duration::from_secs(30), "progress before the kill", || {
            std::future::ready((app.received().len() > before).then_some(()))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..800))).await;
        process::signal(&child, "KILL");
        process::wait(&mut child, Duration::from_secs(10)).await;
    }
    app.behave(|_| Reply::Status(200));
    let mut last = process::spawn(&env, &log);
    common::wait_committed(&group, &topic, &[200, 200, 200]).await;
    process::signal(&last, "TERM");
    process::wait(&mut last, Duration::from_secs(10)).await;

    let counts = counts(&app);
    let expected: BTreeSet<(i32, i64)> = (0..3).flat_map(|p| (0..200).map(move |o| (p, o))).collect();
    let delivered: BTreeSet<(i32, i64)> = counts.keys().copied().collect();
    let missing: Vec<_> = expected.difference(&delivered).collect();
    assert!(missing.is_empty(), "lost records: {missing:?}");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    // Per kill at most the records delivered since the last commit (1 s at 3 x 50/s) plus the
    // ones in flight; anything beyond means commits are not advancing.
    let bound = kills * (150 + 3);
    assert!(duplicates <= bound, "{duplicates} duplicates over {kills} kills (bound {bound})");
    println!("sigkill: {kills} kills, {duplicates} duplicates of {total} records");
}

/// The value of `msk_sidecar_rebalances_total{kind="lost"}` on a sidecar's admin server.
async fn partitions_lost(admin: &str) -> Option<u64> {
    let response = reqwest::get(format!("{admin}/metrics")).await.ok()?;
    common::lost_rebalances(&response.text().await.ok()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_frozen_past_its_session_loses_its_partitions_and_commits_nothing_stale() {
    let topic = common::random_name("frozen");
    let group = common::random_name("g");
    common::create_topic(&topic, 2).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..400).map(|i| Produce::text(i % 2, &format!("k{i}"), "v")).collect()).await;
    let (frozen_app, other_app) = (TestApp::start().await, TestApp::start().await);
    frozen_app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    other_app.behave(|_| Reply::Slow(Duration::from_millis(5), 200));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut env = sidecar::env(&topic, &group, &frozen_app.url());
    env.insert("SIDECAR_ADMIN_ADDR".into(), admin.clone());
    let admin = format!("http://{admin}");

    let mut frozen = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "first deliveries", || {
        std::future::ready((frozen_app.received().len() >= 20).then_some(()))
    })
    .await;
    assert_eq!(partitions_lost(&admin).await, Some(0), "nothing lost yet");
    // Frozen (a long GC pause, a throttled container): its session (2 s) expires.
    process::signal(&frozen, "STOP");
    let other = sidecar::Sidecar::start(&sidecar::env(&topic, &group, &other_app.url())).await;
    common::eventually(Duration::from_secs(30), "the other member takes over", || {
        std::future::ready((other_app.received().len() >= 20).then_some(()))
    })
    .await;
    process::signal(&frozen, "CONT");
    let lost = common::eventually(Duration::from_secs(30), "the frozen member finds out", || async {
        partitions_lost(&admin).await.filter(|n| *n > 0)
    })
    .await;
    common::wait_committed(&group, &topic, &[200, 200]).await;
    // A commit of the frozen member's stale watermarks would move the group backwards now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (g, t) = (group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || common::committed(&g, &t, 2)).await.expect("join");
    assert_eq!(committed, vec![200, 200], "committed offsets after the frozen member woke up");
    process::signal(&frozen, "TERM");
    let (status, _) = process::wait(&mut frozen, Duration::from_secs(15)).await;
    other.stop().await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
    assert!(log_text.contains("Partitions lost"), "the loss is logged; log:\n{log_text}");

    let delivered: BTreeSet<(i32, i64)> =
        frozen_app.accepted().into_iter().chain(other_app.accepted()).collect();
    assert_eq!(delivered.len(), 400, "every record delivered at least once");
    println!("frozen member: {lost} lost rebalance(s)");
}

/// `env` in key order, retrying a failing record (almost) forever every 200 ms.
fn stuck_key(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.insert("SIDECAR_ORDERING".into(), "key".into());
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "1000".into());
    env.insert("SIDECAR_RETRY_INITIAL_BACKOFF".into(), "200ms".into());
    env.insert("SIDECAR_RETRY_MAX_BACKOFF".into(), "200ms".into());
    env
}

/// Starts a child sidecar against the mock cluster in key order, waits for `progress`
/// deliveries, sends SIGTERM and checks that it exits cleanly within its grace.
async fn key_mode_run_until(
    env: &BTreeMap<String, String>,
    log: &std::path::Path,
    app: &TestApp,
    progress: usize,
) {
    let mut child = process::spawn(env, log);
    let started = std::time::Instant::now();
    while app.accepted().len() < progress {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {progress} deliveries before SIGTERM; log:\n{}",
            app.accepted().len(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process::signal(&child, "TERM");
    let (status, _) = process::wait(&mut child, Duration::from_secs(15)).await;
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_key_is_stuck_in_retries_delivers_nothing_twice_after_the_restart() {
    let topic = common::random_name("stuck");
    let dlq = format!("{topic}.dlq");
    let kafka = common::mock::MockKafka::start(&[(&topic, 1), (&dlq, 1)]);
    let mut records = vec![(0, "stuck".to_string(), "first".to_string())];
    records.extend((0..300).map(|i| (0, format!("free-{i}"), format!("v{i}"))));
    kafka.produce(&topic, &records).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "first" { Reply::Status(503) } else { Reply::Status(200) });
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let group = common::random_name("g");
    let mut env = stuck_key(kafka.sidecar_env(&topic, &group, &app.url()));
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), "5s".into());

    // Every other key is delivered while the first record retries; then SIGTERM.
    key_mode_run_until(&env, &log, &app, 300).await;
    let committed = kafka.committed(&group, &topic, 1);
    assert_eq!(committed[0].0, 0, "the stuck record holds the commit point");
    app.behave(|_| Reply::Status(200));
    let mut second = process::spawn(&env, &log);
    kafka.wait_committed(&group, &topic, &[301]).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(15)).await;

    let counts = counts(&app);
    assert_eq!(counts.len(), 301, "every record delivered");
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "{} records delivered twice: {duplicates:?}", duplicates.len());
}

/// `GET /ready` of a child's admin address: status and body (0 when it does not answer).
async fn ready(admin: &str) -> (u16, String) {
    match reqwest::get(format!("{admin}/ready")).await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_that_come_back_after_a_rebalance_in_an_outage_are_fetched_again() {
    let topic = common::random_name("outage");
    let group = common::random_name("g");
    common::create_topic(&topic, 4).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let produce =
        |round: usize| (0..400).map(move |i| Produce::text(i % 4, &format!("k{round}-{i}"), "v")).collect();
    common::produce(&topic, produce(0)).await;
    // The application is down: nothing listens on its port yet.
    let app_addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().expect("addr");
    let url = format!("http://{app_addr}/events");
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_log, second_log) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let mut env = sidecar::env(&topic, &group, &url);
    env.insert("SIDECAR_LIBRDKAFKA_SESSION_TIMEOUT_MS".into(), "10000".into());
    let with_admin = |env: &BTreeMap<String, String>| {
        let admin = format!("127.0.0.1:{}", common::free_port());
        let mut env = env.clone();
        env.insert("SIDECAR_ADMIN_ADDR".into(), admin.clone());
        (env, format!("http://{admin}"))
    };

    let (first_env, first_admin) = with_admin(&env);
    let mut first = process::spawn(&first_env, &first_log);
    common::eventually(Duration::from_secs(30), "the first member pauses for the outage", || async {
        let (_, body) = ready(&first_admin).await;
        body.contains("unreachable").then_some(())
    })
    .await;
    let (second_env, second_admin) = with_admin(&env);
    let mut second = process::spawn(&second_env, &second_log);
    common::eventually(Duration::from_secs(30), "the second member takes partitions", || async {
        let (_, body) = ready(&second_admin).await;
        (body.contains("unreachable") && !body.contains("waiting for a partition")).then_some(())
    })
    .await;
    // The application comes back; the second member leaves; its partitions come back.
    let app = TestApp::start_on(app_addr).await;
    common::wait_committed(&group, &topic, &[100; 4]).await;
    process::signal(&second, "TERM");
    let (status, _) = process::wait(&mut second, Duration::from_secs(20)).await;
    assert!(status.success(), "second member exit {status:?}");
    common::produce(&topic, produce(1)).await;
    common::wait_committed(&group, &topic, &[200; 4]).await;
    let (code, body) = ready(&first_admin).await;
    assert_eq!(code, 200, "{body}");
    process::signal(&first, "TERM");
    process::wait(&mut first, Duration::from_secs(20)).await;
    let delivered: BTreeSet<(i32, i64)> = app.accepted().into_iter().collect();
    assert_eq!(delivered.len(), 800, "every record delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_client_error_makes_the_sidecar_stop_and_exit_non_zero() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let topic = common::random_name("fenced");
    let kafka = common::mock::MockKafka::start(&[(&topic, 1), (&format!("{topic}.dlq"), 1)]);
    kafka.produce(&topic, &[(0, "k".to_string(), "v".to_string())]).await;
    let app = TestApp::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let group = common::random_name("g");
    let mut env = kafka.sidecar_env(&topic, &group, &app.url());
    env.insert("SIDECAR_LIBRDKAFKA_HEARTBEAT_INTERVAL_MS".into(), "500".into());
    // Static membership: a broker that says another instance took this id fences this one.
    env.insert("SIDECAR_LIBRDKAFKA_GROUP_INSTANCE_ID".into(), "sidecar-1".into());
    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "the first delivery", || {
        std::future::ready((!app.received().is_empty()).then_some(()))
    })
    .await;
    kafka
        .cluster
        .request_errors(RDKafkaApiKey::Heartbeat, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 5]);
    let status = process::wait_logged(&mut child, Duration::from_secs(30), &log).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "a fatal error exits non-zero; log:\n{log_text}");
    assert!(log_text.contains("Fatal Kafka client error"), "{log_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_rebalance_while_keys_are_stuck_delivers_nothing_twice() {
    let topic = common::random_name("moving");
    let dlq = format!("{topic}.dlq");
    let kafka = common::mock::MockKafka::start(&[(&topic, 4), (&dlq, 1)]);
    let mut records = Vec::new();
    for partition in 0..4 {
        records.push((partition, format!("stuck-{partition}"), "first".to_string()));
        records.extend((0..100).map(|i| (partition, format!("free-{partition}-{i}"), format!("v{i}"))));
    }
    kafka.produce(&topic, &records).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "first" { Reply::Status(503) } else { Reply::Status(200) });
    let group = common::random_name("g");
    let env = stuck_key(kafka.sidecar_env(&topic, &group, &app.url()));
    let dir = tempfile::tempdir().expect("tempdir");
    let (first_log, second_log) = (dir.path().join("first.log"), dir.path().join("second.log"));

    let mut first = process::spawn(&env, &first_log);
    common::eventually(Duration::from_secs(60), "every free key delivered by the first member", || {
        std::future::ready((app.accepted().len() >= 400).then_some(()))
    })
    .await;
    // A second member joins: some partitions move while their stuck records still retry.
    let mut second = process::spawn(&env, &second_log);
    // A liveness wait, not a speed bound: under the whole suite's load on two cores the
    // cooperative rebalance (two rounds, the revoke draining stuck keys) can take over a minute.
    common::eventually(Duration::from_secs(120), "the second member resumes moved partitions", || {
        let log = std::fs::read_to_string(&second_log).unwrap_or_default();
        std::future::ready(
            log.contains("Resuming with the records finished above the commit point").then_some(()),
        )
    })
    .await;
    app.behave(|_| Reply::Status(200));
    kafka.wait_committed(&group, &topic, &[101; 4]).await;
    for child in [&mut first, &mut second] {
        process::signal(child, "TERM");
        process::wait(child, Duration::from_secs(20)).await;
    }
    let counts = counts(&app);
    assert_eq!(counts.len(), 404, "every record delivered");
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let logs = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(&first_log).unwrap_or_default(),
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    assert!(duplicates.is_empty(), "{} delivered twice: {duplicates:?}\n{logs}", duplicates.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_broker_that_keeps_no_commit_metadata_a_restart_delivers_again_and_loses_nothing() {
    // tansu drops commit metadata: no offset map comes back, so the records finished above the
    // commit point are delivered again (at-least-once), never skipped.
    let topic = common::random_name("nomap");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let mut records = vec![Produce::text(0, "stuck", "first")];
    records.extend((0..100).map(|i| Produce::text(0, &format!("free-{i}"), "v")));
    common::produce(&topic, records).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "first" { Reply::Status(503) } else { Reply::Status(200) });
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut env = stuck_key(sidecar::env(&topic, &group, &app.url()));
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), "5s".into());
    key_mode_run_until(&env, &log, &app, 100).await;
    app.behave(|_| Reply::Status(200));
    let mut second = process::spawn(&env, &log);
    common::wait_committed(&group, &topic, &[101]).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(15)).await;
    let counts = counts(&app);
    assert_eq!(counts.len(), 101, "every record delivered");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("Resuming with the records finished"), "no map came back: {log_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_that_refuse_large_commit_metadata_get_commits_without_maps_and_lose_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let topic = common::random_name("nometa");
    let kafka = common::mock::MockKafka::start(&[(&topic, 1), (&format!("{topic}.dlq"), 1)]);
    let mut records = vec![(0, "stuck".to_string(), "first".to_string())];
    records.extend((0..100).map(|i| (0, format!("free-{i}"), format!("v{i}"))));
    kafka.produce(&topic, &records).await;
    // The broker refuses the next commit as if its offset.metadata.max.bytes were tiny.
    kafka.cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE],
    );
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "first" { Reply::Status(503) } else { Reply::Status(200) });
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let group = common::random_name("g");
    let mut env = stuck_key(kafka.sidecar_env(&topic, &group, &app.url()));
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), "5s".into());
    key_mode_run_until(&env, &log, &app, 100).await;
    let committed = kafka.committed(&group, &topic, 1);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(committed[0], (0, String::new()), "committed, without a map; log:\n{log_text}");
    app.behave(|_| Reply::Status(200));
    let mut second = process::spawn(&env, &log);
    kafka.wait_committed(&group, &topic, &[101]).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(15)).await;
    assert_eq!(counts(&app).len(), 101, "every record delivered");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("refuse commits with offset maps"), "{log_text}");
}
