//! MSK IAM tokens against AWS's official signer, and the IAM policy output.

use std::collections::BTreeMap;
use std::process::Command;

/// Runs `msk-sidecar` with exactly `env`.
fn sidecar(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_msk-sidecar"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run msk-sidecar")
}

/// Runs AWS's Python signer (installed in the test bed's venv) with a frozen clock.
fn official(region: &str, key: &str, secret: &str, session: Option<&str>, time: &str) -> serde_json::Value {
    let venv =
        std::env::var("TESTBED_VENV").expect("TESTBED_VENV is not set: run the tests with scripts/test.sh");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/msk_signer.py");
    let mut command = Command::new(format!("{venv}/bin/python"));
    command.arg(script).args([
        "--region",
        region,
        "--access-key",
        key,
        "--secret-key",
        secret,
        "--time",
        time,
    ]);
    if let Some(session) = session {
        command.args(["--session-token", session]);
    }
    let out = command.output().expect("run the official signer");
    assert!(out.status.success(), "official signer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("signer JSON")
}

fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url).expect("url").query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[test]
fn tokens_match_the_official_aws_signer() {
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let session = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+/session=token";
    let cases = [
        ("us-east-1", None, "2024-01-02T03:04:05Z"),
        ("us-east-1", Some(session), "2024-01-02T03:04:05Z"),
        ("eu-west-1", Some(session), "2025-06-30T23:59:59Z"),
        ("ap-southeast-2", None, "2026-11-23T12:00:00Z"),
        ("us-gov-west-1", Some("short"), "2024-02-29T00:00:00Z"),
    ];
    for (region, session_token, time) in cases {
        let mut env = vec![("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"), ("AWS_SECRET_ACCESS_KEY", secret)];
        if let Some(token) = session_token {
            env.push(("AWS_SESSION_TOKEN", token));
        }
        let out = sidecar(&["token", "--region", region, "--signing-time", time, "--decode"], &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ours_url = stdout.lines().next().expect("url line");
        let theirs = official(region, "AKIAIOSFODNN7EXAMPLE", secret, session_token, time);
        let theirs_url = theirs["url"].as_str().expect("url");

        let mut ours = query(ours_url);
        let mut expected = query(theirs_url);
        assert_eq!(
            ours.remove("User-Agent").as_deref(),
            Some(concat!("msk-sidecar/", env!("CARGO_PKG_VERSION")))
        );
        assert!(
            expected.remove("User-Agent").is_some_and(|ua| ua.starts_with("aws-msk-iam-sasl-signer-python/"))
        );
        assert_eq!(
            ours, expected,
            "{region} {session_token:?} {time}: every signed parameter and the signature"
        );
        assert_eq!(ours_url.split('?').next(), theirs_url.split('?').next(), "same endpoint ({region})");
        let expiry: i64 = stdout
            .lines()
            .nth(1)
            .and_then(|l| l.split('(').nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("expiry ms");
        assert_eq!(expiry, theirs["expiry_ms"].as_i64().expect("expiry"), "expiry = X-Amz-Date + 900 s");
    }
}

#[test]
fn token_is_the_base64url_of_the_url() {
    use base64::Engine as _;
    let env = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "secret")];
    let args = ["token", "--region", "eu-central-1", "--signing-time", "2024-05-06T07:08:09Z"];
    let token = String::from_utf8(sidecar(&args, &env).stdout).expect("utf8");
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()).expect("base64url");
    let url = String::from_utf8(decoded).expect("utf8");
    let mut decode_args = args.to_vec();
    decode_args.push("--decode");
    let printed = String::from_utf8(sidecar(&decode_args, &env).stdout).expect("utf8");
    assert_eq!(printed.lines().next(), Some(url.as_str()));
}

