//! Decoding, filtering and expiry against the real broker: Protobuf records (made by Google's
//! own library from a descriptor set that `protox` compiled) reach the application as the
//! proto3 JSON mapping Google's `json_format` gives, with their schema named; bytes that do not
//! decode are dead-lettered as `undecodable` holding the original bytes; a filter turns records
//! away (committed, counted, never delivered) and fails closed (`filter-error`); old records
//! are dead-lettered as `expired`; a route brings its own rules.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use prost::Message as _;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

pub(crate) const PROTO: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";

enum Status { STATUS_UNSPECIFIED = 0; PLACED = 1; SHIPPED = 2; }

message Line { string sku = 1; uint32 quantity = 2; int64 price_micros = 3; }

message Order {
  string order_id = 1;
  Status status = 2;
  repeated Line lines = 3;
  map<string, string> labels = 4;
  oneof payment { string card_token = 5; string invoice_id = 6; }
  google.protobuf.Timestamp placed_at = 7;
  Line gift = 8;
  double total = 9;
  bytes note = 10;
}
"#;

/// Compiles [`PROTO`] into a FileDescriptorSet file (imports included) in `dir`.
pub(crate) fn descriptor_set(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("order.proto"), PROTO).expect("write proto");
    let set = protox::compile(["order.proto"], [dir]).expect("protox compiles the proto");
    let path = dir.join("order.pb");
    std::fs::write(&path, set.encode_to_vec()).expect("write descriptor set");
    path
}

