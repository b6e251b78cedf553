//! The Redis Streams source against a real Redis 7 (the test bed's `redis-server`): entries
//! delivered once with their facts and acknowledged, a retry then success, a permanent failure
//! dead-lettered to `<stream>.dlq` and the archive and acknowledged, SIGTERM of the real binary
//! then a restart (nothing twice), and SIGKILL then a second consumer that claims the first's
//! pending entries (nothing lost). No Kafka variable is set: each sidecar is Redis-only.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::Sidecar;
use crate::common::{self, process, redis as streams};

/// The environment of a Redis-only sidecar reading `stream` as `group`/`consumer`.
fn env(stream: &str, group: &str, consumer: &str, app: &TestApp) -> BTreeMap<String, String> {
    [
        ("REDIS_URL", streams::url()),
        ("REDIS_STREAMS", stream.to_string()),
        ("REDIS_CONSUMER_GROUP", group.to_string()),
        ("REDIS_CONSUMER_NAME", consumer.to_string()),
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
    common::accepted_bodies(app, "x-redis-stream")
}

fn bodies(prefix: &str, count: usize) -> Vec<String> {
    common::bodies(prefix, count)
}

/// Waits (at most `patience`) until `group` has nothing pending on `stream`.
async fn wait_acknowledged(
    redis: &redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    patience: Duration,
) {
    common::eventually(patience, "every entry acknowledged", || {
        let (mut redis, stream, group) = (redis.clone(), stream.to_string(), group.to_string());
        async move { (streams::pending(&mut redis, &stream, &group).await == 0).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_is_delivered_once_with_its_facts_then_acknowledged() {
    let mut redis = streams::connect().await;
    let stream = common::random_name("rs");
    let group = common::random_name("g");
    let ids = streams::add(&mut redis, &stream, &bodies("e", 30)).await;
    let app = TestApp::start().await;
    let mut env = env(&stream, &group, "c1", &app);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), "none".into());
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "30 entries delivered", || {
        std::future::ready((accepted(&app).len() == 30).then_some(()))
    })
    .await;
    wait_acknowledged(&redis, &stream, &group, Duration::from_secs(10)).await;
    let (status, ready) = common::get(&format!("{}/ready", sidecar.admin())).await;
    assert_eq!(status, 200, "ready without Kafka: {ready}");
    let (_, metrics) = common::get(&format!("{}/metrics", sidecar.admin())).await;
    assert!(
        metrics.contains(&format!(
            "msk_sidecar_records_delivered_total{{source=\"redis\",topic=\"{stream}\"}} 30"
        )),
        "{metrics}"
    );
    sidecar.stop().await;
    let counts = accepted(&app);
    assert!(counts.values().all(|n| *n == 1), "each entry once: {counts:?}");
    let received = app.received();
    let first = received.iter().find(|r| r.text() == "e-0").expect("e-0");
    assert_eq!(first.header("x-redis-stream"), Some(stream.as_str()));
    assert_eq!(first.header("x-redis-id"), Some(ids[0].as_str()));
    assert_eq!(first.header("x-redis-delivery-count"), Some("1"));
    assert_eq!(first.header("x-redis-field-kind"), Some("order"));
    assert_eq!(first.header("x-delivery-attempt"), Some("1"));
    assert!(first.header("x-kafka-topic").is_none(), "a Redis entry has no Kafka coordinates");
    // Order per stream (SIDECAR_ORDERING=partition): the application saw the entries in order.
    let order: Vec<String> = received.iter().filter(|r| r.status == 200).map(|r| r.text()).collect();
    assert_eq!(order, bodies("e", 30), "stream order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_then_success_and_a_permanent_failure_dead_lettered_to_the_dlq_stream_and_archive() {
    let mut redis = streams::connect().await;
    let stream = common::random_name("rs");
    let group = common::random_name("g");
    let ids =
        streams::add(&mut redis, &stream, &["flaky".to_string(), "poison".to_string(), "fine".to_string()])
            .await;
    let app = TestApp::start().await;
    let failed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    app.behave(move |r| match r.text().as_str() {
        "poison" => Reply::Status(400),
        "flaky" if !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) => Reply::Status(503),
        _ => Reply::Status(200),
    });
    let archive = tempfile::tempdir().unwrap();
    let mut env = env(&stream, &group, "c1", &app);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.path().display()));
    let sidecar = Sidecar::start(&env).await;
    let dlq = format!("{stream}.dlq");
    let letters = common::eventually(Duration::from_secs(30), "a dead letter in the dlq stream", || {
        let mut redis = redis.clone();
        let dlq = dlq.clone();
        async move {
            let letters = streams::entries(&mut redis, &dlq).await;
            (!letters.is_empty()).then_some(letters)
        }
    })
    .await;
    common::eventually(Duration::from_secs(10), "flaky and fine delivered, all acknowledged", || {
        let mut redis = redis.clone();
        let (stream, group) = (stream.clone(), group.clone());
        let done = accepted(&app).len() == 2;
        async move { (done && streams::pending(&mut redis, &stream, &group).await == 0).then_some(()) }
    })
    .await;
    sidecar.stop().await;
    let retried =
        app.received().into_iter().find(|r| r.status == 200 && r.text() == "flaky").expect("flaky delivered");
    assert_eq!(retried.header("x-delivery-attempt"), Some("2"), "the second attempt");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let fields = &letters[0].1;
    assert_eq!(fields.get("data").map(String::as_str), Some("poison"));
    assert_eq!(fields.get("kind").map(String::as_str), Some("order"));
    assert_eq!(fields.get("dlq-error-class").map(String::as_str), Some("permanent"));
    assert_eq!(fields.get("dlq-source-id"), Some(&ids[1]));
    assert_eq!(fields.get("dlq-consumer-group"), Some(&group));
    let key = fields.get("dlq-archive-key").expect("the archive key");
    assert!(key.starts_with(&format!("redis/{stream}/")), "{key}");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.path().join(key)).expect("the archive object"))
            .unwrap();
    assert_eq!(document["source_kind"], "redis");
    assert_eq!(document["source_stream"], stream.as_str());
    assert_eq!(document["source_message_id"], ids[1].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_what_is_not_done_and_a_restart_delivers_the_rest_once() {
    let mut redis = streams::connect().await;
    let stream = common::random_name("rs");
    let group = common::random_name("g");
    streams::add(&mut redis, &stream, &bodies("t", 40)).await;
    let app = TestApp::start().await;
    // Ten entries go through, then the application fails: the next entry is retrying (pending,
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
    let mut env = env(&stream, &group, "c1", &app);
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
    assert_eq!(accepted(&app).len(), 10, "stopped mid-stream");
    app.behave(|_| Reply::Status(200));
    // The restart under the same name reads its own pending entries first.
    let mut second = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "all 40 delivered", || {
        std::future::ready((accepted(&app).len() == 40).then_some(()))
    })
    .await;
    wait_acknowledged(&redis, &stream, &group, Duration::from_secs(10)).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(10)).await;
    let counts = accepted(&app);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicates after SIGTERM: {duplicates:?}");
    let again = app.received().into_iter().find(|r| r.status == 200 && r.text() == "t-10").expect("t-10");
    assert!(
        again.header("x-redis-delivery-count").and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| c >= 2),
        "the entry handed back counts its earlier delivery: {:?}",
        again.header("x-redis-delivery-count")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_a_second_consumer_claims_the_pending_entries_and_nothing_is_lost() {
    let mut redis = streams::connect().await;
    let stream = common::random_name("rs");
    let group = common::random_name("g");
    streams::add(&mut redis, &stream, &bodies("k", 60)).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(50), 200));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut first_env = env(&stream, &group, "dead", &app);
    first_env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", dir.path().display()));
    first_env.insert("SIDECAR_ORDERING".into(), "none".into());
    first_env.insert("SIDECAR_MAX_IN_FLIGHT".into(), "8".into());
    let mut first = process::spawn(&first_env, &log);
    common::eventually(Duration::from_secs(30), "20 delivered", || {
        std::future::ready((accepted(&app).len() >= 20).then_some(()))
    })
    .await;
    process::signal(&first, "KILL");
    process::wait(&mut first, Duration::from_secs(10)).await;
    let before = accepted(&app).len();
    // Another replica: it claims what the dead one left pending after REDIS_CLAIM_MIN_IDLE.
    let mut second_env = first_env.clone();
    second_env.insert("REDIS_CONSUMER_NAME".into(), "alive".into());
    second_env.insert("REDIS_CLAIM_MIN_IDLE".into(), "3s".into());
    let mut second = process::spawn(&second_env, &log);
    common::eventually(Duration::from_secs(40), "all 60 delivered", || {
        std::future::ready((accepted(&app).len() == 60).then_some(()))
    })
    .await;
    wait_acknowledged(&redis, &stream, &group, Duration::from_secs(10)).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(10)).await;
    let counts = accepted(&app);
    let copies: usize = counts.values().map(|n| n - 1).sum();
    assert!(copies <= 8, "{copies} copies: more than the 8 in flight at the kill");
    let claimed = app
        .received()
        .into_iter()
        .filter(|r| r.status == 200 && r.header("x-redis-delivery-count").is_some_and(|c| c != "1"))
        .count();
    assert!(claimed >= 1 || before == 60, "entries pending at the kill were claimed ({claimed})");
}

