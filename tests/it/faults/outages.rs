//! Outages of where dead letters go, and a record whose delivery panics: S3 down (through the
//! fault proxy in front of LocalStack) while records are being dead-lettered, the dead-letter
//! topic refusing writes (mock cluster errors), and the null target's panic hook.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Report;
use crate::common::app::{Reply, TestApp};
use crate::common::mock::{self, MockKafka};
use crate::common::oracle::{Lanes, Oracle};
use crate::common::proxy::{FaultProxy, Mode};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, process};

/// Rejects (400) every record whose value ends in 7: some dead letters, most deliveries.
fn rejecting(r: &crate::common::app::Received) -> Reply {
    if r.text().ends_with('7') { Reply::Status(400) } else { Reply::Slow(Duration::from_millis(5), 200) }
}

/// The archived dead letters in an S3 bucket under `prefix`: (partition, offset) from the keys.
async fn archived_in_s3(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<(i32, i64)> {
    let mut found = BTreeSet::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.expect("list objects").contents() {
            let name = object.key().unwrap_or_default().rsplit('/').next().unwrap_or_default();
            if let Some((p, o)) = name.strip_suffix(".json").and_then(|n| n.split_once('-'))
                && let (Ok(p), Ok(o)) = (p.parse(), o.parse())
            {
                found.insert((p, o));
            }
        }
    }
    found
}

