//! MSK IAM auth end to end, through the test SASL gateway that verifies tokens the way MSK does.

use std::time::{Duration, Instant, SystemTime};

use msk_sidecar::auth::{sign_token, token};
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::app::{Reply, TestApp};
use crate::common::credentials_endpoint::{self, CredentialsEndpoint};
use crate::common::sasl_gateway::{GatewaySettings, SaslGateway};
use crate::common::sidecar::{self, Sidecar};
use crate::common::sigv4_check::TestKey;
use crate::common::{self, process};

/// A test client that signs with the `test`/`test` key the gateway knows.
#[derive(Clone)]
struct Signer;

impl ClientContext for Signer {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "test");
        let token = sign_token(&credentials, "us-east-1", SystemTime::now(), &token::user_agent())?;
        Ok(OAuthToken { token: token.value, principal_name: "test".into(), lifetime_ms: token.expires_at_ms })
    }
}

impl ConsumerContext for Signer {}

fn producer(gateway: &SaslGateway) -> FutureProducer<Signer> {
    gateway.client_config().set("linger.ms", "0").create_with_context(Signer).expect("producer")
}

async fn produce(gateway: &SaslGateway, topic: &str, values: &[&str]) {
    produce_with(&producer(gateway), topic, values).await;
}

async fn produce_with(producer: &FutureProducer<Signer>, topic: &str, values: &[&str]) {
    for value in values {
        let record = FutureRecord::<str, str>::to(topic).key(value).payload(value);
        common::within(
            Duration::from_secs(30),
            "produce through the gateway",
            producer.send(record, Duration::from_secs(10)),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("produce: {err}"));
    }
}

async fn read(gateway: &SaslGateway, topic: &str, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::Consumer as _;
    let consumer: StreamConsumer<Signer> = gateway
        .client_config()
        .set("group.id", common::random_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "2000")
        .create_with_context(Signer)
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < count {
        let message = common::within(Duration::from_secs(60), "records through the gateway", consumer.recv())
            .await
            .expect("consume");
        out.push(message.detach());
    }
    out
}

/// The sidecar's environment for the gateway: IAM auth over TLS, trusting the gateway's CA.
fn iam_env(
    gateway: &SaslGateway,
    topic: &str,
    group: &str,
    url: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut env = sidecar::env(topic, group, url);
    env.remove("KAFKA_AUTH");
    env.insert("KAFKA_BROKERS".into(), gateway.bootstrap());
    env.insert("AWS_REGION".into(), "us-east-1".into());
    env.insert("SIDECAR_LIBRDKAFKA_SSL_CA_LOCATION".into(), gateway.ca_file().display().to_string());
    env
}

