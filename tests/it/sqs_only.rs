//! An SQS-only sidecar: the real binary with `SQS_QUEUE_URLS` and no `KAFKA_*` variable at all,
//! against LocalStack and a real OTLP receiver. It must start, turn ready without a group to
//! join, deliver and dead-letter to the queue's own dead-letter queue, label its metrics and
//! spans as SQS, and stop on SIGTERM within the grace.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::otlp::OtlpReceiver;
use crate::common::{self, process, sqs as queues};
use crate::sqs_source::{accepted, bodies, send, wait_empty};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_only_sidecar_needs_no_kafka_and_labels_what_it_does_as_sqs() {
    let sqs = common::sqs().await;
    let (dlq_name, dlq_url) = queues::create_queue(&sqs, false).await;
    let (name, url) = queues::create_queue(&sqs, false).await;
    queues::redrive_to(&sqs, &url, &dlq_name).await;
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "poison" { Reply::Status(400) } else { Reply::Status(200) });
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut env: BTreeMap<String, String> = [
        ("SQS_QUEUE_URLS", url.clone()),
        ("SQS_WAIT_TIME", "1s".into()),
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", admin.clone()),
        ("SIDECAR_SHUTDOWN_GRACE", "5s".into()),
        ("SIDECAR_DELIVERY_TIMEOUT", "2s".into()),
        ("SIDECAR_LOG_FORMAT", "text".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", receiver.grpc)),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(process::testbed_aws());
    let mut messages = bodies("only", 9);
    messages.insert(4, ("poison".into(), None));
    send(&sqs, &url, &messages).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready without waiting for a partition assignment: there is no group.
    common::eventually(Duration::from_secs(20), "/ready 200", || async {
        let ready = reqwest::get(format!("http://{admin}/ready")).await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let dead = queues::receive(&sqs, &dlq_url, 1, Duration::from_secs(30)).await;
    common::eventually(Duration::from_secs(30), "9 messages delivered", || {
        std::future::ready((accepted(&app).len() == 9).then_some(()))
    })
    .await;
    wait_empty(&sqs, &url).await;
    assert_eq!(dead.len(), 1, "the poison message in the queue's dead-letter queue");
    assert_eq!(dead[0].attributes.get("dlq-error-class").map(String::as_str), Some("permanent"));
    assert_eq!(dead[0].attributes.get("dlq-consumer-group").map(String::as_str), None);

    let (_, metrics) = common::get(&format!("http://{admin}/metrics")).await;
    let series = format!("source=\"sqs\",topic=\"{name}\"");
    assert!(
        metrics.contains(&format!("msk_sidecar_records_delivered_total{{{series}}} 9")),
        "delivered, labelled as SQS:\n{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "msk_sidecar_records_dead_lettered_total{{error_class=\"permanent\",{series}}} 1"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("source=\"kafka\""), "no Kafka series without a Kafka source");

    process::signal(&child, "TERM");
    let (status, took) = process::wait(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}; log:\n{}", log_text());
    assert!(took <= Duration::from_secs(5), "exited after {took:?}, grace 5s");
    assert!(!log_text().contains("rdkafka"), "no Kafka client was made:\n{}", log_text());

    let spans = common::eventually(Duration::from_secs(10), "spans at the receiver", || {
        let spans = receiver.spans();
        std::future::ready(
            (spans.iter().filter(|s| s.name == format!("process {name}")).count() >= 10).then_some(spans),
        )
    })
    .await;
    let ids: Vec<String> =
        app.received().iter().filter_map(|r| r.header("x-sqs-message-id").map(str::to_string)).collect();
    for span in spans.iter().filter(|s| s.name == format!("process {name}")) {
        assert_eq!(span.attribute("messaging.system"), Some("aws_sqs"), "{span:#?}");
        assert_eq!(span.attribute("messaging.destination.name"), Some(name.as_str()));
        let id = span.attribute("messaging.message.id").expect("the message id");
        assert!(ids.iter().any(|known| known == id), "{id} is a message the application saw");
        assert_eq!(span.attribute("messaging.kafka.offset"), None, "no Kafka facts: {span:#?}");
        assert_eq!(span.attribute("messaging.consumer.group.name"), None);
    }
    let publish = spans.iter().find(|s| s.name.starts_with("publish ")).expect("the dead-letter span");
    assert_eq!(publish.attribute("messaging.system"), Some("aws_sqs"));
}

/// A stub in front of LocalStack's SQS that refuses `DeleteMessageBatch` (as a policy that
/// denies `sqs:DeleteMessage` would) while `deny` is set, and forwards everything else.
async fn denying_deletes(
    deny: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let upstream = common::aws_endpoint();
    let client = reqwest::Client::new();
    let handler = move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
        let (client, upstream, deny) = (client.clone(), upstream.clone(), deny.clone());
        async move {
            let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if target.ends_with("DeleteMessageBatch") && deny.load(std::sync::atomic::Ordering::SeqCst) {
                let mut answer = HeaderMap::new();
                answer.insert("x-amzn-query-error", "AccessDenied;Sender".parse().unwrap());
                answer.insert("content-type", "application/x-amz-json-1.0".parse().unwrap());
                let body = r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"denied by test"}"#;
                return (StatusCode::BAD_REQUEST, answer, Bytes::from(body));
            }
            let mut request = client.request(method, format!("{upstream}{uri}")).body(body);
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name, value);
                }
            }
            let response = request.send().await.expect("LocalStack answers");
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let mut answer = HeaderMap::new();
            for (name, value) in response.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    answer.insert(name, value.clone());
                }
            }
            (status, answer, response.bytes().await.unwrap_or_default())
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_that_keep_failing_show_on_ready_until_one_goes_through() {
    let sqs = common::sqs().await;
    let (name, url) = queues::create_queue(&sqs, false).await;
    let deny = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (stub, _server) = denying_deletes(deny.clone()).await;
    let app = TestApp::start().await;
    let archive = tempfile::tempdir().unwrap();
    let mut queue = url::Url::parse(&url).unwrap();
    queue.set_port(Some(stub.port())).unwrap();
    queue.set_host(Some("127.0.0.1")).unwrap();
    let admin = format!("http://127.0.0.1:{}", common::free_port());
    let mut env: BTreeMap<String, String> = [
        ("SQS_QUEUE_URLS", queue.to_string()),
        ("SQS_WAIT_TIME", "1s".into()),
        ("SIDECAR_DELIVERY_URL", app.url()),
        ("SIDECAR_ADMIN_ADDR", admin.trim_start_matches("http://").to_string()),
        ("SIDECAR_DLQ_ARCHIVE", format!("file://{}", archive.path().display())),
        ("SIDECAR_SHUTDOWN_GRACE", "5s".into()),
        ("SIDECAR_DELIVERY_TIMEOUT", "2s".into()),
        ("SIDECAR_LOG_FORMAT", "text".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    env.extend(process::testbed_aws());
    // Every SQS call of the sidecar goes through the stub.
    env.insert("AWS_ENDPOINT_URL".into(), format!("http://{stub}"));
    let log = archive.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    send(&sqs, &url, &bodies("d", 3)).await;
    let reason = common::eventually(Duration::from_secs(40), "/ready names the failing deletes", || {
        let admin = admin.clone();
        async move {
            let (status, body) = common::get(&format!("{admin}/ready")).await;
            (status == 503 && body.contains("deleting finished messages")).then_some(body)
        }
    })
    .await;
    assert!(reason.contains(&format!("source ({name})")), "{reason}");
    deny.store(false, std::sync::atomic::Ordering::SeqCst);
    common::eventually(Duration::from_secs(60), "ready again once a delete goes through", || {
        let admin = admin.clone();
        async move { (common::get(&format!("{admin}/ready")).await.0 == 200).then_some(()) }
    })
    .await;
    process::signal(&child, "TERM");
    let (status, _) = process::wait(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
}
