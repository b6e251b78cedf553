//! The other peers the sidecar talks to, black-holed through the fault proxy: the SQS queue it
//! delivers to (LocalStack), and the OTLP collector it exports to, still black-holed when the
//! sidecar is told to stop. Neither may lose, dead-letter or stall a record, and a collector
//! that answers nothing may not hold the shutdown past its grace.

use std::time::Duration;

use super::Report;
use crate::common::app::{Reply, TestApp};
use crate::common::oracle::{Cause, Lanes, Oracle};
use crate::common::otlp::OtlpReceiver;
use crate::common::proxy::{FaultProxy, Mode};
use crate::common::sidecar;
use crate::common::{self, process};

/// The attempt timeout of the SQS run: short, so a black hole costs several attempts.
const SQS_TIMEOUT: Duration = Duration::from_secs(2);

/// (partition, offset) of every message in `queue`, drained (at most `patience` of quiet).
async fn drained(sqs: &aws_sdk_sqs::Client, queue: &str, expected: usize) -> Vec<(i32, i64)> {
    let messages = common::sqs::receive(sqs, queue, expected + 1000, Duration::from_secs(8)).await;
    messages
        .iter()
        .filter_map(|m| {
            let partition = m.attributes.get("kafka.partition")?.parse().ok()?;
            let offset = m.attributes.get("kafka.offset")?.parse().ok()?;
            Some((partition, offset))
        })
        .collect()
}

