//! The test SASL gateway (`common::sasl_gateway`): its token check agrees with AWS's official
//! signer, it answers the SASL protocol in request order, and librdkafka authenticates,
//! re-authenticates (KIP-368) and round-trips records through it.
//!
//! Tokens come from `tests/support/msk_signer.py` (AWS's `aws-msk-iam-sasl-signer-python`) in
//! the test bed's venv (`TESTBED_VENV`).

use std::error::Error;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::ClientContext;
use rdkafka::Message as _;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::common::kafka_wire as wire;
use crate::common::sasl_gateway::{GatewaySettings, SaslGateway, TestKey};
use crate::common::sigv4_check::{bearer_token, decode_token, encode_token, verify_token};
use crate::common::{self, eventually, within};

/// A long-term test key (its secret has characters that need care nowhere but in HMAC input).
fn long_term_key() -> TestKey {
    TestKey::new("AKIDGATEWAYLONGTERM", "long/term+secret=key")
}

/// Temporary credentials; the session token has characters that SigV4 must percent-encode.
fn temporary_key() -> TestKey {
    TestKey::new("ASIAGATEWAYTEMPORARY", "temporary-secret").with_session_token("IQoJb3/+Jpx2luX2VjE==")
}

/// What `msk_signer.py` prints.
#[derive(Debug, Clone, Deserialize)]
struct Signed {
    /// The MSK IAM auth token.
    token: String,
    /// When it expires (ms since the epoch), as the official library computes it.
    expiry_ms: i64,
    /// The presigned URL inside the token.
    url: String,
}

