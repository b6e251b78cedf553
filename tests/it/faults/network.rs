//! Network faults between the sidecar and its peers: the broker black-holed for 20 s and its
//! connections reset at random (a tansu broker that advertises the fault proxy, so every client
//! comes back through it), the application resetting connections mid-body and black-holed
//! (timeouts, not refusals).

use std::time::Duration;

use super::Report;
use crate::common::app::{Reply, TestApp};
use crate::common::oracle::{Cause, Lanes, Oracle};
use crate::common::proxy::{FaultProxy, Mode};
use crate::common::sidecar::{self, Sidecar};
use crate::common::tansu::Tansu;
use crate::common::{self};

/// A private tansu broker behind a fault proxy: the broker advertises the proxy's address.
pub struct ProxiedBroker {
    /// The broker (kept only to be killed on drop: clients reach it through the proxy).
    _tansu: Tansu,
    /// The proxy in front of it.
    pub proxy: FaultProxy,
}

impl ProxiedBroker {
    /// Starts both, with `topics` (name, partitions) created.
    pub async fn start(topics: &[(&str, i32)]) -> ProxiedBroker {
        let port = common::free_port();
        let tansu = Tansu::start(&format!("127.0.0.1:{port}")).await;
        let upstream = tansu.bootstrap().parse().expect("tansu address");
        let proxy = FaultProxy::start_on(format!("127.0.0.1:{port}").parse().expect("addr"), upstream).await;
        for (topic, partitions) in topics {
            tansu.create_topic(topic, *partitions).await;
        }
        ProxiedBroker { _tansu: tansu, proxy }
    }

    /// What clients use: the proxy.
    pub fn bootstrap(&self) -> String {
        self.proxy.address()
    }
}

/// A sidecar consuming a 3-partition topic on a proxied broker into `app`, with `fault` injected
/// once records flow and `during` more records produced (through the proxy) while it lasts;
/// judged when every record is done (at most 90 s after the fault).
pub async fn broker_run(
    name: &str,
    app: &TestApp,
    during: usize,
    fault: impl AsyncFnOnce(&ProxiedBroker) -> Vec<(&'static str, u64)>,
) -> Report {
    let topic = common::random_name("netfault");
    let dlq = format!("{topic}.dlq");
    let broker = ProxiedBroker::start(&[(&topic, 3), (&dlq, 1)]).await;
    let mut oracle = Oracle::default();
    super::produce(&broker.bootstrap(), &topic, 3, 450, 30, 0, &mut oracle).await;
    let group = common::random_name("g");
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("KAFKA_BROKERS".into(), broker.bootstrap());
    let sidecar = Sidecar::start(&env).await;
    let before = app.accepted().len();
    common::eventually(Duration::from_secs(60), "the run to start", || {
        std::future::ready((app.accepted().len() >= before + 30).then_some(()))
    })
    .await;
    let background = (during > 0).then(|| {
        let (bootstrap, topic) = (broker.bootstrap(), topic.clone());
        tokio::spawn(async move {
            let mut more = Oracle::default();
            super::produce(&bootstrap, &topic, 3, during, 30, 450, &mut more).await;
            more
        })
    });
    let faults = fault(&broker).await;
    broker.proxy.heal();
    if let Some(background) = background {
        oracle.produced.extend(background.await.expect("the producer during the fault").produced);
    }
    let bootstrap = broker.bootstrap();
    let (g, t) = (group.clone(), topic.clone());
    let settled = super::settle(
        move || common::committed_at(&bootstrap, &g, &t, 3),
        &super::ends(&oracle, 3),
        Duration::from_secs(90),
    )
    .await;
    let lost = common::lost_rebalances(&sidecar.running().metrics.render_prometheus()).unwrap_or(0);
    sidecar.stop().await;
    let letters = common::consume_available_at(&broker.bootstrap(), &dlq, Duration::from_secs(1)).await;
    let committed = common::committed_at(&broker.bootstrap(), &group, &topic, 3);
    let evidence = super::evidence(Some(app), &letters, None, committed);
    Report {
        name: name.to_string(),
        verdict: oracle.judge(&evidence, Lanes::Partition),
        causes: if lost > 0 { vec![Cause::LostAssignment] } else { vec![] },
        faults,
        settled,
        peak_rss_kib: 0,
        failed_checks: vec![],
        // A lost assignment redelivers what was in flight since the last commit: not bounded
        // by anything the test controls, but only with that cause.
        duplicate_bound: None,
    }
}

/// The broker black-holed for `length` while records flow.
pub async fn broker_black_hole(length: Duration) -> Report {
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(30), 200));
    broker_run(&format!("broker black-holed {length:?}"), &app, 150, async |broker| {
        broker.proxy.set(Mode::BlackHole);
        tokio::time::sleep(length).await;
        vec![("broker black hole", 1)]
    })
    .await
}

