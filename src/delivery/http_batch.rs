//! HTTP batch delivery: many records in one POST, per-record results in the answer.
//!
//! Request body: `{"records":[{"topic","partition","offset","timestamp","key_b64","value_b64"
//! (or, decoded, "value" as JSON and "value_schema"),
//! "headers":{name: base64},"attempt","traceparent"}]}`. The application answers 2xx, optionally
//! with `{"failures":[{"partition":..,"offset":..,"retryable":true|false}]}` (a `topic` field
//! narrows it when a batch spans topics); records not listed are delivered, like AWS Lambda's
//! `batchItemFailures`. Listed records are retried on their own (retryable) or dead-lettered.
//! Any other answer fails the whole batch: its records are retried in halved batches without
//! using an attempt, until a batch of one fails on its own merits.
//!
//! An answer is read as hostile: a 2xx whose body cannot be read whole, is not JSON, has a
//! `failures` entry of the wrong shape (`"offset":"42"`), or names a record that was not in the
//! batch is not a success. It fails the whole batch like a 5xx, is logged as a warning with the
//! reason, and counted (`msk_sidecar_unreadable_answers_total`). An empty body is a success.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use url::Url;

use super::batcher::{BatchSender, Batcher, Limits, Pending};
use super::http::{HttpDelivery, HttpError, classify_status, parse_retry_after};
use super::{Attempt, AttemptOutcome, Delivery, Failure, FailureKind};
use crate::record::Record;
use crate::telemetry::metrics::Metrics;

/// One record in a batch request.
#[derive(Serialize)]
struct BatchRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key_b64: Option<String>,
    value_b64: Option<String>,
    /// The decoded value (`SIDECAR_VALUE_FORMAT`), as JSON, instead of `value_b64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_schema: Option<&'a str>,
    headers: BTreeMap<&'a str, String>,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
}

/// The batch request body.
#[derive(Serialize)]
struct BatchRequest<'a> {
    records: Vec<BatchRecord<'a>>,
}

/// A record the application reports as failed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedFailure {
    /// Narrows the match when a batch spans topics.
    pub topic: Option<String>,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Whether to retry it (default) or dead-letter it now.
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// The answer to a batch (other top-level fields are the application's business).
#[derive(Debug, Default, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    failures: Vec<ReportedFailure>,
}

/// Reads a 2xx answer's body to a batch of `records`: the reported failures, or why the answer
/// cannot be trusted. The reason never quotes the body.
pub fn read_answer(body: &[u8], records: &[&Record]) -> Result<Vec<ReportedFailure>, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(Vec::new()),
        Some(b'{') => {}
        Some(_) => return Err("the answer is not a JSON object".to_string()),
    }
    let describe = |err: serde_json::Error| {
        let what = match err.classify() {
            serde_json::error::Category::Io => "cannot be read",
            serde_json::error::Category::Syntax => "is not JSON",
            serde_json::error::Category::Data => "has fields of the wrong type or unknown fields",
            serde_json::error::Category::Eof => "is cut off",
        };
        format!("the answer {what} (line {}, column {})", err.line(), err.column())
    };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(describe)?;
    // Other fields are the application's business, but a near miss of `failures` would turn
    // every failure it meant to report into a success.
    const NEAR_MISSES: [&str; 5] = ["failures", "failure", "failed", "batchitemfailures", "errors"];
    if let Some(near) = object
        .keys()
        .find(|k| k.as_str() != "failures" && NEAR_MISSES.contains(&k.to_ascii_lowercase().as_str()))
    {
        return Err(format!("the answer has a field {near:?} where `failures` is expected"));
    }
    let answer: BatchResponse =
        serde_json::from_value(serde_json::Value::Object(object)).map_err(describe)?;
    for failure in &answer.failures {
        match records.iter().filter(|r| reported(failure, r)).count() {
            0 => {
                return Err(format!(
                    "the answer names partition {} offset {}, which is not in the batch",
                    failure.partition, failure.offset
                ));
            }
            1 => {}
            _ => {
                return Err(format!(
                    "the answer names partition {} offset {} without a topic, and the batch has it in several topics",
                    failure.partition, failure.offset
                ));
            }
        }
    }
    Ok(answer.failures)
}

fn reported(failure: &ReportedFailure, record: &Record) -> bool {
    failure.partition == record.tp.partition
        && failure.offset == record.offset
        && failure.topic.as_deref().is_none_or(|t| t == &*record.tp.topic)
}

/// Posts batches.
struct Sender {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    /// Counts unreadable answers.
    metrics: Metrics,
}

