//! The Redis Streams source (`REDIS_URL`): entries of streams (ElastiCache, MemoryDB, any Redis
//! 6.2+) read through a consumer group, delivered through the same dispatcher, pipeline and
//! application as Kafka records, and acknowledged (`XACK`) when done.
//!
//! Each stream is one partition of the source (its name as the topic, partition 0) with its own
//! receiver ([`receiver`]); the source has its own dispatcher, whose ledger holds every entry's
//! id until its acknowledgement is confirmed ([`acks`]). Order follows the route: per stream by
//! default (`SIDECAR_ORDERING=partition`), `none` for full concurrency. Dead letters go to the
//! archive and the stream `<stream>.dlq` ([`crate::dlq::stream`]), then the entry is
//! acknowledged. The group is created if missing, at the stream's start or end as
//! `KAFKA_START_FROM` says (`earliest`, `latest`).
//!
//! On stop the receivers stop, the dispatcher drains within the grace (less two seconds, like
//! Kafka's), the acknowledgements of what finished go out, and every entry still pending here is
//! marked idle so a running consumer claims it at once.

pub mod acks;
pub mod entry;
pub mod iam;
pub mod link;
pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{RedisSourceConfig, StartFrom};
use crate::dispatch::{Command, leased};
use crate::dlq::stream::{StreamDeadLetters, StreamWriter};
use crate::health::Component;
use crate::record::TopicPartition;
use crate::source::leases::LeaseLedger;
use acks::Member;
use link::{CommandError, Link};
use receiver::Receiver;

/// How long a command other than a blocking read may go unanswered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisSourceError {
    /// The URL was refused by the client.
    #[error("REDIS_URL: {0}")]
    Url(String),
    /// A stream's consumer group could not be made ready.
    #[error("REDIS_STREAMS: cannot create consumer group {group} on stream {stream}: {error}")]
    Group {
        /// The stream.
        stream: String,
        /// The group.
        group: String,
        /// What failed.
        error: CommandError,
    },
}

/// What the source needs from the rest of the process.
pub type Setup = leased::SourceSetup<RedisSourceConfig>;

/// A running source.
pub type RedisSource = leased::Running;

/// Dead-letter entries go through the source's command connection.
struct LinkWriter(Arc<Link>);

impl StreamWriter for LinkWriter {
    fn add<'a>(
        &'a self,
        stream: &'a str,
        fields: Vec<(String, Vec<u8>)>,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut add = redis::cmd("XADD");
            add.arg(stream).arg("*");
            for (name, value) in &fields {
                add.arg(name).arg(value.as_slice());
            }
            self.0.query(&add).await.map(drop).map_err(|err| err.to_string())
        })
    }
}

/// This consumer's name when `REDIS_CONSUMER_NAME` is unset: the host name (a pod's name on
/// EKS, a task's on ECS), so each replica has its own pending entries.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("msk-sidecar-{}", std::process::id()))
}

