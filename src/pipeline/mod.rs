//! The pipeline: one record from first attempt to terminal outcome.
//!
//! deliver → classify → retry with backoff (full jitter, `Retry-After` honoured) → `Delivered`
//! or dead-lettered (`permanent`, `retries-exhausted`, `oversized`; `malformed` for a record that
//! cannot be read whole, `panic` for one whose processing panicked). Dead-lettering is retried
//! forever: a record is terminal only once its DLQ record and archive object are written.
//! While a record is held (its target refuses it as configured, or its dead letter cannot be
//! written), it holds a readiness latch scoped to its route; the latch goes when the record
//! does, whichever way.
//!
//! Cancellation has two levels ([`Cancel`]): *soft* (shutdown or revoke) abandons a record that
//! is waiting (backoff, breaker, DLQ retry) but lets an attempt in progress finish; *hard* (the
//! drain deadline passed) abandons everything. An abandoned record is not terminal: its offset
//! is not committed and the next owner delivers it again.

pub mod backoff;
pub mod breaker;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::RetryPolicy;
use crate::delivery::{Attempt, AttemptOutcome, Delivery, Failure, FailureKind};
use crate::dlq::{DeadLetter, DeadLetterWriter, DlqError, ErrorClass, Written};
use crate::health::{Component, Health, Latch};
use crate::prepare::{Prepared, Rules};
use crate::record::Record;
use crate::telemetry::metrics::{Metrics, TopicCounters};
use crate::telemetry::spans::{RecordTrace, Tracing};
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
    /// The route's filter turned it away: finished, never delivered.
    Filtered,
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
    /// The dead-letter topic or queue (for spans).
    fn topic(&self) -> &str;

    /// One try at writing a dead letter.
    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>>;
}

impl DeadLetterSink for crate::dlq::queue::QueueDeadLetters {
    fn topic(&self) -> &str {
        self.destination()
    }

    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>> {
        crate::dlq::queue::QueueDeadLetters::write(self, letter).boxed()
    }
}

impl DeadLetterSink for crate::dlq::stream::StreamDeadLetters {
    fn topic(&self) -> &str {
        self.destination()
    }

    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>> {
        crate::dlq::stream::StreamDeadLetters::write(self, letter).boxed()
    }
}

impl DeadLetterSink for crate::dlq::reject::RejectDeadLetters {
    fn topic(&self) -> &str {
        self.destination()
    }

    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>> {
        crate::dlq::reject::RejectDeadLetters::write(self, letter).boxed()
    }
}

impl DeadLetterSink for DeadLetterWriter {
    fn topic(&self) -> &str {
        DeadLetterWriter::topic(self)
    }

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
    /// Record, attempt and dead-letter spans.
    pub tracing: Tracing,
    /// The route this pipeline serves (`default` or `routes[i]`), for readiness reasons.
    pub route: String,
    /// Recent panics of this route: many in a short time are not one record's fault.
    pub panics: PanicWindow,
    /// The route's expiry, decoding and filter, applied before the first attempt.
    pub rules: Rules,
}

impl Pipeline {
    /// The same processing (target, retries, breaker, spans) with dead letters going to
    /// `dead_letters`: another source's records delivered to the same application.
    pub fn with_dead_letters(&self, dead_letters: Arc<dyn DeadLetterSink>) -> Pipeline {
        Pipeline {
            delivery: self.delivery.clone(),
            dead_letters,
            retry: self.retry,
            breaker: self.breaker.clone(),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            group: self.group.clone(),
            jitter: self.jitter,
            tracing: self.tracing.clone(),
            route: self.route.clone(),
            panics: PanicWindow::default(),
            rules: self.rules.clone(),
        }
    }
}

/// The panics of the last minute. One record that panics is dead-lettered; when records keep
/// panicking (more than [`PanicWindow::LIMIT`] a minute), the bug is not in the records, and
/// dead-lettering them all would empty the topic into the dead-letter queue: the lanes hold
/// instead, and `/ready` says why.
#[derive(Debug, Default)]
pub struct PanicWindow {
    /// When the recent panics happened.
    times: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
}