#[test]
fn token_without_region_or_credentials_fails_clearly() {
    let out = sidecar(&["token"], &[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no region"));
    let out = sidecar(&["token", "--region", "eu-west-1"], &[("AWS_EC2_METADATA_DISABLED", "true")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load AWS credentials"));
    let out = sidecar(&["token", "--region", "eu-west-1", "--signing-time", "yesterday"], &[]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn region_comes_from_the_msk_broker_names() {
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("KAFKA_BROKERS", "b-1.demo.x1.c2.kafka.ca-central-1.amazonaws.com:9098"),
    ];
    let out = sidecar(&["token", "--decode"], &env);
    let url = String::from_utf8_lossy(&out.stdout);
    assert!(url.starts_with("https://kafka.ca-central-1.amazonaws.com/?"), "{url}");
}

#[test]
fn check_config_prints_the_least_privilege_policy() {
    let env = [
        ("KAFKA_BROKERS", "b-1.demo.x1.c2.kafka.eu-west-1.amazonaws.com:9098"),
        ("KAFKA_TOPICS", "orders"),
        ("KAFKA_CONSUMER_GROUP", "orders-sidecar"),
        ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
        ("SIDECAR_DLQ_ARCHIVE", "s3://dlq-bucket/dead"),
        ("MSK_CLUSTER_ARN", "arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc-1"),
    ];
    let out = sidecar(&["check-config", "--iam-policy"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).expect("policy JSON");
    let sids: Vec<&str> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    assert_eq!(
        sids,
        [
            "ConnectToCluster",
            "ReadSourceTopics",
            "WriteDeadLetterTopic",
            "UseConsumerGroup",
            "ArchiveDeadLetters"
        ]
    );
    assert_eq!(
        policy["Statement"][2]["Resource"][0],
        "arn:aws:kafka:eu-west-1:123456789012:topic/demo/abc-1/orders.dlq"
    );
    let full = sidecar(&["check-config"], &env);
    let text = String::from_utf8_lossy(&full.stdout);
    assert!(text.contains("# Least-privilege IAM policy"), "{text}");
    assert!(text.contains("MSK_CLUSTER_ARN = \"arn:aws:kafka:eu-west-1:123456789012:cluster/demo/abc-1\""));
}

/// Runs botocore's presigner (tests/support/cache_signer.py) with a frozen clock.
fn official_cache_token(args: &[&str]) -> String {
    let venv =
        std::env::var("TESTBED_VENV").expect("TESTBED_VENV is not set: run the tests with scripts/test.sh");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/cache_signer.py");
    let out =
        Command::new(format!("{venv}/bin/python")).arg(script).args(args).output().expect("run botocore");
    assert!(out.status.success(), "botocore failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").trim().to_string()
}

/// service, cache, user, serverless, session token, region, signing time.
type CacheCase<'a> = (&'a str, &'a str, &'a str, bool, Option<&'a str>, &'a str, &'a str);

#[test]
fn elasticache_and_memorydb_tokens_match_botocore_byte_for_byte() {
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let session = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+/session=token";
    let cases: [CacheCase<'_>; 4] = [
        ("elasticache", "my-group", "app-user", false, None, "us-east-1", "2024-01-02T03:04:05Z"),
        ("elasticache", "orders-cache", "svc@team", true, Some(session), "eu-west-1", "2025-06-30T23:59:59Z"),
        ("memorydb", "streams", "reader", false, Some(session), "ap-southeast-2", "2026-11-23T12:00:00Z"),
        ("elasticache", "g", "u", false, Some("short"), "us-gov-west-1", "2024-02-29T00:00:00Z"),
    ];
    for (service, name, user, serverless, session_token, region, time) in cases {
        let mut env = vec![("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"), ("AWS_SECRET_ACCESS_KEY", secret)];
        let mut theirs_args = vec![
            "--service",
            service,
            "--name",
            name,
            "--user",
            user,
            "--region",
            region,
            "--access-key",
            "AKIAIOSFODNN7EXAMPLE",
            "--secret-key",
            secret,
            "--time",
            time,
        ];
        if let Some(token) = session_token {
            env.push(("AWS_SESSION_TOKEN", token));
            theirs_args.extend(["--session-token", token]);
        }
        let mut ours_args = vec!["token", "--region", region, "--signing-time", time, "--user", user];
        ours_args.extend([if service == "memorydb" { "--memorydb" } else { "--elasticache" }, name]);
        if serverless {
            ours_args.push("--serverless");
            theirs_args.push("--serverless");
        }
        let out = sidecar(&ours_args, &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ours = String::from_utf8(out.stdout).expect("utf8").trim().to_string();
        assert_eq!(ours, official_cache_token(&theirs_args), "{service} {name} {user} {region} {time}");
    }
}