impl Sender {
    /// Fails every record of a batch whose 2xx answer could not be read.
    fn unreadable(&self, batch: Vec<Pending>, status: reqwest::StatusCode, reason: &str) {
        self.metrics.unreadable_answer();
        tracing::warn!(
            url = %crate::config::redact_url(&self.url), %status, records = batch.len(), reason,
            "The application's answer to a batch cannot be read: the whole batch failed and is retried."
        );
        let kind = if batch.len() == 1 { FailureKind::Retryable } else { FailureKind::BatchFailed };
        let failure = Failure::new(kind, format!("unreadable answer to a batch: {reason}"));
        batch.into_iter().for_each(|p| p.reply(AttemptOutcome::Failed(failure.clone())));
    }
}

impl BatchSender for Sender {
    fn send(&self, batch: Vec<Pending>) -> BoxFuture<'_, ()> {
        async move {
            let body = BatchRequest {
                records: batch
                    .iter()
                    .map(|p| {
                        let record = &p.record;
                        let decoded = record.decoded.as_ref().and_then(|d| d.value.as_ref());
                        // A decoded value is JSON (checked, or made by us): embedded as it is,
                        // not parsed and written again (numbers and key order stay).
                        let value = decoded
                            .and(record.value.as_ref())
                            .and_then(|v| serde_json::from_slice::<&serde_json::value::RawValue>(v).ok());
                        BatchRecord {
                            topic: &record.tp.topic,
                            partition: record.tp.partition,
                            offset: record.offset,
                            timestamp: record.timestamp,
                            key_b64: record.key.as_ref().map(|k| BASE64.encode(k)),
                            value_b64: if value.is_some() {
                                None
                            } else {
                                record.value.as_ref().map(|v| BASE64.encode(v))
                            },
                            value,
                            value_schema: decoded.and_then(|s| s.as_deref()),
                            headers: record
                                .headers
                                .iter()
                                .map(|h| {
                                    (
                                        h.name.as_str(),
                                        h.value.as_ref().map(|v| BASE64.encode(v)).unwrap_or_default(),
                                    )
                                })
                                .collect(),
                            attempt: p.attempt.number,
                            traceparent: p.attempt.traceparent.as_deref(),
                        }
                    })
                    .collect(),
            };
            let body = match serde_json::to_vec(&body) {
                Ok(body) => body,
                Err(err) => {
                    // Maps of strings and numbers always serialize; never send an empty batch.
                    let failure =
                        Failure::new(FailureKind::Retryable, format!("cannot encode the batch: {err}"));
                    batch.into_iter().for_each(|p| p.reply(AttemptOutcome::Failed(failure.clone())));
                    return;
                }
            };
            let request = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-delivery-batch-size", batch.len())
                .body(body)
                .timeout(self.timeout);
            match request.send().await {
                Err(err) => {
                    let failure = super::http::classify_error(&err, self.timeout);
                    batch.into_iter().for_each(|p| p.reply(AttemptOutcome::Failed(failure.clone())));
                }
                Ok(response) if response.status().is_success() => {
                    let status = response.status();
                    let answer = match response.bytes().await {
                        Ok(body) => {
                            let records: Vec<&Record> = batch.iter().map(|p| &p.record).collect();
                            read_answer(&body, &records)
                        }
                        Err(err) => Err(format!(
                            "the answer was cut off ({})",
                            super::http::classify_error(&err, self.timeout).error
                        )),
                    };
                    match answer {
                        Ok(failures) => answer_each(batch, &failures),
                        Err(reason) => self.unreadable(batch, status, &reason),
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let kind =
                        if batch.len() == 1 { classify_status(status) } else { FailureKind::BatchFailed };
                    let mut failure =
                        Failure::new(kind, format!("HTTP {status} for a batch of {}", batch.len()));
                    failure.retry_after = retry_after;
                    batch.into_iter().for_each(|p| p.reply(AttemptOutcome::Failed(failure.clone())));
                }
            }
        }
        .boxed()
    }
}

fn answer_each(batch: Vec<Pending>, failures: &[ReportedFailure]) {
    for pending in batch {
        let reported = failures.iter().find(|f| reported(f, &pending.record));
        let outcome = match reported {
            None => AttemptOutcome::Delivered,
            Some(f) => {
                let kind = if f.retryable { FailureKind::Retryable } else { FailureKind::Permanent };
                AttemptOutcome::Failed(Failure::new(kind, "reported failed in the batch response"))
            }
        };
        pending.reply(outcome);
    }
}

/// Delivers through batches of up to `limits.max_records` records.
pub struct HttpBatchDelivery {
    batcher: Batcher,
    /// The single-record target, for probes and descriptions.
    single: HttpDelivery,
}

