//! The SQS source against LocalStack: messages delivered once with their facts, a slow
//! application that outlasts the visibility timeout, dead letters to the queue's own dead-letter
//! queue and the archive, FIFO order per message group with one group failing, and SIGTERM and
//! SIGKILL of the real binary followed by a restart. Every test also runs a Kafka source in the
//! same process (the topic is empty): the two sources side by side.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};

use crate::common::app::{Received, Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, process, sqs as queues};

/// The environment of a sidecar consuming `queue_url` next to an empty topic.
async fn env(queue_url: &str, app: &TestApp) -> BTreeMap<String, String> {
    let topic = common::random_name("side");
    common::create_topic(&topic, 1).await;
    let mut env = sidecar::env(&topic, &common::random_name("g"), &app.url());
    env.insert("SQS_QUEUE_URLS".into(), queue_url.to_string());
    env.insert("SQS_WAIT_TIME".into(), "1s".into());
    env
}

/// Sends `bodies` (FIFO: with their groups), ten per call.
pub(crate) async fn send(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[(String, Option<String>)]) {
    for (chunk_index, chunk) in bodies.chunks(10).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, (body, group))| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(body)
                    .message_attributes(
                        "kind",
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value("order")
                            .build()
                            .unwrap(),
                    );
                if let Some(group) = group {
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(format!("{chunk_index}-{i}-{body}"));
                }
                entry.build().unwrap()
            })
            .collect();
        let sent = sqs.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await.unwrap();
        assert!(sent.failed().is_empty(), "send failed: {:?}", sent.failed());
    }
}

/// Messages in the queue, visible and in flight.
pub(crate) async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let get = |name: QueueAttributeName| {
        answer.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
    };
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

pub(crate) async fn wait_empty(sqs: &aws_sdk_sqs::Client, url: &str) {
    common::eventually(Duration::from_secs(20), "the queue to be empty", || async {
        (depth(sqs, url).await == (0, 0)).then_some(())
    })
    .await;
}

/// Accepted SQS requests: body → times accepted.
pub(crate) fn accepted(app: &TestApp) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for received in app.received().iter().filter(|r| r.status == 200 && r.header("x-sqs-queue").is_some()) {
        *counts.entry(received.text()).or_insert(0) += 1;
    }
    counts
}