impl PanicWindow {
    /// Panics a minute above which they are systemic.
    pub const LIMIT: usize = 10;

    /// Records a panic now; returns whether panics are now systemic.
    fn record(&self) -> bool {
        let now = std::time::Instant::now();
        let mut times = self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while times.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
            times.pop_front();
        }
        times.push_back(now);
        times.len() > Self::LIMIT
    }
}

/// What one record's processing works with.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// The record.
    record: &'a Record,
    /// Its topic's counters.
    counters: &'a TopicCounters,
    /// Its partition's cancellation.
    cancel: &'a Cancel,
    /// Its spans.
    trace: &'a RecordTrace,
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
    /// Failures that did not use an attempt (whole-batch failures, a blocked target).
    uncounted: u32,
    /// While the target refuses this record as misconfigured: the readiness problem.
    blocked: Option<Latch>,
}

/// What a dead letter says about how the record failed.
struct Verdict {
    /// The class.
    class: ErrorClass,
    /// The last error, for `dlq-error` (with the detail, such as the start of a response body).
    error: String,
    /// The last error as it may be logged (no response body).
    summary: String,
    /// Attempts made.
    attempts: u32,
    /// First and last failure times.
    first: SystemTime,
    last: SystemTime,
}

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Use an attempt, back off, retry (or dead-letter when none are left).
    Count,
    /// Back off and retry without using an attempt.
    Uncounted,
    /// Wait for the circuit breaker to close.
    Breaker,
}

impl Pipeline {
    /// Processes one record to a terminal outcome, or abandons it on cancellation.
    pub async fn process(&self, record: &Record, counters: &TopicCounters, cancel: &Cancel) -> Outcome {
        let trace = self.tracing.record(record);
        let outcome = match &record.malformed {
            // Not delivered: the application would get it without what could not be read.
            Some(defect) => {
                let now = SystemTime::now();
                let verdict = Verdict {
                    class: ErrorClass::Malformed,
                    error: defect.to_string(),
                    summary: defect.to_string(),
                    attempts: 0,
                    first: now,
                    last: now,
                };
                self.dead_letter(Job { record, counters, cancel, trace: &trace }, verdict).await
            }
            None if self.rules.is_empty() => self.attempts(record, record, counters, cancel, &trace).await,
            None => match self.prepare(record, cancel).await {
                None => Outcome::Abandoned,
                Some(Prepared::Deliver(prepared)) => {
                    self.attempts(&prepared, record, counters, cancel, &trace).await
                }
                Some(Prepared::Filtered) => {
                    counters.filter(if self.route.is_empty() { "default" } else { &self.route });
                    Outcome::Filtered
                }
                Some(Prepared::DeadLetter { class, reason }) => {
                    let now = SystemTime::now();
                    let verdict = Verdict {
                        class,
                        error: reason.clone(),
                        summary: reason,
                        attempts: 0,
                        first: now,
                        last: now,
                    };
                    self.dead_letter(Job { record, counters, cancel, trace: &trace }, verdict).await
                }
                // `prepare` fetches until it has every schema.
                Some(Prepared::NeedsSchema(..)) => Outcome::Abandoned,
            },
        };
        match &outcome {
            Outcome::Delivered { .. } => trace.finish("delivered", None),
            Outcome::Filtered => trace.finish("filtered", None),
            Outcome::DeadLettered { class, .. } => trace.finish("dead-lettered", Some(class.as_str())),
            Outcome::Abandoned => trace.finish("abandoned", None),
        }
        outcome
    }

