//! The queues and streams `msk-sidecar demo` consumes next to its topic when asked: an SQS queue
//! (`--sqs`, LocalStack), a Redis stream (`--redis`) and a RabbitMQ queue (`--amqp`).
//!
//! Each is filled with sample tasks with the same mix of outcomes as the orders, named for this
//! run, consumed by the same sidecar into the one demo application, then checked: delivered, or
//! dead-lettered to the archive and to the source's own dead-letter place (the Redis stream's
//! `<stream>.dlq`, the RabbitMQ queue's dead-letter exchange into `<queue>.dlq`), and removed at
//! the end. A source whose server is not there is refused with how to start it, never reached
//! for in a real AWS account.

use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use super::demo::Kind;
use crate::record::Origin;

/// How to start the servers the demo's sources need.
const TESTBED: &str = "start it with `localstack/testbed.sh up`, then `set -a; . .testbed/env; set +a`";

/// One source the demo filled.
pub struct SourceDemo {
    /// Which kind of source.
    pub origin: Origin,
    /// The queue's or stream's name (the topic its metrics are counted under).
    pub name: String,
    /// Tasks per kind.
    pub expected: [u32; 4],
    /// The sidecar's variables that consume it.
    pub env: Vec<(&'static str, String)>,
    /// Where its server is, to count and remove what the demo made.
    server: Server,
}

enum Server {
    Sqs,
    Redis(String),
    Amqp(String),
}

/// The tasks: (body, kind), counted per kind into `expected`.
fn tasks(count: u32, failures: bool, expected: &mut [u32; 4]) -> Vec<String> {
    (0..count)
        .map(|task| {
            let kind = Kind::of(task, failures);
            expected[kind as usize] += 1;
            format!("{{\"task\":{task},\"kind\":\"{}\"}}", kind.name())
        })
        .collect()
}

fn demo_name() -> String {
    format!("msk-sidecar-demo-tasks-{}", std::process::id())
}

/// A URL given to `--redis`/`--amqp`, or the test bed's when the flag came without one.
fn server_url(given: &str, testbed: &str, what: &str) -> anyhow::Result<String> {
    if !given.is_empty() {
        return Ok(given.to_string());
    }
    std::env::var(testbed).map_err(|_| {
        anyhow::anyhow!("demo --{what} needs a server: give its URL (--{what} URL) or {TESTBED} ({testbed})")
    })
}

/// Creates the demo queue on SQS and sends `count` tasks.
pub async fn sqs(count: u32, failures: bool) -> anyhow::Result<SourceDemo> {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        bail!(
            "demo --sqs needs LocalStack (or another SQS endpoint): {TESTBED} (AWS_ENDPOINT_URL, AWS_REGION and test keys)"
        );
    };
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = demo_name();
    let created = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .with_context(|| format!("creating the demo queue at {endpoint} (is LocalStack running?)"))?;
    let url = created.queue_url().context("the new queue has no URL")?.to_string();
    let mut expected = [0u32; 4];
    let bodies = tasks(count, failures, &mut expected);
    for (chunk_index, chunk) in bodies.chunks(10).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("t{}", chunk_index * 10 + i))
                    .message_body(body)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .context("building the sample tasks")?;
        let sent = client.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
        if !sent.failed().is_empty() {
            bail!("SQS refused {} sample tasks", sent.failed().len());
        }
    }
    let env = vec![("SQS_QUEUE_URLS", url), ("SQS_WAIT_TIME", "1s".to_string())];
    Ok(SourceDemo { origin: Origin::Sqs, name, expected, env, server: Server::Sqs })
}

/// An error about the server at `url`, without the URL (it may hold a password): some client
/// errors quote what they could not parse in full.
fn hidden(url: &str, what: &str, err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", err.to_string().replace(url, "<the URL given>"))
}

async fn redis_connection(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|err| hidden(url, "the Redis URL", err))?;
    tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .context("connecting to Redis timed out")?
        .map_err(|err| hidden(url, "connecting to Redis", err))
}

/// Adds `count` tasks to a new Redis stream (field `data`).
pub async fn redis(given: &str, count: u32, failures: bool) -> anyhow::Result<SourceDemo> {
    let url = server_url(given, "TESTBED_REDIS_URL", "redis")?;
    let mut connection = redis_connection(&url).await?;
    let name = demo_name();
    let mut expected = [0u32; 4];
    let mut pipe = redis::pipe();
    for body in tasks(count, failures, &mut expected) {
        pipe.cmd("XADD").arg(&name).arg("*").arg("data").arg(body).ignore();
    }
    pipe.query_async::<()>(&mut connection).await.context("adding the sample tasks to Redis")?;
    let env = vec![
        ("REDIS_URL", url.clone()),
        ("REDIS_STREAMS", name.clone()),
        ("REDIS_CONSUMER_GROUP", "demo".to_string()),
        ("REDIS_CONSUMER_NAME", "demo".to_string()),
    ];
    Ok(SourceDemo { origin: Origin::Redis, name, expected, env, server: Server::Redis(url) })
}