/// The broker's connections reset `times` times at random while records flow.
pub async fn broker_resets(times: usize) -> Report {
    let app = TestApp::start().await;
    app.behave(|_| Reply::Slow(Duration::from_millis(10), 200));
    // Nothing produced during the resets: a producer retrying through a reset may write a record
    // twice, at an offset the oracle does not know.
    broker_run("broker connections reset at random", &app, 0, async |broker| {
        for _ in 0..times {
            tokio::time::sleep(Duration::from_millis(rand::random_range(200..1500))).await;
            broker.proxy.reset_all();
        }
        vec![("broker connection resets", broker.proxy.resets())]
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_black_holed_for_20_seconds_mid_run() {
    broker_black_hole(Duration::from_secs(20)).await.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connections_reset_at_random() {
    let report = broker_resets(8).await;
    assert!(report.faults[0].1 > 0, "the fault happened");
    report.check();
}

/// How many requests the sidecar has in flight at once in these runs: one per partition.
const LANES: usize = 3;

/// A sidecar delivering through a proxy in front of the application answering `reply`; `fault`
/// breaks the proxy while records flow and returns the faults and how many extra deliveries they
/// can explain. `AnswerLost` is the only cause for a duplicate, and an application fault must
/// make no dead letter.
pub async fn application_run(
    name: &str,
    reply: Reply,
    fault: impl AsyncFnOnce(&FaultProxy) -> (Vec<(&'static str, u64)>, usize),
) -> Report {
    let (topic, dlq) = super::topics("appfault", 3).await;
    let mut oracle = Oracle::default();
    super::produce(&common::bootstrap(), &topic, 3, 300, 30, 0, &mut oracle).await;
    let app = TestApp::start().await;
    app.behave(move |_| reply.clone());
    let proxy = FaultProxy::start(app.addr).await;
    let group = common::random_name("g");
    let url = format!("http://{}/events", proxy.address());
    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, &url)).await;
    common::eventually(Duration::from_secs(60), "the run to start", || {
        std::future::ready((app.accepted().len() >= 20).then_some(()))
    })
    .await;
    let (faults, duplicate_bound) = fault(&proxy).await;
    proxy.heal();
    let settled = super::settle_group(&group, &topic, &oracle, 3, Duration::from_secs(90)).await;
    let retried = sidecar.running().metrics.total(|c| c.retried.load(std::sync::atomic::Ordering::Relaxed));
    sidecar.stop().await;
    let letters = common::consume_available(&dlq, Duration::from_secs(1)).await;
    let committed = common::committed(&group, &topic, 3);
    let verdict = oracle.judge(&super::evidence(Some(&app), &letters, None, committed), Lanes::Partition);
    let mut failed_checks = vec![];
    if !letters.is_empty() {
        failed_checks.push(format!(
            "an application fault made {} dead letters: {:?}",
            letters.len(),
            super::by_class(&letters)
        ));
    }
    if retried == 0 {
        failed_checks.push("no delivery attempt failed: the fault never hit a request".to_string());
    }
    Report {
        name: name.to_string(),
        verdict,
        causes: vec![Cause::AnswerLost],
        faults,
        settled,
        peak_rss_kib: 0,
        failed_checks,
        duplicate_bound: Some(duplicate_bound),
    }
}

/// The application's connections reset `times` times at random, mid-body: the application
/// takes 100 ms per record, so a reset almost always lands on a request in flight. Each reset
/// connection carries at most one request (HTTP/1.1, no pipelining), so at most one lost answer.
pub async fn application_resets(times: usize) -> Report {
    application_run(
        "application resets connections mid-body",
        Reply::Slow(Duration::from_millis(100), 200),
        async |proxy| {
            for _ in 0..times {
                tokio::time::sleep(Duration::from_millis(rand::random_range(100..700))).await;
                proxy.reset_all();
            }
            let resets = proxy.resets();
            (vec![("application connection resets", resets)], usize::try_from(resets).unwrap_or(usize::MAX))
        },
    )
    .await
}

/// The application black-holed for `length`: attempts time out.
pub async fn application_black_hole(length: Duration) -> Report {
    application_run(
        &format!("application black-holed {length:?}"),
        Reply::Slow(Duration::from_millis(5), 200),
        async |proxy| {
            proxy.set(Mode::BlackHole);
            tokio::time::sleep(length).await;
            // Held requests reach the application when the hole heals, after the sidecar gave
            // up on them. Once the breaker is open nothing but probes goes out, and it opens
            // after three unreachable attempts: at most that many per lane.
            let threshold = usize::try_from(msk_sidecar::pipeline::breaker::DEFAULT_THRESHOLD).unwrap_or(3);
            (vec![("application black hole", 1)], threshold * LANES)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_resets_connections_mid_body() {
    let report = application_resets(12).await;
    assert!(report.faults[0].1 > 0, "the fault happened");
    report.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_black_holed_times_out_without_dead_letters() {
    application_black_hole(Duration::from_secs(20)).await.check();
}