/// A token signed by AWS's official Python library for `key` in `region`, now or at `at`.
fn try_official_token(region: &str, key: &TestKey, at: Option<SystemTime>) -> Result<Signed, String> {
    let venv = std::env::var("TESTBED_VENV").map_err(|_| {
        "TESTBED_VENV is not set: run `localstack/testbed.sh up && set -a && . .testbed/env && set +a`"
            .to_string()
    })?;
    let mut command = Command::new(format!("{venv}/bin/python"));
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/msk_signer.py")).args([
        "--region",
        region,
        "--access-key",
        &key.access_key_id,
        "--secret-key",
        &key.secret_access_key,
    ]);
    if let Some(token) = &key.session_token {
        command.args(["--session-token", token]);
    }
    if let Some(at) = at {
        let at = time::OffsetDateTime::from(at).replace_nanosecond(0).expect("whole second");
        command
            .args(["--time", &at.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339")]);
    }
    let output = command.output().map_err(|err| format!("running msk_signer.py: {err}"))?;
    if !output.status.success() {
        return Err(format!("msk_signer.py failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    serde_json::from_slice(&output.stdout).map_err(|err| format!("msk_signer.py printed no token: {err}"))
}

fn official_token(region: &str, key: &TestKey, at: Option<SystemTime>) -> Signed {
    try_official_token(region, key, at).unwrap_or_else(|err| panic!("{err}"))
}

/// Signs several tokens at once (each run of the signer takes most of a second).
fn official_tokens(requests: &[(&str, TestKey, Option<SystemTime>)]) -> Vec<Signed> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(region, key, at)| scope.spawn(move || official_token(region, key, *at)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("signer thread")).collect()
    })
}

fn ms_since_epoch(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

#[test]
fn verifier_accepts_tokens_from_the_official_signer() {
    let keys = vec![long_term_key(), temporary_key()];
    let cases = [
        ("us-east-1", long_term_key(), None),
        ("us-east-1", temporary_key(), None),
        ("eu-west-1", temporary_key(), None),
        ("ap-southeast-2", long_term_key(), None),
        // Within the 5 minutes of clock skew MSK tolerates.
        ("us-west-2", long_term_key(), Some(SystemTime::now() + Duration::from_secs(4 * 60))),
    ];
    for ((region, key, _), signed) in cases.iter().zip(official_tokens(&cases)) {
        let verified =
            verify_token(&signed.token, region, &keys, SystemTime::now()).unwrap_or_else(|reason| {
                panic!("{region} {}: rejected: {reason}\n{}", key.access_key_id, signed.url)
            });
        assert_eq!(verified.access_key_id, key.access_key_id);
        assert_eq!(ms_since_epoch(verified.expiry), signed.expiry_ms, "expiry of {}", signed.url);
    }
}

#[test]
fn verifier_rejects_altered_mismatched_and_unknown_tokens() {
    let region = "us-east-1";
    let keys = vec![long_term_key(), temporary_key()];
    let signed = official_token(region, &temporary_key(), None);
    let now = SystemTime::now();
    let check =
        |url: &str, region: &str, keys: &[TestKey]| verify_token(&encode_token(url), region, keys, now);
    let url = signed.url.as_str();
    check(url, region, &keys).expect("the unaltered token passes");

    // The User-Agent is appended after signing: changing it changes nothing.
    let (signed_part, _) = url.split_once("&User-Agent=").expect("User-Agent");
    check(&format!("{signed_part}&User-Agent=other%2F1.0"), region, &keys)
        .expect("another User-Agent passes");

    let sig_at = url.find("X-Amz-Signature=").expect("signature") + "X-Amz-Signature=".len();
    let flipped = if &url[sig_at..=sig_at] == "0" { "1" } else { "0" };
    let tampered_signature = format!("{}{flipped}{}", &url[..sig_at], &url[sig_at + 1..]);
    let wrong_token = vec![long_term_key(), temporary_key().with_session_token("another-token")];
    let rejections: Vec<(&str, Result<_, String>, &str)> = vec![
        ("tampered signature", check(&tampered_signature, region, &keys), "signature mismatch"),
        ("other region expected", check(url, "us-west-2", &keys), "us-west-2"),
        ("wrong session token", check(url, region, &wrong_token), "session token"),
        ("unknown key", check(url, region, &[long_term_key()]), "unknown access key"),
        (
            "session token removed",
            check(&remove_param(url, "X-Amz-Security-Token"), region, &keys),
            "session token of ASIAGATEWAYTEMPORARY is missing",
        ),
        (
            "session token on a long-term key",
            check(url, region, &[long_term_key(), TestKey { session_token: None, ..temporary_key() }]),
            "long-term key",
        ),
        (
            "Action altered",
            check(&url.replace("kafka-cluster%3AConnect", "kafka-cluster%3ADescribeCluster"), region, &keys),
            "Action",
        ),
        (
            "host altered",
            check(&url.replace(".amazonaws.com/", ".amazonaws.com.example/"), region, &keys),
            "host",
        ),
        (
            "expiry altered",
            check(&url.replace("X-Amz-Expires=900", "X-Amz-Expires=899"), region, &keys),
            "signature",
        ),
        (
            "expiry too long",
            check(&url.replace("X-Amz-Expires=900", "X-Amz-Expires=901"), region, &keys),
            "Expires",
        ),
        ("signature removed", check(&remove_param(url, "X-Amz-Signature"), region, &keys), "X-Amz-Signature"),
        ("not base64url", verify_token("not*base64", region, &keys, now), "base64"),
    ];
    for (case, result, expected) in rejections {
        let reason = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(reason.contains(expected), "{case}: reason {reason:?} does not mention {expected:?}");
        assert!(!reason.contains('\n'), "{case}: reason is not one line: {reason:?}");
    }
}

/// `url` without the query parameter `name`.
fn remove_param(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').expect("query");
    let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with(&format!("{name}="))).collect();
    format!("{base}?{}", kept.join("&"))
}

#[test]
fn verifier_rejects_expired_and_future_tokens() {
    let keys = vec![long_term_key()];
    let now = SystemTime::now();
    let signed = official_tokens(&[
        ("us-east-1", long_term_key(), Some(now - Duration::from_secs(20 * 60))),
        ("us-east-1", long_term_key(), Some(now + Duration::from_secs(10 * 60))),
    ]);
    let expired = verify_token(&signed[0].token, "us-east-1", &keys, now).expect_err("expired token");
    assert!(expired.contains("expired"), "{expired}");
    let future = verify_token(&signed[1].token, "us-east-1", &keys, now).expect_err("future token");
    assert!(future.contains("future"), "{future}");
}

#[test]
fn oauthbearer_client_message_is_parsed_like_rfc_7628() {
    let ok = |m: &str| bearer_token(m.as_bytes());
    assert_eq!(ok("n,,\x01auth=Bearer abc\x01\x01").as_deref(), Ok("abc"));
    assert_eq!(ok("n,a=user,\x01host=h\x01auth=bearer xyz\x01port=1\x01\x01").as_deref(), Ok("xyz"));
    for bad in [
        "n,,\x01auth=Bearer abc\x01",
        "y,,\x01auth=Bearer a\x01\x01",
        "n,,\x01\x01",
        "n,,\x01auth=Basic a\x01\x01",
    ] {
        assert!(ok(bad).is_err(), "{bad:?} accepted");
    }
    let decoded = decode_token(&encode_token("https://example/?a=b")).expect("round trip");
    assert_eq!(decoded, "https://example/?a=b");
}

/// An rdkafka context that signs with the official Python signer whenever librdkafka asks.
struct Signer {
    /// Region to sign for.
    region: String,
    /// Credentials to sign with.
    key: TestKey,
    /// How many tokens librdkafka asked for.
    tokens: Arc<AtomicUsize>,
}

impl Signer {
    fn new(region: &str, key: TestKey) -> Signer {
        Signer { region: region.to_string(), key, tokens: Arc::default() }
    }
}

impl ClientContext for Signer {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        let signed = try_official_token(&self.region, &self.key, None)?;
        self.tokens.fetch_add(1, Ordering::SeqCst);
        Ok(OAuthToken {
            token: signed.token,
            principal_name: "msk-sidecar-test".to_string(),
            lifetime_ms: signed.expiry_ms,
        })
    }
}