impl HttpBatchDelivery {
    /// Builds the batch target.
    pub fn new(
        url: Url,
        timeout: Duration,
        max_in_flight: usize,
        limits: Limits,
        metrics: Metrics,
    ) -> Result<Self, HttpError> {
        let single = HttpDelivery::new(url.clone(), timeout, max_in_flight)?;
        let sender = Arc::new(Sender { client: single.client().clone(), url, timeout, metrics });
        Ok(HttpBatchDelivery { batcher: Batcher::start(sender, limits), single })
    }
}

impl Delivery for HttpBatchDelivery {
    fn deliver<'a>(&'a self, record: &'a Record, attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        self.batcher.submit(record, attempt).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        self.single.probe()
    }

    fn describe(&self) -> String {
        format!("{} (batches)", self.single.describe())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::config::Ordering;
    use crate::record::TopicPartition;

    fn record(offset: i64) -> Record {
        Record {
            tp: TopicPartition::new("t", 0),
            offset,
            timestamp: None,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
            malformed: None,
            decoded: None,
            origin: crate::record::Origin::Kafka,
        }
    }

    #[test]
    fn answers_are_read_strictly() {
        let (three, four) = (record(3), record(4));
        let batch = [&three, &four];
        assert!(read_answer(b"", &batch).unwrap().is_empty());
        assert!(read_answer(b" \n", &batch).unwrap().is_empty());
        assert!(read_answer(br#"{"ok":true}"#, &batch).unwrap().is_empty(), "other fields are allowed");
        let failures =
            read_answer(br#"{"failures":[{"partition":0,"offset":4,"retryable":false}]}"#, &batch).unwrap();
        assert_eq!((failures[0].offset, failures[0].retryable), (4, false));
        for (body, why) in [
            (&br#"{"failures":[{"partition":0,"offset":"3"}]}"#[..], "wrong type"),
            (b"OK", "not a JSON object"),
            (b"{OK", "not JSON"),
            (br#"{"failures":[{"partition":0,"#, "cut off"),
            (br#"{"failures":[{"partition":0,"offset":9}]}"#, "not in the batch"),
            (br#"{"failures":[{"partition":0,"offset":3,"retry":true}]}"#, "unknown fields"),
            (br#"{"failures":{"partition":0}}"#, "wrong type"),
            (br#"{"Failures":[{"partition":0,"offset":3}]}"#, "where `failures` is expected"),
            (br#"{"batchItemFailures":[{"itemIdentifier":"3"}]}"#, "where `failures` is expected"),
            (br#"[]"#, "not a JSON object"),
        ] {
            let err = read_answer(body, &batch).expect_err(why);
            assert!(err.contains(why), "{why}: {err}");
        }
        // A batch spanning topics: a failure without a topic must say which record it means.
        let other = Record { tp: TopicPartition::new("u", 0), ..record(3) };
        let spanning = [&three, &other];
        let err =
            read_answer(br#"{"failures":[{"partition":0,"offset":3}]}"#, &spanning).expect_err("ambiguous");
        assert!(err.contains("several topics"), "{err}");
        let named = read_answer(br#"{"failures":[{"topic":"u","partition":0,"offset":3}]}"#, &spanning);
        assert_eq!(named.map(|f| f.len()), Ok(1));
    }

    /// A server that answers every request with `response` and closes.
    async fn raw_server(response: &'static [u8]) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response).await;
                drop(socket);
            }
        });
        Url::parse(&format!("http://{addr}/batch")).unwrap()
    }

    #[tokio::test]
    async fn a_2xx_answer_cut_off_mid_body_fails_the_whole_batch() {
        let url = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"failures\":[").await;
        let metrics = Metrics::new().unwrap();
        let limits = Limits {
            max_records: 2,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(1),
            ordering: Ordering::None,
        };
        let delivery =
            HttpBatchDelivery::new(url, Duration::from_secs(5), 4, limits, metrics.clone()).unwrap();
        let attempt = Attempt { number: 1, ..Attempt::default() };
        let (a, b) = (record(0), record(1));
        let (first, second) =
            futures::future::join(delivery.deliver(&a, &attempt), delivery.deliver(&b, &attempt)).await;
        for outcome in [first, second] {
            match outcome {
                AttemptOutcome::Failed(failure) => {
                    assert_eq!(failure.kind, FailureKind::BatchFailed);
                    assert!(failure.error.contains("cut off"), "{}", failure.error);
                }
                AttemptOutcome::Delivered => panic!("a cut-off answer is not a success"),
            }
        }
        assert!(metrics.render_prometheus().contains("msk_sidecar_unreadable_answers_total 1"));
    }
}
