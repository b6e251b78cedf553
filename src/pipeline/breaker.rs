//! The circuit breaker: while the application is unreachable, consumption pauses instead of
//! turning every record into a dead letter.
//!
//! Consecutive unreachable attempts (refused, reset, timed out) across all records open the
//! breaker. While it is open, the consumer pauses every partition, records wait before their
//! next attempt, and failures do not count against a record's attempts. A prober checks the
//! application with a cheap reachability test and closes the breaker when it answers; any
//! response from the application also closes it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::health::{Component, Health};
use crate::telemetry::metrics::Metrics;

/// Consecutive unreachable attempts that open the breaker.
pub const DEFAULT_THRESHOLD: u32 = 3;

/// Longest wait between probes.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Shared breaker state.
#[derive(Debug)]
pub struct Breaker {
    /// Failures needed to open.
    threshold: u32,
    /// Unreachable attempts since the last response.
    consecutive: AtomicU32,
    /// `true` while open; the consumer and waiting records watch it.
    open: watch::Sender<bool>,
    /// The same state, read without a lock on every attempt.
    is_open: std::sync::atomic::AtomicBool,
    /// The last unreachable error, for readiness and logs.
    reason: Mutex<String>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive unreachable attempts.
    pub fn new(threshold: u32) -> Self {
        Breaker {
            threshold: threshold.max(1),
            consecutive: AtomicU32::new(0),
            open: watch::Sender::new(false),
            is_open: std::sync::atomic::AtomicBool::new(false),
            reason: Mutex::new(String::new()),
        }
    }

    /// Whether the breaker is open.
    pub fn is_open(&self) -> bool {
        self.is_open.load(Ordering::Acquire)
    }

    fn set(&self, open: bool) {
        self.is_open.store(open, Ordering::Release);
        self.open.send_replace(open);
    }

    /// Watches the open/closed state.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.open.subscribe()
    }

    /// The application answered (any HTTP status): it is reachable.
    pub fn on_response(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        if self.is_open() {
            self.close();
        }
    }

    /// An attempt found the application unreachable. Returns whether the breaker is open now.
    pub fn on_unreachable(&self, error: &str) -> bool {
        let count = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        *self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error.to_string();
        if count >= self.threshold && !self.is_open() {
            self.set(true);
        }
        self.is_open()
    }

    /// Opens the breaker regardless of the count (a record is about to use its last attempt
    /// on an unreachable application).
    pub fn force_open(&self, error: &str) {
        *self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error.to_string();
        self.set(true);
    }

    /// Closes the breaker (the application answered a probe).
    pub fn close(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        self.set(false);
    }

    /// The last unreachable error.
    pub fn reason(&self) -> String {
        self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Waits until the breaker is closed. Returns false if `cancel` fired first.
    pub async fn wait_closed(&self, cancel: &CancellationToken) -> bool {
        if !self.is_open() {
            return true;
        }
        let mut rx = self.subscribe();
        tokio::select! {
            result = rx.wait_for(|open| !*open) => result.is_ok(),
            () = cancel.cancelled() => false,
        }
    }
}

/// Probes the application while the breaker is open and keeps readiness and metrics in step.
pub async fn run_prober(
    breaker: std::sync::Arc<Breaker>,
    delivery: std::sync::Arc<dyn Delivery>,
    health: std::sync::Arc<Health>,
    metrics: Metrics,
    first_interval: Duration,
    cancel: CancellationToken,
    route: String,
) {
    let mut state = breaker.subscribe();
    let target = delivery.describe();
    loop {
        tokio::select! {
            result = state.wait_for(|open| *open) => if result.is_err() { return },
            () = cancel.cancelled() => return,
        }
        let reason = breaker.reason();
        tracing::warn!(target = %target, error = %reason, "Application unreachable: pausing consumption until it answers.");
        // Unready while the breaker is open; dropping the latch clears it.
        let latch =
            health.latch(Component::Application, &route, format!("unreachable at {target}: {reason}"));
        metrics.set_breaker_open(true);
        let mut interval = first_interval.max(Duration::from_millis(50));
        while breaker.is_open() {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = cancel.cancelled() => return,
            }
            // A probe waits up to the attempt timeout: a stop must not wait for it.
            let probed = tokio::select! {
                probed = delivery.probe() => probed,
                () = cancel.cancelled() => return,
            };
            match probed {
                Ok(()) => breaker.close(),
                Err(err) => {
                    latch.update(format!("unreachable at {target}: {err}"));
                    interval = (interval * 2).min(MAX_PROBE_INTERVAL);
                }
            }
        }
        tracing::info!(target = %target, "Application reachable again: resuming consumption.");
        drop(latch);
        metrics.set_breaker_open(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_closes_on_a_response() {
        let breaker = Breaker::new(3);
        assert!(!breaker.on_unreachable("refused"));
        assert!(!breaker.on_unreachable("refused"));
        assert!(breaker.on_unreachable("refused"));
        assert_eq!(breaker.reason(), "refused");
        breaker.on_response();
        assert!(!breaker.is_open());
        assert!(!breaker.on_unreachable("reset"), "the count restarted");
    }

    #[tokio::test]
    async fn waiters_resume_when_the_breaker_closes_or_are_cancelled() {
        let breaker = std::sync::Arc::new(Breaker::new(1));
        assert!(breaker.on_unreachable("refused"));
        let cancel = CancellationToken::new();
        let waiter = {
            let (breaker, cancel) = (breaker.clone(), cancel.clone());
            tokio::spawn(async move { breaker.wait_closed(&cancel).await })
        };
        tokio::task::yield_now().await;
        breaker.close();
        assert!(waiter.await.expect("join"));

        assert!(breaker.on_unreachable("refused"));
        cancel.cancel();
        assert!(!breaker.wait_closed(&cancel).await);
    }

    /// A target whose probe never answers (a black-holed application).
    struct Silent;

    impl Delivery for Silent {
        fn deliver<'a>(
            &'a self,
            _record: &'a crate::record::Record,
            _attempt: &'a crate::delivery::Attempt,
        ) -> futures::future::BoxFuture<'a, crate::delivery::AttemptOutcome> {
            Box::pin(std::future::pending())
        }

        fn probe(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
            Box::pin(std::future::pending())
        }

        fn describe(&self) -> String {
            "silent".to_string()
        }
    }

    #[tokio::test]
    async fn a_stop_does_not_wait_for_a_probe_that_never_answers() {
        let breaker = std::sync::Arc::new(Breaker::new(1));
        assert!(breaker.on_unreachable("timed out"));
        let cancel = CancellationToken::new();
        let metrics = Metrics::new().expect("metrics");
        let prober = tokio::spawn(run_prober(
            breaker,
            std::sync::Arc::new(Silent),
            std::sync::Arc::new(Health::new()),
            metrics,
            Duration::from_millis(1),
            cancel.clone(),
            "default".to_string(),
        ));
        // Let the prober start its probe, then stop.
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(5), prober).await;
        assert!(stopped.is_ok(), "the prober is still waiting for its probe after the stop");
    }
}
