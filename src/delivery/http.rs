//! HTTP delivery: one POST per record to the application, as the contract in `DESIGN.md` says.
//!
//! The body is the record value unchanged; coordinates, key, timestamp and headers travel as
//! `x-kafka-*` headers (binary values base64); an SQS message's facts as its `x-sqs-*` headers,
//! with `x-delivery-attempt` counting SQS's earlier receives too. A pooled keep-alive client is shared by every
//! attempt; each attempt has its own timeout. Responses are classified: 2xx delivered; 408,
//! 429, 5xx retryable (429/503 with `Retry-After` carry the delay); other 4xx permanent;
//! refused, reset or timed-out connections mean the application is unreachable. The circuit
//! breaker's probe is a `HEAD` that must get an answer.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::{Attempt, AttemptOutcome, Delivery, Failure, FailureKind};
use crate::record::{Origin, Record};

/// Response body bytes kept for the dead letter's error text.
const DETAIL_BYTES: usize = 512;

/// The least the circuit breaker's probe waits for an answer; it waits as long as a delivery
/// attempt when that is longer, so a slow but healthy application is not judged down.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the HTTP target could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The HTTP client could not be created (TLS roots, resolver).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Posts records to the application.
#[derive(Clone)]
pub struct HttpDelivery {
    /// Pooled client shared by all attempts.
    client: reqwest::Client,
    /// The application endpoint.
    url: Url,
    /// Per-attempt time limit.
    timeout: Duration,
}

impl HttpDelivery {
    /// Builds the target with a connection pool sized for `max_in_flight` concurrent requests.
    pub fn new(url: Url, timeout: Duration, max_in_flight: usize) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_in_flight)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(HttpDelivery { client, url, timeout })
    }

    /// The pooled client (shared with batch delivery to the same URL).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn attempt(&self, record: &Record, attempt: &Attempt) -> AttemptOutcome {
        let body = record.value.clone().unwrap_or_default();
        let request = self.client.post(self.url.clone()).headers(request_headers(record, attempt)).body(body);
        match request.timeout(self.timeout).send().await {
            Ok(response) => classify_response(response).await,
            Err(err) => AttemptOutcome::Failed(classify_error(&err, self.timeout)),
        }
    }
}

impl Delivery for HttpDelivery {
    fn deliver<'a>(&'a self, record: &'a Record, attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        self.attempt(record, attempt).boxed()
    }

    /// An HTTP answer to a `HEAD` of the URL, within the attempt timeout (at least two
    /// seconds), means the application is reachable again, whatever its status (a 404 or 405
    /// still comes from the application), as any answer to a delivery does. A TCP connect alone
    /// is not enough: a proxy or a hung application accepts connections and answers nothing.
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let timeout = self.timeout.max(MIN_PROBE_TIMEOUT);
            match self.client.head(self.url.clone()).timeout(timeout).send().await {
                Ok(_) => Ok(()),
                Err(err) => Err(classify_error(&err, timeout).error),
            }
        }
        .boxed()
    }

    fn describe(&self) -> String {
        crate::config::redact_url(&self.url)
    }
}

/// The request headers of the contract.
pub fn request_headers(record: &Record, attempt: &Attempt) -> HeaderMap {
    match record.origin {
        Origin::Sqs => return queue_request_headers(record, attempt, &SQS_FACTS),
        Origin::Redis => return queue_request_headers(record, attempt, &REDIS_FACTS),
        Origin::Amqp => return queue_request_headers(record, attempt, &AMQP_FACTS),
        Origin::Kafka => {}
    }
    let mut headers = HeaderMap::with_capacity(8 + record.headers.len());
    let content_type = record
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .and_then(|h| h.value.as_ref())
        .and_then(|v| HeaderValue::from_bytes(v).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(reqwest::header::CONTENT_TYPE, content_type);
    headers.insert("x-kafka-topic", text_value(&record.tp.topic));
    headers.insert("x-kafka-partition", HeaderValue::from(record.tp.partition));
    headers.insert("x-kafka-offset", HeaderValue::from(record.offset));
    if let Some(key) = &record.key {
        headers.insert("x-kafka-key", text_value(&BASE64.encode(key)));
    }
    if let Some(timestamp) = record.timestamp {
        headers.insert("x-kafka-timestamp", HeaderValue::from(timestamp));
    }
    if record.value.is_none() {
        headers.insert("x-kafka-tombstone", HeaderValue::from_static("true"));
    }
    for header in &record.headers {
        if let Ok(name) =
            HeaderName::from_bytes(format!("x-kafka-header-{}", encode_name(&header.name)).as_bytes())
        {
            let value = header.value.as_ref().map(|v| BASE64.encode(v)).unwrap_or_default();
            headers.append(name, text_value(&value));
        }
    }
    headers.insert("x-delivery-attempt", HeaderValue::from(attempt.number));
    if let Some(traceparent) = attempt.traceparent.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert("traceparent", traceparent);
    }
    if let Some(tracestate) = attempt.tracestate.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert("tracestate", tracestate);
    }
    decoded_headers(record, "x-kafka-", &mut headers);
    headers
}

