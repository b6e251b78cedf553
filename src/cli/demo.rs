//! `msk-sidecar demo`: the whole pipeline on an embedded Kafka cluster, with no setup.
//!
//! Starts librdkafka's in-process mock cluster, a small demo application (HTTP on loopback)
//! that fails some records transiently and some for good, produces sample orders, runs the real
//! sidecar against them with a directory archive, prints a live summary and a final report that
//! shows where every record went, and checks the counts add up. With `--sqs`, `--redis` and
//! `--amqp` an SQS queue, a Redis stream and a RabbitMQ queue are consumed next to the topic
//! ([`super::demo_sources`]).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::demo_rules::{self, Extras};
use super::demo_sources::{self, SourceDemo};
use super::output;
use crate::config::{Config, LogFormat};
use crate::record::Origin;
use crate::telemetry::metrics::Metrics;

const TOPIC: &str = "demo.orders";
const DLQ: &str = "demo.orders.dlq";
const PARTITIONS: i32 = 3;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Sample records to produce.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub records: u32,
    /// Make the demo application accept every record (for throughput measurements).
    #[arg(long)]
    pub no_failures: bool,
    /// Also consume an SQS queue of as many sample tasks (needs LocalStack: `AWS_ENDPOINT_URL`).
    #[arg(long)]
    pub sqs: bool,
    /// Also consume a Redis stream of as many sample tasks, on the server at URL (default: the
    /// test bed's, `TESTBED_REDIS_URL`).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub redis: Option<String>,
    /// Also consume a RabbitMQ queue of as many sample tasks, on the broker at URL (default: the
    /// test bed's, `TESTBED_AMQP_URL`).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub amqp: Option<String>,
}

/// What the demo application does with an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Accepted at once.
    Ok,
    /// 503 on the first two attempts, then accepted.
    Flaky,
    /// 400: rejected for good.
    Invalid,
    /// 500 on every attempt: retries run out.
    Broken,
}

impl Kind {
    pub(super) fn of(order: u32, failures: bool) -> Kind {
        match order {
            _ if !failures => Kind::Ok,
            n if n % 75 == 42 => Kind::Broken,
            n if n % 50 == 13 => Kind::Invalid,
            n if n % 20 == 7 => Kind::Flaky,
            _ => Kind::Ok,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Flaky => "flaky",
            Kind::Invalid => "invalid",
            Kind::Broken => "broken",
        }
    }
}

