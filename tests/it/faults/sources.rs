//! Faults of the other sources: LocalStack black-holed for 20 s under the SQS source while
//! messages flow, for a standard and a FIFO queue. Judged by the oracle like every fault test:
//! message `m-<i>` is record `(0, i)` (its group is its key on a FIFO queue); "committed past"
//! means deleted, which the queue being empty at the end says of every message. Every message
//! must be delivered (none lost), none dead-lettered (an outage is not the message's fault), the
//! queue empty within 90 s of the heal (no stall), FIFO groups in order, and copies only for
//! what a lost answer explains: messages completed while their delete could not get through (at
//! most what was in flight, twice over).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::common::app::{Reply, TestApp};
use crate::common::oracle::{Cause, Evidence, Lanes, Oracle};
use crate::common::proxy::{FaultProxy, Mode};
use crate::common::{self, process, sidecar};

const MESSAGES: usize = 200;
const IN_FLIGHT: usize = 8;
/// Message groups of the FIFO run.
const GROUPS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_source_black_holed_loses_nothing_and_dead_letters_nothing() {
    black_holed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_sqs_source_black_holed_keeps_each_groups_order_and_loses_nothing() {
    black_holed(true).await;
}

/// The index of message `m-<i>`.
fn index(body: &str) -> Option<i64> {
    body.strip_prefix("m-")?.parse().ok()
}

async fn black_holed(fifo: bool) {
    let sqs = common::sqs().await;
    let (_, queue) = common::sqs::create_queue(&sqs, fifo).await;
    let mut oracle = Oracle::default();
    let group = |i: usize| format!("g{}", i % GROUPS);
    for chunk in 0..MESSAGES / 10 {
        let entries = (0..10)
            .map(|i| {
                let n = chunk * 10 + i;
                let mut entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(format!("m-{n}"));
                if fifo {
                    entry = entry.message_group_id(group(n)).message_deduplication_id(format!("d-{n}"));
                }
                oracle.produced(0, n as i64, fifo.then(|| group(n).into_bytes()));
                entry.build().unwrap()
            })
            .collect();
        sqs.send_message_batch().queue_url(&queue).set_entries(Some(entries)).send().await.unwrap();
    }
    let localstack =
        common::aws_endpoint().trim_start_matches("http://").parse().expect("LocalStack address");
    let proxy = FaultProxy::start(localstack).await;
    let through_proxy = common::sqs::through_proxy(&queue, &proxy);
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    let topic = common::random_name("srcfault");
    common::create_topic(&topic, 1).await;
    let archive = tempfile::tempdir().expect("tempdir");
    let mut env = sidecar::env(&topic, &common::random_name("g"), &app.url());
    env.extend(process::testbed_aws());
    env.insert("AWS_ENDPOINT_URL".into(), format!("http://{}", proxy.address()));
    env.insert("SQS_QUEUE_URLS".into(), through_proxy);
    env.insert("SQS_WAIT_TIME".into(), "1s".into());
    env.insert("SIDECAR_MAX_IN_FLIGHT".into(), IN_FLIGHT.to_string());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let log = archive.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    // Every 2xx answer to an SQS message, in the order the application answered.
    let accepted = || -> Vec<(i32, i64)> {
        app.received()
            .iter()
            .filter(|r| r.status == 200 && r.header("x-sqs-queue").is_some())
            .filter_map(|r| index(&r.text()).map(|i| (0, i)))
            .collect()
    };
    let distinct = || accepted().into_iter().collect::<BTreeSet<_>>().len();
    common::eventually(Duration::from_secs(60), "50 messages before the fault", || {
        std::future::ready((distinct() >= 50).then_some(()))
    })
    .await;
    proxy.set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = distinct();
    proxy.heal();
    let healed = Instant::now();
    let depth = || async {
        let answer = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        answer.attributes().into_iter().flatten().filter_map(|(_, v)| v.parse::<u64>().ok()).sum::<u64>()
    };
    let settled = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if depth().await == 0 && distinct() == MESSAGES {
                return healed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(30)).await;
    // Dead letters go to the archive only (the queue has no RedrivePolicy): read back by body.
    let letters = archived_bodies(archive.path());
    let evidence = Evidence {
        accepted: accepted(),
        dead_letters: letters.iter().copied().collect(),
        archived: Some(letters),
        // Deleted: all of them when the queue is empty, else none is known to be.
        committed: vec![if depth().await == 0 { MESSAGES as i64 } else { -1 }],
        null_target: false,
    };
    let verdict = oracle.judge(&evidence, if fifo { Lanes::Key } else { Lanes::None });
    let kind = if fifo { "FIFO" } else { "standard" };
    println!("SQS source ({kind}) black-holed 20s: {during} delivered before the heal, settled {settled:?}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String = log_text.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    assert!(
        evidence.dead_letters.is_empty(),
        "an outage made dead letters {:?}; log (newest first):\n{tail}",
        evidence.dead_letters
    );
    verdict.assert_clean(&format!("SQS source ({kind}) black-holed 20 s"), &[Cause::AckLost]);
    assert!(settled.is_ok(), "the queue did not empty within 90 s of the heal (a stall)");
    let copies = verdict.extra_deliveries();
    assert!(copies <= 2 * IN_FLIGHT, "{copies} copies: more than a lost answer explains");
    assert!(
        proxy.counters.connections.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "SQS traffic bypassed the proxy"
    );
}

/// `(0, i)` of every archived dead letter of message `m-<i>` under `dir`.
fn archived_bodies(dir: &std::path::Path) -> BTreeSet<(i32, i64)> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let document: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or_default();
                let body = document["value_b64"]
                    .as_str()
                    .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                    .and_then(|v| String::from_utf8(v).ok());
                // An archived document that is not one of ours still counts, as index -1.
                found.insert((0, body.as_deref().and_then(index).unwrap_or(-1)));
            }
        }
    }
    found
}