/// A decoded value is JSON (`content-type: application/json`), with the schema it was decoded
/// with in `<prefix>value-schema` (and the key's in `<prefix>key-schema`).
fn decoded_headers(record: &Record, prefix: &str, headers: &mut HeaderMap) {
    let Some(decoded) = &record.decoded else { return };
    if let Some(schema) = &decoded.value {
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(schema) = schema
            && let Ok(name) = HeaderName::from_bytes(format!("{prefix}value-schema").as_bytes())
        {
            headers.insert(name, text_value(schema));
        }
    }
    if let Some(Some(schema)) = &decoded.key
        && let Ok(name) = HeaderName::from_bytes(format!("{prefix}key-schema").as_bytes())
    {
        headers.insert(name, text_value(schema));
    }
}

/// Where a queue-like source keeps its facts among a record's headers.
struct Facts {
    /// The prefix of its headers (`x-sqs-`).
    prefix: &'static str,
    /// The header holding the content type, when the message has one.
    content_type: &'static str,
    /// The content type otherwise.
    default_content_type: &'static str,
    /// The header counting deliveries of the message, this one included.
    deliveries: &'static str,
}

/// An SQS message's: bodies are text.
const SQS_FACTS: Facts = Facts {
    prefix: "x-sqs-",
    content_type: "x-sqs-attribute-content-type",
    default_content_type: "text/plain; charset=utf-8",
    deliveries: "x-sqs-receive-count",
};

/// A Redis entry's: its `data` field is bytes.
const REDIS_FACTS: Facts = Facts {
    prefix: "x-redis-",
    content_type: "x-redis-field-content-type",
    default_content_type: "application/octet-stream",
    deliveries: "x-redis-delivery-count",
};

/// A RabbitMQ message's: its content type property, else bytes.
const AMQP_FACTS: Facts = Facts {
    prefix: "x-amqp-",
    content_type: "x-amqp-content-type",
    default_content_type: "application/octet-stream",
    deliveries: crate::record::AMQP_DELIVERIES,
};

/// The headers of an SQS message or a Redis entry: its `x-sqs-*` / `x-redis-*` facts as the
/// receiver wrote them, the content type from a `content-type` attribute or field, and the
/// attempt counted over every delivery by the source (the third receive's first attempt is
/// attempt 3).
fn queue_request_headers(record: &Record, attempt: &Attempt, facts: &Facts) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4 + record.headers.len());
    let content_type = record
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(facts.content_type))
        .and_then(|h| h.value.as_ref())
        .and_then(|v| HeaderValue::from_bytes(v).ok())
        .unwrap_or(HeaderValue::from_static(facts.default_content_type));
    headers.insert(reqwest::header::CONTENT_TYPE, content_type);
    for header in record.headers.iter().filter(|h| h.name.starts_with(facts.prefix)) {
        let Ok(name) = HeaderName::from_bytes(encode_name(&header.name).as_bytes()) else { continue };
        let value = header.value.as_deref().unwrap_or_default();
        let value = HeaderValue::from_bytes(value).unwrap_or_else(|_| text_value(&percent_encode(value)));
        headers.append(name, value);
    }
    let earlier = record
        .header_text(facts.deliveries)
        .and_then(|count| count.parse::<u32>().ok())
        .map_or(0, |count| count.saturating_sub(1));
    headers.insert("x-delivery-attempt", HeaderValue::from(attempt.number.saturating_add(earlier)));
    if let Some(traceparent) = attempt.traceparent.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert("traceparent", traceparent);
    }
    if let Some(tracestate) = attempt.tracestate.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert("tracestate", tracestate);
    }
    decoded_headers(record, facts.prefix, &mut headers);
    headers
}

