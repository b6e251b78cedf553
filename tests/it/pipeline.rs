//! The core pipeline against the real broker and LocalStack: delivery, retries, dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

async fn topics(partitions: i32) -> (String, String) {
    let topic = common::random_name("orders");
    common::create_topic(&topic, partitions).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    (topic.clone(), format!("{topic}.dlq"))
}

async fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    common::eventually(limit, what, || std::future::ready(check())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_delivered_once_in_partition_order_with_contract_headers() {
    let (topic, _) = topics(3).await;
    let group = common::random_name("g");
    let app = TestApp::start().await;
    let mut records = Vec::new();
    for i in 0..60 {
        let mut record = Produce::text(i % 3, &format!("key-{i}"), &format!("{{\"n\":{i}}}"));
        record.headers = vec![
            ("content-type".into(), Some(b"application/json".to_vec())),
            ("trace".into(), Some(vec![0xff, 0x00])),
        ];
        records.push(record);
    }
    common::produce(&topic, records).await;
    let sidecar = Sidecar::start(&sidecar::env(&topic, &group, &app.url())).await;

    wait_for("60 deliveries", Duration::from_secs(60), || (app.received().len() >= 60).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = app.received();
    assert_eq!(received.len(), 60, "no duplicates");
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &received {
        let (partition, offset) = r.coordinates();
        per_partition.entry(partition).or_default().push(offset);
        assert_eq!(r.header("x-kafka-topic"), Some(topic.as_str()));
        assert_eq!(r.header("x-delivery-attempt"), Some("1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-kafka-header-trace"), Some("/wA="));
        assert!(r.header("x-kafka-timestamp").and_then(|t| t.parse::<i64>().ok()).is_some());
    }
    for offsets in per_partition.values() {
        assert_eq!(offsets, &(0..20).collect::<Vec<_>>(), "partition order");
    }
    let first = received.iter().find(|r| r.coordinates() == (0, 0)).expect("0/0");
    assert_eq!(first.text(), "{\"n\":0}");
    assert_eq!(first.header("x-kafka-key"), Some("a2V5LTA="), "base64 of key-0");

    common::wait_committed(&group, &topic, &[20, 20, 20]).await;
    let ready = reqwest::get(format!("{}/ready", sidecar.admin())).await.expect("ready");
    assert_eq!(ready.status(), 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_growing_delays_then_delivered() {
    let (topic, dlq) = topics(1).await;
    let group = common::random_name("g");
    let app = TestApp::start().await;
    app.behave(|r| if r.attempt() < 4 { Reply::Status(503) } else { Reply::Status(200) });
    common::produce(&topic, (0..3).map(|i| Produce::text(0, "k", &format!("v{i}"))).collect()).await;
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_RETRY_INITIAL_BACKOFF".into(), "100ms".into());
    env.insert("SIDECAR_RETRY_MAX_BACKOFF".into(), "2s".into());
    let sidecar = Sidecar::start(&env).await;

    wait_for("12 attempts", Duration::from_secs(60), || (app.received().len() >= 12).then_some(())).await;
    let received = app.received();
    for offset in 0..3 {
        let attempts: Vec<_> = received.iter().filter(|r| r.coordinates() == (0, offset)).collect();
        assert_eq!(attempts.iter().map(|r| r.attempt()).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        // Full jitter: each gap is at most its bound (100, 200, 400 ms) plus scheduling slack.
        for (n, pair) in attempts.windows(2).enumerate() {
            let gap = pair[1].at - pair[0].at;
            let bound = Duration::from_millis(100 << n);
            assert!(gap <= bound + Duration::from_millis(150), "gap {gap:?} over bound {bound:?}");
        }
    }
    common::wait_committed(&group, &topic, &[3]).await;
    let metrics = &sidecar.running().metrics;
    assert_eq!(metrics.total(|c| c.retried.load(std::sync::atomic::Ordering::Relaxed)), 9);
    assert_eq!(metrics.total(|c| c.dead_lettered_total()), 0);
    sidecar.stop().await;
    assert!(
        common::consume_available(&dlq, Duration::from_secs(1)).await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_exhausted_records_are_dead_lettered_to_the_topic_and_s3() {
    let (topic, dlq) = topics(1).await;
    let group = common::random_name("g");
    let bucket = common::random_name("dlq");
    let s3 = common::s3().await;
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let app = TestApp::start().await;
    app.behave(|r| match r.text().as_str() {
        "bad" => Reply::Status(400),
        "flaky" => Reply::Status(500),
        _ => Reply::Status(200),
    });
    let mut flaky = Produce::text(0, "k-flaky", "flaky");
    flaky.headers = vec![("app-header".into(), Some(b"kept".to_vec()))];
    common::produce(
        &topic,
        vec![
            Produce::text(0, "k0", "good"),
            Produce::text(0, "k-bad", "bad"),
            flaky,
            Produce::text(0, "k3", "good"),
        ],
    )
    .await;
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "3".into());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("s3://{bucket}/dead/letters"));
    let sidecar = Sidecar::start(&env).await;

    common::wait_committed(&group, &topic, &[4]).await;
    let letters = common::consume(&dlq, 2).await;
    let bad = &letters[0];
    let flaky = &letters[1];
    use rdkafka::Message as _;
    assert_eq!(bad.payload(), Some(&b"bad"[..]));
    assert_eq!(bad.key(), Some(&b"k-bad"[..]));
    let h = |m, n| common::header_text(m, n);
    assert_eq!(h(bad, "dlq-source-topic").as_deref(), Some(topic.as_str()));
    assert_eq!(h(bad, "dlq-source-partition").as_deref(), Some("0"));
    assert_eq!(h(bad, "dlq-source-offset").as_deref(), Some("1"));
    assert!(h(bad, "dlq-source-timestamp").and_then(|t| t.parse::<i64>().ok()).is_some());
    assert_eq!(h(bad, "dlq-consumer-group").as_deref(), Some(group.as_str()));
    assert_eq!(h(bad, "dlq-attempts").as_deref(), Some("1"));
    assert_eq!(h(bad, "dlq-error-class").as_deref(), Some("permanent"));
    assert!(h(bad, "dlq-error").is_some_and(|e| e.starts_with("HTTP 400")), "{:?}", h(bad, "dlq-error"));
    assert_eq!(h(bad, "dlq-first-failure"), h(bad, "dlq-last-failure"));
    assert_eq!(h(flaky, "dlq-attempts").as_deref(), Some("3"));
    assert_eq!(h(flaky, "dlq-error-class").as_deref(), Some("retries-exhausted"));
    assert_eq!(h(flaky, "app-header").as_deref(), Some("kept"), "source headers are kept");
    assert!(h(flaky, "dlq-first-failure") < h(flaky, "dlq-last-failure"));

    let key = h(flaky, "dlq-archive-key").expect("archive key header");
    assert!(key.starts_with(&format!("dead/letters/{topic}/")) && key.ends_with("/0-2.json"), "{key}");
    let object = s3.get_object().bucket(&bucket).key(&key).send().await.expect("archive object");
    let bytes = object.body.collect().await.expect("body").into_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(doc["source_topic"], topic.as_str());
    assert_eq!(doc["source_partition"], 0);
    assert_eq!(doc["source_offset"], 2);
    assert_eq!(doc["consumer_group"], group.as_str());
    assert_eq!(doc["attempts"], 3);
    assert_eq!(doc["error_class"], "retries-exhausted");
    assert_eq!(doc["value_b64"], "Zmxha3k=");
    assert_eq!(doc["key_b64"], "ay1mbGFreQ==");
    assert_eq!(doc["headers"]["app-header"], "a2VwdA==");
    assert_eq!(doc["first_failure"].as_str(), h(flaky, "dlq-first-failure").as_deref());
    assert_eq!(doc["last_failure"].as_str(), h(flaky, "dlq-last-failure").as_deref());
    assert!(doc["error"].as_str().is_some_and(|e| e.starts_with("HTTP 500")));
    assert!(doc["source_timestamp"].as_i64().is_some());

    let attempts = |body: &str| app.received().iter().filter(|r| r.text() == body).count();
    assert_eq!(attempts("bad"), 1, "permanent: one attempt");
    assert_eq!(attempts("flaky"), 3, "retryable: max attempts");
    let metrics = sidecar.running().metrics.render_prometheus();
    assert!(metrics.contains("error_class=\"permanent\""), "{metrics}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let (topic, _) = topics(1).await;
    let group = common::random_name("g");
    let app = TestApp::start().await;
    app.behave(|r| if r.attempt() == 1 { Reply::RetryAfter(429, 2) } else { Reply::Status(200) });
    common::produce(&topic, vec![Produce::text(0, "k", "v")]).await;
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_RETRY_INITIAL_BACKOFF".into(), "10ms".into());
    env.insert("SIDECAR_RETRY_MAX_BACKOFF".into(), "5s".into());
    let sidecar = Sidecar::start(&env).await;
    wait_for("2 attempts", Duration::from_secs(30), || (app.received().len() >= 2).then_some(())).await;
    let received = app.received();
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_secs(2) && gap < Duration::from_secs(3),
        "waited {gap:?} for Retry-After: 2"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_outage_pauses_consumption_and_loses_nothing() {
    let (topic, dlq) = topics(2).await;
    let group = common::random_name("g");
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    common::produce(&topic, (0..20).map(|i| Produce::text(i % 2, &format!("k{i}"), "v")).collect()).await;
    let mut env = sidecar::env(&topic, &group, &url);
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "2".into());
    let sidecar = Sidecar::start(&env).await;

    let admin = sidecar.admin();
    let reason = common::eventually(Duration::from_secs(30), "/ready to report the outage", || {
        let admin = admin.clone();
        async move {
            let (status, body) = common::get(&format!("{admin}/ready")).await;
            (status == 503 && body.contains("application: unreachable")).then_some(body)
        }
    })
    .await;
    assert!(reason.contains(&port.to_string()), "{reason}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = &sidecar.running().metrics;
    assert_eq!(metrics.total(|c| c.dead_lettered_total()), 0, "an outage is not a reason to dead-letter");
    assert!(metrics.render_prometheus().contains("msk_sidecar_breaker_open 1"));

    let app = TestApp::start_on(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    common::wait_committed(&group, &topic, &[10, 10]).await;
    let mut delivered: Vec<(i32, i64)> = app.accepted();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered.len(), 20);
    let (status, _) = common::get(&format!("{admin}/ready")).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
    assert!(common::consume_available(&dlq, Duration::from_secs(1)).await.is_empty(), "zero dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_archive_holds_the_partition_until_it_recovers() {
    let (topic, dlq) = topics(1).await;
    let group = common::random_name("g");
    let bucket = common::random_name("late");
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "bad" { Reply::Status(422) } else { Reply::Status(200) });
    common::produce(
        &topic,
        vec![Produce::text(0, "a", "ok"), Produce::text(0, "b", "bad"), Produce::text(0, "c", "ok")],
    )
    .await;
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("s3://{bucket}/p"));
    let sidecar = Sidecar::start(&env).await;

    let admin = sidecar.admin();
    common::eventually(Duration::from_secs(30), "/ready to report the archive", || {
        let admin = admin.clone();
        async move {
            let (status, body) = common::get(&format!("{admin}/ready")).await;
            (status == 503 && body.contains("archive: S3 PutObject")).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (g, t) = (group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || common::committed(&g, &t, 1)).await.expect("join");
    assert_eq!(committed, vec![1], "the commit stops before the record that is not archived");
    assert!(
        common::consume_available(&dlq, Duration::from_secs(1)).await.is_empty(),
        "archive first, then topic"
    );

    let s3 = common::s3().await;
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    common::wait_committed(&group, &topic, &[3]).await;
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with("/0-1.json"));
    assert_eq!(common::consume(&dlq, 1).await.len(), 1);
    let (status, _) = common::get(&format!("{admin}/ready")).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_follows_readiness_and_liveness_of_a_running_sidecar() {
    let (topic, _) = topics(1).await;
    let group = common::random_name("g");
    let port = common::free_port();
    let sidecar =
        Sidecar::start(&sidecar::env(&topic, &group, &format!("http://127.0.0.1:{port}/events"))).await;
    let addr = sidecar.running().admin_addr.to_string();
    let check = |live: bool| {
        let mut args = vec!["healthcheck", "--addr", addr.as_str()];
        if live {
            args.push("--live");
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
            .args(&args)
            .output()
            .expect("healthcheck")
    };
    common::produce(&topic, vec![Produce::text(0, "k", "v")]).await;
    // The application is down: not ready, but live.
    common::eventually(Duration::from_secs(30), "healthcheck to fail while the application is down", || {
        std::future::ready((check(false).status.code() == Some(1)).then_some(()))
    })
    .await;
    assert!(check(true).status.success(), "live while the application is down");
    let _app = TestApp::start_on(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    common::eventually(Duration::from_secs(30), "healthcheck to pass", || {
        std::future::ready(check(false).status.success().then_some(()))
    })
    .await;
    sidecar.stop().await;
}