impl ConsumerContext for Signer {}

fn producer(gateway: &SaslGateway, signer: Signer) -> FutureProducer<Signer> {
    gateway
        .client_config()
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create_with_context(signer)
        .expect("producer")
}

fn consumer(gateway: &SaslGateway, signer: Signer) -> StreamConsumer<Signer> {
    gateway
        .client_config()
        .set("group.id", common::random_name("gateway-group"))
        .set("session.timeout.ms", "2000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(signer)
        .expect("consumer")
}

async fn send(producer: &FutureProducer<Signer>, topic: &str, value: &str) {
    let record = FutureRecord::to(topic).key("k").payload(value);
    within(
        Duration::from_secs(30),
        "produce through the gateway",
        producer.send(record, Duration::from_secs(10)),
    )
    .await
    .unwrap_or_else(|(err, _)| panic!("produce {value} through the gateway: {err}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_round_trips_records_through_the_gateway() {
    let key = temporary_key();
    let gateway = SaslGateway::start(GatewaySettings::new("us-east-1", vec![key.clone()])).await;
    let topic = common::random_name("gateway");
    gateway.upstream().create_topic(&topic, 1).await;

    let signer = Signer::new("us-east-1", key.clone());
    let producer_tokens = Arc::clone(&signer.tokens);
    let producer = producer(&gateway, signer);
    for i in 0..5 {
        send(&producer, &topic, &format!("record-{i}")).await;
    }
    let consumer = consumer(&gateway, Signer::new("us-east-1", key.clone()));
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut values = Vec::new();
    while values.len() < 5 {
        let message = within(Duration::from_secs(60), "records through the gateway", consumer.recv())
            .await
            .expect("consume through the gateway");
        values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string());
    }
    assert_eq!(values, (0..5).map(|i| format!("record-{i}")).collect::<Vec<_>>());

    let stats = gateway.stats();
    assert!(stats.rejections.is_empty(), "rejections: {:?}", stats.rejections);
    assert!(stats.authentications >= 2, "producer and consumer authenticate: {stats:?}");
    for connection in stats.per_connection.iter().filter(|c| c.forwarded > 0) {
        assert_eq!(connection.principal.as_deref(), Some(key.access_key_id.as_str()), "{connection:?}");
    }
    assert!(producer_tokens.load(Ordering::SeqCst) >= 1);
    assert!(consumer.context().tokens.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reauthenticates_mid_stream_without_losing_order() {
    let key = long_term_key();
    let mut settings = GatewaySettings::new("eu-west-1", vec![key.clone()]);
    settings.max_session = Some(Duration::from_secs(3));
    let gateway = SaslGateway::start(settings).await;
    let topic = common::random_name("gateway-reauth");
    gateway.upstream().create_topic(&topic, 1).await;

    let consumer = consumer(&gateway, Signer::new("eu-west-1", key.clone()));
    consumer.subscribe(&[&topic]).expect("subscribe");
    let producer = producer(&gateway, Signer::new("eu-west-1", key.clone()));
    const RECORDS: usize = 50;
    let sending = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            for i in 0..RECORDS {
                every.tick().await;
                send(&producer, &topic, &i.to_string()).await;
            }
        })
    };

    let mut arrivals: Vec<(usize, Instant)> = Vec::new();
    while arrivals.len() < RECORDS {
        let message =
            within(Duration::from_secs(30), "the next record during re-authentications", consumer.recv())
                .await
                .expect("consume through the gateway");
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string();
        arrivals.push((value.parse().expect("a number"), Instant::now()));
    }
    within(Duration::from_secs(30), "the producer", sending).await.expect("producer task");

    let values: Vec<usize> = arrivals.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, (0..RECORDS).collect::<Vec<_>>(), "records out of order or missing");
    let longest_gap = arrivals.windows(2).map(|w| w[1].1 - w[0].1).max().expect("two records");
    let stats = gateway.stats();
    assert!(longest_gap <= Duration::from_secs(2), "a gap of {longest_gap:?} between records; {stats:#?}");
    assert!(stats.rejections.is_empty(), "rejections: {:#?}", stats.rejections);
    assert!(stats.reauthentications >= 3, "too few re-authentications: {stats:#?}");
    assert!(
        stats.per_connection.iter().any(|c| c.reauthentications >= 2),
        "no connection re-authenticated twice: {stats:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_with_a_token_for_another_region_is_rejected() {
    let key = long_term_key();
    let gateway = SaslGateway::start(GatewaySettings::new("us-east-1", vec![key.clone()])).await;
    let producer: FutureProducer<Signer> = gateway
        .client_config()
        .set("message.timeout.ms", "2000")
        .create_with_context(Signer::new("eu-west-1", key))
        .expect("producer");
    let record = FutureRecord::to("gateway-never-created").key("k").payload("v");
    let sent = producer.send(record, Duration::from_secs(2));

    let rejections = eventually(Duration::from_secs(20), "a rejection by the gateway", || {
        let stats = gateway.stats();
        async move { (!stats.rejections.is_empty()).then_some(stats.rejections) }
    })
    .await;
    assert!(rejections[0].contains("eu-west-1") && rejections[0].contains("us-east-1"), "{rejections:?}");
    assert!(within(Duration::from_secs(30), "the failed send", sent).await.is_err(), "the record was sent");
    let stats = gateway.stats();
    assert_eq!(stats.authentications, 0, "{stats:#?}");
    assert!(stats.per_connection.iter().all(|c| c.forwarded == 0), "a request got through: {stats:#?}");
}

/// A TLS connection to the gateway that trusts only its CA.
async fn connect(gateway: &SaslGateway) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(gateway.ca_der()).expect("CA");
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(gateway.bootstrap()).await.expect("connect to the gateway");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake with the gateway")
}