/// Bytes an HTTP header value cannot hold (control characters), and `%`, percent-encoded.
fn percent_encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A header value from text we produced (base64, decimal, topic names): always visible ASCII.
fn text_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

/// A Kafka header name as the suffix of an HTTP header name: lower case (HTTP names are case
/// insensitive), bytes that are not HTTP token characters and `%` percent-encoded.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        let c = byte.to_ascii_lowercase();
        let token = c.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&c);
        if token {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn classify_response(response: reqwest::Response) -> AttemptOutcome {
    let status = response.status();
    if status.is_success() {
        return AttemptOutcome::Delivered;
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let kind = classify_status(status);
    let body = response.bytes().await.unwrap_or_default();
    let detail = one_line(&String::from_utf8_lossy(&body[..body.len().min(DETAIL_BYTES)]));
    let mut failure = Failure::new(kind, format!("HTTP {status}"));
    failure.detail = (!detail.is_empty()).then_some(detail);
    if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        failure.retry_after = retry_after;
    }
    AttemptOutcome::Failed(failure)
}

/// The failure kind of a non-2xx status.
pub fn classify_status(status: StatusCode) -> FailureKind {
    match status.as_u16() {
        408 | 429 | 500..=599 => FailureKind::Retryable,
        _ => FailureKind::Permanent,
    }
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The failure of a request that got no response.
pub fn classify_error(err: &reqwest::Error, timeout: Duration) -> Failure {
    if err.is_timeout() {
        return Failure::new(
            FailureKind::Unreachable,
            format!("no response within {}", humantime::format_duration(timeout)),
        );
    }
    let root = root_cause(err);
    if err.is_connect() {
        return Failure::new(FailureKind::Unreachable, format!("cannot connect: {root}"));
    }
    let io_kind = causes(err).find_map(|e| e.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
    let dropped = matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    ) || causes(err)
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(|e| e.is_incomplete_message() || e.is_closed() || e.is_canceled());
    let kind = if dropped { FailureKind::Unreachable } else { FailureKind::Retryable };
    Failure::new(kind, format!("request failed: {root}"))
}

/// The chain of causes below `err`.
fn causes<'a>(err: &'a reqwest::Error) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = err.source();
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    one_line(&cause.to_string())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::record::{Header, TopicPartition};

    fn record() -> Record {
        Record {
            tp: TopicPartition::new("orders", 2),
            offset: 41,
            timestamp: Some(1_700_000_000_123),
            key: Some(Bytes::from_static(&[0xff, 0x00, b'k'])),
            value: Some(Bytes::from_static(b"{}")),
            headers: vec![
                Header { name: "content-type".into(), value: Some(Bytes::from_static(b"application/json")) },
                Header { name: "Trace Id".into(), value: Some(Bytes::from_static(&[0xc3, 0x28])) },
                Header { name: "x-kafka-topic".into(), value: None },
                Header { name: "dup".into(), value: Some(Bytes::from_static(b"1")) },
                Header { name: "dup".into(), value: Some(Bytes::from_static(b"2")) },
            ],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Kafka,
        }
    }

    #[test]
    fn an_sqs_message_gets_its_own_headers_and_an_attempt_over_every_receive() {
        let header = |name: &str, value: &[u8]| Header {
            name: name.into(),
            value: Some(Bytes::copy_from_slice(value)),
        };
        let record = Record {
            tp: TopicPartition::new("tasks", 0),
            offset: 9,
            timestamp: Some(1),
            key: Some(Bytes::from_static(b"group")),
            value: Some(Bytes::from_static(b"body")),
            headers: vec![
                header("x-sqs-queue", b"tasks"),
                header("x-sqs-receive-count", b"3"),
                header("x-sqs-attribute-note", b"line\nbreak"),
                header("x-sqs-attribute-content-type", b"application/json"),
            ],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Sqs,
        };
        let h = request_headers(&record, &Attempt { number: 2, ..Attempt::default() });
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(get("x-sqs-queue").as_deref(), Some("tasks"));
        assert_eq!(get("x-delivery-attempt").as_deref(), Some("4"), "two earlier receives");
        assert_eq!(get("x-sqs-attribute-note").as_deref(), Some("line%0Abreak"));
        assert_eq!(get("content-type").as_deref(), Some("application/json"));
        assert!(get("x-kafka-topic").is_none() && get("x-kafka-offset").is_none());
    }

    #[test]
    fn headers_follow_the_contract() {
        let attempt = Attempt {
            number: 3,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        let h = request_headers(&record(), &attempt);
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(get("content-type").as_deref(), Some("application/json"));
        assert_eq!(get("x-kafka-topic").as_deref(), Some("orders"));
        assert_eq!(get("x-kafka-partition").as_deref(), Some("2"));
        assert_eq!(get("x-kafka-offset").as_deref(), Some("41"));
        assert_eq!(get("x-kafka-key").as_deref(), Some("/wBr"));
        assert_eq!(get("x-kafka-timestamp").as_deref(), Some("1700000000123"));
        assert_eq!(get("x-delivery-attempt").as_deref(), Some("3"));
        assert_eq!(get("x-kafka-header-trace%20id").as_deref(), Some("wyg="));
        assert_eq!(
            get("x-kafka-header-x-kafka-topic").as_deref(),
            Some(""),
            "contract-like names stay prefixed"
        );
        let dups: Vec<_> = h.get_all("x-kafka-header-dup").iter().map(|v| v.to_str().unwrap_or("")).collect();
        assert_eq!(dups, vec!["MQ==", "Mg=="]);
        assert!(get("traceparent").is_some());
        assert!(get("x-kafka-tombstone").is_none());
    }

    #[test]
    fn missing_key_content_type_and_value_are_handled() {
        let mut r = record();
        r.key = None;
        r.value = None;
        r.headers.clear();
        let h = request_headers(&r, &Attempt { number: 1, ..Attempt::default() });
        assert!(h.get("x-kafka-key").is_none());
        assert_eq!(h.get("content-type").map(|v| v.as_bytes()), Some(&b"application/octet-stream"[..]));
        assert_eq!(h.get("x-kafka-tombstone").map(|v| v.as_bytes()), Some(&b"true"[..]));
    }

    #[test]
    fn statuses_are_classified() {
        for (code, kind) in [
            (408, FailureKind::Retryable),
            (429, FailureKind::Retryable),
            (500, FailureKind::Retryable),
            (503, FailureKind::Retryable),
            (599, FailureKind::Retryable),
            (400, FailureKind::Permanent),
            (404, FailureKind::Permanent),
            (413, FailureKind::Permanent),
            (301, FailureKind::Permanent),
        ] {
            let status = StatusCode::from_u16(code).expect("status");
            assert_eq!(classify_status(status), kind, "{code}");
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let soon = SystemTime::now() + Duration::from_secs(120);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(soon)).expect("date");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn header_names_are_lowercased_and_percent_encoded() {
        assert_eq!(encode_name("Content-Type"), "content-type");
        assert_eq!(encode_name("a b%c"), "a%20b%25c");
        assert_eq!(encode_name("é"), "%C3%A9");
    }

    /// A loopback server answering every connection with `answer` (or nothing, when `None`),
    /// and counting connections.
    async fn server(answer: Option<&'static str>) -> Url {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/events", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    match answer {
                        Some(status) => {
                            let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                            let _ = socket.write_all(reply.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn the_probe_needs_an_answer_within_the_attempt_timeout() {
        let probe =
            |url| async move { HttpDelivery::new(url, Duration::from_millis(100), 4).unwrap().probe().await };
        assert_eq!(
            probe(server(Some("405 Method Not Allowed")).await).await,
            Ok(()),
            "any answer of its own"
        );
        assert_eq!(
            probe(server(Some("503 Service Unavailable")).await).await,
            Ok(()),
            "as a delivery's answer"
        );
        let started = std::time::Instant::now();
        let silent = probe(server(None).await).await;
        assert!(silent.is_err(), "an accepted connection that never answers is not reachable");
        assert!(
            started.elapsed() >= MIN_PROBE_TIMEOUT,
            "waits at least the minimum, not the 100 ms attempt timeout"
        );
    }
}