/// S3 refusing connections for `length` from the start, while records are dead-lettered.
pub async fn s3_down(length: Duration) -> Report {
    let s3 = common::s3().await;
    let bucket = common::random_name("s3fault");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let (topic, dlq) = super::topics("s3down", 2).await;
    let mut oracle = Oracle::default();
    super::produce(&common::bootstrap(), &topic, 2, 200, 20, 0, &mut oracle).await;
    let app = TestApp::start().await;
    app.behave(rejecting);
    let localstack =
        common::aws_endpoint().trim_start_matches("http://").parse().expect("LocalStack address");
    let proxy = FaultProxy::start(localstack).await;
    let group = common::random_name("g");
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.extend(process::testbed_aws());
    env.insert("AWS_ENDPOINT_URL".into(), format!("http://{}", proxy.address()));
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("s3://{bucket}/dead"));
    let admin = format!("127.0.0.1:{}", common::free_port());
    env.insert("SIDECAR_ADMIN_ADDR".into(), admin.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    // S3 is down from the start: the first dead letters wait for it.
    proxy.set(Mode::Refuse);
    let mut child = process::spawn(&env, &log);
    let reported = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some((503, body)) = common::try_get(&format!("http://{admin}/ready")).await
                && body.contains("archive")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .is_ok();
    tokio::time::sleep(length.saturating_sub(Duration::from_secs(1))).await;
    proxy.heal();
    let settled = super::settle_group(&group, &topic, &oracle, 2, Duration::from_secs(90)).await;
    let peak_rss_kib = process::peak_rss_kib(&child);
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(20)).await;
    let letters = common::consume_available(&dlq, Duration::from_secs(1)).await;
    let archived = archived_in_s3(&s3, &bucket).await;
    let committed = common::committed(&group, &topic, 2);
    let mut evidence = super::evidence(Some(&app), &letters, None, committed);
    evidence.archived = Some(archived);
    let verdict = oracle.judge(&evidence, Lanes::Partition);
    let mut failed_checks = Vec::new();
    if !reported {
        failed_checks.push("/ready never named the archive while S3 was down".to_string());
    }
    if verdict.dead_lettered < 10 {
        failed_checks.push(format!("only {} records dead-lettered", verdict.dead_lettered));
    }
    Report {
        name: format!("S3 down {length:?} while dead-lettering"),
        verdict,
        causes: vec![],
        faults: vec![("S3 refused", 1), ("S3 connection resets", proxy.resets())],
        settled,
        peak_rss_kib,
        failed_checks,
        duplicate_bound: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_while_records_are_being_dead_lettered() {
    s3_down(Duration::from_secs(6)).await.check();
}

/// The dead-letter topic failing `errors` writes in a row (mock cluster errors).
pub async fn dlq_refusing(errors: usize) -> Report {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let topic = common::random_name("dlqdown");
    let dlq = format!("{topic}.dlq");
    let kafka = MockKafka::start(&[(&topic, 2), (&dlq, 1)]);
    let mut oracle = Oracle::default();
    super::produce(&kafka.bootstrap, &topic, 2, 200, 20, 0, &mut oracle).await;
    let app = TestApp::start().await;
    app.behave(rejecting);
    let archive = tempfile::tempdir().expect("tempdir");
    let group = common::random_name("g");
    let mut env = kafka.sidecar_env(&topic, &group, &app.url());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    // Every write to the dead-letter topic fails for a while (librdkafka retries, then the
    // sidecar does): nothing may be committed past a record whose dead letter is not written.
    kafka.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; errors],
    );
    let mut child = process::spawn(&env, &log);
    let (g, t) = (group.clone(), topic.clone());
    let committed = {
        let kafka_bootstrap = kafka.bootstrap.clone();
        move || mock::offsets_at(&kafka_bootstrap, &g, &t, 2)
    };
    let settled = super::settle(committed, &super::ends(&oracle, 2), Duration::from_secs(120)).await;
    let peak_rss_kib = process::peak_rss_kib(&child);
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(20)).await;
    let letters = kafka.read_available(&dlq, 1, Duration::from_secs(2)).await;
    let committed = mock::offsets_at(&kafka.bootstrap, &group, &topic, 2);
    let verdict = oracle
        .judge(&super::evidence(Some(&app), &letters, Some(archive.path()), committed), Lanes::Partition);
    let failed_checks = if verdict.dead_lettered < 10 {
        vec![format!("only {} records dead-lettered", verdict.dead_lettered)]
    } else {
        vec![]
    };
    Report {
        name: format!("dead-letter topic refusing {errors} writes"),
        verdict,
        causes: vec![],
        faults: vec![("DLQ produce errors", errors as u64)],
        settled,
        peak_rss_kib,
        failed_checks,
        duplicate_bound: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_topic_refusing_writes() {
    dlq_refusing(30).await.check();
}

/// Records whose delivery panics (the null target's test hook), `permille` of them.
pub async fn panics(permille: u32) -> Report {
    let (topic, dlq) = super::topics("panicking", 2).await;
    let mut oracle = Oracle::default();
    super::produce(&common::bootstrap(), &topic, 2, 200, 20, 0, &mut oracle).await;
    let archive = tempfile::tempdir().expect("tempdir");
    let group = common::random_name("g");
    // Offsets 0-2 of each partition panic in the null target.
    let mut env = sidecar::env(&topic, &group, &format!("null://?panic_permille={permille}"));
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let sidecar = Sidecar::start(&env).await;
    let settled = super::settle_group(&group, &topic, &oracle, 2, Duration::from_secs(60)).await;
    sidecar.stop().await;
    let letters = common::consume_available(&dlq, Duration::from_secs(1)).await;
    let committed = common::committed(&group, &topic, 2);
    let verdict =
        oracle.judge(&super::evidence(None, &letters, Some(archive.path()), committed), Lanes::None);
    let expected = oracle.produced.keys().filter(|(_, o)| o.rem_euclid(1000) < i64::from(permille)).count();
    let panicked = super::by_class(&letters).get("panic").copied().unwrap_or(0);
    let failed_checks = if panicked == expected && verdict.dead_lettered == expected {
        vec![]
    } else {
        vec![format!(
            "{panicked} panic dead letters, {} dead-lettered, {expected} expected",
            verdict.dead_lettered
        )]
    };
    Report {
        name: format!("records whose delivery panics ({permille} per mille)"),
        verdict,
        causes: vec![],
        faults: vec![("panicking records", expected as u64)],
        settled,
        peak_rss_kib: 0,
        failed_checks,
        duplicate_bound: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_whose_delivery_panics() {
    panics(3).await.check();
}

/// What a TCP proxy cannot do, on the mock cluster: commits answered `REBALANCE_IN_PROGRESS` and
/// `NOT_COORDINATOR`, then the (only) broker down for `down` and up again, while records flow.
pub async fn coordinator_errors_and_a_broker_restart(down: Duration) -> Report {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let topic = common::random_name("coord");
    let dlq = format!("{topic}.dlq");
    let kafka = MockKafka::start(&[(&topic, 3), (&dlq, 1)]);
    let mut oracle = Oracle::default();
    super::produce(&kafka.bootstrap, &topic, 3, 300, 30, 0, &mut oracle).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(10), 200));
    let group = common::random_name("g");
    let env = kafka.sidecar_env(&topic, &group, &app.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(60), "the run to start", || {
        std::future::ready((app.accepted().len() >= 20).then_some(()))
    })
    .await;
    let mut errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; 2];
    errors.extend([RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 2]);
    kafka.cluster.request_errors(RDKafkaApiKey::OffsetCommit, &errors);
    tokio::time::sleep(Duration::from_secs(5)).await;
    kafka.cluster.broker_down(1).expect("broker down");
    tokio::time::sleep(down).await;
    kafka.cluster.broker_up(1).expect("broker up");
    let (g, t, b) = (group.clone(), topic.clone(), kafka.bootstrap.clone());
    let settled = super::settle(
        move || mock::offsets_at(&b, &g, &t, 3),
        &super::ends(&oracle, 3),
        Duration::from_secs(90),
    )
    .await;
    let peak_rss_kib = process::peak_rss_kib(&child);
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(20)).await;
    super::debug_log(&log);
    let letters = kafka.read_available(&dlq, 1, Duration::from_secs(2)).await;
    let committed = mock::offsets_at(&kafka.bootstrap, &group, &topic, 3);
    let verdict = oracle.judge(&super::evidence(Some(&app), &letters, None, committed), Lanes::Partition);
    let mut causes = Vec::new();
    if super::lost_an_assignment(&log) {
        causes.push(crate::common::oracle::Cause::LostAssignment);
    }
    if super::refused_a_commit(&log) {
        causes.push(crate::common::oracle::Cause::CommitRefused);
    }
    Report {
        name: format!("coordinator errors and a broker down {down:?}"),
        verdict,
        causes,
        faults: vec![("commit errors", errors.len() as u64), ("broker down", 1)],
        settled,
        peak_rss_kib,
        failed_checks: if letters.is_empty() {
            vec![]
        } else {
            vec![format!("{} dead letters", letters.len())]
        },
        duplicate_bound: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_errors_and_a_broker_restart_mid_run() {
    // Shorter than the 6 s session: the member keeps its assignment, so nothing comes twice.
    coordinator_errors_and_a_broker_restart(Duration::from_secs(3)).await.check();
}
