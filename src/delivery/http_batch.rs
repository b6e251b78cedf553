//! HTTP batch delivery: many records in one POST, per-record results in the answer.
//!
//! Request body: `{"records":[{"topic","partition","offset","timestamp","key_b64","value_b64",
//! "headers":{name: base64},"attempt","traceparent"}]}`. The application answers 2xx, optionally
//! with `{"failures":[{"partition":..,"offset":..,"retryable":true|false}]}` (a `topic` field
//! narrows it when a batch spans topics); records not listed are delivered, like AWS Lambda's
//! `batchItemFailures`. Listed records are retried on their own (retryable) or dead-lettered.
//! Any other answer fails the whole batch: its records are retried in halved batches without
//! using an attempt, until a batch of one fails on its own merits.

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

/// One record in a batch request.
#[derive(Serialize)]
struct BatchRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key_b64: Option<String>,
    value_b64: Option<String>,
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
struct ReportedFailure {
    topic: Option<String>,
    partition: i32,
    offset: i64,
    #[serde(default = "yes")]
    retryable: bool,
}

fn yes() -> bool {
    true
}

/// The answer to a batch.
#[derive(Debug, Default, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    failures: Vec<ReportedFailure>,
}

/// Posts batches.
struct Sender {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
}

impl BatchSender for Sender {
    fn send(&self, batch: Vec<Pending>) -> BoxFuture<'_, ()> {
        async move {
            let body = BatchRequest {
                records: batch
                    .iter()
                    .map(|p| {
                        let record = &p.record;
                        BatchRecord {
                            topic: &record.tp.topic,
                            partition: record.tp.partition,
                            offset: record.offset,
                            timestamp: record.timestamp,
                            key_b64: record.key.as_ref().map(|k| BASE64.encode(k)),
                            value_b64: record.value.as_ref().map(|v| BASE64.encode(v)),
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
            let body = serde_json::to_vec(&body).unwrap_or_default();
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
                    let text = response.bytes().await.unwrap_or_default();
                    let answer: BatchResponse = serde_json::from_slice(&text).unwrap_or_default();
                    answer_each(batch, &answer.failures);
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
        let record = &pending.record;
        let reported = failures.iter().find(|f| {
            f.partition == record.tp.partition
                && f.offset == record.offset
                && f.topic.as_deref().is_none_or(|t| t == &*record.tp.topic)
        });
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
    pub fn new(url: Url, timeout: Duration, max_in_flight: usize, limits: Limits) -> Result<Self, HttpError> {
        let single = HttpDelivery::new(url.clone(), timeout, max_in_flight)?;
        let sender = Arc::new(Sender { client: single.client().clone(), url, timeout });
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
