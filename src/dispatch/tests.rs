//! Dispatcher tests: ordering per mode, the in-flight bound, drains and back-pressure, with an
//! in-process target on paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::*;
use crate::config::RetryPolicy;
use crate::delivery::{Attempt, AttemptOutcome, Delivery};
use crate::health::Health;
use crate::offsets::OffsetTracker;
use crate::pipeline::breaker::Breaker;
use crate::pipeline::{DeadLetterSink, backoff};

/// Delivers after a delay (a hundred times longer for a value of `slow`), recording order and
/// concurrency; panics on a value of `panic`.
struct Recorder {
    delay: Duration,
    current: AtomicUsize,
    max: AtomicUsize,
    seen: Mutex<Vec<(TopicPartition, Option<Bytes>, i64)>>,
}

impl Delivery for Recorder {
    fn deliver<'a>(&'a self, record: &'a Record, _attempt: &'a Attempt) -> BoxFuture<'a, AttemptOutcome> {
        async move {
            assert!(record.value.as_deref() != Some(b"panic"), "a bug this record triggers");
            let now = self.current.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            self.max.fetch_max(now, AtomicOrdering::SeqCst);
            let slow = record.value.as_deref() == Some(b"slow");
            tokio::time::sleep(if slow { self.delay * 100 } else { self.delay }).await;
            self.seen.lock().unwrap().push((record.tp.clone(), record.key.clone(), record.offset));
            self.current.fetch_sub(1, AtomicOrdering::SeqCst);
            AttemptOutcome::Delivered
        }
        .boxed()
    }
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        async { Ok(()) }.boxed()
    }
    fn describe(&self) -> String {
        "recorder".into()
    }
}

/// Records dead letters (offset, class).
#[derive(Default)]
struct Letters(Mutex<Vec<(i64, &'static str)>>);

impl DeadLetterSink for Letters {
    fn topic(&self) -> &str {
        "t.dlq"
    }

    fn write<'a>(
        &'a self,
        letter: &'a crate::dlq::DeadLetter<'a>,
    ) -> BoxFuture<'a, Result<crate::dlq::Written, crate::dlq::DlqError>> {
        self.0.lock().unwrap().push((letter.record.offset, letter.class.as_str()));
        async { Ok(crate::dlq::Written { class: letter.class, archive_location: None }) }.boxed()
    }
}

struct Harness {
    handle: DispatchHandle,
    recorder: Arc<Recorder>,
    letters: Arc<Letters>,
    tracker: Arc<OffsetTracker>,
    flow: mpsc::UnboundedReceiver<Flow>,
    backlog: Arc<Backlog>,
    metrics: Metrics,
    health: Arc<Health>,
}

fn harness(ordering: Ordering, max_in_flight: usize, limits: Limits, delay: Duration) -> Harness {
    harness_with(ordering, max_in_flight, limits, delay, crate::offsets::DEFAULT_MAX_UNCOMMITTED)
}

fn harness_with(
    ordering: Ordering,
    max_in_flight: usize,
    limits: Limits,
    delay: Duration,
    max_uncommitted: u64,
) -> Harness {
    let recorder = Arc::new(Recorder {
        delay,
        current: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
        seen: Mutex::default(),
    });
    let metrics = Metrics::new().expect("metrics");
    let letters = Arc::new(Letters::default());
    let health = Arc::new(Health::new());
    let pipeline = Arc::new(Pipeline {
        delivery: recorder.clone(),
        dead_letters: letters.clone(),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        },
        breaker: Arc::new(Breaker::new(3)),
        health: health.clone(),
        metrics: metrics.clone(),
        group: "g".into(),
        jitter: backoff::full_jitter,
        tracing: crate::telemetry::spans::Tracing::disabled(),
        route: String::new(),
        panics: Default::default(),
        rules: Default::default(),
    });
    let tracker = Arc::new(OffsetTracker::new(max_uncommitted));
    let (flow_tx, flow) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let routes = vec![Arc::new(RouteEntry { matcher: None, pipeline, ordering, chunk: 1 })];
    let (handle, _task) = spawn(Setup {
        source: crate::record::Origin::Kafka,
        routes,
        max_in_flight,
        limits,
        ledger: tracker.clone(),
        metrics: metrics.clone(),
        flow: flow_tx,
        backlog: backlog.clone(),
        tasks: tokio_util::task::TaskTracker::new(),
    });
    Harness { handle, recorder, letters, tracker, flow, backlog, metrics, health }
}

