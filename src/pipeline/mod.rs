//! The pipeline: one record from first attempt to terminal outcome.
//!
//! deliver → classify → retry with backoff (full jitter, `Retry-After` honoured) → `Delivered`
//! or dead-lettered (`permanent`, `retries-exhausted`, `oversized`). Dead-lettering is retried
//! forever: a record is terminal only once its DLQ record and archive object are written.
//!
//! Cancellation has two levels ([`Cancel`]): *soft* (shutdown or revoke) abandons a record that
//! is waiting (backoff, breaker, DLQ retry) but lets an attempt in progress finish; *hard* (the
//! drain deadline passed) abandons everything. An abandoned record is not terminal: its offset
//! is not committed and the next owner delivers it again.

pub mod backoff;
pub mod breaker;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::RetryPolicy;
use crate::delivery::{Attempt, AttemptOutcome, Delivery, Failure, FailureKind};
use crate::dlq::{DeadLetter, DeadLetterWriter, DlqError, ErrorClass, Written};
use crate::health::Health;
use crate::record::Record;
use crate::telemetry::metrics::{Metrics, TopicCounters};
use breaker::Breaker;

/// The two cancellation levels of one partition.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    /// Stop waiting; let attempts in progress finish.
    pub soft: CancellationToken,
    /// Stop everything now.
    pub hard: CancellationToken,
}

impl Cancel {
    /// Child tokens: cancelling the parent cancels these.
    pub fn child(&self) -> Cancel {
        Cancel { soft: self.soft.child_token(), hard: self.hard.child_token() }
    }
}

/// How a record ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The application accepted it.
    Delivered {
        /// Attempts made.
        attempts: u32,
    },
    /// It was written to the DLQ topic (and archive).
    DeadLettered {
        /// The recorded class.
        class: ErrorClass,
        /// Attempts made.
        attempts: u32,
    },
    /// Cancelled before reaching a terminal state; it will be delivered again.
    Abandoned,
}

impl Outcome {
    /// Whether the record is done (its offset may be committed).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Outcome::Abandoned)
    }
}

/// Where dead letters go; the pipeline retries failed writes.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// One try at writing a dead letter.
    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>>;
}

impl DeadLetterSink for DeadLetterWriter {
    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>> {
        DeadLetterWriter::write(self, letter).boxed()
    }
}

/// The per-record processing shared by every worker.
pub struct Pipeline {
    /// Delivery target.
    pub delivery: Arc<dyn Delivery>,
    /// Dead-letter destination.
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// Retry policy for deliveries; dead-letter writes reuse its backoff bounds.
    pub retry: RetryPolicy,
    /// Circuit breaker for an unreachable application.
    pub breaker: Arc<Breaker>,
    /// Readiness problems (dead-letter failures).
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Metrics,
    /// Consumer group, recorded in dead letters.
    pub group: String,
    /// Jitter function (full jitter; tests fix it).
    pub jitter: fn(Duration) -> Duration,
}

/// Failure history of one record.
struct Failures {
    /// Attempts that count towards the maximum.
    counted: u32,
    /// First failure time.
    first: Option<SystemTime>,
    /// Last failure.
    last: Option<(SystemTime, Failure)>,
    /// Whether this record already opened the breaker instead of using its last attempt.
    forced_breaker: bool,
}

