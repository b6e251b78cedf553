//! Pipeline tests with an in-process scripted target and dead-letter sink, on paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::*;
use crate::archive::ArchiveError;
use crate::record::TopicPartition;

/// A target that answers from a script and records when each attempt came.
struct Scripted {
    outcomes: Mutex<VecDeque<AttemptOutcome>>,
    calls: Mutex<Vec<(u32, tokio::time::Instant)>>,
}

impl Scripted {
    fn new(outcomes: Vec<AttemptOutcome>) -> Arc<Self> {
        Arc::new(Scripted { outcomes: Mutex::new(outcomes.into()), calls: Mutex::new(Vec::new()) })
    }

    fn calls(&self) -> Vec<(u32, tokio::time::Instant)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Delivery for Scripted {
    fn deliver<'a>(&'a self, _record: &'a Record, attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        self.calls.lock().unwrap().push((attempt.number, tokio::time::Instant::now()));
        let next = self.outcomes.lock().unwrap().pop_front().unwrap_or(AttemptOutcome::Delivered);
        async move { next }.boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        async { Ok(()) }.boxed()
    }

    fn describe(&self) -> String {
        "scripted".into()
    }
}

/// A sink that fails a number of times, then records the letters.
#[derive(Default)]
struct Sink {
    failures_left: AtomicU32,
    written: Mutex<Vec<(ErrorClass, u32, String)>>,
}

impl DeadLetterSink for Sink {
    fn topic(&self) -> &str {
        "t.dlq"
    }

    fn write<'a>(&'a self, letter: &'a DeadLetter<'a>) -> BoxFuture<'a, Result<Written, DlqError>> {
        async move {
            if self.failures_left.load(Ordering::SeqCst) > 0 {
                self.failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(DlqError::Archive(ArchiveError::File {
                    path: "/x".into(),
                    source: std::io::Error::other("disk full"),
                }));
            }
            self.written.lock().unwrap().push((letter.class, letter.attempts, letter.error.clone()));
            Ok(Written { class: letter.class, archive_location: None })
        }
        .boxed()
    }
}

fn failure(kind: FailureKind, error: &str) -> AttemptOutcome {
    AttemptOutcome::Failed(Failure::new(kind, error))
}

fn record() -> Record {
    Record {
        tp: TopicPartition::new("t", 0),
        offset: 7,
        timestamp: Some(1),
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: vec![],
        malformed: None,
        decoded: None,
        origin: crate::record::Origin::Kafka,
    }
}

fn pipeline(delivery: Arc<Scripted>, sink: Arc<Sink>, max_attempts: u32) -> Pipeline {
    Pipeline {
        delivery,
        dead_letters: sink,
        retry: RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        },
        breaker: Arc::new(Breaker::new(2)),
        health: Arc::new(Health::new()),
        metrics: Metrics::new().expect("metrics"),
        group: "g".into(),
        jitter: |bound| bound, // the bound itself, so delays are exact
        tracing: crate::telemetry::spans::Tracing::disabled(),
        route: String::new(),
        panics: Default::default(),
        rules: Default::default(),
    }
}

fn gaps(calls: &[(u32, tokio::time::Instant)]) -> Vec<u128> {
    calls.windows(2).map(|w| (w[1].1 - w[0].1).as_millis()).collect()
}

