//! The fault suite: the real sidecar against real parts (a Kafka-protocol broker, LocalStack,
//! an HTTP application) with a fault injected on purpose, through the fault proxy
//! (`common::proxy`) or librdkafka's mock cluster, and every record judged by the one oracle
//! (`common::oracle`): nothing lost, half dead-lettered, reordered or stalled, and no duplicate
//! without a cause the run really had. `soak` runs random fault schedules over the same
//! scenarios for as long as `SOAK_MINUTES` says (`scripts/soak.sh`).

mod network;
mod outages;
mod peers;
mod queues;
mod soak;
mod sources;
mod storms;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::oracle::{self, Cause, Evidence, Oracle, Verdict};
use crate::common::{self, app::TestApp};

/// One fault run: the oracle's verdict and what the run did.
pub struct Report {
    /// The scenario.
    pub name: String,
    /// The oracle's judgement.
    pub verdict: Verdict,
    /// Causes that justify duplicates in this run.
    pub causes: Vec<Cause>,
    /// Faults injected, by kind.
    pub faults: Vec<(&'static str, u64)>,
    /// How long every record took to be done after the last fault (`None`: not within the
    /// bound: a stall).
    pub settled: Option<Duration>,
    /// The highest peak RSS of a sidecar process of the run (KiB; 0 when it ran in the test).
    pub peak_rss_kib: u64,
    /// Scenario-specific checks that failed (dead letters during an application outage...).
    pub failed_checks: Vec<String>,
    /// The most extra deliveries the run's faults can explain, when they can be bounded.
    pub duplicate_bound: Option<usize>,
}

impl Report {
    /// Fails the test on any anomaly, with the table.
    pub fn check(&self) {
        println!(
            "{}: settled in {:?}; faults {:?}; peak RSS {} KiB",
            self.name, self.settled, self.faults, self.peak_rss_kib
        );
        assert!(
            self.failed_checks.is_empty(),
            "{}: {:?}\n{}",
            self.name,
            self.failed_checks,
            self.verdict.table(&self.name, &self.causes)
        );
        assert!(
            self.settled.is_some(),
            "{}: stalled: the committed offsets did not reach the end within the bound after the last fault\n{}",
            self.name,
            self.verdict.table(&self.name, &self.causes)
        );
        if let Some(bound) = self.duplicate_bound {
            assert!(
                self.verdict.extra_deliveries() <= bound,
                "{}: {} extra deliveries, more than the {bound} its faults can explain\n{}",
                self.name,
                self.verdict.extra_deliveries(),
                self.verdict.table(&self.name, &self.causes)
            );
        }
        self.verdict.assert_clean(&self.name, &self.causes);
    }
}

/// A topic with a random name starting with `prefix` and `partitions` partitions, and its
/// dead-letter topic, on the test bed's broker.
pub async fn topics(prefix: &str, partitions: i32) -> (String, String) {
    let topic = common::random_name(prefix);
    let dlq = format!("{topic}.dlq");
    common::create_topic(&topic, partitions).await;
    common::create_topic(&dlq, 1).await;
    (topic, dlq)
}

/// Produces `count` records, record `i` to partition `i mod partitions` with key `k<i mod keys>`
/// and value `v<first + i>`, one per batch (tansu's watermarks count batches), and tells the
/// oracle where each landed.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    keys: usize,
    first: usize,
    oracle: &mut Oracle,
) {
    let producer: FutureProducer = common::kafka_config_at(bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for i in 0..count {
        let partition = i32::try_from(i).expect("count") % partitions;
        let key = format!("k{}", i % keys.max(1)).into_bytes();
        let value = format!("v{}", first + i);
        let record = FutureRecord::to(topic).partition(partition).key(&key).payload(&value);
        let delivered = producer.send(record, Duration::from_secs(60)).await;
        let delivery = delivered.unwrap_or_else(|(err, _)| panic!("produce to {topic}: {err}"));
        oracle.produced(delivery.partition, delivery.offset, Some(key));
    }
}

/// One past the last produced offset of each partition `0..partitions`.
pub fn ends(oracle: &Oracle, partitions: i32) -> Vec<i64> {
    (0..partitions)
        .map(|p| oracle.produced.keys().filter(|(q, _)| *q == p).map(|(_, o)| o + 1).max().unwrap_or(0))
        .collect()
}

/// Waits until `committed()` reaches `ends` (every record done), at most `bound`. Returns how
/// long it took, or `None` when the bound passed first (the oracle then shows what is pending).
pub async fn settle(
    committed: impl Fn() -> Vec<i64> + Send + Sync + 'static,
    ends: &[i64],
    bound: Duration,
) -> Option<Duration> {
    let committed = std::sync::Arc::new(committed);
    let started = Instant::now();
    while started.elapsed() < bound {
        let read = committed.clone();
        // Right after a fault heals the broker may not answer yet: that read panics (its
        // message is printed), and counts as not settled.
        if let Ok(now) = tokio::task::spawn_blocking(move || read()).await
            && now == ends
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// [`settle`] on the test bed's broker: until `group` has committed every record of `oracle` on
/// the `partitions` of `topic`.
pub async fn settle_group(
    group: &str,
    topic: &str,
    oracle: &Oracle,
    partitions: i32,
    bound: Duration,
) -> Option<Duration> {
    let (g, t) = (group.to_string(), topic.to_string());
    settle(move || common::committed(&g, &t, partitions), &ends(oracle, partitions), bound).await
}

/// What the run left behind, read from the application, the dead letters, the archive and the
/// committed offsets.
pub fn evidence(
    app: Option<&TestApp>,
    dead_letters: &[rdkafka::message::OwnedMessage],
    archive: Option<&Path>,
    committed: Vec<i64>,
) -> Evidence {
    Evidence {
        accepted: app.map(TestApp::accepted).unwrap_or_default(),
        dead_letters: oracle::dead_letters_of(dead_letters),
        archived: archive.map(oracle::archived_in),
        committed,
        null_target: app.is_none(),
    }
}

/// The dead letters of each class: (partition, offset) by `dlq-error-class`.
pub fn by_class(dead_letters: &[rdkafka::message::OwnedMessage]) -> BTreeMap<String, usize> {
    let mut classes = BTreeMap::new();
    for letter in dead_letters {
        let class = common::header_text(letter, "dlq-error-class").unwrap_or_default();
        *classes.entry(class).or_default() += 1;
    }
    classes
}

/// Whether a child sidecar's log says it lost an assignment (a session that expired).
pub fn lost_an_assignment(log: &Path) -> bool {
    std::fs::read_to_string(log).unwrap_or_default().contains("Partitions lost")
}

/// The warnings and errors of a child sidecar's log, when `FAULTS_DEBUG` is set (to see why a
/// run went wrong).
pub fn debug_log(log: &Path) {
    if std::env::var("FAULTS_DEBUG").is_ok() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("INFO")) {
            println!("{}: {line}", log.display());
        }
    }
}

/// Whether a child sidecar's log says the broker refused the final commit of a handover (a
/// periodic commit that fails is retried and causes nothing).
pub fn refused_a_commit(log: &Path) -> bool {
    std::fs::read_to_string(log).unwrap_or_default().contains("Commit of revoked partitions failed")
}