/// Google's library: for each message (proto3 JSON), its wire bytes and its `MessageToDict`.
pub(crate) fn reference(
    descriptor: &std::path::Path,
    messages: &[serde_json::Value],
) -> Vec<(Vec<u8>, serde_json::Value)> {
    let venv =
        std::env::var("TESTBED_VENV").expect("TESTBED_VENV is not set: run the tests with scripts/test.sh");
    let mut child = Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/proto_reference.py"))
        .arg(descriptor)
        .arg("shop.Order")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run proto_reference.py");
    let input: String = messages.iter().map(|m| format!("{m}\n")).collect();
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("proto_reference.py");
    assert!(out.status.success(), "proto_reference.py: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            let hex = v["hex"].as_str().expect("hex");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            (bytes, v["json"].clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_records_arrive_as_googles_proto3_json_and_bad_bytes_are_dead_lettered_undecodable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let descriptor = descriptor_set(dir.path());
    let orders = [
        serde_json::json!({
            "orderId": "o-1", "status": "SHIPPED",
            "lines": [{"sku": "a", "quantity": 2, "priceMicros": "9007199254740993"}, {"sku": "b"}],
            "labels": {"channel": "web", "vip": "yes"},
            "cardToken": "tok_1",
            "placedAt": "2026-11-30T10:00:00.250Z",
            "gift": {"sku": "g"},
            "total": 12.5,
            "note": "AAEC/w=="
        }),
        serde_json::json!({"orderId": "o-2", "invoiceId": "inv-9"}),
        serde_json::json!({}),
    ];
    let expected = reference(&descriptor, &orders);
    let topic = common::random_name("proto");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    let mut records: Vec<Produce> = expected
        .iter()
        .map(|(bytes, _)| Produce { partition: 0, key: None, value: Some(bytes.clone()), headers: vec![] })
        .collect();
    // Hostile bytes: a field tag with wire type 7 (there is none).
    let garbage = vec![0x0f, 0xff, 0xff, 0x00, 0x42];
    records.insert(
        1,
        Produce { partition: 0, key: Some(b"bad".to_vec()), value: Some(garbage.clone()), headers: vec![] },
    );
    common::produce(&topic, records).await;

    let app = TestApp::start().await;
    // The application refuses order o-2 for good: its dead letter must hold the Protobuf bytes
    // the topic has, not the JSON the application saw.
    app.behave(|r| if r.text().contains("\"o-2\"") { Reply::Status(400) } else { Reply::Status(200) });
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_VALUE_FORMAT".into(), "protobuf".into());
    env.insert("SIDECAR_PROTOBUF_DESCRIPTOR".into(), descriptor.display().to_string());
    env.insert("SIDECAR_PROTOBUF_MESSAGE".into(), "shop.Order".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[4]).await;
    let received = app.received();
    assert_eq!(received.len(), 3, "three orders sent, the garbage not");
    for (offset, (_, json)) in [0, 2, 3].into_iter().zip(&expected) {
        let request = received.iter().find(|r| r.coordinates().1 == offset).expect("delivered");
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
        assert_eq!(&body, json, "offset {offset}: the proto3 JSON mapping, as Google's json_format has it");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-kafka-value-schema"), Some("protobuf:shop.Order"));
    }
    let letters = common::consume(&dlq, 2).await;
    let letter = &letters[0];
    assert_eq!(common::header_text(letter, "dlq-error-class").as_deref(), Some("undecodable"));
    assert_eq!(rdkafka::Message::payload(letter), Some(garbage.as_slice()), "the original bytes");
    let error = common::header_text(letter, "dlq-error").unwrap_or_default();
    assert!(error.contains("shop.Order"), "{error}");
    let refused = &letters[1];
    assert_eq!(common::header_text(refused, "dlq-error-class").as_deref(), Some("permanent"));
    assert_eq!(
        rdkafka::Message::payload(refused),
        Some(expected[1].0.as_slice()),
        "the Protobuf bytes, not JSON"
    );
    let (_, metrics) = common::get(&format!("{}/metrics", sidecar.admin())).await;
    assert!(
        metrics.contains(&format!(
            "msk_sidecar_records_dead_lettered_total{{error_class=\"undecodable\",source=\"kafka\",topic=\"{topic}\"}} 1"
        )),
        "{metrics}"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_turns_records_away_fails_closed_and_old_records_expire_per_route() {
    let filtered = common::random_name("flt");
    let plain = common::random_name("pln");
    let group = common::random_name("g");
    for topic in [&filtered, &plain] {
        common::create_topic(topic, 1).await;
        common::create_topic(&format!("{topic}.dlq"), 1).await;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let json = |v: serde_json::Value| Some(v.to_string().into_bytes());
    common::produce(
        &filtered,
        vec![
            Produce {
                partition: 0,
                key: None,
                value: json(serde_json::json!({"amount": 150, "kind": "a"})),
                headers: vec![],
            },
            Produce {
                partition: 0,
                key: None,
                value: json(serde_json::json!({"amount": 5, "kind": "b"})),
                headers: vec![],
            },
            // No `amount`: the filter fails on it; it is neither delivered nor dropped.
            Produce {
                partition: 0,
                key: None,
                value: json(serde_json::json!({"kind": "c"})),
                headers: vec![],
            },
            // Not JSON at all.
            Produce { partition: 0, key: None, value: Some(b"{not json".to_vec()), headers: vec![] },
            Produce {
                partition: 0,
                key: None,
                value: json(serde_json::json!({"amount": 101, "kind": "d"})),
                headers: vec![],
            },
        ],
    )
    .await;
    // The second topic's route turns the filter off and expires records older than an hour.
    let producer = common::producer();
    for (timestamp, value) in [(now - 7_200_000, "old"), (now, "new")] {
        producer
            .send(
                rdkafka::producer::FutureRecord::<[u8], [u8]>::to(&plain)
                    .partition(0)
                    .payload(value.as_bytes())
                    .timestamp(i64::try_from(timestamp).expect("ms")),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("produce: {err}"));
    }

    let app = TestApp::start().await;
    let mut env = sidecar::env(&format!("{filtered},{plain}"), &group, &app.url());
    env.insert("SIDECAR_VALUE_FORMAT".into(), "json".into());
    env.insert("SIDECAR_FILTER".into(), "record.value.amount > 100".into());
    let routes = format!(
        "[[routes]]\ntopic = \"{plain}\"\nvalue_format = \"raw\"\nfilter = \"\"\nmax_record_age = \"1h\"\ndlq_topic = \"{plain}.dlq\"\n"
    );
    env.remove("SIDECAR_DLQ_TOPIC");
    let sidecar = Sidecar::start_with_file(&env, Some(&routes)).await;
    common::wait_committed(&group, &filtered, &[5]).await;
    common::wait_committed(&group, &plain, &[2]).await;
    let bodies: BTreeMap<String, Vec<String>> =
        app.received().into_iter().fold(BTreeMap::new(), |mut m, r| {
            m.entry(r.header("x-kafka-topic").unwrap_or_default().to_string()).or_default().push(r.text());
            m
        });
    let kinds: Vec<String> = bodies[&filtered]
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).expect("json")["kind"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["a", "d"], "only records the filter passes, in order");
    assert_eq!(bodies[&plain], ["new"], "the route's own rules: no filter, the old record expired");

    let classes = |topic: String, count: usize| async move {
        common::consume(&topic, count)
            .await
            .iter()
            .map(|m| common::header_text(m, "dlq-error-class").unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let mut filtered_classes = classes(format!("{filtered}.dlq"), 2).await;
    filtered_classes.sort();
    assert_eq!(filtered_classes, ["filter-error", "undecodable"]);
    assert_eq!(classes(format!("{plain}.dlq"), 1).await, ["expired"]);
    let (_, metrics) = common::get(&format!("{}/metrics", sidecar.admin())).await;
    assert!(
        metrics.contains(&format!(
            "msk_sidecar_records_filtered_total{{route=\"default\",source=\"kafka\",topic=\"{filtered}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "msk_sidecar_records_dead_lettered_total{{error_class=\"expired\",source=\"kafka\",topic=\"{plain}\"}} 1"
        )),
        "{metrics}"
    );
    sidecar.stop().await;
}
