//! Schema-registry records, made by the official serializers, against the real broker:
//! confluent-kafka's Avro, Protobuf and JSON Schema serializers with a Confluent-compatible
//! registry (the test's own, serving the documented endpoints: none can be installed here), and
//! AWS's Glue Schema Registry serializer with moto's Glue (compressed and not). The application
//! gets JSON equal to what was serialized, each schema is fetched once, an unknown schema id is
//! `undecodable`, and a registry that does not answer holds records back (not ready, nothing
//! dead-lettered) until it does.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::app::TestApp;
use crate::common::registry::TestRegistry;
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};
use crate::decoding::{PROTO, descriptor_set, reference};

const AVRO: &str = r#"{"type": "record", "name": "Payment", "namespace": "shop", "fields": [
  {"name": "id", "type": "string"},
  {"name": "cents", "type": "long"},
  {"name": "memo", "type": ["null", "string"], "default": null},
  {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OPEN", "PAID"]}},
  {"name": "tags", "type": {"type": "array", "items": "string"}},
  {"name": "extra", "type": {"type": "map", "values": "int"}}
]}"#;

const JSON_SCHEMA: &str = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "title": "Click",
  "type": "object", "properties": {"page": {"type": "string"}, "ms": {"type": "integer"}},
  "required": ["page", "ms"]}"#;

fn payments() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"id": "p-1", "cents": 1_234_567_890_123_i64, "memo": "first", "state": "PAID", "tags": ["a", "b"], "extra": {"k": 1}}),
        serde_json::json!({"id": "p-2", "cents": -5, "memo": null, "state": "OPEN", "tags": [], "extra": {}}),
    ]
}

fn clicks() -> Vec<serde_json::Value> {
    vec![serde_json::json!({"page": "/", "ms": 12}), serde_json::json!({"page": "/cart", "ms": 340})]
}

/// The official serializer's bytes for each record (`tests/support/serialize.py`).
fn serialize(args: &[&str], records: &[serde_json::Value], env: &[(String, String)]) -> Vec<Vec<u8>> {
    let venv = std::env::var("TESTBED_SERDE_VENV")
        .expect("TESTBED_SERDE_VENV is not set: start the test bed (localstack/testbed.sh up) and source .testbed/env");
    let mut child = Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/serialize.py"))
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run serialize.py");
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("serialize.py");
    assert!(out.status.success(), "serialize.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|hex| {
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
        })
        .collect()
}

fn values(bytes: Vec<Vec<u8>>) -> Vec<Produce> {
    bytes.into_iter().map(|v| Produce { partition: 0, key: None, value: Some(v), headers: vec![] }).collect()
}

/// A delivered body, parsed, with its request headers.
type Delivered = (serde_json::Value, BTreeMap<String, String>);

