//! `check-config --iam-policy` equals the policy Terraform renders for the same inputs.
//!
//! `infra/check.sh` renders `infra/modules/sidecar-iam-policy` for every var file in
//! `infra/tests/policy/` and checks it equals the `.expected.json` beside it; this test checks the
//! sidecar prints that same document for the same settings, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Parses the simple `.tfvars` these fixtures use: `key = "string"` and `key = ["a", "b"]`.
fn tfvars(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut values = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once('=').expect("key = value");
        let strings: Vec<String> =
            value.split('"').skip(1).step_by(2).map(|s| s.replace("\\\\", "\\")).collect();
        values.insert(key.trim().to_string(), strings);
    }
    values
}

fn env_for(vars: &BTreeMap<String, Vec<String>>) -> Vec<(String, String)> {
    let one = |key: &str| vars.get(key).and_then(|v| v.first()).cloned();
    let arn = one("msk_cluster_arn").expect("msk_cluster_arn");
    let region = arn.split(':').nth(3).expect("region").to_string();
    let mut env = vec![
        ("KAFKA_BROKERS".to_string(), format!("b-1.demo.x1.c2.kafka.{region}.amazonaws.com:9098")),
        ("AWS_REGION".to_string(), region.clone()),
        ("MSK_CLUSTER_ARN".to_string(), arn),
        ("KAFKA_TOPICS".to_string(), vars["topics"].join(",")),
        ("KAFKA_CONSUMER_GROUP".to_string(), one("consumer_group").expect("consumer_group")),
    ];
    if let Some(topic) = one("dlq_topic") {
        env.push(("SIDECAR_DLQ_TOPIC".into(), topic));
    }
    if let Some(bucket) = one("archive_bucket") {
        let prefix = one("archive_prefix").unwrap_or_default();
        env.push(("SIDECAR_DLQ_ARCHIVE".into(), format!("s3://{bucket}/{}", prefix.trim_matches('/'))));
    }
    let queue_url = |arn: &str| {
        let parts: Vec<&str> = arn.split(':').collect();
        let domain = if parts[1] == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
        format!("https://sqs.{}.{domain}/{}/{}", parts[3], parts[4], parts[5])
    };
    if let Some(queues) = vars.get("sqs_source_queue_arns") {
        env.push((
            "SQS_QUEUE_URLS".into(),
            queues.iter().map(|arn| queue_url(arn)).collect::<Vec<_>>().join(","),
        ));
    }
    for (var, name) in [
        ("environment", "ENVIRONMENT"),
        ("consumer_group_prefix", "KAFKA_CONSUMER_GROUP_PREFIX"),
        ("consumer_group_suffix", "KAFKA_CONSUMER_GROUP_SUFFIX"),
    ] {
        if let Some(value) = one(var) {
            env.push((name.to_string(), value));
        }
    }
    if let Some(registry) = one("schema_registry") {
        env.push(("SIDECAR_SCHEMA_REGISTRY".into(), registry));
        env.push(("SIDECAR_VALUE_FORMAT".into(), "avro".into()));
    }
    match one("sqs_queue_arn") {
        Some(queue) => {
            let parts: Vec<&str> = queue.split(':').collect();
            let domain = if parts[1] == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
            let url = format!("https://sqs.{}.{domain}/{}/{}", parts[3], parts[4], parts[5]);
            env.push(("SIDECAR_DELIVERY_SQS_QUEUE_URL".into(), url));
        }
        None => env.push(("SIDECAR_DELIVERY_URL".into(), "http://127.0.0.1:8080/events".into())),
    }
    env
}

#[test]
fn check_config_prints_the_policy_terraform_renders() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/tests/policy");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).expect("infra/tests/policy") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("tfvars") {
            continue;
        }
        let vars = tfvars(&std::fs::read_to_string(&path).expect("read tfvars"));
        let expected_path = path.with_extension("expected.json");
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&expected_path).expect("expected.json")).expect("json");
        let out = Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
            .args(["check-config", "--iam-policy"])
            .env_clear()
            .envs(env_for(&vars))
            .output()
            .expect("run msk-sidecar");
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        let ours: serde_json::Value = serde_json::from_slice(&out.stdout).expect("policy json");
        assert_eq!(ours, expected, "{}", path.display());
        compared += 1;
    }
    assert!(compared >= 3, "only {compared} var files compared");
}