async fn ready(admin: &str) -> (u16, String) {
    common::get(&format!("{admin}/ready")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_and_dead_letters_with_msk_iam_over_tls() {
    let gateway =
        SaslGateway::start(GatewaySettings::new("us-east-1", vec![TestKey::new("test", "test")])).await;
    let topic = common::random_name("iam");
    gateway.upstream().create_topic(&topic, 2).await;
    gateway.upstream().create_topic(&format!("{topic}.dlq"), 1).await;
    produce(&gateway, &topic, &["a", "b", "reject", "c"]).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "reject" { Reply::Status(400) } else { Reply::Status(200) });
    let group = common::random_name("g");
    // The test process has AWS_ACCESS_KEY_ID=test from the test bed: the default chain finds it.
    let sidecar = Sidecar::start(&iam_env(&gateway, &topic, &group, &app.url())).await;

    common::eventually(Duration::from_secs(60), "4 deliveries", || {
        std::future::ready((app.received().len() >= 4).then_some(()))
    })
    .await;
    let letters = read(&gateway, &format!("{topic}.dlq"), 1).await;
    assert_eq!(common::header_text(&letters[0], "dlq-error-class").as_deref(), Some("permanent"));
    let (status, body) = ready(&sidecar.admin()).await;
    assert_eq!(status, 200, "{body}");
    let stats = gateway.stats();
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    assert!(
        stats.authentications >= 2,
        "consumer and dead-letter producer authenticated: {}",
        stats.authentications
    );
    assert!(sidecar.running().metrics.render_prometheus().contains("msk_sidecar_token_expiry "));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_consuming_across_credential_rotations_and_reauthentications() {
    // A new key every 12 s, each valid for 36 s: sessions end with the key, so the clients must
    // re-authenticate with fresh credentials of the same role every half minute or less.
    let plan = credentials_endpoint::Plan::new(30, Duration::from_secs(12), Duration::from_secs(36));
    let mut gateway_keys = plan.keys.clone();
    gateway_keys.push(TestKey::new("test", "test"));
    let gateway = SaslGateway::start(GatewaySettings::new("us-east-1", gateway_keys)).await;
    let endpoint = CredentialsEndpoint::start(plan, true).await;
    let topic = common::random_name("rotate");
    gateway.upstream().create_topic(&topic, 1).await;
    gateway.upstream().create_topic(&format!("{topic}.dlq"), 1).await;
    let app = TestApp::start().await;
    app.behave(|r| if r.text() == "reject" { Reply::Status(400) } else { Reply::Status(200) });
    let group = common::random_name("g");
    let admin_port = common::free_port();
    let mut env = iam_env(&gateway, &topic, &group, &app.url());
    env.insert("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), endpoint.uri());
    env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    env.insert("SIDECAR_ADMIN_ADDR".into(), format!("127.0.0.1:{admin_port}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);

    let run = Duration::from_secs(75);
    let started = Instant::now();
    let mut produced = 0usize;
    let test_producer = producer(&gateway);
    while started.elapsed() < run {
        produce_with(&test_producer, &topic, &[&format!("r{produced}")]).await;
        produced += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The dead-letter producer has been idle since start-up, long past its first token's expiry.
    produce_with(&test_producer, &topic, &["reject"]).await;
    let letters = read(&gateway, &format!("{topic}.dlq"), 1).await;
    assert_eq!(
        common::header_text(&letters[0], "dlq-source-offset").as_deref(),
        Some(produced.to_string().as_str())
    );
    common::eventually(Duration::from_secs(30), "every record delivered", || {
        std::future::ready((app.received().len() > produced).then_some(()))
    })
    .await;
    process::signal(&child, "TERM");
    let (status, _) = process::wait(&mut child, Duration::from_secs(30)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{log_text}");

    let received = app.received();
    let first = received.first().expect("deliveries").at;
    let gaps: Vec<Duration> = received.windows(2).map(|w| w[1].at - w[0].at).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    println!(
        "rotation: {} keys served, {} re-authentications, longest gap {longest:?} over {:?}",
        endpoint.distinct_keys_served(),
        gateway.stats().reauthentications,
        received.last().expect("last").at - first
    );
    assert!(
        endpoint.distinct_keys_served() >= 4,
        "at least three rotations: {}",
        endpoint.distinct_keys_served()
    );
    let stats = gateway.stats();
    let sidecar_connections: Vec<_> = stats
        .per_connection
        .iter()
        .filter(|c| c.principal.as_deref() == Some(credentials_endpoint::ROLE))
        .collect();
    let reauthentications: u64 = sidecar_connections.iter().map(|c| c.reauthentications).sum();
    assert!(reauthentications >= 3, "re-authentications of the sidecar's connections: {reauthentications}");
    assert!(stats.rejections.is_empty(), "{:?}\n{log_text}", stats.rejections);
    assert!(longest < Duration::from_secs(4), "longest gap between deliveries {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_it_stays_up_unready_and_recovers_when_they_appear() {
    let plan = credentials_endpoint::Plan::new(5, Duration::from_secs(600), Duration::from_secs(1200));
    let mut gateway_keys = plan.keys.clone();
    gateway_keys.push(TestKey::new("test", "test"));
    let gateway = SaslGateway::start(GatewaySettings::new("us-east-1", gateway_keys)).await;
    let endpoint = CredentialsEndpoint::start(plan, false).await;
    let topic = common::random_name("nocreds");
    gateway.upstream().create_topic(&topic, 1).await;
    gateway.upstream().create_topic(&format!("{topic}.dlq"), 1).await;
    produce(&gateway, &topic, &["one", "two"]).await;
    let app = TestApp::start().await;
    let admin_port = common::free_port();
    let mut env = iam_env(&gateway, &topic, &common::random_name("g"), &app.url());
    env.insert("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), endpoint.uri());
    env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    env.insert("SIDECAR_ADMIN_ADDR".into(), format!("127.0.0.1:{admin_port}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);
    let admin = format!("http://127.0.0.1:{admin_port}");

    let reason =
        common::eventually(Duration::from_secs(30), "/ready to name the missing credentials", || {
            let admin = admin.clone();
            async move {
                let (status, body) = common::get(&format!("{admin}/ready")).await;
                (status == 503 && body.contains("token: cannot")).then_some(body)
            }
        })
        .await;
    assert!(reason.contains("credentials"), "{reason}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(child.try_wait().expect("try_wait").is_none(), "the process stays up");
    assert!(app.received().is_empty());
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("Cannot load AWS credentials"), "a clear log line: {log_text}");

    endpoint.set_available(true);
    common::eventually(Duration::from_secs(60), "deliveries once credentials appear", || {
        std::future::ready((app.received().len() >= 2).then_some(()))
    })
    .await;
    let (status, body) = common::get(&format!("{admin}/ready")).await;
    assert_eq!(status, 200, "{body}");
    process::signal(&child, "TERM");
    process::wait(&mut child, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_region_is_a_clear_readiness_error_and_the_process_stays_up() {
    let gateway =
        SaslGateway::start(GatewaySettings::new("us-east-1", vec![TestKey::new("test", "test")])).await;
    let topic = common::random_name("region");
    gateway.upstream().create_topic(&topic, 1).await;
    let app = TestApp::start().await;
    let mut env = iam_env(&gateway, &topic, &common::random_name("g"), &app.url());
    env.insert("AWS_REGION".into(), "eu-west-1".into());
    let sidecar = Sidecar::start(&env).await;
    let admin = sidecar.admin();
    let body =
        common::eventually(Duration::from_secs(30), "/ready to report the rejected authentication", || {
            let admin = admin.clone();
            async move {
                let (status, body) = ready(&admin).await;
                (status == 503
                    && body.contains("authentication (consumer): the brokers rejected authentication"))
                .then_some(body)
            }
        })
        .await;
    assert!(body.contains("eu-west-1"), "the reason names the region: {body}");
    assert!(gateway.stats().rejections.iter().any(|r| r.contains("eu-west-1")));
    let metrics = sidecar.running().metrics.render_prometheus();
    assert!(!metrics.contains("msk_sidecar_auth_failures_total 0"), "{metrics}");
    sidecar.stop().await;
}
