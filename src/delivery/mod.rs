//! Delivery: hands one record to the application and says what happened.
//!
//! A [`Delivery`] makes one attempt and classifies the result ([`AttemptOutcome`]); retrying,
//! backoff and dead-lettering are the pipeline's business. [`http`] posts to the application;
//! later targets (SQS) implement the same trait.

pub mod batcher;
pub mod http;
pub mod http_batch;
pub mod null;
pub mod sqs;

use futures::future::BoxFuture;

pub use crate::attempt::{Attempt, AttemptOutcome, Failure, FailureKind};
use crate::record::Record;

/// A delivery target.
pub trait Delivery: Send + Sync + 'static {
    /// Makes one attempt to deliver `record`.
    fn deliver<'a>(&'a self, record: &'a Record, attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome>;

    /// The outcome at once, for targets that need no I/O (the null target); `None` otherwise.
    /// Spares the hot path a boxed future and a latency measurement.
    fn deliver_now(&self, _record: &Record, _attempt: &Attempt) -> Option<AttemptOutcome> {
        None
    }

    /// Checks that the target is reachable again after an outage (used by the circuit breaker).
    fn probe(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Where records go, for logs and readiness reasons (no secrets).
    fn describe(&self) -> String;
}
