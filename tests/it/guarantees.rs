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
