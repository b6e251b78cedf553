//! Faults of the Redis Streams and RabbitMQ sources: the server black-holed for 20 s (a proxy
//! that accepts and answers nothing) while entries flow, and the RabbitMQ broker restarted,
//! judged by the oracle like every fault test. Entry `m-<i>` is record `(0, i)` of one lane (the stream or queue, in order);
//! "committed past" means acknowledged, which an empty pending list (Redis) or an empty queue
//! with no consumer holding anything (RabbitMQ) says of every message at the end. Every message
//! must be delivered, in order, none dead-lettered (an outage is not the message's fault), none
//! pending 90 s after the heal, and copies only from acknowledgements the outage swallowed.

use std::time::{Duration, Instant};

use crate::common::app::{Reply, TestApp};
use crate::common::oracle::{Cause, Evidence, Lanes, Oracle};
use crate::common::proxy::{FaultProxy, Mode};
use crate::common::sidecar::Sidecar;
use crate::common::{self, amqp, redis as streams};

const MESSAGES: usize = 200;
const IN_FLIGHT: usize = 8;

fn bodies() -> Vec<String> {
    (0..MESSAGES).map(|i| format!("m-{i}")).collect()
}

fn oracle() -> Oracle {
    let mut oracle = Oracle::default();
    for i in 0..MESSAGES {
        oracle.produced(0, i as i64, None);
    }
    oracle
}

/// Every 2xx answer to a message of `header`'s source, as `(0, i)`, in the order answered.
fn accepted(app: &TestApp, header: &str) -> Vec<(i32, i64)> {
    app.received()
        .iter()
        .filter(|r| r.status == 200 && r.header(header).is_some())
        .filter_map(|r| r.text().strip_prefix("m-").and_then(|i| i.parse().ok()).map(|i| (0, i)))
        .collect()
}

fn distinct(accepted: &[(i32, i64)]) -> usize {
    accepted.iter().collect::<std::collections::BTreeSet<_>>().len()
}

/// Black-holes `proxy` for 20 s once 50 messages are through, heals it, and waits (90 s at
/// most) until `settled` says the source is done; how long that took after the heal.
async fn black_hole<F, Fut>(proxy: &FaultProxy, app: &TestApp, header: &str, settled: F) -> Option<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    common::eventually(Duration::from_secs(60), "50 messages before the fault", || {
        std::future::ready((distinct(&accepted(app, header)) >= 50).then_some(()))
    })
    .await;
    proxy.set(Mode::BlackHole);
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.heal();
    let healed = Instant::now();
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if distinct(&accepted(app, header)) == MESSAGES && settled().await {
                return healed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .ok()
}

