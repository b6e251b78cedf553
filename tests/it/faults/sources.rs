//! Faults of the other sources: LocalStack black-holed for 20 s under the SQS source while
//! messages flow. Judged like the oracle judges records: every message delivered (none lost),
//! none dead-lettered (an outage is not the message's fault), the queue empty within 90 s of
//! the heal (no stall), and copies only for what a lost answer explains: messages completed
//! while their delete could not get through (at most what was in flight, twice over).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::app::{Reply, TestApp};
use crate::common::proxy::{FaultProxy, Mode};
use crate::common::{self, process, sidecar};

const MESSAGES: usize = 200;
const IN_FLIGHT: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_source_black_holed_loses_nothing_and_dead_letters_nothing() {
    let sqs = common::sqs().await;
    let (_, queue) = common::sqs::create_queue(&sqs, false).await;
    for chunk in 0..MESSAGES / 10 {
        let entries = (0..10)
            .map(|i| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(format!("m-{}", chunk * 10 + i))
                    .build()
                    .unwrap()
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
    let accepted = || {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in app.received().iter().filter(|r| r.status == 200 && r.header("x-sqs-queue").is_some()) {
            *counts.entry(r.text()).or_insert(0) += 1;
        }
        counts
    };
    common::eventually(Duration::from_secs(60), "50 messages before the fault", || {
        std::future::ready((accepted().len() >= 50).then_some(()))
    })
    .await;
    proxy.set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = accepted().len();
    proxy.heal();
    let healed = Instant::now();
    let settled = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let answer = sqs
                .get_queue_attributes()
                .queue_url(&queue)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                )
                .send()
                .await
                .unwrap();
            let depth: u64 =
                answer.attributes().into_iter().flatten().filter_map(|(_, v)| v.parse::<u64>().ok()).sum();
            if depth == 0 && accepted().len() == MESSAGES {
                return healed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(30)).await;
    let counts = accepted();
    let lost: Vec<String> =
        (0..MESSAGES).map(|i| format!("m-{i}")).filter(|body| !counts.contains_key(body)).collect();
    let copies: usize = counts.values().map(|n| n - 1).sum();
    let mut letters = Vec::new();
    collect(archive.path(), &mut letters);
    println!(
        "SQS source black-holed 20s: {} delivered ({during} before the heal), {copies} copies, {} dead letters, settled {settled:?}",
        counts.len(),
        letters.len()
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String = log_text.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    assert!(lost.is_empty(), "lost {lost:?}; log (last lines, newest first):\n{tail}");
    assert!(letters.is_empty(), "an outage made dead letters: {letters:?}");
    assert!(settled.is_ok(), "the queue did not empty within 90 s of the heal (a stall)");
    assert!(copies <= 2 * IN_FLIGHT, "{copies} copies: more than a lost answer explains");
    assert!(
        proxy.counters.connections.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "SQS traffic bypassed the proxy"
    );
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}