impl Harness {
    fn assign(&self, tps: &[TopicPartition]) {
        let assigned = tps.iter().map(|tp| (tp.clone(), self.tracker.assign(tp, None))).collect();
        assert!(self.handle.send(Command::Assigned(assigned)));
    }

    fn seen(&self) -> Vec<(TopicPartition, Option<Bytes>, i64)> {
        self.recorder.seen.lock().unwrap().clone()
    }

    async fn wait_for_deliveries(&self, count: usize) {
        for _ in 0..100_000 {
            if self.seen().len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("only {} of {count} delivered", self.seen().len());
    }
}

fn record(tp: &TopicPartition, offset: i64, key: Option<&str>) -> Record {
    Record {
        tp: tp.clone(),
        offset,
        timestamp: None,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::from_static(b"v")),
        headers: vec![],
        malformed: None,
        decoded: None,
        origin: crate::record::Origin::Kafka,
    }
}

/// Records polled now (after every assignment so far).
fn records_command(records: Vec<Record>) -> Command {
    Command::Records { records, polled_at: u64::MAX }
}

fn big_limits() -> Limits {
    Limits {
        partition_records: 100_000,
        partition_bytes: 1 << 30,
        total_records: 100_000,
        total_bytes: 1 << 30,
    }
}

#[tokio::test(start_paused = true)]
async fn partition_mode_keeps_partition_order_and_runs_partitions_concurrently() {
    let h = harness(Ordering::Partition, 8, big_limits(), Duration::from_millis(10));
    let tps: Vec<_> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
    h.assign(&tps);
    let records = (0..20).flat_map(|o| tps.iter().map(move |tp| record(tp, o, Some("k")))).collect();
    h.handle.send(records_command(records));
    h.wait_for_deliveries(60).await;
    assert_eq!(
        h.recorder.max.load(AtomicOrdering::SeqCst),
        3,
        "one at a time per partition, partitions in parallel"
    );
    for tp in &tps {
        let offsets: Vec<i64> = h.seen().iter().filter(|(t, _, _)| t == tp).map(|(_, _, o)| *o).collect();
        assert_eq!(offsets, (0..20).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(h.tracker.watermark(tp), Some(20));
    }
}

#[tokio::test(start_paused = true)]
async fn key_mode_keeps_key_order_with_concurrency_beyond_partitions() {
    let h = harness(Ordering::Key, 16, big_limits(), Duration::from_millis(10));
    let tps: Vec<_> = (0..2).map(|p| TopicPartition::new("t", p)).collect();
    h.assign(&tps);
    let mut records = Vec::new();
    for offset in 0..200 {
        let tp = &tps[usize::try_from(offset % 2).unwrap()];
        records.push(record(tp, offset, Some(&format!("key-{}", offset % 20))));
    }
    h.handle.send(records_command(records));
    h.wait_for_deliveries(200).await;
    let max = h.recorder.max.load(AtomicOrdering::SeqCst);
    assert!(max > 2 && max <= 16, "concurrency {max} beyond 2 partitions, within the limit");
    for key in 0..20 {
        let key = Bytes::from(format!("key-{key}"));
        let offsets: Vec<i64> =
            h.seen().iter().filter(|(_, k, _)| k.as_ref() == Some(&key)).map(|(_, _, o)| *o).collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, sorted, "per-key order");
        assert_eq!(offsets.len(), 10);
    }
}

#[tokio::test(start_paused = true)]
async fn none_mode_fills_the_in_flight_limit() {
    let h = harness(Ordering::None, 32, big_limits(), Duration::from_millis(10));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    h.handle.send(records_command((0..100).map(|o| record(&tp, o, None)).collect()));
    h.wait_for_deliveries(100).await;
    assert_eq!(h.recorder.max.load(AtomicOrdering::SeqCst), 32);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(h.tracker.watermark(&tp), Some(100));
}

