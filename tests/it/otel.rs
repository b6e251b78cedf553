//! Observability against a real OTLP receiver and a real Prometheus parser: traces that follow a
//! record from its producer to the application and the dead-letter topic, metrics that count
//! what happened, and an exporter outage that costs nothing but dropped spans.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::app::{Reply, TestApp};
use crate::common::otlp::OtlpReceiver;
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn traced(partition: i32, value: &str) -> Produce {
    let mut record = Produce::text(partition, value, value);
    record.headers =
        vec![("traceparent".into(), Some(format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01").into_bytes()))];
    record
}

/// Splits `00-<trace>-<span>-<flags>`.
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value}");
    (parts[1].to_string(), parts[2].to_string())
}

async fn traced_run(
    protocol: &str,
    endpoint: String,
) -> (OtlpReceiver, TestApp, String, Vec<rdkafka::message::OwnedMessage>) {
    let receiver_holder = OtlpReceiver::start().await;
    let endpoint = endpoint
        .replace("{grpc}", &receiver_holder.grpc.to_string())
        .replace("{http}", &receiver_holder.http.to_string());
    let topic = common::random_name("traced");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, vec![traced(0, "ok"), traced(0, "bad")]).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "bad" { Reply::Status(400) } else { Reply::Status(200) });
    // A secret in the delivery URL's query must not reach any span.
    let url = format!("{}?api_key=s3cret-token", app.url());
    let mut env = sidecar::env(&topic, &common::random_name("g"), &url);
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint);
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into());
    env.insert("OTEL_SERVICE_NAME".into(), "orders-sidecar".into());
    let sidecar = Sidecar::start(&env).await;
    let letters = common::consume(&format!("{topic}.dlq"), 1).await;
    common::eventually(Duration::from_secs(30), "both records handled", || {
        std::future::ready((app.received().len() >= 2).then_some(()))
    })
    .await;
    sidecar.stop().await; // flushes the spans
    (receiver_holder, app, topic, letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_trace_continues_from_its_producer_through_attempts_to_the_dead_letter() {
    let (receiver, app, topic, letters) = traced_run("grpc", "http://{grpc}".into()).await;
    let spans = common::eventually(Duration::from_secs(10), "spans at the receiver", || {
        let spans = receiver.spans();
        std::future::ready(
            (spans.iter().filter(|s| s.name.starts_with("process ")).count() >= 2).then_some(spans),
        )
    })
    .await;
    let processes: Vec<_> = spans.iter().filter(|s| s.name == format!("process {topic}")).collect();
    assert_eq!(processes.len(), 2, "{spans:#?}");
    for process in &processes {
        assert_eq!(process.trace_id, TRACE_ID, "the record's traceparent is the parent");
        assert_eq!(process.parent_span_id, PRODUCER_SPAN);
        assert_eq!(process.kind, 5, "consumer");
        assert_eq!(process.attribute("messaging.system"), Some("kafka"));
        assert_eq!(process.attribute("messaging.destination.name"), Some(topic.as_str()));
        assert_eq!(process.attribute("messaging.destination.partition.id"), Some("0"));
        assert!(process.attribute("messaging.consumer.group.name").is_some());
        assert!(process.attribute("messaging.kafka.offset").is_some());
        assert_eq!(process.resource.get("service.name").map(String::as_str), Some("orders-sidecar"));
        assert!(process.resource.contains_key("service.version"));
        assert_eq!(process.attribute("messaging.kafka.message.key"), None, "keys only when asked for");
    }
    let ok_process =
        processes.iter().find(|s| s.attribute("messaging.kafka.offset") == Some("0")).expect("offset 0");
    let attempt = spans
        .iter()
        .find(|s| s.name == "POST" && s.parent_span_id == ok_process.span_id)
        .expect("attempt span");
    assert_eq!(attempt.kind, 3, "client");
    assert_eq!(attempt.attribute("http.request.method"), Some("POST"));
    assert_eq!(attempt.attribute("msk_sidecar.attempt"), Some("1"));
    let url = attempt.attribute("url.full").expect("url.full");
    assert!(url.ends_with("/events?api_key=redacted"), "{url}");
    assert!(!format!("{spans:?}").contains("s3cret"), "no span holds the secret");
    let delivered = app.received().into_iter().find(|r| r.text() == "ok").expect("delivered");
    let (trace, parent) = parse_traceparent(delivered.header("traceparent").expect("traceparent sent"));
    assert_eq!(trace, TRACE_ID);
    assert_eq!(parent, attempt.span_id, "the application's parent is the attempt span");

    let bad_process =
        processes.iter().find(|s| s.attribute("messaging.kafka.offset") == Some("1")).expect("offset 1");
    let publish = spans
        .iter()
        .find(|s| s.name == format!("publish {topic}.dlq") && s.parent_span_id == bad_process.span_id)
        .expect("dead-letter span");
    assert_eq!(publish.kind, 4, "producer");
    let header = common::header_text(&letters[0], "traceparent").expect("DLQ traceparent");
    let (trace, span) = parse_traceparent(&header);
    assert_eq!(
        (trace.as_str(), span.as_str()),
        (TRACE_ID, publish.span_id.as_str()),
        "DLQ carries the dead-letter span"
    );
    let names = receiver.metric_names();
    assert!(names.iter().any(|n| n == "msk_sidecar.records.delivered"), "OTLP metrics: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_export_over_http_protobuf() {
    let (receiver, _app, topic, _letters) = traced_run("http/protobuf", "http://{http}".into()).await;
    let spans = common::eventually(Duration::from_secs(10), "spans over HTTP", || {
        let spans = receiver.spans();
        std::future::ready((!spans.is_empty()).then_some(spans))
    })
    .await;
    assert!(spans.iter().any(|s| s.name == format!("process {topic}") && s.trace_id == TRACE_ID));
    let (grpc, http) = receiver.requests();
    assert_eq!(grpc, 0);
    assert!(http >= 1);
    assert!(receiver.metric_names().iter().any(|n| n == "msk_sidecar.records.consumed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_dropped_spans_not_deliveries() {
    let topic = common::random_name("nocollector");
    common::create_topic(&topic, 2).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let total = 3000;
    common::produce(&topic, (0..total).map(|i| Produce::text(i % 2, "k", "v")).collect()).await;
    let app = TestApp::start().await;
    let mut env = sidecar::env(&topic, &common::random_name("g"), &app.url());
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{}", common::free_port()));
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    env.insert("SIDECAR_ORDERING".into(), "none".into());
    let started = std::time::Instant::now();
    let sidecar = Sidecar::start(&env).await;
    common::eventually(Duration::from_secs(60), "every record delivered", || {
        std::future::ready((app.received().len() >= total as usize).then_some(()))
    })
    .await;
    let elapsed = started.elapsed();
    let admin = sidecar.admin();
    let dropped = common::eventually(Duration::from_secs(30), "dropped spans to be counted", || {
        let admin = admin.clone();
        async move {
            let (_, text) = common::get(&format!("{admin}/metrics")).await;
            let value = scrape(&text).get("msk_sidecar_spans_dropped_total").copied().unwrap_or(0.0);
            (value > 0.0).then_some(value)
        }
    })
    .await;
    println!("dead collector: {total} records in {elapsed:?}, {dropped} spans dropped");
    sidecar.stop().await;
}

/// Parses Prometheus text with a real parser; keys are `name` or `name{label=value,...}` sorted.
fn scrape(text: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .into_iter()
        .filter_map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let key = if labels.is_empty() {
                sample.metric
            } else {
                format!("{}{{{}}}", sample.metric, labels.join(","))
            };
            Some((key, value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_count_what_happened_and_lag_drains_to_zero() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = "metrics.orders";
    cluster.create_topic(topic, 3, 1).expect("topic");
    cluster.create_topic("metrics.orders.dlq", 1, 1).expect("dlq topic");
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
    let total = 300;
    for i in 0..total {
        let value = if i % 50 == 7 { "bad" } else { "good" };
        let record = FutureRecord::<str, str>::to(topic).partition(i % 3).key(value).payload(value);
        producer.send(record, Duration::from_secs(5)).await.map_err(|(e, _)| e).expect("produce");
    }
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "bad" { Reply::Status(422) } else { Reply::Status(200) });
    let mut env = sidecar::env(topic, "metrics-group", &app.url());
    env.insert("KAFKA_BROKERS".into(), cluster.bootstrap_servers());
    env.insert("SIDECAR_LIBRDKAFKA_STATISTICS_INTERVAL_MS".into(), "500".into());
    env.insert("SIDECAR_LIBRDKAFKA_SESSION_TIMEOUT_MS".into(), "6000".into());
    let sidecar = Sidecar::start(&env).await;
    let admin = sidecar.admin();
    let samples = common::eventually(Duration::from_secs(60), "lag 0 on every partition", || {
        let admin = admin.clone();
        async move {
            let (_, text) = common::get(&format!("{admin}/metrics")).await;
            let samples = scrape(&text);
            let lags: Vec<f64> = (0..3)
                .filter_map(|p| {
                    samples.get(&format!("msk_sidecar_consumer_lag{{partition={p},topic={topic}}}")).copied()
                })
                .collect();
            let delivered = samples
                .get(&format!("msk_sidecar_records_delivered_total{{source=kafka,topic={topic}}}"))
                .copied();
            (lags.len() == 3 && lags.iter().all(|l| *l == 0.0) && delivered == Some(294.0)).then_some(samples)
        }
    })
    .await;
    let get = |key: &str| samples.get(key).copied().unwrap_or(-1.0);
    assert_eq!(get(&format!("msk_sidecar_records_consumed_total{{source=kafka,topic={topic}}}")), 300.0);
    assert_eq!(
        get(&format!(
            "msk_sidecar_records_dead_lettered_total{{error_class=permanent,source=kafka,topic={topic}}}"
        )),
        6.0
    );
    assert_eq!(get(&format!("msk_sidecar_records_retried_total{{source=kafka,topic={topic}}}")), 0.0);
    assert_eq!(get("msk_sidecar_records_in_flight"), 0.0);
    assert_eq!(get("msk_sidecar_breaker_open"), 0.0);
    for p in 0..3 {
        let key = format!("msk_sidecar_consumer_lag_time_seconds{{partition={p},topic={topic}}}");
        assert_eq!(
            get(&key),
            0.0,
            "{key} in {:?}",
            samples.keys().filter(|k| k.contains("lag")).collect::<Vec<_>>()
        );
    }
    assert!(
        samples.keys().any(|k| k.starts_with("msk_sidecar_delivery_duration_seconds_count")),
        "{samples:?}"
    );
    assert!(
        samples.keys().any(|k| k.starts_with("msk_sidecar_record_end_to_end_seconds_count")),
        "{samples:?}"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_of_the_record_they_are_about() {
    let receiver = OtlpReceiver::start().await;
    let topic = common::random_name("logs");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, vec![traced(0, "bad")]).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Status(400));
    let mut env = sidecar::env(&topic, &common::random_name("g"), &app.url());
    env.insert("SIDECAR_LOG_FORMAT".into(), "json".into());
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://{}", receiver.grpc));
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = crate::common::process::spawn(&env, &log);
    let line = common::eventually(Duration::from_secs(30), "the dead-letter log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        std::future::ready(text.lines().find(|l| l.contains("Record dead-lettered.")).map(str::to_string))
    })
    .await;
    crate::common::process::signal(&child, "TERM");
    crate::common::process::wait(&mut child, Duration::from_secs(20)).await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["trace_id"], TRACE_ID, "{line}");
    assert_eq!(json["level"], "WARN");
    assert!(json["span_id"].as_str().is_some_and(|s| s.len() == 16), "{line}");
    assert!(!line.contains("\"bad\""), "payloads never reach the logs: {line}");
}