#[tokio::test(start_paused = true)]
async fn delivered_on_the_first_attempt() {
    let target = Scripted::new(vec![]);
    let p = pipeline(target.clone(), Arc::default(), 5);
    let counters = counters();
    assert_eq!(p.process(&record(), &counters, &Cancel::default()).await, Outcome::Delivered { attempts: 1 });
    assert_eq!(counters.delivered.load(Ordering::Relaxed), 1);
    assert_eq!(counters.retried.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_delays() {
    let target = Scripted::new(vec![
        failure(FailureKind::Retryable, "HTTP 503"),
        failure(FailureKind::Retryable, "HTTP 500"),
        failure(FailureKind::Retryable, "HTTP 502"),
    ]);
    let sink = Arc::new(Sink::default());
    let p = pipeline(target.clone(), sink.clone(), 5);
    let counters = counters();
    assert_eq!(p.process(&record(), &counters, &Cancel::default()).await, Outcome::Delivered { attempts: 4 });
    let calls = target.calls();
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(gaps(&calls), vec![200, 400, 800]);
    assert!(sink.written.lock().unwrap().is_empty());
    assert_eq!(counters.retried.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_is_dead_lettered_after_one_attempt() {
    let target = Scripted::new(vec![AttemptOutcome::Failed(Failure {
        kind: FailureKind::Permanent,
        error: "HTTP 400 Bad Request".into(),
        detail: Some("missing field".into()),
        retry_after: None,
    })]);
    let sink = Arc::new(Sink::default());
    let p = pipeline(target.clone(), sink.clone(), 5);
    let counters = counters();
    let outcome = p.process(&record(), &counters, &Cancel::default()).await;
    assert_eq!(outcome, Outcome::DeadLettered { class: ErrorClass::Permanent, attempts: 1 });
    assert_eq!(target.calls().len(), 1);
    assert_eq!(
        sink.written.lock().unwrap().clone(),
        vec![(ErrorClass::Permanent, 1, "HTTP 400 Bad Request: missing field".to_string())]
    );
    assert_eq!(counters.dead_lettered_total(), 1);
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_exhaust_the_attempts() {
    let target = Scripted::new((0..10).map(|_| failure(FailureKind::Retryable, "HTTP 500")).collect());
    let sink = Arc::new(Sink::default());
    let p = pipeline(target.clone(), sink.clone(), 3);
    let outcome = p.process(&record(), &counters(), &Cancel::default()).await;
    assert_eq!(outcome, Outcome::DeadLettered { class: ErrorClass::RetriesExhausted, attempts: 3 });
    assert_eq!(target.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_delay() {
    let target = Scripted::new(vec![AttemptOutcome::Failed(Failure {
        kind: FailureKind::Retryable,
        error: "HTTP 429".into(),
        detail: None,
        retry_after: Some(Duration::from_millis(1500)),
    })]);
    let p = pipeline(target.clone(), Arc::default(), 5);
    p.process(&record(), &counters(), &Cancel::default()).await;
    assert_eq!(gaps(&target.calls()), vec![1500]);
}

/// A target that is unreachable until `up` is set, like an application that is down.
struct Outage {
    up: std::sync::atomic::AtomicBool,
    attempts: AtomicU32,
}

impl Delivery for Outage {
    fn deliver<'a>(&'a self, _record: &'a Record, _attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let up = self.up.load(Ordering::SeqCst);
        async move { if up { AttemptOutcome::Delivered } else { failure(FailureKind::Unreachable, "refused") } }.boxed()
    }
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        let up = self.up.load(Ordering::SeqCst);
        async move { if up { Ok(()) } else { Err("refused".to_string()) } }.boxed()
    }
    fn describe(&self) -> String {
        "outage".into()
    }
}

async fn ride_out_an_outage(max_attempts: u32) -> (Outcome, u32, usize) {
    let outage = Arc::new(Outage { up: false.into(), attempts: AtomicU32::new(0) });
    let sink = Arc::new(Sink::default());
    let mut p = pipeline(Scripted::new(vec![]), sink.clone(), max_attempts);
    p.delivery = outage.clone();
    let p = Arc::new(p);
    let prober = tokio::spawn(breaker::run_prober(
        p.breaker.clone(),
        outage.clone(),
        p.health.clone(),
        p.metrics.clone(),
        Duration::from_millis(100),
        CancellationToken::new(),
        String::new(),
    ));
    let task = {
        let p = p.clone();
        tokio::spawn(async move { p.process(&record(), &counters(), &Cancel::default()).await })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!task.is_finished(), "waits while the application is down");
    assert!(p.breaker.is_open());
    outage.up.store(true, Ordering::SeqCst);
    let outcome = task.await.expect("join");
    prober.abort();
    (outcome, outage.attempts.load(Ordering::SeqCst), sink.written.lock().unwrap().len())
}

#[tokio::test(start_paused = true)]
async fn an_application_outage_pauses_instead_of_dead_lettering() {
    let (outcome, attempts, dead) = ride_out_an_outage(5).await;
    assert_eq!(dead, 0);
    assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    assert!(attempts <= 4, "no attempts burned while the breaker is open: {attempts}");
}

#[tokio::test(start_paused = true)]
async fn an_outage_on_the_last_attempt_still_waits_for_the_application() {
    let (outcome, attempts, dead) = ride_out_an_outage(1).await;
    assert_eq!(dead, 0);
    assert_eq!(outcome, Outcome::Delivered { attempts: 2 });
    assert_eq!(attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn dead_letter_writes_are_retried_until_they_succeed() {
    let target = Scripted::new(vec![failure(FailureKind::Permanent, "HTTP 422")]);
    let sink = Arc::new(Sink { failures_left: AtomicU32::new(3), ..Sink::default() });
    let p = pipeline(target, sink.clone(), 5);
    let health = p.health.clone();
    health.mark_joined();
    let outcome = p.process(&record(), &counters(), &Cancel::default()).await;
    assert_eq!(outcome, Outcome::DeadLettered { class: ErrorClass::Permanent, attempts: 1 });
    assert_eq!(sink.written.lock().unwrap().len(), 1);
    assert!(health.readiness().is_ok(), "the archive problem is cleared after the successful write");
}

#[tokio::test(start_paused = true)]
async fn failing_dead_letter_keeps_the_record_open_and_marks_readiness() {
    let target = Scripted::new(vec![failure(FailureKind::Permanent, "HTTP 422")]);
    let sink = Arc::new(Sink { failures_left: AtomicU32::new(u32::MAX), ..Sink::default() });
    let p = Arc::new(pipeline(target, sink, 5));
    let cancel = Cancel::default();
    let task = {
        let (p, cancel) = (p.clone(), cancel.clone());
        tokio::spawn(async move { p.process(&record(), &counters(), &cancel).await })
    };
    tokio::time::sleep(Duration::from_secs(30)).await;
    let reasons = p.health.readiness().unwrap_err();
    assert!(reasons.iter().any(|r| r.starts_with("archive: cannot write /x")), "{reasons:?}");
    assert!(!task.is_finished(), "still retrying");
    cancel.soft.cancel();
    assert_eq!(task.await.expect("join"), Outcome::Abandoned);
}

#[tokio::test(start_paused = true)]
async fn soft_cancel_abandons_a_record_waiting_for_its_backoff() {
    let target = Scripted::new((0..5).map(|_| failure(FailureKind::Retryable, "HTTP 500")).collect());
    let p = Arc::new(pipeline(target.clone(), Arc::default(), 5));
    let cancel = Cancel::default();
    let task = {
        let (p, cancel) = (p.clone(), cancel.clone());
        tokio::spawn(async move { p.process(&record(), &counters(), &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.soft.cancel();
    assert_eq!(task.await.expect("join"), Outcome::Abandoned);
    assert_eq!(target.calls().len(), 1);
}

/// A target whose attempts never finish.
struct Hanging;

impl Delivery for Hanging {
    fn deliver<'a>(&'a self, _record: &'a Record, _attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        futures::future::pending().boxed()
    }
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        async { Ok(()) }.boxed()
    }
    fn describe(&self) -> String {
        "hanging".into()
    }
}

#[tokio::test(start_paused = true)]
async fn soft_cancel_lets_an_attempt_run_but_hard_cancel_stops_it() {
    let mut p = pipeline(Scripted::new(vec![]), Arc::default(), 5);
    p.delivery = Arc::new(Hanging);
    let p = Arc::new(p);
    let cancel = Cancel::default();
    let task = {
        let (p, cancel) = (p.clone(), cancel.clone());
        tokio::spawn(async move { p.process(&record(), &counters(), &cancel).await })
    };
    cancel.soft.cancel();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!task.is_finished(), "the attempt in progress is not interrupted by a soft cancel");
    cancel.hard.cancel();
    assert_eq!(task.await.expect("join"), Outcome::Abandoned);
}

fn counters() -> TopicCounters {
    TopicCounters::new(crate::record::Origin::Kafka, &std::sync::Arc::from("t"))
}

#[tokio::test(start_paused = true)]
async fn oversized_records_are_dead_lettered_at_once_as_oversized() {
    let target = Scripted::new(vec![failure(FailureKind::Oversized, "too large for SQS")]);
    let sink = Arc::new(Sink::default());
    let p = pipeline(target.clone(), sink.clone(), 5);
    let outcome = p.process(&record(), &counters(), &Cancel::default()).await;
    assert_eq!(outcome, Outcome::DeadLettered { class: ErrorClass::Oversized, attempts: 1 });
}

#[tokio::test(start_paused = true)]
async fn a_blocked_target_holds_the_record_without_using_attempts_and_reports_it() {
    let mut script: Vec<AttemptOutcome> =
        (0..20).map(|_| failure(FailureKind::Blocked, "SQS QueueDoesNotExist")).collect();
    script.push(AttemptOutcome::Delivered);
    let target = Scripted::new(script);
    let sink = Arc::new(Sink::default());
    let p = Arc::new(pipeline(target.clone(), sink.clone(), 2));
    p.health.mark_joined();
    let task = {
        let p = p.clone();
        tokio::spawn(async move { p.process(&record(), &counters(), &Cancel::default()).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reasons = p.health.readiness().unwrap_err();
    assert!(reasons.iter().any(|r| r.contains("QueueDoesNotExist")), "{reasons:?}");
    let outcome = task.await.expect("join");
    assert_eq!(outcome, Outcome::Delivered { attempts: 21 }, "20 refusals used no attempt (max 2)");
    assert!(sink.written.lock().unwrap().is_empty(), "never dead-lettered");
    assert!(p.health.readiness().is_ok(), "cleared once the target accepts");
}

#[tokio::test(start_paused = true)]
async fn whole_batch_failures_do_not_use_attempts() {
    let mut script: Vec<AttemptOutcome> =
        (0..6).map(|_| failure(FailureKind::BatchFailed, "HTTP 500 for a batch of 8")).collect();
    script.push(AttemptOutcome::Delivered);
    let target = Scripted::new(script);
    let sink = Arc::new(Sink::default());
    let p = pipeline(target.clone(), sink.clone(), 2);
    let outcome = p.process(&record(), &counters(), &Cancel::default()).await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 7 });
    assert!(sink.written.lock().unwrap().is_empty());
}