/// A Redis server of the test's own that keeps its data across a restart (append-only file),
/// on a free port: the test bed's server keeps nothing, and other tests use it.
struct DurableRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl DurableRedis {
    fn start() -> DurableRedis {
        let mut server =
            DurableRedis { port: common::free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        server.spawn();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (installed by localstack/testbed.sh up)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGTERM: it flushes its append-only file) and starts it again.
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        std::thread::sleep(Duration::from_millis(500));
        self.spawn();
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_run_loses_nothing() {
    let mut server = DurableRedis::start();
    let mut redis =
        redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.expect("connect");
    let stream = common::random_name("rs");
    let group = common::random_name("g");
    streams::add(&mut redis, &stream, &bodies("r", 60)).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(30), 200));
    let mut env = env(&stream, &group, "c1", &app);
    env.insert("REDIS_URL".into(), server.url());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), "none".into());
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(30), "20 delivered", || {
        std::future::ready((accepted(&app).len() >= 20).then_some(()))
    })
    .await;
    server.restart();
    common::eventually(Duration::from_secs(60), "all 60 delivered after the restart", || {
        std::future::ready((accepted(&app).len() == 60).then_some(()))
    })
    .await;
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("reconnect");
    wait_acknowledged(&redis, &stream, &group, Duration::from_secs(20)).await;
    let _ = &mut redis;
    sidecar.stop().await;
    let counts = accepted(&app);
    let copies: usize = counts.values().map(|n| n - 1).sum();
    // One lane (stream order): at most the entry whose acknowledgement the restart cut off.
    assert!(copies <= 1, "{copies} copies: {counts:?}");
    let order: Vec<String> = app.received().iter().filter(|r| r.status == 200).map(|r| r.text()).collect();
    let mut first_seen = Vec::new();
    for body in order {
        if !first_seen.contains(&body) {
            first_seen.push(body);
        }
    }
    assert_eq!(first_seen, bodies("r", 60), "stream order across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_route_sends_its_stream_elsewhere_while_the_other_keeps_the_default() {
    let mut redis = streams::connect().await;
    let (routed, other) = (common::random_name("rs"), common::random_name("rs"));
    let group = common::random_name("g");
    streams::add(&mut redis, &routed, &bodies("a", 5)).await;
    streams::add(&mut redis, &other, &bodies("b", 5)).await;
    let (default_app, route_app) = (TestApp::start().await, TestApp::start().await);
    let mut env = env(&format!("{routed},{other}"), &group, "c1", &default_app);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), "none".into());
    let toml = format!("[[routes]]\nstream = \"{routed}\"\ndelivery_url = \"{}\"\n", route_app.url());
    let sidecar = Sidecar::start_with_file(&env, Some(&toml)).await;
    common::eventually(Duration::from_secs(30), "both streams delivered", || {
        std::future::ready(
            (accepted(&default_app).len() == 5 && accepted(&route_app).len() == 5).then_some(()),
        )
    })
    .await;
    sidecar.stop().await;
    assert!(accepted(&route_app).keys().all(|b| b.starts_with("a-")), "{:?}", accepted(&route_app));
    assert!(accepted(&default_app).keys().all(|b| b.starts_with("b-")), "{:?}", accepted(&default_app));
}