/// Creates the groups, then starts receivers, dispatcher, keeper and acknowledger; they stop
/// with `stop`.
pub async fn start(setup: Setup, stop: CancellationToken) -> Result<RedisSource, RedisSourceError> {
    let config = setup.config.clone();
    let client = redis::Client::open(config.url.as_str())
        .map_err(|err| RedisSourceError::Url(link::CommandError::from(&err).text))?;
    let password: Option<Arc<dyn link::Password>> = match &config.iam {
        Some(iam_config) => Some(iam::start(iam_config, &setup.health, stop.clone()).await),
        None => None,
    };
    let commands = Arc::new(Link::new(client.clone(), COMMAND_TIMEOUT, password.clone()));
    let reads = Arc::new(Link::new(client, receiver::BLOCK + COMMAND_TIMEOUT, password));
    let member =
        Member { group: config.group.clone(), consumer: config.consumer.clone().unwrap_or_else(host_name) };
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let ledger = Arc::new(LeaseLedger::new(done_tx));
    let partitions = config.streams.iter().map(|stream| {
        let writer = Box::new(LinkWriter(commands.clone()));
        leased::Partition {
            name: stream.clone(),
            dead_letters: Arc::new(StreamDeadLetters::new(
                writer,
                stream,
                &config.group,
                setup.archive.clone(),
            )),
            ordering: None,
        }
    });
    let routes = leased::routes_for(partitions.collect(), &setup.routes);
    let dispatcher = leased::spawn(
        crate::record::Origin::Redis,
        routes,
        setup.max_in_flight,
        ledger.clone(),
        setup.metrics.clone(),
    );
    let (dispatch, paused) = (dispatcher.handle.clone(), dispatcher.paused.clone());
    let start_id = match config.start_from {
        StartFrom::Earliest => "0",
        StartFrom::Latest => "$",
    };
    let mut assigned = Vec::new();
    let mut receivers = Vec::new();
    for (index, stream) in config.streams.iter().enumerate() {
        let epoch = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        let tp = TopicPartition::new(stream.as_str(), 0);
        let mut receiver = Receiver {
            unready: None,
            reads: reads.clone(),
            commands: commands.clone(),
            tp: tp.clone(),
            epoch,
            group: member.group.clone(),
            consumer: member.consumer.clone(),
            start_id,
            claim_min_idle: config.claim_min_idle,
            ledger: ledger.clone(),
            dispatch: dispatch.clone(),
            paused: paused.clone(),
            health: setup.health.clone(),
            max_in_flight: setup.max_in_flight,
        };
        match receiver.ensure_group().await {
            Ok(()) => {}
            // Redis answered no (wrong credentials, a key that is not a stream, an ACL without
            // XGROUP): the configuration is wrong, and starting would only hide it.
            Err(error) if error.refused => {
                return Err(RedisSourceError::Group {
                    stream: stream.clone(),
                    group: member.group.clone(),
                    error,
                });
            }
            // No answer, or not yet (server down, loading, failing over, a TLS handshake that
            // fails): start anyway, not ready until a read goes through; the receiver retries
            // with backoff and creates the group when a read finds it missing.
            Err(error) => {
                tracing::warn!(stream = %stream, group = %member.group, error = %error, "Redis does not answer yet; the stream is read once it does.");
                receiver.unready = Some(setup.health.latch(
                    Component::Source,
                    stream,
                    format!("Redis stream {stream}: cannot create consumer group {}: {error}", member.group),
                ));
            }
        }
        ledger.add_queue(tp.clone(), stream.clone(), epoch);
        assigned.push((tp, epoch));
        receivers.push(receiver);
    }
    tracing::info!(streams = %config.streams.join(","), group = %member.group, consumer = %member.consumer, "Redis streams found.");
    dispatch.send(Command::Assigned(assigned));
    let receiving: Vec<_> = receivers.into_iter().map(|r| tokio::spawn(r.run(stop.clone()))).collect();
    let keeper =
        tokio::spawn(acks::keep(commands.clone(), ledger.clone(), member.clone(), config.claim_min_idle));
    let acknowledger =
        tokio::spawn(acks::acknowledge(commands.clone(), ledger.clone(), member.clone(), done_rx));
    let (finished, done) = oneshot::channel();
    tokio::spawn(async move {
        stop.cancelled().await;
        let deadlines = leased::stop(receiving, dispatcher, &ledger, setup.grace, "redis").await;
        let end = deadlines.end;
        let mut acknowledger = acknowledger;
        if tokio::time::timeout_at(deadlines.acknowledgements, &mut acknowledger).await.is_err() {
            acknowledger.abort();
            tracing::warn!(
                "Acknowledgements of finished Redis entries did not all go through before the grace ended: they will be delivered again."
            );
        }
        keeper.abort();
        match tokio::time::timeout_at(end, acks::release(&commands, &ledger, &member, config.claim_min_idle))
            .await
        {
            Ok(released) => tracing::info!(released, "Redis source stopped; unfinished entries released."),
            Err(_) => tracing::warn!(
                "Releasing unfinished Redis entries did not finish in the grace: they are claimed after REDIS_CLAIM_MIN_IDLE."
            ),
        }
        let _ = finished.send(());
    });
    Ok(RedisSource::new(done))
}
