//! Redis (`rediss://`, ElastiCache in-transit encryption) and RabbitMQ (`amqps://`, Amazon MQ)
//! over TLS against the test bed's servers, whose certificate comes from the test bed's own CA:
//! the real binary does not connect while that CA is not trusted (not ready, nothing delivered,
//! nothing acknowledged), and delivers everything once `SSL_CERT_FILE` names it — the same
//! variable a user with a private CA sets. Public-CA servers (ElastiCache, Amazon MQ) need
//! nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::app::TestApp;
use crate::common::{self, amqp, process, redis as streams};

fn testbed(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test bed (localstack/testbed.sh up) and source .testbed/env")
    })
}

fn base_env(app: &TestApp, admin: &str) -> BTreeMap<String, String> {
    [
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", admin.to_string()),
        ("SIDECAR_SHUTDOWN_GRACE", "5s".to_string()),
        ("SIDECAR_DELIVERY_TIMEOUT", "2s".to_string()),
        ("SIDECAR_LOG_FORMAT", "text".to_string()),
        ("SIDECAR_DLQ_ARCHIVE", "none".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs the binary with `env` and no trust in the test bed's CA: after 4 s it must not be ready
/// and the application must have seen nothing. Then with `SSL_CERT_FILE`: every body delivered.
async fn untrusted_then_trusted(
    mut env: BTreeMap<String, String>,
    app: &TestApp,
    admin: &str,
    header: &str,
    want: usize,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ready = reqwest::get(format!("http://{admin}/ready")).await.expect("admin answers");
    let status = ready.status();
    let reasons = ready.text().await.unwrap_or_default();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status, 503, "ready over TLS with an untrusted certificate: {reasons}\n{log_text}");
    assert!(reasons.contains("certificate"), "/ready names the certificate problem: {reasons}");
    assert!(app.received().is_empty(), "delivered over an unverified connection");
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(10)).await;

    env.insert("SSL_CERT_FILE".into(), testbed("TESTBED_CA_FILE"));
    let mut child = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "every message delivered over TLS", || {
        std::future::ready((common::accepted_bodies(app, header).len() == want).then_some(()))
    })
    .await;
    let (status, reasons) = common::get(&format!("http://{admin}/ready")).await;
    assert_eq!(status, 200, "ready over TLS: {reasons}");
    process::signal(&child, "TERM");
    let (status, _) = process::wait(&mut child, Duration::from_secs(10)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}; log:\n{log_text}");
    let counts = common::accepted_bodies(app, header);
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_connects_only_to_a_trusted_certificate_and_then_delivers_everything() {
    let mut redis = streams::connect().await;
    let stream = common::random_name("tls");
    let group = common::random_name("g");
    streams::add(&mut redis, &stream, &common::bodies("s", 12)).await;
    let app = TestApp::start().await;
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut env = base_env(&app, &admin);
    env.insert("REDIS_URL".into(), testbed("TESTBED_REDIS_TLS_URL"));
    env.insert("REDIS_STREAMS".into(), stream.clone());
    env.insert("REDIS_CONSUMER_GROUP".into(), group.clone());
    env.insert("REDIS_CONSUMER_NAME".into(), "tls".into());
    untrusted_then_trusted(env, &app, &admin, "x-redis-stream", 12).await;
    assert_eq!(streams::pending(&mut redis, &stream, &group).await, 0, "every entry acknowledged over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_over_tls_connects_only_to_a_trusted_certificate_and_then_delivers_everything() {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("tlsq");
    amqp::declare(&channel, &queue, false).await;
    amqp::publish(&channel, &queue, &common::bodies("q", 12)).await;
    let app = TestApp::start().await;
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut env = base_env(&app, &admin);
    env.insert("AMQP_URL".into(), testbed("TESTBED_AMQP_TLS_URL"));
    env.insert("AMQP_QUEUES".into(), queue.clone());
    untrusted_then_trusted(env, &app, &admin, "x-amqp-queue", 12).await;
    common::eventually(Duration::from_secs(10), "the queue empty and nothing unacknowledged", || {
        let channel = channel.clone();
        let queue = queue.clone();
        async move { (amqp::ready(&channel, &queue).await == 0).then_some(()) }
    })
    .await;
}