/// A Redis server stand-in that records each command (as text arguments) and answers `+OK` to
/// `AUTH`, `HELLO`, `CLIENT` and `XGROUP`, nil to anything else (no entries).
async fn recording_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let commands = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = commands.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut line = String::new();
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(count) = line.trim().strip_prefix('*').and_then(|n| n.parse::<usize>().ok())
                    else {
                        return;
                    };
                    let mut args = Vec::new();
                    for _ in 0..count {
                        let mut header = String::new();
                        read.read_line(&mut header).await.unwrap();
                        let len: usize = header.trim().trim_start_matches('$').parse().unwrap();
                        let mut bytes = vec![0; len + 2];
                        read.read_exact(&mut bytes).await.unwrap();
                        args.push(String::from_utf8_lossy(&bytes[..len]).into_owned());
                    }
                    let name = args.first().map(|a| a.to_ascii_uppercase()).unwrap_or_default();
                    recorded.lock().unwrap().push(args);
                    let answer: &[u8] = match name.as_str() {
                        "AUTH" | "HELLO" | "CLIENT" | "XGROUP" => b"+OK\r\n",
                        _ => b"*-1\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, commands)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_iam_each_connection_authenticates_with_the_token_botocore_would_sign() {
    let (port, commands) = recording_server().await;
    let app = TestApp::start().await;
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let mut env = env("orders", "g", "c1", &app);
    env.insert("REDIS_URL".into(), format!("redis://app-user@127.0.0.1:{port}"));
    env.insert("REDIS_AUTH".into(), "iam".into());
    env.insert("REDIS_IAM_CACHE".into(), "orders-cache".into());
    env.insert("AWS_REGION".into(), "eu-west-1".into());
    env.insert("AWS_ACCESS_KEY_ID".into(), "AKIAIOSFODNN7EXAMPLE".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), secret.into());
    env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    let auth = common::eventually(Duration::from_secs(20), "an AUTH command", || {
        let auth = commands.lock().unwrap().iter().find(|c| c[0].eq_ignore_ascii_case("AUTH")).cloned();
        std::future::ready(auth)
    })
    .await;
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(10)).await;
    assert_eq!(auth.len(), 3, "AUTH <user> <token>: {auth:?}");
    assert_eq!(auth[1], "app-user");
    let token = &auth[2];
    // The same token from botocore's presigner, signed at the instant the sidecar signed.
    let date = token.split("X-Amz-Date=").nth(1).and_then(|d| d.split('&').next()).expect("X-Amz-Date");
    let at = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    );
    let venv = std::env::var("TESTBED_VENV").expect("TESTBED_VENV");
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/cache_signer.py"))
        .args([
            "--service",
            "elasticache",
            "--name",
            "orders-cache",
            "--user",
            "app-user",
            "--region",
            "eu-west-1",
        ])
        .args(["--access-key", "AKIAIOSFODNN7EXAMPLE", "--secret-key", secret, "--time", &at])
        .output()
        .expect("botocore");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(token, String::from_utf8_lossy(&out.stdout).trim(), "the token botocore signs");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("X-Amz-Signature"), "no token in the log");
}