/// Reads one response: its correlation id and body; `None` once the gateway closed.
async fn read_response(stream: &mut TlsStream<TcpStream>, flexible: bool) -> Option<(i32, Vec<u8>)> {
    let frame = within(Duration::from_secs(15), "a response", wire::read_frame(stream)).await.ok()??;
    let (correlation_id, body) = wire::parse_response(&frame, flexible).expect("response header");
    Some((correlation_id, body.to_vec()))
}

fn oauthbearer(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_reauthentication_in_request_order_and_keeps_the_principal() {
    let (first, other) = (long_term_key(), temporary_key());
    let mut settings = GatewaySettings::new("us-east-1", vec![first.clone(), other.clone()]);
    settings.max_session = Some(Duration::from_secs(60));
    let gateway = SaslGateway::start(settings).await;
    let tokens = tokio::task::spawn_blocking(move || {
        official_tokens(&[("us-east-1", first, None), ("us-east-1", other, None)])
    })
    .await
    .expect("signer");
    let mut tls = connect(&gateway).await;

    tls.write_all(&wire::request(wire::API_VERSIONS, 3, 1, "raw", &wire::api_versions_request(3)))
        .await
        .unwrap();
    let (_, body) = read_response(&mut tls, false).await.expect("ApiVersions response");
    let (error, apis) = wire::decode_api_versions(3, &body).expect("ApiVersions body");
    assert_eq!(error, 0);
    let range = |key| apis.iter().find(|a| a.key == key).map(|a| (a.min, a.max));
    assert_eq!(range(wire::SASL_HANDSHAKE), Some((0, 1)));
    assert_eq!(range(wire::SASL_AUTHENTICATE), Some((0, 2)));
    assert!(range(wire::METADATA).is_some(), "the broker's APIs are advertised: {apis:?}");

    // First authentication with SaslAuthenticate v2 (flexible).
    let handshake = wire::sasl_handshake_request("OAUTHBEARER");
    let mut batch = wire::request(wire::SASL_HANDSHAKE, 1, 2, "raw", &handshake);
    let auth = wire::sasl_authenticate_request(2, &oauthbearer(&tokens[0].token));
    batch.extend(wire::request(wire::SASL_AUTHENTICATE, 2, 3, "raw", &auth));
    tls.write_all(&batch).await.unwrap();
    let (correlation_id, body) = read_response(&mut tls, false).await.expect("SaslHandshake response");
    let (error, mechanisms) = wire::decode_sasl_handshake(&body).expect("SaslHandshake body");
    assert_eq!((correlation_id, error, mechanisms), (2, 0, vec!["OAUTHBEARER".to_string()]));
    let (correlation_id, body) = read_response(&mut tls, true).await.expect("SaslAuthenticate response");
    let response = wire::decode_sasl_authenticate(2, &body).expect("SaslAuthenticate body");
    assert_eq!((correlation_id, response.error), (3, 0), "{response:?}");
    assert!((50_000..=60_000).contains(&response.session_lifetime_ms), "{response:?}");

    // A forwarded request, then a re-authentication, in one write: the answers keep that order.
    let mut batch = wire::request(wire::METADATA, 1, 10, "raw", &wire::metadata_v1_all_topics());
    batch.extend(wire::request(wire::SASL_HANDSHAKE, 1, 11, "raw", &handshake));
    let auth = wire::sasl_authenticate_request(1, &oauthbearer(&tokens[0].token));
    batch.extend(wire::request(wire::SASL_AUTHENTICATE, 1, 12, "raw", &auth));
    tls.write_all(&batch).await.unwrap();
    let (correlation_id, body) = read_response(&mut tls, false).await.expect("Metadata response");
    assert_eq!(correlation_id, 10, "the forwarded request's response comes first");
    let brokers = wire::decode_metadata_v1_brokers(&body).expect("Metadata body");
    let port = gateway.bootstrap().rsplit_once(':').expect("port").1.parse::<i32>().expect("port");
    assert!(brokers.iter().all(|(_, host, p)| host == "127.0.0.1" && *p == port), "{brokers:?}");
    assert_eq!(read_response(&mut tls, false).await.expect("SaslHandshake").0, 11);
    let (correlation_id, body) = read_response(&mut tls, false).await.expect("SaslAuthenticate response");
    assert_eq!((correlation_id, wire::decode_sasl_authenticate(1, &body).expect("body").error), (12, 0));
    assert_eq!(gateway.stats().reauthentications, 1);

    // Re-authenticating as another principal is refused and closes the connection.
    let mut batch = wire::request(wire::SASL_HANDSHAKE, 1, 20, "raw", &handshake);
    let auth = wire::sasl_authenticate_request(2, &oauthbearer(&tokens[1].token));
    batch.extend(wire::request(wire::SASL_AUTHENTICATE, 2, 21, "raw", &auth));
    tls.write_all(&batch).await.unwrap();
    assert_eq!(read_response(&mut tls, false).await.expect("SaslHandshake").0, 20);
    let (_, body) = read_response(&mut tls, true).await.expect("SaslAuthenticate response");
    let response = wire::decode_sasl_authenticate(2, &body).expect("SaslAuthenticate body");
    assert_eq!(response.error, wire::SASL_AUTHENTICATION_FAILED);
    assert!(
        response.message.as_deref().unwrap_or_default().contains("Cannot change principals"),
        "{response:?}"
    );
    assert!(read_response(&mut tls, false).await.is_none(), "the connection stays open");
    let stats = gateway.stats();
    assert_eq!(stats.rejections.len(), 1, "{stats:#?}");
    assert!(stats.rejections[0].contains("Cannot change principals"), "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_closes_connections_that_skip_or_fail_authentication() {
    let gateway = SaslGateway::start(GatewaySettings::new("us-east-1", vec![long_term_key()])).await;

    // Any other request before authentication: closed without an answer.
    let mut tls = connect(&gateway).await;
    tls.write_all(&wire::request(wire::METADATA, 1, 1, "raw", &wire::metadata_v1_all_topics()))
        .await
        .unwrap();
    assert!(read_response(&mut tls, false).await.is_none(), "a request before authentication was answered");

    // Another mechanism: UNSUPPORTED_SASL_MECHANISM, then closed.
    let mut tls = connect(&gateway).await;
    tls.write_all(&wire::request(wire::SASL_HANDSHAKE, 1, 1, "raw", &wire::sasl_handshake_request("PLAIN")))
        .await
        .unwrap();
    let (_, body) = read_response(&mut tls, false).await.expect("SaslHandshake response");
    let (error, mechanisms) = wire::decode_sasl_handshake(&body).expect("SaslHandshake body");
    assert_eq!((error, mechanisms), (wire::UNSUPPORTED_SASL_MECHANISM, vec!["OAUTHBEARER".to_string()]));
    assert!(read_response(&mut tls, false).await.is_none());

    // A malformed OAUTHBEARER message: SASL_AUTHENTICATION_FAILED, then closed.
    let mut tls = connect(&gateway).await;
    let mut batch =
        wire::request(wire::SASL_HANDSHAKE, 1, 1, "raw", &wire::sasl_handshake_request("OAUTHBEARER"));
    let auth = wire::sasl_authenticate_request(1, b"n,,\x01auth=Bearer not*a*token\x01\x01");
    batch.extend(wire::request(wire::SASL_AUTHENTICATE, 1, 2, "raw", &auth));
    tls.write_all(&batch).await.unwrap();
    read_response(&mut tls, false).await.expect("SaslHandshake response");
    let (_, body) = read_response(&mut tls, false).await.expect("SaslAuthenticate response");
    let response = wire::decode_sasl_authenticate(1, &body).expect("SaslAuthenticate body");
    assert_eq!(response.error, wire::SASL_AUTHENTICATION_FAILED, "{response:?}");
    assert!(read_response(&mut tls, false).await.is_none());

    let stats = gateway.stats();
    assert_eq!(stats.authentications, 0);
    let reasons = stats.rejections.join("\n");
    for expected in ["before authentication", "\"PLAIN\" is not enabled", "base64"] {
        assert!(reasons.contains(expected), "no rejection mentions {expected:?}:\n{reasons}");
    }
}