async fn amqp_channel(url: &str) -> anyhow::Result<(Connection, lapin::Channel)> {
    let connection = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .context("connecting to RabbitMQ timed out")?
    .map_err(|err| hidden(url, "connecting to RabbitMQ", err))?;
    let channel = connection.create_channel().await.context("opening a RabbitMQ channel")?;
    Ok((connection, channel))
}

/// Declares a queue whose dead-letter exchange routes to `<queue>.dlq`, and publishes `count`
/// tasks to it.
pub async fn amqp(given: &str, count: u32, failures: bool) -> anyhow::Result<SourceDemo> {
    let url = server_url(given, "TESTBED_AMQP_URL", "amqp")?;
    let (connection, channel) = amqp_channel(&url).await?;
    let name = demo_name();
    let dead = format!("{name}.dlq");
    channel
        .queue_declare(dead.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .context("declaring the demo's dead-letter queue")?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.as_str().into()));
    channel
        .queue_declare(name.as_str().into(), QueueDeclareOptions::default(), arguments)
        .await
        .context("declaring the demo queue")?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.context("asking RabbitMQ for confirms")?;
    let mut expected = [0u32; 4];
    let mut confirms = Vec::new();
    for (task, body) in tasks(count, failures, &mut expected).into_iter().enumerate() {
        let properties = BasicProperties::default()
            .with_message_id(format!("task-{task}").into())
            .with_content_type("application/json".into());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    name.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    properties,
                )
                .await
                .context("publishing a sample task")?,
        );
    }
    for confirm in confirms {
        if !confirm.await.context("waiting for RabbitMQ's confirm")?.is_ack() {
            bail!("RabbitMQ refused a sample task");
        }
    }
    if let Err(err) = connection.close(200, "demo tasks published".into()).await {
        tracing::debug!(error = %err, "Could not close the publishing connection.");
    }
    let env = vec![("AMQP_URL", url.clone()), ("AMQP_QUEUES", name.clone())];
    Ok(SourceDemo { origin: Origin::Amqp, name, expected, env, server: Server::Amqp(url) })
}

impl SourceDemo {
    /// Where its dead letters go, for the report.
    pub fn dead_letter_place(&self) -> String {
        match self.server {
            Server::Sqs => "the archive".to_string(),
            Server::Redis(_) => format!("stream {}.dlq and the archive", self.name),
            Server::Amqp(_) => format!("queue {}.dlq (its dead-letter exchange) and the archive", self.name),
        }
    }

    /// The dead letters in the source's own dead-letter place, waiting up to 5 s for `expected`
    /// (a rejected message reaches the dead-letter queue a moment after the reject); `None` for
    /// SQS, whose demo queue has no redrive policy.
    pub async fn dead_letters_at_source(&self, expected: u64) -> anyhow::Result<Option<u64>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let count = match &self.server {
                Server::Sqs => return Ok(None),
                Server::Redis(url) => {
                    let mut connection = redis_connection(url).await?;
                    redis::cmd("XLEN").arg(format!("{}.dlq", self.name)).query_async(&mut connection).await?
                }
                Server::Amqp(url) => {
                    let (_connection, channel) = amqp_channel(url).await?;
                    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                    let dead = format!("{}.dlq", self.name);
                    u64::from(
                        channel
                            .queue_declare(dead.as_str().into(), passive, FieldTable::default())
                            .await?
                            .message_count(),
                    )
                }
            };
            if count >= expected || tokio::time::Instant::now() >= deadline {
                return Ok(Some(count));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes what the demo made on the server (best effort: a leftover is only clutter, and
    /// the report has been printed).
    pub async fn remove(&self) {
        match &self.server {
            Server::Sqs => {}
            Server::Redis(url) => {
                if let Ok(mut connection) = redis_connection(url).await {
                    let dead = format!("{}.dlq", self.name);
                    let removed: Result<u64, _> =
                        redis::cmd("DEL").arg(&self.name).arg(dead).query_async(&mut connection).await;
                    if let Err(err) = removed {
                        tracing::debug!(error = %err, "Could not remove the demo streams.");
                    }
                }
            }
            Server::Amqp(url) => {
                if let Ok((_connection, channel)) = amqp_channel(url).await {
                    for queue in [self.name.clone(), format!("{}.dlq", self.name)] {
                        let deleted =
                            channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                        if let Err(err) = deleted {
                            tracing::debug!(error = %err, "Could not remove a demo queue.");
                        }
                    }
                }
            }
        }
    }
}
