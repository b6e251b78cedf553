//! SQS delivery against LocalStack: standard and FIFO queues, deduplication after a crash, claim
//! checks for large records, and a missing queue that holds the partition instead of producing
//! dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use crate::common::sidecar::{self, Sidecar};
use crate::common::sqs::{create_queue, receive};
use crate::common::{self, Produce, process};

fn sqs_env(topic: &str, group: &str, queue_url: &str) -> BTreeMap<String, String> {
    let mut env = sidecar::env(topic, group, "http://unused");
    env.remove("SIDECAR_DELIVERY_URL");
    env.insert("SIDECAR_DELIVERY_SQS_QUEUE_URL".into(), queue_url.into());
    env.extend(process::testbed_aws());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_once_with_their_attributes_on_a_standard_queue() {
    let sqs = common::sqs().await;
    let (_, url) = create_queue(&sqs, false).await;
    let topic = common::random_name("sqs");
    common::create_topic(&topic, 2).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let mut records: Vec<Produce> =
        (0..25).map(|i| Produce::text(i % 2, &format!("k{i}"), &format!("{{\"n\":{i}}}"))).collect();
    records.push(Produce { partition: 0, key: None, value: Some(vec![0xff, 0x00, 0x7f]), headers: vec![] });
    common::produce(&topic, records).await;
    let group = common::random_name("g");
    let sidecar = Sidecar::start(&sqs_env(&topic, &group, &url)).await;
    common::wait_committed(&group, &topic, &[14, 12]).await;
    let messages = receive(&sqs, &url, 26, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 26, "every record once");
    let mut seen = std::collections::BTreeSet::new();
    for m in &messages {
        assert_eq!(m.attributes.get("kafka.topic").map(String::as_str), Some(topic.as_str()));
        let partition = m.attributes["kafka.partition"].clone();
        let offset = m.attributes["kafka.offset"].clone();
        assert!(seen.insert((partition, offset)), "duplicate message");
        assert!(m.attributes.contains_key("kafka.timestamp"));
    }
    let json = messages.iter().find(|m| m.body == "{\"n\":0}").expect("record 0");
    assert_eq!(json.attributes.get("kafka.key").map(String::as_str), Some("azA="));
    let binary = messages
        .iter()
        .find(|m| m.attributes.get("kafka.value-encoding").map(String::as_str) == Some("base64"));
    assert_eq!(binary.map(|m| m.body.as_str()), Some("/wB/"));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_keep_key_order_and_a_crash_does_not_enqueue_twice() {
    let sqs = common::sqs().await;
    let (_, url) = create_queue(&sqs, true).await;
    let topic = common::random_name("fifo");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let total = 300;
    common::produce(
        &topic,
        (0..total).map(|i| Produce::text(0, &format!("key-{}", i % 5), &format!("{i}"))).collect(),
    )
    .await;
    let group = common::random_name("g");
    let mut env = sqs_env(&topic, &group, &url);
    env.insert("SIDECAR_ORDERING".into(), "key".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");

    // Kill the sidecar right after its first messages reach the queue, before a commit.
    let mut first = process::spawn(&env, &log);
    common::eventually(Duration::from_secs(30), "the first messages in the queue", || {
        let (sqs, url) = (sqs.clone(), url.clone());
        async move {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .ok()?;
            let count: u64 = attributes
                .attributes()?
                .get(&QueueAttributeName::ApproximateNumberOfMessages)?
                .parse()
                .ok()?;
            (count > 0).then_some(())
        }
    })
    .await;
    process::signal(&first, "KILL");
    process::wait(&mut first, Duration::from_secs(10)).await;
    let (g, t) = (group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || common::committed(&g, &t, 1)).await.expect("join");
    assert!(committed[0] < total as i64, "killed before everything was committed: {committed:?}");

    let mut second = process::spawn(&env, &log);
    common::wait_committed(&group, &topic, &[total as i64]).await;
    process::signal(&second, "TERM");
    process::wait(&mut second, Duration::from_secs(20)).await;

    let messages = receive(&sqs, &url, total as usize + 1, Duration::from_secs(15)).await;
    assert_eq!(messages.len(), total as usize, "records sent again after the crash were deduplicated by SQS");
    let mut per_group: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for m in &messages {
        let group = m.group.clone().expect("MessageGroupId");
        per_group.entry(group).or_default().push(m.body.parse().expect("number"));
    }
    assert_eq!(per_group.len(), 5, "one group per key");
    for (key, values) in per_group {
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{key} out of order: {values:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_sqs_limit_travels_as_a_claim_check() {
    let sqs = common::sqs().await;
    let s3 = common::s3().await;
    let (_, url) = create_queue(&sqs, false).await;
    let bucket = common::random_name("claims");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let topic = common::random_name("big");
    common::create_topic(&topic, 1).await;
    common::create_topic(&format!("{topic}.dlq"), 1).await;
    let big = vec![b'a'; 300_000];
    common::produce(
        &topic,
        vec![Produce { partition: 0, key: Some(b"k".to_vec()), value: Some(big.clone()), headers: vec![] }],
    )
    .await;
    let group = common::random_name("g");
    let mut env = sqs_env(&topic, &group, &url);
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("s3://{bucket}/archive"));
    let sidecar = Sidecar::start(&env).await;
    common::wait_committed(&group, &topic, &[1]).await;
    let messages = receive(&sqs, &url, 1, Duration::from_secs(15)).await;
    let pointer = messages[0].attributes.get("kafka.claim-check").expect("claim check attribute").clone();
    let body: serde_json::Value = serde_json::from_str(&messages[0].body).expect("JSON pointer body");
    assert_eq!(body["claim_check"], pointer.as_str());
    let key = pointer.strip_prefix(&format!("s3://{bucket}/")).expect("in the archive bucket");
    assert!(key.starts_with(&format!("archive/claim-checks/{topic}/")), "{key}");
    let object = s3.get_object().bucket(&bucket).key(key).send().await.expect("claim check object");
    let stored = object.body.collect().await.expect("body").into_bytes();
    assert_eq!(stored.len(), big.len());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_holds_the_partition_without_dead_letters_until_it_exists() {
    let sqs = common::sqs().await;
    let name = common::random_name("later");
    let account_url =
        sqs.create_queue().queue_name(common::random_name("probe")).send().await.expect("queue");
    let url = account_url
        .queue_url()
        .expect("url")
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{name}"))
        .expect("url");
    let topic = common::random_name("missing");
    common::create_topic(&topic, 1).await;
    let dlq = format!("{topic}.dlq");
    common::create_topic(&dlq, 1).await;
    common::produce(&topic, (0..5).map(|i| Produce::text(0, "k", &format!("{i}"))).collect()).await;
    let group = common::random_name("g");
    let mut env = sqs_env(&topic, &group, &url);
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "2".into());
    let sidecar = Sidecar::start(&env).await;
    let admin = sidecar.admin();
    let reason = common::eventually(Duration::from_secs(30), "/ready to name the missing queue", || {
        let admin = admin.clone();
        async move {
            let (status, body) = common::get(&format!("{admin}/ready")).await;
            (status == 503 && body.contains("delivery")).then_some(body)
        }
    })
    .await;
    assert!(reason.contains("NonExistentQueue") || reason.contains("QueueDoesNotExist"), "{reason}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sidecar.running().metrics.total(|c| c.dead_lettered_total()), 0, "no dead letters");
    let (g, t) = (group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || common::committed(&g, &t, 1)).await.expect("join");
    assert!(committed[0] <= 0, "the partition did not advance: {committed:?}");

    sqs.create_queue().queue_name(&name).send().await.expect("create the queue");
    common::wait_committed(&group, &topic, &[5]).await;
    assert_eq!(receive(&sqs, &url, 5, Duration::from_secs(15)).await.len(), 5);
    let (status, _) = common::get(&format!("{admin}/ready")).await;
    assert_eq!(status, 200);
    sidecar.stop().await;
    assert!(common::consume_available(&dlq, Duration::from_secs(1)).await.is_empty());
}

/// What the fake SQS endpoint answers to `SendMessageBatch`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FakeSqs {
    /// The whole call is refused: the credentials are not valid.
    InvalidToken,
    /// The call works, every entry fails on the queue's KMS key.
    KmsDenied,
    /// Every entry is accepted.
    Accept,
}

/// A fake SQS endpoint (JSON protocol) answering as `mode` says; counts the entries it accepted.
async fn fake_sqs(
    mode: std::sync::Arc<std::sync::Mutex<FakeSqs>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let handler = move |body: axum::body::Bytes| {
        let (mode, accepted) = (*mode.lock().unwrap(), accepted.clone());
        async move {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let ids: Vec<String> = request["Entries"]
                .as_array()
                .map(|e| e.iter().filter_map(|e| e["Id"].as_str().map(String::from)).collect())
                .unwrap_or_default();
            let mut headers = HeaderMap::new();
            headers.insert("content-type", "application/x-amz-json-1.0".parse().unwrap());
            match mode {
                FakeSqs::InvalidToken => {
                    headers.insert("x-amzn-query-error", "InvalidClientTokenId;Sender".parse().unwrap());
                    let body = serde_json::json!({"__type": "com.amazonaws.sqs#InvalidClientTokenId", "message": "The security token included in the request is invalid."});
                    (StatusCode::FORBIDDEN, headers, body.to_string()).into_response()
                }
                FakeSqs::KmsDenied => {
                    let failed: Vec<_> = ids.iter().map(|id| serde_json::json!({"Id": id, "SenderFault": true, "Code": "KMS.AccessDeniedException", "Message": "denied"})).collect();
                    (
                        StatusCode::OK,
                        headers,
                        serde_json::json!({"Successful": [], "Failed": failed}).to_string(),
                    )
                        .into_response()
                }
                FakeSqs::Accept => {
                    accepted.fetch_add(ids.len(), std::sync::atomic::Ordering::SeqCst);
                    let ok: Vec<_> = ids.iter().map(|id| serde_json::json!({"Id": id, "MessageId": format!("m-{id}"), "MD5OfMessageBody": "0"})).collect();
                    (StatusCode::OK, headers, serde_json::json!({"Successful": ok, "Failed": []}).to_string())
                        .into_response()
                }
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = axum::Router::new().route("/", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_credentials_and_kms_errors_hold_the_partition_without_dead_letters() {
    let mode = std::sync::Arc::new(std::sync::Mutex::new(FakeSqs::InvalidToken));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = fake_sqs(mode.clone(), accepted.clone()).await;
    let topic = common::random_name("denied");
    common::create_topic(&topic, 1).await;
    let dlq = format!("{topic}.dlq");
    common::create_topic(&dlq, 1).await;
    common::produce(&topic, (0..5).map(|i| Produce::text(0, "k", &format!("{i}"))).collect()).await;
    let group = common::random_name("g");
    let mut env = sqs_env(&topic, &group, &format!("http://{addr}/000000000000/orders"));
    env.insert("AWS_ENDPOINT_URL".into(), format!("http://{addr}"));
    env.insert("SIDECAR_RETRY_MAX_ATTEMPTS".into(), "2".into());
    let admin = format!("127.0.0.1:{}", common::free_port());
    env.insert("SIDECAR_ADMIN_ADDR".into(), admin.clone());
    let admin = format!("http://{admin}");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("sidecar.log");
    let mut child = process::spawn(&env, &log);

    for (phase, code) in
        [(FakeSqs::InvalidToken, "InvalidClientTokenId"), (FakeSqs::KmsDenied, "KMS.AccessDenied")]
    {
        *mode.lock().unwrap() = phase;
        let reason = common::eventually(Duration::from_secs(30), "/ready to name the refusal", || {
            let admin = admin.clone();
            async move {
                let (status, body) = common::get(&format!("{admin}/ready")).await;
                (status == 503 && body.contains(code)).then_some(body)
            }
        })
        .await;
        assert!(reason.contains("delivery"), "{reason}");
        // Held, with retries, beyond the two attempts a retryable failure would get.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (g, t) = (group.clone(), topic.clone());
        let committed =
            tokio::task::spawn_blocking(move || common::committed(&g, &t, 1)).await.expect("join");
        assert!(committed[0] <= 0, "{phase:?}: the partition did not advance: {committed:?}");
    }
    *mode.lock().unwrap() = FakeSqs::Accept;
    common::wait_committed(&group, &topic, &[5]).await;
    process::signal(&child, "TERM");
    let (status, _) = process::wait(&mut child, Duration::from_secs(15)).await;
    assert!(status.success());
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        5,
        "each record sent once it was accepted"
    );
    let letters = common::consume_available(&dlq, Duration::from_secs(1)).await;
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(letters.is_empty(), "no dead letters; log:\n{log_text}");
}