/// The SQS target black-holed for `length` from the start, while 100 records of one partition
/// wait to be sent to a FIFO queue: one lane, one record at a time, so every attempt lands on
/// the same record and its probe must not take an accepted connection for an answer. No dead
/// letter (the queue being unreachable is an outage, not the record's fault) and no duplicate
/// (held requests reach SQS after the hole with the deduplication id of the retry).
pub async fn sqs_black_hole(length: Duration) -> Report {
    let sqs = common::sqs().await;
    let (_, queue) = common::sqs::create_queue(&sqs, true).await;
    let (topic, dlq) = super::topics("sqsfault", 1).await;
    let mut oracle = Oracle::default();
    super::produce(&common::bootstrap(), &topic, 1, 100, 1, 0, &mut oracle).await;
    let localstack =
        common::aws_endpoint().trim_start_matches("http://").parse().expect("LocalStack address");
    let proxy = FaultProxy::start(localstack).await;
    // Everything the sidecar sends to SQS (the API and the queue URL's host) goes through the
    // proxy; LocalStack finds the queue by the URL's path.
    let through_proxy = common::sqs::through_proxy(&queue, &proxy);
    let group = common::random_name("g");
    let mut env = sidecar::env(&topic, &group, "http://unused");
    env.remove("SIDECAR_DELIVERY_URL");
    env.insert("SIDECAR_DELIVERY_SQS_QUEUE_URL".into(), through_proxy);
    env.extend(process::testbed_aws());
    env.insert("AWS_ENDPOINT_URL".into(), format!("http://{}", proxy.address()));
    env.insert("SIDECAR_DELIVERY_TIMEOUT".into(), format!("{}s", SQS_TIMEOUT.as_secs()));
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "3".into());
    proxy.set(Mode::BlackHole);
    // A process of its own: the AWS SDK reads its endpoint from the process environment.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    tokio::time::sleep(length).await;
    let sent_during_the_hole = proxy.counters.bytes.load(std::sync::atomic::Ordering::Relaxed);
    proxy.heal();
    let settled = super::settle_group(&group, &topic, &oracle, 1, Duration::from_secs(90)).await;
    let peak_rss_kib = process::peak_rss_kib(&child);
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(30)).await;
    super::debug_log(&log);
    let letters = common::consume_available(&dlq, Duration::from_secs(1)).await;
    let committed = common::committed(&group, &topic, 1);
    let mut evidence = super::evidence(None, &letters, None, committed);
    evidence.accepted = drained(&sqs, &queue, oracle.produced.len()).await;
    evidence.null_target = false;
    let verdict = oracle.judge(&evidence, Lanes::Partition);
    let mut failed_checks = vec![];
    if !letters.is_empty() {
        failed_checks.push(format!(
            "an SQS outage made {} dead letters: {:?}",
            letters.len(),
            super::by_class(&letters)
        ));
    }
    if proxy.counters.connections.load(std::sync::atomic::Ordering::Relaxed) == 0 || sent_during_the_hole > 0
    {
        failed_checks.push("the sidecar did not reach SQS through the black-holed proxy".to_string());
    }
    Report {
        name: format!("SQS target black-holed {length:?}"),
        verdict,
        causes: vec![Cause::AnswerLost],
        faults: vec![("SQS black hole", 1)],
        settled,
        peak_rss_kib,
        failed_checks,
        duplicate_bound: Some(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_target_black_holed_makes_no_dead_letters_and_loses_nothing() {
    sqs_black_hole(Duration::from_secs(20)).await.check();
}

/// The OTLP collector black-holed for `length` while records flow, and still black-holed when
/// the sidecar (a real process) is told to stop with two 2-second deliveries in flight: every
/// record delivered and committed, and the process out within its grace (the telemetry flush
/// gets what the drain left of it).
pub async fn otlp_black_hole(length: Duration) -> Report {
    let receiver = OtlpReceiver::start().await;
    let proxy = FaultProxy::start(receiver.grpc).await;
    let (topic, dlq) = super::topics("otlpfault", 2).await;
    let mut oracle = Oracle::default();
    super::produce(&common::bootstrap(), &topic, 2, 400, 20, 0, &mut oracle).await;
    let app = TestApp::start().await;
    // The last two records (produced just before the stop) take 2 s each (the attempt
    // timeout is 2.5 s).
    app.behave(|r| {
        let slow = r.text().trim_start_matches('v').parse::<usize>().is_ok_and(|n| n >= 400);
        Reply::Slow(Duration::from_millis(if slow { 2000 } else { 10 }), 200)
    });
    let group = common::random_name("g");
    let grace = Duration::from_secs(8);
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://{}", proxy.address()));
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), format!("{}s", grace.as_secs()));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(60), "spans at the collector", || {
        std::future::ready((!receiver.spans().is_empty()).then_some(()))
    })
    .await;
    proxy.set(Mode::BlackHole);
    tokio::time::sleep(length).await;
    let settled = super::settle_group(&group, &topic, &oracle, 2, Duration::from_secs(60)).await;
    super::produce(&common::bootstrap(), &topic, 2, 2, 2, 400, &mut oracle).await;
    common::eventually(Duration::from_secs(30), "the slow deliveries to start", || {
        std::future::ready((app.in_flight() >= 2).then_some(()))
    })
    .await;
    let peak_rss_kib = process::peak_rss_kib(&child);
    process::signal(&child, "TERM");
    let mut failed_checks = vec![];
    let limit = grace + Duration::from_secs(30);
    let (status, took) = process::wait(&mut child, limit).await;
    println!("shutdown with the collector black-holed took {took:?} (grace {grace:?})");
    // A second for the process itself to end after its last step.
    if took > grace + Duration::from_secs(1) {
        failed_checks
            .push(format!("a black-holed collector held the shutdown {took:?}, past the {grace:?} grace"));
    }
    if !status.success() {
        failed_checks.push(format!("the sidecar exited with {status}"));
    }
    super::debug_log(&log);
    proxy.heal();
    let letters = common::consume_available(&dlq, Duration::from_secs(1)).await;
    let committed = common::committed(&group, &topic, 2);
    let verdict = oracle.judge(&super::evidence(Some(&app), &letters, None, committed), Lanes::Partition);
    Report {
        name: format!("OTLP collector black-holed {length:?} and through the shutdown"),
        verdict,
        causes: vec![],
        faults: vec![("OTLP collector black hole", 1)],
        settled,
        peak_rss_kib,
        failed_checks,
        duplicate_bound: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_collector_neither_slows_deliveries_nor_holds_the_shutdown() {
    otlp_black_hole(Duration::from_secs(8)).await.check();
}
