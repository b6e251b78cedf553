//! Attempts: what one delivery attempt is and how it ended.
//!
//! The delivery targets produce an [`AttemptOutcome`] for each [`Attempt`]; the pipeline decides
//! from its [`FailureKind`] what happens next, and telemetry records it on the attempt's span.
//! The types live below all three so that none of them reaches back up to another.

use std::time::Duration;

/// What one attempt is, beyond the record itself.
#[derive(Clone, Debug, Default)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// W3C `traceparent` of the attempt span, sent to the application.
    pub traceparent: Option<String>,
    /// W3C `tracestate` that goes with it.
    pub tracestate: Option<String>,
}

/// How an attempt failed, which decides what the pipeline does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Try again after a backoff (5xx, 408, 429).
    Retryable,
    /// The application could not be reached (refused, reset, timeout): try again, and count
    /// towards the circuit breaker.
    Unreachable,
    /// Trying again cannot help (other 4xx): dead-letter now.
    Permanent,
    /// The record is larger than the target accepts (and no claim check applies): dead-letter
    /// now as `oversized`.
    Oversized,
    /// The target is misconfigured (queue missing, access denied): retry forever without using
    /// attempts, hold the partition, report it on `/ready`; never dead-letter.
    Blocked,
    /// The whole batch the record was in failed: the record itself may be fine. Retry it in a
    /// smaller batch without using an attempt (halving isolates a poison record).
    BatchFailed,
}

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Short, loggable description (`HTTP 503 Service Unavailable`, `connection refused`).
    pub error: String,
    /// More detail for the dead letter only (the start of the response body); never logged.
    pub detail: Option<String>,
    /// Delay the application asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure without detail or requested delay.
    pub fn new(kind: FailureKind, error: impl Into<String>) -> Self {
        Failure { kind, error: error.into(), detail: None, retry_after: None }
    }

    /// The description for a dead letter: the error and its detail, one line.
    pub fn full_text(&self) -> String {
        match &self.detail {
            Some(detail) if !detail.is_empty() => format!("{}: {detail}", self.error),
            _ => self.error.clone(),
        }
    }
}

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The application accepted the record.
    Delivered,
    /// The attempt failed.
    Failed(Failure),
}