impl Pipeline {
    /// Processes one record to a terminal outcome, or abandons it on cancellation.
    pub async fn process(&self, record: &Record, counters: &TopicCounters, cancel: &Cancel) -> Outcome {
        let mut failures = Failures { counted: 0, first: None, last: None, forced_breaker: false };
        let mut number = 0u32;
        loop {
            if !self.breaker.wait_closed(&cancel.soft).await {
                return Outcome::Abandoned;
            }
            number += 1;
            if number > 1 {
                counters.retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let attempt = Attempt { number, traceparent: None, tracestate: None };
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                () = cancel.hard.cancelled() => return Outcome::Abandoned,
                outcome = self.delivery.deliver(record, &attempt) => outcome,
            };
            let failure = match outcome {
                AttemptOutcome::Delivered => {
                    self.metrics.delivery_attempt(&record.tp.topic, "delivered", started.elapsed());
                    self.breaker.on_response();
                    counters.delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Outcome::Delivered { attempts: number };
                }
                AttemptOutcome::Failed(failure) => failure,
            };
            self.metrics.delivery_attempt(&record.tp.topic, "failed", started.elapsed());
            let now = SystemTime::now();
            failures.first.get_or_insert(now);
            let counts = match failure.kind {
                FailureKind::Permanent => {
                    self.breaker.on_response();
                    failures.counted += 1;
                    failures.last = Some((now, failure));
                    return self
                        .dead_letter(record, counters, ErrorClass::Permanent, failures, number, cancel)
                        .await;
                }
                FailureKind::Retryable => {
                    self.breaker.on_response();
                    true
                }
                FailureKind::Unreachable => {
                    if self.breaker.on_unreachable(&failure.error) {
                        false
                    } else if failures.counted + 1 >= self.retry.max_attempts && !failures.forced_breaker {
                        // An outage must not turn the last attempt into a dead letter: wait for a
                        // probe to find the application reachable first (once per record).
                        failures.forced_breaker = true;
                        self.breaker.force_open(&failure.error);
                        false
                    } else {
                        true
                    }
                }
            };
            tracing::debug!(
                topic = %record.tp.topic, partition = record.tp.partition, offset = record.offset,
                attempt = number, error = %failure.error, counted = counts,
                "Delivery attempt failed."
            );
            let retry_after = failure.retry_after;
            failures.last = Some((now, failure));
            if !counts {
                continue; // the breaker is open: wait for it before the next attempt
            }
            failures.counted += 1;
            if failures.counted >= self.retry.max_attempts {
                return self
                    .dead_letter(record, counters, ErrorClass::RetriesExhausted, failures, number, cancel)
                    .await;
            }
            let delay = backoff::delay(&self.retry, failures.counted, retry_after, self.jitter);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.soft.cancelled() => return Outcome::Abandoned,
            }
        }
    }

    async fn dead_letter(
        &self,
        record: &Record,
        counters: &TopicCounters,
        class: ErrorClass,
        failures: Failures,
        attempts: u32,
        cancel: &Cancel,
    ) -> Outcome {
        let Some((last_time, last)) = failures.last else { return Outcome::Abandoned };
        let letter = DeadLetter {
            record,
            group: &self.group,
            class,
            error: last.full_text(),
            attempts,
            first_failure: failures.first.unwrap_or(last_time),
            last_failure: last_time,
            traceparent: None,
        };
        let mut tries = 0u32;
        loop {
            if cancel.soft.is_cancelled() {
                return Outcome::Abandoned;
            }
            let result = tokio::select! {
                biased;
                () = cancel.hard.cancelled() => return Outcome::Abandoned,
                result = self.dead_letters.write(&letter) => result,
            };
            match result {
                Ok(written) => {
                    self.health.clear_problem(crate::health::Component::DeadLetterTopic);
                    self.health.clear_problem(crate::health::Component::Archive);
                    counters.dead_letter(written.class.as_str());
                    tracing::warn!(
                        topic = %record.tp.topic, partition = record.tp.partition, offset = record.offset,
                        error_class = written.class.as_str(), attempts, error = %last.error,
                        archive = written.archive_location.as_deref().unwrap_or("none"),
                        "Record dead-lettered."
                    );
                    return Outcome::DeadLettered { class: written.class, attempts };
                }
                Err(err) => {
                    tries += 1;
                    let component = err.component();
                    if self.health.set_problem(component, err.to_string()) || tries == 1 {
                        tracing::error!(
                            topic = %record.tp.topic, partition = record.tp.partition, offset = record.offset,
                            error = %err, "Cannot write a dead letter: the partition waits and retries."
                        );
                    }
                    let delay = backoff::delay(&self.retry, tries, None, self.jitter);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.soft.cancelled() => return Outcome::Abandoned,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