    /// The route's rules applied to `record`, fetching the schemas it names first. A registry
    /// that does not answer is an outage, not a property of the record: the record waits
    /// (backoff, `/ready` says why) and is not dead-lettered; `None` when the wait is
    /// cancelled (the record is abandoned, delivered again by the next owner).
    async fn prepare<'a>(&self, record: &'a Record, cancel: &Cancel) -> Option<Prepared<'a>> {
        let mut failing: Option<Latch> = None;
        let mut backoff = self.retry.initial_backoff;
        // Judged when the record came up, not after an outage of the registry.
        let now = SystemTime::now();
        loop {
            let (registry, schema) = match crate::prepare::prepare(&self.rules, record, now) {
                Prepared::NeedsSchema(registry, schema) => (registry, schema),
                prepared => return Some(prepared),
            };
            let fetched = tokio::select! {
                biased;
                () = cancel.soft.cancelled() => return None,
                () = cancel.hard.cancelled() => return None,
                fetched = registry.fetch(schema) => fetched,
            };
            if let Err(err) = fetched {
                tracing::warn!(registry = %registry.describe(), route = %self.route, error = %err, "The schema registry does not answer; the record waits.");
                let reason = format!("schema registry {}: {err}", registry.describe());
                match &failing {
                    Some(latch) => latch.update(reason),
                    None => failing = Some(self.health.latch(Component::SchemaRegistry, &self.route, reason)),
                }
                tokio::select! {
                    () = cancel.soft.cancelled() => return None,
                    () = cancel.hard.cancelled() => return None,
                    () = tokio::time::sleep((self.jitter)(backoff)) => {}
                }
                backoff = (backoff * 2).min(self.retry.max_backoff);
            }
        }
    }

    /// Delivers `record` (the source's, or its decoded copy) until it is done; a dead letter
    /// holds `original`, the record as the source gave it (a redrive decodes it again).
    async fn attempts(
        &self,
        record: &Record,
        original: &Record,
        counters: &TopicCounters,
        cancel: &Cancel,
        trace: &RecordTrace,
    ) -> Outcome {
        let mut failures = Failures {
            counted: 0,
            first: None,
            last: None,
            forced_breaker: false,
            uncounted: 0,
            blocked: None,
        };
        let mut number = 0u32;
        loop {
            if !self.breaker.wait_closed(&cancel.soft).await {
                return Outcome::Abandoned;
            }
            number += 1;
            if number > 1 {
                counters.retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let span = self.tracing.attempt(trace, number);
            let attempt = Attempt {
                number,
                traceparent: span.traceparent.clone(),
                tracestate: span.tracestate.clone(),
            };
            let (outcome, measured) = match self.delivery.deliver_now(record, &attempt) {
                Some(outcome) => (outcome, None),
                None => {
                    let started = SystemTime::now();
                    let outcome = tokio::select! {
                        biased;
                        () = cancel.hard.cancelled() => {
                            span.finish(&AttemptOutcome::Failed(Failure::new(FailureKind::Unreachable, "abandoned")), None);
                            return Outcome::Abandoned;
                        }
                        outcome = self.delivery.deliver(record, &attempt) => outcome,
                    };
                    (outcome, Some(started))
                }
            };
            // One clock reading serves the attempt latency, the end-to-end latency and failures.
            let now = SystemTime::now();
            let delivered = matches!(outcome, AttemptOutcome::Delivered);
            if let Some(started) = measured {
                self.metrics.delivery_attempt(
                    counters,
                    delivered,
                    now.duration_since(started).unwrap_or_default(),
                );
            }
            let failure = match &outcome {
                AttemptOutcome::Delivered => {
                    if failures.blocked.take().is_some() {
                        tracing::info!(route = %self.route, "The delivery target accepts records again.");
                    }
                    self.metrics.delivered_end_to_end(counters, record.timestamp, now);
                    self.breaker.on_response();
                    counters.delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    span.finish(&outcome, None);
                    return Outcome::Delivered { attempts: number };
                }
                AttemptOutcome::Failed(failure) => failure.clone(),
            };
            failures.first.get_or_insert(now);
            let next = match failure.kind {
                FailureKind::Permanent | FailureKind::Oversized => {
                    self.breaker.on_response();
                    span.finish(&outcome, None);
                    let class = if failure.kind == FailureKind::Oversized {
                        ErrorClass::Oversized
                    } else {
                        ErrorClass::Permanent
                    };
                    failures.counted += 1;
                    let verdict = Verdict {
                        class,
                        error: failure.full_text(),
                        summary: failure.error.clone(),
                        attempts: number,
                        first: failures.first.unwrap_or(now),
                        last: now,
                    };
                    return self
                        .dead_letter(Job { record: original, counters, cancel, trace }, verdict)
                        .await;
                }
                FailureKind::Retryable => {
                    self.breaker.on_response();
                    Next::Count
                }
                FailureKind::BatchFailed => {
                    self.breaker.on_response();
                    Next::Uncounted
                }
                FailureKind::Blocked => {
                    self.breaker.on_response();
                    match &failures.blocked {
                        Some(latch) => latch.update(failure.error.clone()),
                        None => {
                            tracing::error!(
                                route = %self.route, target = %self.delivery.describe(), error = %failure.error,
                                "The delivery target refuses records as configured: holding them until it accepts."
                            );
                            failures.blocked = Some(self.health.latch(
                                Component::Delivery,
                                &self.route,
                                failure.error.clone(),
                            ));
                        }
                    }
                    Next::Uncounted
                }
                FailureKind::Unreachable => {
                    if self.breaker.on_unreachable(&failure.error) {
                        Next::Breaker
                    } else if failures.counted + 1 >= self.retry.max_attempts && !failures.forced_breaker {
                        // An outage must not turn the last attempt into a dead letter: wait for a
                        // probe to find the application reachable first (once per record).
                        failures.forced_breaker = true;
                        self.breaker.force_open(&failure.error);
                        Next::Breaker
                    } else {
                        Next::Count
                    }
                }
            };
            let counts = next == Next::Count;
            let (trace_id, span_id) = trace.ids();
            tracing::debug!(
                topic = %record.tp.topic, partition = record.tp.partition, offset = record.offset,
                attempt = number, error = %failure.error, counted = counts,
                trace_id = trace_id.as_deref(), span_id = span_id.as_deref(),
                "Delivery attempt failed."
            );
            let retry_after = failure.retry_after;
            failures.last = Some((now, failure));
            if next == Next::Breaker {
                span.finish(&outcome, None);
                continue; // the breaker is open: wait for it before the next attempt
            }
            if next == Next::Uncounted {
                failures.uncounted += 1;
                let delay = backoff::delay(
                    &self.retry,
                    failures.uncounted.max(failures.counted),
                    retry_after,
                    self.jitter,
                );
                span.finish(&outcome, Some(delay));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.soft.cancelled() => return Outcome::Abandoned,
                }
                continue;
            }
            failures.counted += 1;
            if failures.counted >= self.retry.max_attempts {
                span.finish(&outcome, None);
                let Some((last_time, last)) = failures.last else { return Outcome::Abandoned };
                let verdict = Verdict {
                    class: ErrorClass::RetriesExhausted,
                    error: last.full_text(),
                    summary: last.error.clone(),
                    attempts: number,
                    first: failures.first.unwrap_or(last_time),
                    last: last_time,
                };
                return self.dead_letter(Job { record: original, counters, cancel, trace }, verdict).await;
            }
            let delay = backoff::delay(&self.retry, failures.counted, retry_after, self.jitter);
            span.finish(&outcome, Some(delay));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.soft.cancelled() => return Outcome::Abandoned,
            }
        }
    }

    /// Counts and reports a panic in `record`'s processing (the lane contains it). Returns
    /// whether panics have become systemic (see [`PanicWindow`]): the record must not be
    /// dead-lettered then.
    pub fn panicked(&self, record: &Record, message: &str) -> bool {
        let total = self.metrics.panicked();
        let systemic = self.panics.record();
        self.health.warn(
            Component::Panic,
            &self.route,
            format!(
                "{total} panic(s) contained; the last in the record at {}@{}: {message}; such a record is dead-lettered as `panic`",
                record.tp, record.offset
            ),
        );
        systemic
    }

    /// Dead-letters a record whose processing panicked, as `panic`.
    pub async fn dead_letter_panic(
        &self,
        record: &Record,
        counters: &TopicCounters,
        cancel: &Cancel,
        message: &str,
    ) -> Outcome {
        let trace = self.tracing.record(record);
        let now = SystemTime::now();
        let verdict = Verdict {
            class: ErrorClass::Panic,
            error: format!("processing panicked: {message}"),
            summary: "processing panicked".to_string(),
            attempts: 0,
            first: now,
            last: now,
        };
        let outcome = self.dead_letter(Job { record, counters, cancel, trace: &trace }, verdict).await;
        trace.finish("dead-lettered", Some(ErrorClass::Panic.as_str()));
        outcome
    }

    /// A readiness problem for a lane that holds its partition (see `crate::dispatch`).
    pub fn hold(&self, reason: &str) -> Latch {
        tracing::error!(route = %self.route, reason, "A partition holds: a record can be neither processed nor dead-lettered.");
        self.health.latch(Component::Panic, &self.route, reason.to_string())
    }

    async fn dead_letter(&self, job: Job<'_>, verdict: Verdict) -> Outcome {
        let Job { record, counters, cancel, trace } = job;
        let span =
            self.tracing.dead_letter(trace, record.origin, self.dead_letters.topic(), verdict.class.as_str());
        let (trace_id, span_id) = trace.ids();
        let letter = DeadLetter {
            record,
            group: &self.group,
            class: verdict.class,
            error: verdict.error.clone(),
            attempts: verdict.attempts,
            first_failure: verdict.first,
            last_failure: verdict.last,
            traceparent: span.traceparent.clone(),
        };
        // While the dead letter cannot be written: this record's readiness problem.
        let mut problem: Option<(Component, Latch)> = None;
        let mut tries = 0u32;
        loop {
            if cancel.soft.is_cancelled() {
                span.finish(Some("abandoned"));
                return Outcome::Abandoned;
            }
            let result = tokio::select! {
                biased;
                () = cancel.hard.cancelled() => {
                    span.finish(Some("abandoned"));
                    return Outcome::Abandoned;
                }
                result = self.dead_letters.write(&letter) => result,
            };
            match result {
                Ok(written) => {
                    drop(problem);
                    counters.dead_letter(written.class.as_str());
                    tracing::warn!(
                        topic = %record.tp.topic, partition = record.tp.partition, offset = record.offset,
                        error_class = written.class.as_str(), attempts = verdict.attempts,
                        error = %verdict.summary,
                        archive = written.archive_location.as_deref().unwrap_or("none"),
                        trace_id = trace_id.as_deref(), span_id = span_id.as_deref(),
                        "Record dead-lettered."
                    );
                    span.finish(None);
                    return Outcome::DeadLettered { class: written.class, attempts: verdict.attempts };
                }
                Err(err) => {
                    tries += 1;
                    let component = err.component();
                    match &problem {
                        Some((held, latch)) if *held == component => latch.update(err.to_string()),
                        _ => {
                            tracing::error!(
                                topic = %record.tp.topic, partition = record.tp.partition, offset = record.offset,
                                error = %err, trace_id = trace_id.as_deref(),
                                "Cannot write a dead letter: the partition waits and retries."
                            );
                            problem =
                                Some((component, self.health.latch(component, &self.route, err.to_string())));
                        }
                    }
                    let delay = backoff::delay(&self.retry, tries, None, self.jitter);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.soft.cancelled() => {
                            span.finish(Some("abandoned"));
                            return Outcome::Abandoned;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