/// Bodies the application received per topic, parsed, in offset order.
fn received_json(app: &TestApp) -> BTreeMap<String, Vec<Delivered>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let mut received = app.received();
    received.sort_by_key(|r| r.coordinates());
    for request in received {
        let topic = request.header("x-kafka-topic").unwrap_or_default().to_string();
        let body = serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null);
        out.entry(topic).or_default().push((body, request.headers.iter().cloned().collect()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_avro_protobuf_and_json_schema_records_arrive_as_json_each_schema_fetched_once() {
    let registry = TestRegistry::start().await;
    registry.answer_protobuf_as(PROTO);
    let dir = tempfile::tempdir().expect("tempdir");
    let descriptor = descriptor_set(dir.path());
    std::fs::write(dir.path().join("payment.avsc"), AVRO).expect("write");
    std::fs::write(dir.path().join("click.json"), JSON_SCHEMA).expect("write");
    let [avro_topic, json_topic, proto_topic] = ["cav", "cjs", "cpb"].map(common::random_name);
    let dlq = format!("{avro_topic}.dlq");
    let group = common::random_name("g");
    for topic in [&avro_topic, &json_topic, &proto_topic, &dlq] {
        common::create_topic(topic, 1).await;
    }
    let url = registry.url();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let mut avro =
        serialize(&["confluent", &url, &avro_topic, "avro", &at("payment.avsc")], &payments(), &[]);
    // A schema id nobody registered, and bytes without the magic byte.
    avro.insert(1, vec![0, 0, 0, 0x10, 0x92, 2, 0x41]);
    avro.push(b"{\"id\": \"not framed\"}".to_vec());
    common::produce(&avro_topic, values(avro)).await;
    let clicks_bytes =
        serialize(&["confluent", &url, &json_topic, "json", &at("click.json")], &clicks(), &[]);
    common::produce(&json_topic, values(clicks_bytes)).await;
    let orders = [
        serde_json::json!({"orderId": "o-1", "status": "PLACED", "placedAt": "2026-01-02T03:04:05Z", "labels": {"a": "b"}}),
        serde_json::json!({"orderId": "o-2", "invoiceId": "i-1", "lines": [{"sku": "x", "priceMicros": "-7"}]}),
    ];
    let expected_orders = reference(&descriptor, &orders);
    let proto = serialize(
        &["confluent", &url, &proto_topic, "protobuf", &descriptor.display().to_string()],
        &orders,
        &[],
    );
    common::produce(&proto_topic, values(proto)).await;

    // From here on the registry wants credentials, which the sidecar has from the URL.
    registry.require("svc", "p@ss:word");
    let app = TestApp::start().await;
    let mut env = sidecar::env(&format!("{avro_topic},{json_topic},{proto_topic}"), &group, &app.url());
    env.insert("SIDECAR_SCHEMA_REGISTRY".into(), registry.url_with("svc", "p%40ss%3Aword"));
    env.insert("SIDECAR_VALUE_FORMAT".into(), "avro".into());
    let routes = format!(
        "[[routes]]\ntopic = \"{json_topic}\"\nvalue_format = \"json-schema\"\n\n[[routes]]\ntopic = \"{proto_topic}\"\nvalue_format = \"protobuf\"\n"
    );
    let config = msk_sidecar::config::Config::from_sources(
        &env,
        Some((std::path::Path::new("r.toml"), routes.as_str())),
    )
    .expect("valid");
    let shown = format!("{:?} {:?}", config.effective(), config);
    assert!(
        !shown.contains("p%40ss") && !shown.contains("p@ss"),
        "the registry password is never shown: {shown}"
    );
    let sidecar = Sidecar::start_with_file(&env, Some(&routes)).await;
    common::wait_committed(&group, &avro_topic, &[4]).await;
    common::wait_committed(&group, &json_topic, &[2]).await;
    common::wait_committed(&group, &proto_topic, &[2]).await;

    let got = received_json(&app);
    let bodies = |topic: &str| got[topic].iter().map(|(b, _)| b.clone()).collect::<Vec<_>>();
    assert_eq!(bodies(&avro_topic), payments(), "Avro as plain JSON: unions unwrapped, enums by symbol");
    assert_eq!(bodies(&json_topic), clicks());
    let want: Vec<_> = expected_orders.iter().map(|(_, json)| json.clone()).collect();
    assert_eq!(bodies(&proto_topic), want, "Protobuf from .proto text, as Google's json_format has it");
    for (topic, id) in [(&avro_topic, "1"), (&json_topic, "2"), (&proto_topic, "3")] {
        let (_, headers) = &got[topic.as_str()][0];
        assert_eq!(
            headers.get("x-kafka-value-schema").map(String::as_str),
            Some(format!("confluent:{id}").as_str())
        );
        assert_eq!(headers.get("content-type").map(String::as_str), Some("application/json"));
    }
    let fetches = registry.fetches();
    assert_eq!(fetches, BTreeMap::from([(1, 1), (2, 1), (3, 1), (4242, 1)]), "each schema fetched once");

    let letters = common::consume(&dlq, 2).await;
    for letter in &letters {
        assert_eq!(common::header_text(letter, "dlq-error-class").as_deref(), Some("undecodable"));
    }
    let errors: Vec<String> =
        letters.iter().map(|l| common::header_text(l, "dlq-error").unwrap_or_default()).collect();
    assert!(errors[0].contains("schema id 4242 is not in the registry"), "{errors:?}");
    assert!(errors[1].contains("not the Confluent magic byte"), "{errors:?}");
    assert_eq!(
        rdkafka::Message::payload(&letters[0]),
        Some(&[0, 0, 0, 0x10, 0x92, 2, 0x41][..]),
        "original bytes"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_does_not_answer_holds_records_back_without_dead_letters() {
    let registry = TestRegistry::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("click.json"), JSON_SCHEMA).expect("write");
    let topic = common::random_name("out");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    let schema = dir.path().join("click.json").display().to_string();
    let bytes = serialize(&["confluent", &registry.url(), &topic, "json", &schema], &clicks(), &[]);
    common::produce(&topic, values(bytes)).await;
    registry.fail(true);
    let app = TestApp::start().await;
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_SCHEMA_REGISTRY".into(), registry.url());
    env.insert("SIDECAR_VALUE_FORMAT".into(), "json-schema".into());
    let sidecar = Sidecar::start(&env).await;
    let reasons = common::eventually(Duration::from_secs(20), "/ready names the registry", || async {
        let (status, body) = common::get(&format!("{}/ready", sidecar.admin())).await;
        (status == 503 && body.contains("schema registry")).then_some(body)
    })
    .await;
    assert!(reasons.contains("503"), "the registry's answer: {reasons}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(app.received().is_empty(), "nothing delivered undecoded");
    assert!(
        common::consume_available(&dlq, Duration::from_secs(1)).await.is_empty(),
        "an outage is not a dead letter"
    );
    assert!(registry.fetches()[&1] >= 2, "retried: {:?}", registry.fetches());
    registry.fail(false);
    common::wait_committed(&group, &topic, &[2]).await;
    let bodies: Vec<_> = received_json(&app)[&topic].iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(bodies, clicks(), "delivered in order once the registry answers");
    let (status, _) = common::get(&format!("{}/ready", sidecar.admin())).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_avro_compressed_or_not_and_json_records_arrive_as_json() {
    let endpoint = std::env::var("TESTBED_GLUE_ENDPOINT")
        .expect("TESTBED_GLUE_ENDPOINT is not set: start the test bed (localstack/testbed.sh up) and source .testbed/env");
    let aws: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL_GLUE", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("payment.avsc"), AVRO).expect("write");
    std::fs::write(dir.path().join("click.json"), JSON_SCHEMA).expect("write");
    let at = |name: &str| dir.path().join(name).display().to_string();
    let registry_name = common::random_name("reg");
    let [avro_topic, json_topic] = ["gav", "gjs"].map(common::random_name);
    let dlq = format!("{avro_topic}.dlq");
    let group = common::random_name("g");
    for topic in [&avro_topic, &json_topic, &dlq] {
        common::create_topic(topic, 1).await;
    }
    let mut avro = serialize(
        &["glue", &registry_name, &avro_topic, "avro", &at("payment.avsc")],
        &payments()[..1],
        &aws,
    );
    avro.extend(serialize(
        &["glue", &registry_name, &avro_topic, "avro", &at("payment.avsc"), "compress"],
        &payments()[1..],
        &aws,
    ));
    assert_eq!((avro[0][1], avro[1][1]), (0, 5), "one plain, one zlib");
    // A schema version id the registry does not have.
    let mut unknown = vec![3, 0];
    unknown.extend_from_slice(uuid::Uuid::from_u128(7).as_bytes());
    unknown.extend_from_slice(&avro[0][18..]);
    avro.push(unknown);
    common::produce(&avro_topic, values(avro)).await;
    let clicks_bytes =
        serialize(&["glue", &registry_name, &json_topic, "json", &at("click.json")], &clicks(), &aws);
    common::produce(&json_topic, values(clicks_bytes)).await;

    let app = TestApp::start().await;
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut env = sidecar::env(&format!("{avro_topic},{json_topic}"), &group, &app.url());
    env.insert("SIDECAR_ADMIN_ADDR".into(), admin);
    env.insert("SIDECAR_SCHEMA_REGISTRY".into(), "glue".into());
    env.insert("SIDECAR_VALUE_FORMAT".into(), "avro".into());
    env.extend(aws.iter().cloned());
    let config = dir.path().join("routes.toml");
    std::fs::write(
        &config,
        format!("[[routes]]\ntopic = \"{json_topic}\"\nvalue_format = \"json-schema\"\n"),
    )
    .expect("write");
    let log = dir.path().join("sidecar.log");
    let file = std::fs::File::create(&log).expect("log");
    // The real binary: the Glue client reads AWS_ENDPOINT_URL_GLUE from its own environment.
    let mut child = Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("start msk-sidecar");
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        common::wait_committed(&group, &avro_topic, &[3]).await;
        common::wait_committed(&group, &json_topic, &[2]).await;
    })
    .await;
    crate::common::process::signal(&child, "TERM");
    let _ = child.wait();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(waited.is_ok(), "not committed in time; log:\n{log_text}");
    let got = received_json(&app);
    let bodies = |topic: &str| got[topic].iter().map(|(b, _)| b.clone()).collect::<Vec<_>>();
    assert_eq!(bodies(&avro_topic), payments(), "log:\n{log_text}");
    assert_eq!(bodies(&json_topic), clicks());
    let schema = got[avro_topic.as_str()][0].1.get("x-kafka-value-schema").cloned().unwrap_or_default();
    assert!(schema.starts_with(&format!("glue:{registry_name}/{avro_topic}-value@")), "{schema}");
    let letters = common::consume(&dlq, 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-error-class").as_deref(), Some("undecodable"));
    let error = common::header_text(&letters[0], "dlq-error").unwrap_or_default();
    assert!(error.contains("not in the Glue Schema Registry"), "{error}");
}
