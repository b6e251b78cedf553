//! The RabbitMQ source against a real RabbitMQ (the test bed's `rabbitmq-server`): messages of a
//! classic queue delivered once with their facts and acknowledged, a retry then success and a
//! permanent failure rejected to the quorum queue's dead-letter exchange and archived, SIGTERM
//! of the real binary then a restart (nothing twice), SIGKILL then another consumer gets the
//! requeued messages (nothing lost), and connections closed by the broker mid-run (nothing
//! lost). No Kafka variable is set: each sidecar is RabbitMQ-only.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::Sidecar;
use crate::common::{self, amqp, process};

/// The environment of a RabbitMQ-only sidecar consuming `queue`.
fn env(queue: &str, app: &TestApp) -> BTreeMap<String, String> {
    [
        ("AMQP_URL", amqp::url()),
        ("AMQP_QUEUES", queue.to_string()),
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", "127.0.0.1:0".to_string()),
        ("SIDECAR_RETRY_INITIAL_BACKOFF", "50ms".to_string()),
        ("SIDECAR_RETRY_MAX_BACKOFF", "500ms".to_string()),
        ("SIDECAR_SHUTDOWN_GRACE", "5s".to_string()),
        ("SIDECAR_DELIVERY_TIMEOUT", "2s".to_string()),
        ("SIDECAR_LOG_FORMAT", "text".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// How many times the application accepted each body.
fn accepted(app: &TestApp) -> BTreeMap<String, usize> {
    common::accepted_bodies(app, "x-amqp-queue")
}

fn bodies(prefix: &str, count: usize) -> Vec<String> {
    common::bodies(prefix, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_queue_delivers_every_message_once_with_its_facts_then_acknowledges() {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("aq");
    amqp::declare(&channel, &queue, false).await;
    amqp::publish(&channel, &queue, &bodies("m", 30)).await;
    let app = TestApp::start().await;
    let sidecar = Sidecar::start(&env(&queue, &app)).await;
    common::eventually(Duration::from_secs(30), "30 messages delivered", || {
        std::future::ready((accepted(&app).len() == 30).then_some(()))
    })
    .await;
    let (status, ready) = common::get(&format!("{}/ready", sidecar.admin())).await;
    assert_eq!(status, 200, "ready without Kafka: {ready}");
    let (_, metrics) = common::get(&format!("{}/metrics", sidecar.admin())).await;
    assert!(
        metrics.contains(&format!(
            "msk_sidecar_records_delivered_total{{source=\"amqp\",topic=\"{queue}\"}} 30"
        )),
        "{metrics}"
    );
    sidecar.stop().await;
    assert_eq!(amqp::ready(&channel, &queue).await, 0, "every message acknowledged, none requeued");
    let counts = accepted(&app);
    assert!(counts.values().all(|n| *n == 1), "each message once: {counts:?}");
    let received = app.received();
    let first = received.iter().find(|r| r.text() == "m-0").expect("m-0");
    assert_eq!(first.header("x-amqp-queue"), Some(queue.as_str()));
    assert_eq!(first.header("x-amqp-exchange"), Some(""));
    assert_eq!(first.header("x-amqp-routing-key"), Some(queue.as_str()));
    assert_eq!(first.header("x-amqp-message-id"), Some("id-m-0"));
    assert_eq!(first.header("x-amqp-redelivered"), Some("false"));
    assert_eq!(first.header("x-amqp-header-kind"), Some("order"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("x-delivery-attempt"), Some("1"));
    assert!(first.header("msk-sidecar-amqp-deliveries").is_none(), "internal facts stay inside");
    let order: Vec<String> = received.iter().filter(|r| r.status == 200).map(|r| r.text()).collect();
    assert_eq!(order, bodies("m", 30), "queue order (SIDECAR_ORDERING=partition)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_quorum_queue_a_retry_succeeds_and_a_permanent_failure_goes_to_the_dead_letter_exchange_and_archive()
 {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("aq");
    let dead = amqp::declare(&channel, &queue, true).await;
    amqp::publish(&channel, &queue, &["flaky".to_string(), "poison".to_string(), "fine".to_string()]).await;
    let app = TestApp::start().await;
    let failed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    app.behave(move |r| match r.text().as_str() {
        "poison" => Reply::Status(400),
        "flaky" if !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) => Reply::Status(503),
        _ => Reply::Status(200),
    });
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&queue, &app);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let sidecar = Sidecar::start(&env).await;
    let letters =
        common::eventually(Duration::from_secs(30), "the poison message in the dead-letter queue", || {
            let (channel, dead) = (channel.clone(), dead.clone());
            async move {
                let letters = amqp::drain(&channel, &dead).await;
                (!letters.is_empty()).then_some(letters)
            }
        })
        .await;
    common::eventually(Duration::from_secs(10), "flaky and fine delivered", || {
        std::future::ready((accepted(&app).len() == 2).then_some(()))
    })
    .await;
    sidecar.stop().await;
    assert_eq!(amqp::ready(&channel, &queue).await, 0, "nothing left in the queue");
    let retried = app.received().into_iter().find(|r| r.status == 200 && r.text() == "flaky").expect("flaky");
    assert_eq!(retried.header("x-delivery-attempt"), Some("2"), "retried in the sidecar, unacknowledged");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "poison");
    let mut files = Vec::new();
    let mut stack = vec![archive.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    let key = files[0].strip_prefix(archive.path()).unwrap().to_string_lossy().into_owned();
    assert!(key.starts_with(&format!("amqp/{queue}/")) && key.contains("/id-poison-"), "{key}");
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(document["source_kind"], "amqp");
    assert_eq!(document["error_class"], "permanent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_requeues_what_is_not_done_and_a_restart_delivers_the_rest_once() {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("aq");
    amqp::declare(&channel, &queue, false).await;
    amqp::publish(&channel, &queue, &bodies("t", 40)).await;
    let app = TestApp::start().await;
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
    let mut env = env(&queue, &app);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", dir.path().display()));
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "1000".into());
    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "10 deliveries and retries", || {
        std::future::ready((accepted(&app).len() >= 10 && app.received().len() >= 15).then_some(()))
    })
    .await;
    process::signal(&child, "TERM");
    let (status, took) = process::wait(&mut child, Duration::from_secs(10)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
    assert!(took <= Duration::from_secs(5), "exited after {took:?}, grace 5s");
    assert_eq!(accepted(&app).len(), 10, "stopped mid-queue");
    assert_eq!(amqp::ready(&channel, &queue).await, 30, "the rest requeued at once");
    app.behave(|_| Reply::Status(200));
    let mut second = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "all 40 delivered", || {
        std::future::ready((accepted(&app).len() == 40).then_some(()))
    })
    .await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(10)).await;
    assert_eq!(amqp::ready(&channel, &queue).await, 0);
    let counts = accepted(&app);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates after SIGTERM: {duplicates:?}");
    let again = app.received().into_iter().find(|r| r.status == 200 && r.text() == "t-10").expect("t-10");
    assert_eq!(again.header("x-amqp-redelivered"), Some("true"));
    assert_eq!(again.header("x-delivery-attempt"), Some("2"), "the earlier delivery counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_another_consumer_gets_the_requeued_messages_and_nothing_is_lost() {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("aq");
    amqp::declare(&channel, &queue, false).await;
    amqp::publish(&channel, &queue, &bodies("k", 60)).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(50), 200));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut env = env(&queue, &app);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", dir.path().display()));
    env.insert("SIDECAR_ORDERING".into(), "none".into());
    env.insert("SIDECAR_MAX_IN_FLIGHT".into(), "8".into());
    let mut first = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "20 delivered", || {
        std::future::ready((accepted(&app).len() >= 20).then_some(()))
    })
    .await;
    process::signal(&first, "KILL");
    process::wait(&mut first, Duration::from_secs(10)).await;
    let mut second = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(40), "all 60 delivered", || {
        std::future::ready((accepted(&app).len() == 60).then_some(()))
    })
    .await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(10)).await;
    assert_eq!(amqp::ready(&channel, &queue).await, 0);
    let copies: usize = accepted(&app).values().map(|n| n - 1).sum();
    assert!(copies <= 8, "{copies} copies: more than the 8 in flight at the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_broker_mid_run_lose_nothing() {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("aq");
    amqp::declare(&channel, &queue, false).await;
    amqp::publish(&channel, &queue, &bodies("c", 80)).await;
    let ctl = |args: &[&str]| {
        let output = std::process::Command::new("bash")
            .arg("localstack/testbed.sh")
            .arg("rabbitmqctl")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("rabbitmqctl");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    // The sidecar connects as a user of its own, so the broker can close exactly its connection
    // (as a broker restart or failover would) and leave other tests' alone.
    let user = common::random_name("u");
    ctl(&["add_user", &user, "secret"]);
    ctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]);
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    let mut env = env(&queue, &app);
    let mut url = url::Url::parse(&amqp::url()).unwrap();
    url.set_username(&user).unwrap();
    url.set_password(Some("secret")).unwrap();
    env.insert("AMQP_URL".into(), url.to_string());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), "none".into());
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "20 delivered", || {
        std::future::ready((accepted(&app).len() >= 20).then_some(()))
    })
    .await;
    ctl(&["close_all_user_connections", &user, "the test closes them"]);
    common::eventually(Duration::from_secs(40), "all 80 delivered after the reconnect", || {
        std::future::ready((accepted(&app).len() == 80).then_some(()))
    })
    .await;
    let (_, ready) = common::get(&format!("{}/ready", sidecar.admin())).await;
    sidecar.stop().await;
    ctl(&["delete_user", &user]);
    assert!(!ready.contains("secret"), "no credentials in readiness: {ready}");
    assert_eq!(amqp::ready(&channel, &queue).await, 0, "nothing left or lost");
    // Only what was in flight when the connection closed may come twice (one lane at a time).
    let copies: usize = accepted(&app).values().map(|n| n - 1).sum();
    assert!(copies <= 1, "{copies} copies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_connecting_to_a_broker_that_says_nothing_exits_within_the_grace() {
    // A listener that accepts and never answers: the AMQP handshake hangs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let app = TestApp::start().await;
    let mut env = env("silent", &app);
    env.insert("AMQP_URL".into(), format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), "none".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    process::signal(&child, "TERM");
    let (status, took) = process::wait(&mut child, Duration::from_secs(15)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
    assert!(took <= Duration::from_secs(5), "exited after {took:?}, grace 5s");
}