/// Runs the demo.
pub fn main(args: &DemoArgs) -> ExitCode {
    crate::telemetry::init_logging_with(LogFormat::Text, "error");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("msk-sidecar demo: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("msk-sidecar demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo_app() -> anyhow::Result<String> {
    async fn handle(headers: HeaderMap, body: Bytes) -> StatusCode {
        let attempt: u32 =
            headers.get("x-delivery-attempt").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
        let text = String::from_utf8_lossy(&body);
        if text.contains("\"kind\":\"broken\"") {
            StatusCode::INTERNAL_SERVER_ERROR
        } else if text.contains("\"kind\":\"invalid\"") {
            StatusCode::BAD_REQUEST
        } else if text.contains("\"kind\":\"flaky\"") && attempt < 3 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the demo application")?;
    let addr = listener.local_addr()?;
    let router = Router::new().route("/orders", post(handle));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}/orders"))
}

async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = MockCluster::new(1).context("starting the embedded Kafka cluster")?;
    cluster.create_topic(TOPIC, PARTITIONS, 1).context("creating the demo topic")?;
    cluster.create_topic(DLQ, 1, 1).context("creating the dead-letter topic")?;
    let bootstrap = cluster.bootstrap_servers();
    let url = demo_app().await?;
    let archive = std::env::temp_dir().join(format!("msk-sidecar-demo-{}", std::process::id()));
    std::fs::create_dir_all(&archive).with_context(|| format!("creating {}", archive.display()))?;
    let failures = !args.no_failures;

    output::line(&format!(
        "msk-sidecar demo: embedded Kafka at {bootstrap}, demo application at {url}, archive in {}",
        archive.display()
    ));
    let mut expected = [0u32; 4];
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("creating the sample producer")?;
    let mut sends = Vec::with_capacity(args.records as usize);
    for order in 0..args.records {
        let kind = Kind::of(order, failures);
        expected[kind as usize] += 1;
        let key = format!("customer-{}", order % 37);
        let value =
            format!("{{\"order\":{order},\"kind\":\"{}\",\"amount\":{}}}", kind.name(), 10 + order % 90);
        let partition = i32::try_from(order % 3).unwrap_or(0);
        let record = FutureRecord::to(TOPIC).partition(partition).key(&key).payload(&value);
        sends.push(producer.send_result(record).map_err(|(err, _)| anyhow::anyhow!("producing: {err}"))?);
    }
    for send in sends {
        send.await.context("producer dropped")?.map_err(|(err, _)| anyhow::anyhow!("producing: {err}"))?;
    }
    output::line(&format!(
        "produced {} orders to {TOPIC}: {} ok, {} flaky (fail twice, then succeed), {} invalid (400), {} broken (500 every time)",
        args.records, expected[0], expected[1], expected[2], expected[3]
    ));
    let extras = if failures { demo_rules::produce(&producer, TOPIC).await? } else { Extras::default() };
    if failures {
        output::line(&format!(
            "and {} test orders (SIDECAR_FILTER={}), {} order that is not JSON (SIDECAR_VALUE_FORMAT=json), {} order two days old (SIDECAR_MAX_RECORD_AGE=1d)",
            extras.filtered,
            demo_rules::FILTER,
            extras.undecodable,
            extras.expired
        ));
    }

    let mut sources = Vec::new();
    let outcome =
        run_with(args, failures, &mut sources, (&bootstrap, &url, &archive), (expected, extras), started)
            .await;
    // Whatever happened, the streams and queues the demo made go.
    for source in &sources {
        source.remove().await;
    }
    outcome
}

/// The demo after the topic is filled: fills the other sources (into `sources`), runs the
/// sidecar, reports.
async fn run_with(
    args: &DemoArgs,
    failures: bool,
    sources: &mut Vec<SourceDemo>,
    (bootstrap, url, archive): (&str, &str, &PathBuf),
    (expected, extras): ([u32; 4], Extras),
    started: Instant,
) -> anyhow::Result<()> {
    if args.sqs {
        sources.push(demo_sources::sqs(args.records, failures).await?);
    }
    if let Some(url) = &args.redis {
        sources.push(demo_sources::redis(url, args.records, failures).await?);
    }
    if let Some(url) = &args.amqp {
        sources.push(demo_sources::amqp(url, args.records, failures).await?);
    }
    for source in sources.iter() {
        output::line(&format!(
            "sent {} tasks to {} {}: {} ok, {} flaky, {} invalid, {} broken (dead letters to {})",
            args.records,
            source_label(source.origin),
            source.name,
            source.expected[0],
            source.expected[1],
            source.expected[2],
            source.expected[3],
            source.dead_letter_place()
        ));
    }
    let env: std::collections::BTreeMap<String, String> = [
        ("KAFKA_BROKERS", bootstrap),
        ("KAFKA_TOPICS", TOPIC),
        ("KAFKA_CONSUMER_GROUP", "demo"),
        ("KAFKA_AUTH", "none"),
        ("SIDECAR_DELIVERY_URL", url),
        ("SIDECAR_RETRY_MAX_ATTEMPTS", "3"),
        ("SIDECAR_RETRY_INITIAL_BACKOFF", "20ms"),
        ("SIDECAR_RETRY_MAX_BACKOFF", "200ms"),
        ("SIDECAR_DLQ_TOPIC", DLQ),
        ("SIDECAR_ADMIN_ADDR", "127.0.0.1:0"),
        ("SIDECAR_SHUTDOWN_GRACE", "5s"),
        ("SIDECAR_DELIVERY_TIMEOUT", "2s"),
        ("SIDECAR_LIBRDKAFKA_SESSION_TIMEOUT_MS", "6000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut env = env;
    env.insert("SIDECAR_DLQ_ARCHIVE".into(), format!("file://{}", archive.display()));
    for source in sources.iter() {
        env.extend(source.env.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
    }
    if failures {
        env.extend(demo_rules::ENV.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
    }
    let config = Config::from_sources(&env, None).map_err(|err| anyhow::anyhow!("{err}"))?;
    let shutdown = CancellationToken::new();
    let running = crate::app::start(config, shutdown.clone()).await?;
    let metrics = running.metrics.clone();
    let total = u64::from(args.records) * (1 + sources.len() as u64) + extras.total();
    let live = std::io::stdout().is_terminal();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (line, done) = summary(&metrics, total);
        if live {
            output::progress(&line);
        } else if done {
            output::line(&line);
        }
        if done {
            break;
        }
        if started.elapsed() > Duration::from_secs(50) {
            shutdown.cancel();
            bail!("the demo did not finish in 50 s: {line}");
        }
    }
    if live {
        output::line("");
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.wait().await?;
    report(&metrics, bootstrap, archive, (expected, extras), sources, total, elapsed).await
}

/// "SQS queue", "Redis stream", "RabbitMQ queue".
fn source_label(origin: Origin) -> &'static str {
    match origin {
        Origin::Kafka => "Kafka topic",
        Origin::Sqs => "SQS queue",
        Origin::Redis => "Redis stream",
        Origin::Amqp => "RabbitMQ queue",
    }
}

fn summary(metrics: &Metrics, total: u64) -> (String, bool) {
    let consumed = metrics.total(|c| c.consumed.load(Ordering::Relaxed));
    let delivered = metrics.total(|c| c.delivered.load(Ordering::Relaxed));
    let retried = metrics.total(|c| c.retried.load(Ordering::Relaxed));
    let dead = metrics.total(|c| c.dead_lettered_total());
    let filtered = metrics.total(|c| c.filtered.load(Ordering::Relaxed));
    let line = format!(
        "consumed {consumed}/{total} | delivered {delivered} | retried {retried} | dead-lettered {dead} | filtered {filtered}"
    );
    (line, delivered + dead + filtered >= total)
}

async fn report(
    metrics: &Metrics,
    bootstrap: &str,
    archive: &PathBuf,
    (expected, extras): ([u32; 4], Extras),
    sources: &[SourceDemo],
    total: u64,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let delivered = metrics.total(|c| c.delivered.load(Ordering::Relaxed));
    let dead = metrics.total(|c| c.dead_lettered_total());
    let mut expected = expected;
    let mut sources_dead = 0;
    let mut at_sources_agree = true;
    for source in sources {
        let counters = metrics.counters(source.origin, &std::sync::Arc::from(source.name.as_str()));
        let source_dead = counters.dead_lettered_total();
        sources_dead += source_dead;
        output::line(&format!(
            "from {} {}: delivered {} (expected {}), dead-lettered {} to {} (expected {})",
            source_label(source.origin),
            source.name,
            counters.delivered.load(Ordering::Relaxed),
            source.expected[0] + source.expected[1],
            source_dead,
            source.dead_letter_place(),
            source.expected[2] + source.expected[3]
        ));
        if let Some(held) = source.dead_letters_at_source(source_dead).await? {
            output::line(&format!(
                "  {held} of them in {}",
                source.dead_letter_place().replace(" and the archive", "")
            ));
            at_sources_agree &= held == source_dead;
        }
        for (sum, add) in expected.iter_mut().zip(source.expected) {
            *sum += add;
        }
    }
    let letters = read_topic(bootstrap, DLQ, dead.saturating_sub(sources_dead)).await?;
    let mut files = Vec::new();
    collect_files(archive, &mut files);
    files.sort();
    output::line("");
    output::line(&format!("done in {:.1}s, {total} records", elapsed.as_secs_f64()));
    output::line(&format!("delivered:      {delivered} (expected {})", expected[0] + expected[1]));
    output::line(&format!("dead-lettered:  {dead} (expected {})", expected[2] + expected[3] + extras.dead()));
    let filtered = metrics.total(|c| c.filtered.load(Ordering::Relaxed));
    output::line(&format!(
        "filtered:       {filtered} (expected {}; committed, never delivered: msk_sidecar_records_filtered_total)",
        extras.filtered
    ));
    output::line(&format!(
        "  to topic {DLQ}: {} records (headers dlq-error-class, dlq-attempts, dlq-error, ...)",
        letters.len()
    ));
    for (class, count) in count_classes(&letters) {
        output::line(&format!("    {class}: {count}"));
    }
    output::line(&format!("  to archive {}: {} objects", archive.display(), files.len()));
    for file in files.iter().take(3) {
        output::line(&format!("    {}", file.display()));
    }
    let expected_delivered = u64::from(expected[0] + expected[1]);
    let expected_dead = u64::from(expected[2] + expected[3] + extras.dead());
    if delivered != expected_delivered
        || dead != expected_dead
        || filtered != u64::from(extras.filtered)
        || letters.len() as u64 != dead.saturating_sub(sources_dead)
        || !at_sources_agree
        || files.len() as u64 != dead
    {
        bail!("the counts do not add up (see above)");
    }
    output::line(
        "every record is accounted for: delivered, filtered, or dead-lettered to the topic and the archive",
    );
    Ok(())
}

fn count_classes(letters: &[Option<String>]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for class in letters {
        *counts.entry(class.clone().unwrap_or_else(|| "?".into())).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

fn collect_files(dir: &PathBuf, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Reads `count` records of `topic` and returns their `dlq-error-class` headers.
async fn read_topic(bootstrap: &str, topic: &str, count: u64) -> anyhow::Result<Vec<Option<String>>> {
    use rdkafka::Message as _;
    use rdkafka::message::Headers as _;
    if count == 0 {
        return Ok(Vec::new());
    }
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "demo-report")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&partitions)?;
    let mut classes = Vec::new();
    while (classes.len() as u64) < count {
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .context("reading the dead-letter topic timed out")??;
        let class = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "dlq-error-class").and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).to_string());
        classes.push(class);
    }
    Ok(classes)
}
