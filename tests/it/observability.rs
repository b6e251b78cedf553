//! The alerting rules and the dashboard against the real thing: every metric they use is one a
//! running sidecar exports, and a real Prometheus (Debian's) scraping a sidecar whose
//! application is down fires `MskSidecarBreakerOpen`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::app::{Reply, TestApp};
use crate::common::sidecar::{self, Sidecar};
use crate::common::{self, Produce};

fn observability(file: &str) -> String {
    let path = format!("{}/infra/observability/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The `msk_sidecar_*` metric names a text uses (histogram series by their family's name).
fn used_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("msk_sidecar_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

/// The metric families a `/metrics` page has.
fn exported_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let topic = common::random_name("obs");
    let dlq = format!("{topic}.dlq");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&dlq, 1).await;
    let json = |kind: &str| Some(format!("{{\"kind\":\"{kind}\"}}").into_bytes());
    common::produce(
        &topic,
        ["ok", "skip", "bad", "retry"]
            .iter()
            .map(|k| Produce { partition: 0, key: None, value: json(k), headers: vec![] })
            .collect(),
    )
    .await;
    let app = TestApp::start().await;
    let retried = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    app.behave(move |r| {
        let text = r.text();
        if text.contains("bad") {
            Reply::Status(400)
        } else if text.contains("retry") && !retried.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    });
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_VALUE_FORMAT".into(), "json".into());
    env.insert("SIDECAR_FILTER".into(), "record.value.kind != 'skip'".into());
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[4]).await;
    let wanted: BTreeSet<String> = used_names(&observability("alerts.yml"))
        .union(&used_names(&observability("dashboard.json")))
        .cloned()
        .collect();
    assert!(wanted.len() >= 15, "the rules and panels use the sidecar's metrics: {wanted:?}");
    // Lag in records comes with librdkafka's statistics (every 5 s).
    let missing = common::eventually(Duration::from_secs(20), "every metric exported", || async {
        let (_, page) = common::get(&format!("{}/metrics", sidecar.admin())).await;
        let exported = exported_names(&page);
        let missing: Vec<String> = wanted.difference(&exported).cloned().collect();
        missing.is_empty().then_some(missing)
    })
    .await;
    assert!(missing.is_empty());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_the_breaker_alert_while_the_application_is_down() {
    let prometheus = std::env::var("TESTBED_PROMETHEUS")
        .expect("TESTBED_PROMETHEUS is not set: start the test bed (localstack/testbed.sh up) and source .testbed/env");
    let topic = common::random_name("alert");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, (0..5).map(|i| Produce::text(0, "k", &format!("v{i}"))).collect()).await;
    // The application is down: nothing listens where the sidecar delivers.
    let down = format!("http://127.0.0.1:{}/events", common::free_port());
    let admin = format!("127.0.0.1:{}", common::free_port());
    let mut env = sidecar::env(&topic, &group, &down);
    env.insert("SIDECAR_ADMIN_ADDR".into(), admin.clone());
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "1000".into());
    let sidecar = Sidecar::start(&env).await;

    // The shipped rules, with their `for:` cut to nothing so the test does not wait minutes.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules: String =
        observability("alerts.yml")
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("for:") { "        for: 0s".to_string() } else { l.to_string() }
            })
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(dir.path().join("alerts.yml"), rules).expect("write rules");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n  - job_name: sidecar\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .expect("write config");
    let port = common::free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let mut server = std::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(dir.path())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let fired = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(answer) = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/alerts")).await else {
                continue;
            };
            let text = answer.bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            let alerts = body["data"]["alerts"].as_array().cloned().unwrap_or_default();
            if let Some(alert) = alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == "MskSidecarBreakerOpen" && a["state"] == "firing")
            {
                return alert.clone();
            }
        }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    let log_text = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let alert = fired.unwrap_or_else(|_| {
        panic!("no MskSidecarBreakerOpen alert fired in 60 s; prometheus log:\n{log_text}")
    });
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["instance"], admin.as_str());
    sidecar.stop().await;
}

/// The CloudWatch metric filters of `infra/modules/sidecar-alarms` match on the JSON log line's
/// `message` and read its `error_class`: the real binary writes them so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudwatch_log_filters_match_the_json_dead_letter_line() {
    let alarms =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/modules/sidecar-alarms/main.tf"))
            .expect("sidecar-alarms/main.tf");
    assert!(
        alarms.contains(r#"{ $.message = \"Record dead-lettered.\" }"#)
            && alarms.contains(r#""$.error_class""#)
    );
    let topic = common::random_name("cwl");
    let group = common::random_name("g");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    common::produce(&topic, vec![Produce::text(0, "k", "refused")]).await;
    let app = TestApp::start().await;
    app.behave(|_| Reply::Status(400));
    let mut env = sidecar::env(&topic, &group, &app.url());
    env.insert("SIDECAR_LOG_FORMAT".into(), "json".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = crate::common::process::spawn(&env, &log);
    common::wait_committed(&group, &topic, &[1]).await;
    crate::common::process::signal(&child, "TERM");
    crate::common::process::wait(&mut child, Duration::from_secs(15)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "Record dead-lettered.")
        .unwrap_or_else(|| panic!("no JSON dead-letter line:\n{text}"));
    assert_eq!(line["error_class"], "permanent", "{line}");
    assert_eq!(line["level"], "WARN");
}