#[tokio::test(start_paused = true)]
async fn revoke_lets_running_records_finish_and_drops_the_rest() {
    let h = harness(Ordering::Partition, 8, big_limits(), Duration::from_millis(100));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    h.handle.send(records_command((0..50).map(|o| record(&tp, o, None)).collect()));
    tokio::time::sleep(Duration::from_millis(250)).await; // offsets 0 and 1 done, 2 running
    let (done, drained) = std::sync::mpsc::sync_channel(1);
    h.handle.send(Command::Revoke { tps: vec![tp.clone()], done });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drained.try_recv().expect("drained once the running record finished");
    let offsets: Vec<i64> = h.seen().iter().map(|(_, _, o)| *o).collect();
    assert_eq!(offsets, vec![0, 1, 2], "the running record finished, nothing new started");
    assert_eq!(h.tracker.watermark(&tp), Some(3), "the commit stops before the dropped records");
}

#[tokio::test(start_paused = true)]
async fn finished_records_reach_the_watermark_while_a_later_one_still_runs() {
    let h = harness(Ordering::Partition, 8, big_limits(), Duration::from_millis(100));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    h.handle.send(records_command((0..50).map(|o| record(&tp, o, None)).collect()));
    tokio::time::sleep(Duration::from_millis(250)).await; // offsets 0 and 1 done, 2 running
    assert_eq!(h.tracker.watermark(&tp), Some(2), "the commit does not wait for the lane to end");
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_every_partition_and_stops() {
    let h = harness(Ordering::Partition, 8, big_limits(), Duration::from_millis(100));
    let tps: Vec<_> = (0..2).map(|p| TopicPartition::new("t", p)).collect();
    h.assign(&tps);
    h.handle
        .send(records_command((0..10).flat_map(|o| tps.iter().map(move |tp| record(tp, o, None))).collect()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (done, drained) = oneshot::channel();
    h.handle.send(Command::Shutdown { done });
    tokio::time::timeout(Duration::from_secs(1), drained).await.expect("drained in time").expect("signal");
    assert_eq!(h.seen().len(), 4, "two records per partition ran; the rest are left for the next run");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!h.handle.send(Command::AbortAll), "the dispatcher stopped");
}

#[tokio::test(start_paused = true)]
async fn buffer_bounds_pause_and_resume_partitions() {
    let limits =
        Limits { partition_records: 10, partition_bytes: 1 << 30, total_records: 1000, total_bytes: 1 << 30 };
    let mut h = harness(Ordering::Partition, 4, limits, Duration::from_millis(10));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    h.handle.send(records_command((0..12).map(|o| record(&tp, o, None)).collect()));
    let first = tokio::time::timeout(Duration::from_secs(1), h.flow.recv()).await.expect("flow");
    let epoch = h.tracker.epoch(&tp).expect("assigned");
    assert_eq!(first, Some(Flow::Pause(tp.clone(), epoch)));
    let second = tokio::time::timeout(Duration::from_secs(5), h.flow.recv()).await.expect("flow");
    assert_eq!(second, Some(Flow::Resume(tp.clone(), epoch)), "resumed once half the buffer drained");
}

#[tokio::test(start_paused = true)]
async fn overall_bound_pauses_every_partition() {
    let limits =
        Limits { partition_records: 1000, partition_bytes: 1 << 30, total_records: 20, total_bytes: 1 << 30 };
    let mut h = harness(Ordering::Partition, 4, limits, Duration::from_millis(10));
    let tps: Vec<_> = (0..4).map(|p| TopicPartition::new("t", p)).collect();
    h.assign(&tps);
    h.handle
        .send(records_command((0..6).flat_map(|o| tps.iter().map(move |tp| record(tp, o, None))).collect()));
    let first = tokio::time::timeout(Duration::from_secs(1), h.flow.recv()).await.expect("flow");
    assert_eq!(first, Some(Flow::PauseAll));
    let second = tokio::time::timeout(Duration::from_secs(5), h.flow.recv()).await.expect("flow");
    assert_eq!(second, Some(Flow::ResumeAll));
}

#[tokio::test(start_paused = true)]
async fn records_of_unassigned_partitions_are_ignored() {
    let h = harness(Ordering::Partition, 4, big_limits(), Duration::from_millis(1));
    let tp = TopicPartition::new("t", 9);
    h.handle.send(records_command(vec![record(&tp, 0, None)]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.seen().is_empty());
    assert_eq!(h.tracker.watermark(&tp), None);
}

#[tokio::test(start_paused = true)]
async fn idle_slots_are_reported_while_the_limit_has_room() {
    let h = harness(Ordering::Partition, 2, big_limits(), Duration::from_millis(100));
    let tps: Vec<_> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
    h.assign(&tps);
    h.handle.send(records_command(vec![record(&tps[0], 0, None), record(&tps[0], 1, None)]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(h.backlog.has_idle_slots(), "one partition's lane runs, a second slot is free");
    h.handle.send(records_command(vec![record(&tps[1], 0, None), record(&tps[2], 0, None)]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!h.backlog.has_idle_slots(), "two lanes run, a third waits");
    h.wait_for_deliveries(4).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(h.backlog.has_idle_slots(), "everything finished");
}

#[tokio::test(start_paused = true)]
async fn idle_slots_need_a_partition_that_more_records_could_start() {
    let h = harness(Ordering::Partition, 8, big_limits(), Duration::from_millis(100));
    let tps: Vec<_> = (0..2).map(|p| TopicPartition::new("t", p)).collect();
    h.assign(&tps);
    h.handle.send(records_command(vec![record(&tps[0], 0, None), record(&tps[1], 0, None)]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        !h.backlog.has_idle_slots(),
        "every partition has its lane: more records cannot start another one"
    );
    let k = harness(Ordering::Key, 8, big_limits(), Duration::from_millis(100));
    k.assign(std::slice::from_ref(&tps[0]));
    k.handle.send(records_command(vec![record(&tps[0], 0, Some("a"))]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(k.backlog.has_idle_slots(), "in key order, records of new keys can start lanes");
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_one_record_dead_letters_it_and_the_lane_goes_on() {
    let h = harness(Ordering::Partition, 4, big_limits(), Duration::from_millis(1));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    let mut records: Vec<Record> = (0..5).map(|o| record(&tp, o, None)).collect();
    records[2].value = Some(Bytes::from_static(b"panic"));
    h.handle.send(records_command(records));
    h.wait_for_deliveries(4).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let offsets: Vec<i64> = h.seen().iter().map(|(_, _, o)| *o).collect();
    assert_eq!(offsets, vec![0, 1, 3, 4], "the partition went on after the panic, in order");
    assert_eq!(*h.letters.0.lock().unwrap(), vec![(2, "panic")]);
    assert_eq!(h.tracker.watermark(&tp), Some(5), "the panicked record is done: dead-lettered");
    assert!(h.metrics.render_prometheus().contains("msk_sidecar_panics_total 1"));
    let warnings = h.health.readiness().map_err(|r| r.join("; "));
    assert!(
        warnings.as_ref().is_err_and(|r| r.contains("panic"))
            || warnings.as_ref().is_ok_and(|w| w.iter().any(|w| w.contains("panic"))),
        "{warnings:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lane_of_an_old_assignment_never_touches_the_new_one() {
    let h = harness(Ordering::Partition, 4, big_limits(), Duration::from_millis(1000));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    h.handle.send(records_command((0..3).map(|o| record(&tp, o, None)).collect()));
    tokio::time::sleep(Duration::from_millis(10)).await; // offset 0 runs (1 s)
    // The revoke gives up waiting (its deadline passed) and the partition comes straight back.
    let (done, _gave_up) = std::sync::mpsc::sync_channel(1);
    h.handle.send(Command::Revoke { tps: vec![tp.clone()], done });
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.assign(std::slice::from_ref(&tp));
    h.handle.send(records_command((0..3).map(|o| record(&tp, o, None)).collect()));
    // The old lane ends (offset 0), then the new assignment's records run.
    h.wait_for_deliveries(4).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let offsets: Vec<i64> = h.seen().iter().map(|(_, _, o)| *o).collect();
    assert_eq!(offsets, vec![0, 0, 1, 2], "old 0, then the new assignment's 0, 1, 2");
    assert_eq!(h.tracker.watermark(&tp), Some(3), "the new assignment finished all three");
    assert_eq!(h.backlog.records(), 0, "nothing left counted as buffered");
}

#[tokio::test(start_paused = true)]
async fn a_partition_too_far_ahead_of_its_commit_pauses_until_the_stuck_record_finishes() {
    let mut h = harness_with(Ordering::None, 8, big_limits(), Duration::from_millis(10), 200);
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    let epoch = h.tracker.epoch(&tp).expect("assigned");
    // Offset 0 takes long (a slow value); the rest finish quickly above it.
    let mut records: Vec<Record> = (0..250).map(|o| record(&tp, o, None)).collect();
    records[0].value = Some(Bytes::from_static(b"slow"));
    h.handle.send(records_command(records));
    let first = tokio::time::timeout(Duration::from_secs(1), h.flow.recv()).await.expect("flow");
    assert_eq!(first, Some(Flow::Pause(tp.clone(), epoch)), "250 offsets ahead of a cap of 200");
    let second = tokio::time::timeout(Duration::from_secs(60), h.flow.recv()).await.expect("flow");
    assert_eq!(second, Some(Flow::Resume(tp.clone(), epoch)), "resumed once the commit point moved");
    assert_eq!(h.tracker.watermark(&tp), Some(250));
}

#[tokio::test(start_paused = true)]
async fn records_an_earlier_owner_finished_are_not_delivered_again() {
    let h = harness(Ordering::Key, 8, big_limits(), Duration::from_millis(1));
    let tp = TopicPartition::new("t", 0);
    // The previous owner finished 1 and 3 above its commit point 0.
    let mut previous = crate::offsets::PartitionOffsets::default();
    (0..5).for_each(|o| {
        previous.track(o, None);
    });
    previous.complete(1);
    previous.complete(3);
    let handed_over = previous.final_commit().expect("commit");
    let inherited = crate::offsets::map::decode(handed_over.offset, &handed_over.metadata).expect("map");
    let epoch = h.tracker.assign(&tp, inherited);
    h.handle.send(Command::Assigned(vec![(tp.clone(), epoch)]));
    h.handle.send(records_command((0..5).map(|o| record(&tp, o, Some(&format!("k{o}")))).collect()));
    h.wait_for_deliveries(3).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut offsets: Vec<i64> = h.seen().iter().map(|(_, _, o)| *o).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, vec![0, 2, 4]);
    assert_eq!(h.tracker.watermark(&tp), Some(5));
    assert!(h.metrics.render_prometheus().contains("msk_sidecar_records_skipped_total 2"));
}

#[tokio::test(start_paused = true)]
async fn records_polled_before_their_partition_was_assigned_again_are_not_tracked() {
    let h = harness(Ordering::Partition, 4, big_limits(), Duration::from_millis(1));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    let polled_at = h.tracker.last_epoch();
    // Revoked and assigned again while a poll held records of the first assignment (150..160).
    let (done, _drained) = std::sync::mpsc::sync_channel(1);
    h.handle.send(Command::Revoke { tps: vec![tp.clone()], done });
    h.assign(std::slice::from_ref(&tp));
    h.handle
        .send(Command::Records { records: (150..160).map(|o| record(&tp, o, None)).collect(), polled_at });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(h.seen().is_empty(), "stale records are dropped");
    assert_eq!(h.tracker.watermark(&tp), None, "and not tracked: nothing can be committed past 140");
    // The new assignment fetches from the committed offset.
    h.handle.send(records_command((140..160).map(|o| record(&tp, o, None)).collect()));
    h.wait_for_deliveries(20).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(h.tracker.watermark(&tp), Some(160));
}

#[tokio::test(start_paused = true)]
async fn when_every_record_panics_the_lane_holds_instead_of_dead_lettering_the_topic() {
    let h = harness(Ordering::Partition, 4, big_limits(), Duration::from_millis(1));
    let tp = TopicPartition::new("t", 0);
    h.assign(std::slice::from_ref(&tp));
    let records: Vec<Record> = (0..30)
        .map(|o| Record { value: Some(Bytes::from_static(b"panic")), ..record(&tp, o, None) })
        .collect();
    h.handle.send(records_command(records));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let letters = h.letters.0.lock().unwrap().len();
    assert_eq!(
        letters,
        crate::pipeline::PanicWindow::LIMIT,
        "the first ones are dead-lettered, then it holds"
    );
    assert_eq!(h.tracker.watermark(&tp), Some(10), "nothing past the held record is committed");
    let reasons = h.health.readiness().expect_err("unready while held");
    assert!(reasons.iter().any(|r| r.contains("a bug, not the records")), "{reasons:?}");
}