pub(crate) fn bodies(prefix: &str, count: usize) -> Vec<(String, Option<String>)> {
    (0..count).map(|i| (format!("{prefix}-{i}"), None)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_queue_delivers_every_message_once_with_its_facts_and_deletes_it() {
    let sqs = common::sqs().await;
    let (name, url) = queues::create_queue(&sqs, false).await;
    let app = TestApp::start().await;
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&url, &app).await;
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    send(&sqs, &url, &bodies("m", 30)).await;
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "30 messages delivered", || {
        std::future::ready((accepted(&app).len() == 30).then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sidecar.stop().await;
    let counts = accepted(&app);
    assert!(counts.values().all(|n| *n == 1), "each message once: {counts:?}");
    let first: Received = app.received().into_iter().find(|r| r.header("x-sqs-queue").is_some()).unwrap();
    assert_eq!(first.header("x-sqs-queue"), Some(name.as_str()));
    assert!(first.header("x-sqs-message-id").is_some_and(|id| !id.is_empty()));
    assert_eq!(first.header("x-sqs-receive-count"), Some("1"));
    assert_eq!(first.header("x-delivery-attempt"), Some("1"));
    assert_eq!(first.header("x-sqs-attribute-kind"), Some("order"));
    assert!(first.header("x-sqs-sent-timestamp").is_some_and(|t| t.parse::<i64>().is_ok()));
    assert!(first.header("x-kafka-topic").is_none(), "an SQS message has no Kafka coordinates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_longer_than_the_visibility_timeout_gets_each_message_once() {
    let sqs = common::sqs().await;
    let (_, url) = queues::create_queue(&sqs, false).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_secs(7), 200));
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&url, &app).await;
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    // More than twice the lease: without extension SQS would hand each message out again.
    env.insert("SQS_VISIBILITY_TIMEOUT".into(), "3s".into());
    env.insert("SIDECAR_DELIVERY_TIMEOUT".into(), "9s".into());
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), "15s".into());
    send(&sqs, &url, &bodies("slow", 3)).await;
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "3 slow messages delivered", || {
        std::future::ready((accepted(&app).len() == 3).then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    sidecar.stop().await;
    let requests = app.received().iter().filter(|r| r.header("x-sqs-queue").is_some()).count();
    assert_eq!(requests, 3, "a lease extended while the application works: no second copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_lands_in_the_dead_letter_queue_and_the_archive_and_leaves_the_queue() {
    let sqs = common::sqs().await;
    let (dlq_name, dlq_url) = queues::create_queue(&sqs, false).await;
    let (name, url) = queues::create_queue(&sqs, false).await;
    queues::redrive_to(&sqs, &url, &dlq_name).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "poison" { Reply::Status(400) } else { Reply::Status(200) });
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&url, &app).await;
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let mut messages = bodies("ok", 4);
    messages.insert(2, ("poison".into(), None));
    send(&sqs, &url, &messages).await;
    let sidecar = Sidecar::start(&env).await;
    let dead = queues::receive(&sqs, &dlq_url, 1, Duration::from_secs(30)).await;
    wait_empty(&sqs, &url).await;
    sidecar.stop().await;
    assert_eq!(accepted(&app).len(), 4);
    assert_eq!(dead.len(), 1, "one dead letter in the queue's dead-letter queue");
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].attributes.get("dlq-error-class").map(String::as_str), Some("permanent"));
    assert_eq!(dead[0].attributes.get("dlq-source-queue"), Some(&name));
    let key = dead[0].attributes.get("dlq-archive-key").expect("the archive key");
    assert!(key.starts_with(&format!("sqs/{name}/")), "{key}");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.path().join(key)).expect("the archive object"))
            .unwrap();
    assert_eq!(document["source_kind"], "sqs");
    assert_eq!(document["source_queue"], name.as_str());
    assert_eq!(document["error_class"], "permanent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_queue_keeps_each_groups_order_while_a_failing_group_waits() {
    let sqs = common::sqs().await;
    let (_, url) = queues::create_queue(&sqs, true).await;
    let app = TestApp::start().await;
    // Group a fails until b and c are through: they must not wait for it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    app.behave(move |r| {
        let mut seen = seen.lock().unwrap();
        if r.header("x-sqs-message-group-id") == Some("a") {
            if seen.contains("b-4") && seen.contains("c-4") { Reply::Status(200) } else { Reply::Status(503) }
        } else {
            seen.insert(r.text());
            Reply::Status(200)
        }
    });
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&url, &app).await;
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "100".into());
    let mut messages = Vec::new();
    for i in 0..5 {
        for group in ["a", "b", "c"] {
            messages.push((format!("{group}-{i}"), Some(group.to_string())));
        }
    }
    send(&sqs, &url, &messages).await;
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "15 messages delivered", || {
        std::future::ready((accepted(&app).len() == 15).then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    sidecar.stop().await;
    let order: Vec<String> = app
        .received()
        .iter()
        .filter(|r| r.status == 200 && r.header("x-sqs-queue").is_some())
        .map(Received::text)
        .collect();
    for group in ["a", "b", "c"] {
        let seen: Vec<&String> = order.iter().filter(|b| b.starts_with(group)).collect();
        let expected: Vec<String> = (0..5).map(|i| format!("{group}-{i}")).collect();
        assert_eq!(seen, expected.iter().collect::<Vec<_>>(), "group {group} in order, once each");
    }
    let position = |body: &str| order.iter().position(|b| b == body).unwrap();
    assert!(position("b-4") < position("a-0"), "b finished while a waited: {order:?}");
    assert!(position("c-4") < position("a-0"), "c finished while a waited: {order:?}");
}

/// The environment of a sidecar process consuming `url`.
async fn process_env(url: &str, app: &TestApp, archive: &std::path::Path) -> BTreeMap<String, String> {
    let mut env = env(url, app).await;
    env.extend(process::testbed_aws());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.display()));
    env.insert("SIDECAR_MAX_IN_FLIGHT".into(), "4".into());
    env.insert("SIDECAR_SHUTDOWN_GRACE".into(), "5s".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_what_is_not_done_and_a_restart_delivers_the_rest_once() {
    let sqs = common::sqs().await;
    let (_, url) = queues::create_queue(&sqs, false).await;
    let app = TestApp::start().await;
    // Ten messages go through, then the application fails: four messages are retrying (leased,
    // not done) when SIGTERM comes.
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    app.behave(move |_| {
        if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 10 {
            Reply::Status(200)
        } else {
            Reply::Status(503)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut env = process_env(&url, &app, dir.path()).await;
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "1000".into());
    send(&sqs, &url, &bodies("t", 60)).await;
    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "10 deliveries and retries", || {
        std::future::ready((accepted(&app).len() >= 10 && app.received().len() >= 20).then_some(()))
    })
    .await;
    process::signal(&child, "TERM");
    let (status, took) = process::wait(&mut child, Duration::from_secs(10)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
    assert!(took <= Duration::from_secs(5), "exited after {took:?}, grace 5s");
    let first = accepted(&app).len();
    assert_eq!(first, 10, "stopped mid-queue");
    // Released, not left to the 30 s lease: everything not delivered, the messages that were
    // retrying included, is visible at once.
    common::eventually(Duration::from_secs(3), "the rest visible again", || async {
        let (visible, in_flight) = depth(&sqs, &url).await;
        (in_flight == 0 && visible == (60 - first) as u64).then_some(())
    })
    .await;
    app.behave(|_| Reply::Status(200));
    let mut second = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "all 60 delivered", || {
        std::future::ready((accepted(&app).len() == 60).then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(10)).await;
    let counts = accepted(&app);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates after SIGTERM: {duplicates:?}");
    // A released message's next receive counts the first: its attempt number goes on.
    let again =
        app.received().into_iter().find(|r| r.status == 200 && r.header("x-sqs-receive-count") == Some("2"));
    assert_eq!(again.expect("a message received a second time").header("x-delivery-attempt"), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_and_copies_only_what_was_in_flight() {
    let sqs = common::sqs().await;
    let (_, url) = queues::create_queue(&sqs, false).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(100), 200));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut env = process_env(&url, &app, dir.path()).await;
    // The lease of what the killed process held lapses soon.
    env.insert("SQS_VISIBILITY_TIMEOUT".into(), "3s".into());
    send(&sqs, &url, &bodies("k", 60)).await;
    let kills = 2;
    for _ in 0..kills {
        let before = accepted(&app).len();
        let mut child = process::spawn(&env, &log);
        common::eventually(Duration::from_secs(30), "progress before the kill", || {
            std::future::ready((accepted(&app).len() >= before + 10).then_some(()))
        })
        .await;
        process::signal(&child, "KILL");
        process::wait(&mut child, Duration::from_secs(10)).await;
    }
    let mut last = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(60), "all 60 delivered", || {
        std::future::ready((accepted(&app).len() == 60).then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    process::signal(&last, "TERM");
    process::wait(&mut last, Duration::from_secs(10)).await;
    let copies: usize = accepted(&app).values().map(|n| n - 1).sum();
    // At most what one process had in flight (4 lanes) or delivered but not yet deleted (a
    // delete batch), per kill.
    assert!(copies <= kills * 14, "{copies} copies after {kills} kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_route_sends_its_queue_elsewhere_while_the_topic_keeps_the_default() {
    let sqs = common::sqs().await;
    let (name, url) = queues::create_queue(&sqs, false).await;
    let app = TestApp::start().await;
    let tasks_app = TestApp::start().await;
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&url, &app).await;
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let topic = env["KAFKA_TOPICS"].clone();
    common::produce(&topic, vec![common::Produce::text(0, "k", "from-kafka")]).await;
    send(&sqs, &url, &bodies("q", 5)).await;
    let toml = format!("[[routes]]\nqueue = \"{name}\"\ndelivery_url = \"{}\"\n", tasks_app.url());
    let sidecar = Sidecar::start_with_file(&env, Some(&toml)).await;
    common::eventually(Duration::from_secs(30), "5 messages at the queue's application", || {
        std::future::ready((accepted(&tasks_app).len() == 5).then_some(()))
    })
    .await;
    common::eventually(Duration::from_secs(30), "the topic's record at the default application", || {
        std::future::ready(app.received().iter().any(|r| r.text() == "from-kafka").then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    sidecar.stop().await;
    assert!(accepted(&app).is_empty(), "no queue message at the default application");
    assert!(tasks_app.received().iter().all(|r| r.text() != "from-kafka"), "no topic record at the queue's");
}
