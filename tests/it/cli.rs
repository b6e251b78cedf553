//! The binary's command-line contract: exit codes and output, run as a child process.

use std::process::{Command, Output};

fn sidecar(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run msk-sidecar")
}

const VALID: &[(&str, &str)] = &[
    ("KAFKA_BROKERS", "127.0.0.1:9092"),
    ("KAFKA_TOPICS", "orders"),
    ("KAFKA_CONSUMER_GROUP", "g"),
    ("KAFKA_AUTH", "none"),
    ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
];

#[test]
fn bad_configuration_exits_64_naming_each_variable_and_value() {
    let mut env = VALID.to_vec();
    env.push(("SIDECAR_MAX_IN_FLIGHT", "lots"));
    env.push(("SIDECAR_ORDERING", "sideways"));
    for args in [&["run"][..], &[][..], &["check-config"][..]] {
        let out = sidecar(args, &env);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "one line per problem: {stderr}");
        assert!(stderr.contains("SIDECAR_MAX_IN_FLIGHT=\"lots\""), "{stderr}");
        assert!(stderr.contains("SIDECAR_ORDERING=\"sideways\""), "{stderr}");
    }
}

#[test]
fn missing_required_variables_exit_64() {
    let out = sidecar(&["check-config"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for variable in ["KAFKA_BROKERS", "KAFKA_TOPICS", "KAFKA_CONSUMER_GROUP", "SIDECAR_DELIVERY_URL"] {
        assert!(stderr.contains(variable), "{variable} not named: {stderr}");
    }
}

#[test]
fn check_config_prints_the_effective_configuration_with_the_file_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sidecar.toml");
    std::fs::write(&file, "sidecar_max_in_flight = 32\nsidecar_ordering = \"key\"\n").expect("write");
    let env: Vec<_> = VALID.iter().copied().chain([("SIDECAR_ORDERING", "none")]).collect();
    let out = sidecar(&["--config", file.to_str().expect("utf8 path"), "check-config"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SIDECAR_MAX_IN_FLIGHT = \"32\""), "{stdout}");
    assert!(stdout.contains("SIDECAR_ORDERING = \"none\""), "environment wins: {stdout}");
    assert!(stdout.contains("SIDECAR_DLQ_TOPIC = \"orders.dlq\""), "{stdout}");
}

#[test]
fn help_describes_the_subcommands() {
    let out = sidecar(&["--help"], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["run", "demo", "token", "check-config", "healthcheck"] {
        assert!(stdout.contains(name), "{name} missing: {stdout}");
    }
}

#[test]
fn healthcheck_fails_when_no_sidecar_answers() {
    let out = sidecar(&["healthcheck", "--addr", "127.0.0.1:9", "--timeout", "1s"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn demo_runs_the_pipeline_and_its_report_adds_up() {
    let started = std::time::Instant::now();
    let out = sidecar(&["demo"], &[("PATH", "/usr/bin:/bin")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    let number = |label: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line: {stdout}"));
        line[label.len()..].split_whitespace().next().and_then(|n| n.parse().ok()).expect("count")
    };
    assert_eq!(number("delivered:"), 290);
    // 10 the application refused, one order that is not JSON, one two days old.
    assert_eq!(number("dead-lettered:"), 12);
    assert_eq!(number("filtered:"), 3, "the test orders");
    assert!(stdout.contains("to topic demo.orders.dlq: 12 records"), "{stdout}");
    assert!(stdout.contains("permanent: 6") && stdout.contains("retries-exhausted: 4"), "{stdout}");
    assert!(stdout.contains("undecodable: 1") && stdout.contains("expired: 1"), "{stdout}");
    assert!(stdout.contains(": 12 objects"), "{stdout}");
    assert!(stdout.contains("every record is accounted for"), "{stdout}");
}

#[test]
fn a_child_sidecar_the_test_drops_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env: std::collections::BTreeMap<String, String> =
        VALID.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.insert("KAFKA_BROKERS".into(), "127.0.0.1:1".into()); // nothing there: it keeps trying
    env.insert("SIDECAR_ADMIN_ADDR".into(), "127.0.0.1:0".into());
    let mut child = crate::common::process::spawn(&env, &dir.path().join("sidecar.log"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().expect("try_wait").is_none(), "still running before the drop");
    let pid = child.id().to_string();
    drop(child);
    let alive = Command::new("kill").args(["-0", &pid]).output().expect("kill -0").status.success();
    assert!(!alive, "process {pid} outlived its handle");
}

#[test]
fn a_dead_letter_topic_that_the_subscription_also_consumes_is_refused() {
    for (topics, dlq) in [("^orders.*", "orders.dlq"), ("payments,^ord.*", "ord-dead")] {
        let env: Vec<_> = VALID
            .iter()
            .copied()
            .filter(|(k, _)| *k != "KAFKA_TOPICS")
            .chain([("KAFKA_TOPICS", topics), ("SIDECAR_DLQ_TOPIC", dlq)])
            .collect();
        let out = sidecar(&["check-config"], &env);
        assert_eq!(out.status.code(), Some(64), "{topics} / {dlq}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("SIDECAR_DLQ_TOPIC") && stderr.contains("KAFKA_TOPICS"), "{stderr}");
    }
    // The same for a route's own dead-letter topic.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sidecar.toml");
    std::fs::write(
        &file,
        "[[routes]]\ntopic = \"payments\"\ndelivery_url = \"http://127.0.0.1:8081/p\"\ndlq_topic = \"orders-dead\"\n",
    )
    .expect("write");
    let env: Vec<_> = VALID
        .iter()
        .copied()
        .filter(|(k, _)| *k != "KAFKA_TOPICS")
        .chain([("KAFKA_TOPICS", "payments,^orders.*"), ("SIDECAR_DLQ_TOPIC", "dead")])
        .collect();
    let out = sidecar(&["--config", file.to_str().expect("utf8 path"), "check-config"], &env);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("orders-dead") && stderr.contains("KAFKA_TOPICS"), "{stderr}");
}

#[test]
fn demo_with_sqs_consumes_a_queue_next_to_the_topic_or_says_what_it_needs() {
    let without = sidecar(&["demo", "--sqs", "--records", "20"], &[("PATH", "/usr/bin:/bin")]);
    assert!(!without.status.success());
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(stderr.contains("needs LocalStack") && stderr.contains("localstack/testbed.sh up"), "{stderr}");

    let mut env: Vec<(String, String)> = vec![("PATH".into(), "/usr/bin:/bin".into())];
    env.extend(crate::common::process::testbed_aws());
    let out = Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
        .args(["demo", "--sqs"])
        .env_clear()
        .envs(env)
        .output()
        .expect("run msk-sidecar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo --sqs failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("delivered 290 (expected 290), dead-lettered 10 to the archive (expected 10)"),
        "{stdout}"
    );
    assert!(stdout.contains("to topic demo.orders.dlq: 12 records"), "{stdout}");
    assert!(stdout.contains(": 22 objects"), "{stdout}");
    assert!(stdout.contains("every record is accounted for"), "{stdout}");
}

#[test]
fn demo_with_redis_and_rabbitmq_consumes_them_next_to_the_topic_or_says_what_they_need() {
    for flag in ["--redis", "--amqp"] {
        let without = sidecar(&["demo", flag, "--records", "20"], &[("PATH", "/usr/bin:/bin")]);
        assert!(!without.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&without.stderr);
        assert!(
            stderr.contains(&format!("demo {flag} needs a server"))
                && stderr.contains("localstack/testbed.sh up"),
            "{stderr}"
        );
    }

    let redis_url = crate::common::redis::url();
    let amqp_url = crate::common::amqp::url();
    let out = sidecar(
        &["demo", "--redis", "--amqp"],
        &[("PATH", "/usr/bin:/bin"), ("TESTBED_REDIS_URL", &redis_url), ("TESTBED_AMQP_URL", &amqp_url)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for (what, place) in [
        ("Redis stream", "to stream msk-sidecar-demo-tasks-"),
        ("RabbitMQ queue", "to queue msk-sidecar-demo-tasks-"),
    ] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("from {what} "))).unwrap_or_default();
        assert!(
            line.contains("delivered 290 (expected 290), dead-lettered 10 ") && line.contains(place),
            "{stdout}"
        );
    }
    // Each source's own dead-letter place holds its 10: the stream's `.dlq`, the queue's
    // dead-letter exchange's queue.
    assert_eq!(stdout.matches("  10 of them in ").count(), 2, "{stdout}");
    assert!(stdout.contains("to topic demo.orders.dlq: 12 records"), "{stdout}");
    assert!(stdout.contains(": 32 objects"), "{stdout}");
    assert!(stdout.contains("every record is accounted for"), "{stdout}");

    // What the demo made is gone afterwards.
    let stream = stdout
        .lines()
        .find_map(|l| l.strip_prefix("from Redis stream "))
        .and_then(|l| l.split(':').next())
        .expect("the demo names its stream")
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let exists: u64 = runtime
        .block_on(async {
            let mut connection = crate::common::redis::connect().await;
            redis::cmd("EXISTS").arg(&stream).arg(format!("{stream}.dlq")).query_async(&mut connection).await
        })
        .expect("EXISTS");
    assert_eq!(exists, 0, "the demo left {stream} behind");
}