fn judge(name: &str, evidence: &Evidence, settled: Option<Duration>, proxy: &FaultProxy) {
    let verdict = oracle().judge(evidence, Lanes::Partition);
    println!("{name}: settled {settled:?} after the heal");
    assert!(evidence.dead_letters.is_empty(), "an outage made dead letters: {:?}", evidence.dead_letters);
    verdict.assert_clean(name, &[Cause::AckLost]);
    assert!(settled.is_some(), "not done within 90 s of the heal (a stall)");
    let copies = verdict.extra_deliveries();
    assert!(copies <= 2 * IN_FLIGHT, "{copies} copies: more than lost acknowledgements explain");
    assert!(
        proxy.counters.connections.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "traffic bypassed the proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_black_holed_loses_nothing_keeps_order_and_dead_letters_nothing() {
    let mut redis = streams::connect().await;
    let stream = common::random_name("rfault");
    let group = common::random_name("g");
    streams::add(&mut redis, &stream, &bodies()).await;
    let upstream = streams::url().trim_start_matches("redis://").parse().expect("Redis address");
    let proxy = FaultProxy::start(upstream).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    let env: std::collections::BTreeMap<String, String> = [
        ("REDIS_URL", format!("redis://{}", proxy.address())),
        ("REDIS_STREAMS", stream.clone()),
        ("REDIS_CONSUMER_GROUP", group.clone()),
        ("REDIS_CONSUMER_NAME", "c1".to_string()),
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", "127.0.0.1:0".to_string()),
        ("SIDECAR_MAX_IN_FLIGHT", IN_FLIGHT.to_string()),
        ("SIDECAR_DLQ_ARCHIVE", "none".to_string()),
        ("SIDECAR_RETRY_MAX_BACKOFF", "2s".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sidecar = Sidecar::start(&env).await;
    let pending = || {
        let (mut redis, stream, group) = (redis.clone(), stream.clone(), group.clone());
        async move { streams::pending(&mut redis, &stream, &group).await }
    };
    let settled = black_hole(&proxy, &app, "x-redis-stream", || async { pending().await == 0 }).await;
    sidecar.stop().await;
    let letters = streams::entries(&mut redis.clone(), &format!("{stream}.dlq")).await;
    let dead: Vec<(i32, i64)> = letters
        .iter()
        .filter_map(|(_, f)| f.get("data")?.strip_prefix("m-")?.parse().ok().map(|i| (0, i)))
        .collect();
    let evidence = Evidence {
        accepted: accepted(&app, "x-redis-stream"),
        dead_letters: dead,
        archived: None,
        committed: vec![if pending().await == 0 { MESSAGES as i64 } else { -1 }],
        null_target: false,
    };
    judge("Redis black-holed 20 s", &evidence, settled, &proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_black_holed_loses_nothing_keeps_order_and_dead_letters_nothing() {
    let (_connection, channel) = amqp::channel().await;
    let queue = common::random_name("afault");
    let dead_queue = amqp::declare(&channel, &queue, false).await;
    amqp::publish(&channel, &queue, &bodies()).await;
    let mut url = url::Url::parse(&amqp::url()).unwrap();
    let upstream =
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().expect("broker address");
    let proxy = FaultProxy::start(upstream).await;
    let (host, port) =
        proxy.address().rsplit_once(':').map(|(h, p)| (h.to_string(), p.parse().unwrap())).unwrap();
    url.set_host(Some(&host)).unwrap();
    url.set_port(Some(port)).unwrap();
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    let env: std::collections::BTreeMap<String, String> = [
        ("AMQP_URL", url.to_string()),
        ("AMQP_QUEUES", queue.clone()),
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", "127.0.0.1:0".to_string()),
        ("SIDECAR_MAX_IN_FLIGHT", IN_FLIGHT.to_string()),
        ("SIDECAR_DLQ_ARCHIVE", "none".to_string()),
        ("SIDECAR_RETRY_MAX_BACKOFF", "2s".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sidecar = Sidecar::start(&env).await;
    let settled = black_hole(&proxy, &app, "x-amqp-queue", || async { true }).await;
    sidecar.stop().await;
    // Stopped: every message not acknowledged is back in the queue.
    let left = amqp::ready(&channel, &queue).await;
    let dead: Vec<(i32, i64)> = amqp::drain(&channel, &dead_queue)
        .await
        .iter()
        .filter_map(|(body, _)| body.strip_prefix("m-")?.parse().ok().map(|i| (0, i)))
        .collect();
    let evidence = Evidence {
        accepted: accepted(&app, "x-amqp-queue"),
        dead_letters: dead,
        archived: None,
        committed: vec![if left == 0 { MESSAGES as i64 } else { -1 }],
        null_target: false,
    };
    judge("RabbitMQ black-holed 20 s", &evidence, settled, &proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_broker_restarted_mid_run_loses_nothing() {
    let queue = common::random_name("arestart");
    {
        let (_connection, channel) = amqp::channel().await;
        amqp::declare(&channel, &queue, false).await;
        amqp::publish(&channel, &queue, &bodies()).await;
    }
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(20), 200));
    let env: std::collections::BTreeMap<String, String> = [
        ("AMQP_URL", amqp::url()),
        ("AMQP_QUEUES", queue.clone()),
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", "127.0.0.1:0".to_string()),
        ("SIDECAR_MAX_IN_FLIGHT", IN_FLIGHT.to_string()),
        ("SIDECAR_DLQ_ARCHIVE", "none".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(60), "50 messages before the restart", || {
        std::future::ready((distinct(&accepted(&app, "x-amqp-queue")) >= 50).then_some(()))
    })
    .await;
    // The broker's application stops and starts again (the node stays up): every connection
    // drops, unacknowledged messages go back to the (durable) queue.
    for step in ["stop_app", "start_app"] {
        let output = std::process::Command::new("bash")
            .args(["localstack/testbed.sh", "rabbitmqctl", step])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("rabbitmqctl");
        assert!(output.status.success(), "{step}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let restarted = Instant::now();
    let settled = tokio::time::timeout(Duration::from_secs(90), async {
        while distinct(&accepted(&app, "x-amqp-queue")) < MESSAGES {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        restarted.elapsed()
    })
    .await
    .ok();
    sidecar.stop().await;
    let (_connection, channel) = amqp::channel().await;
    let left = amqp::ready(&channel, &queue).await;
    let evidence = Evidence {
        accepted: accepted(&app, "x-amqp-queue"),
        dead_letters: Vec::new(),
        archived: None,
        committed: vec![if left == 0 { MESSAGES as i64 } else { -1 }],
        null_target: false,
    };
    let verdict = oracle().judge(&evidence, Lanes::Partition);
    println!("RabbitMQ restarted: settled {settled:?} after the restart");
    verdict.assert_clean("RabbitMQ broker restarted", &[Cause::AckLost]);
    assert!(settled.is_some(), "not all delivered within 90 s of the restart");
    assert!(verdict.extra_deliveries() <= 2 * IN_FLIGHT, "{} copies", verdict.extra_deliveries());
}
