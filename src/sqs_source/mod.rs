//! The SQS source (`SQS_QUEUE_URLS`): messages of SQS queues delivered through the same
//! dispatcher, pipeline and application as Kafka records, and deleted when done.
//!
//! Each queue is one partition of the source (its name as the topic, partition 0) with its own
//! receiver ([`receiver`]); the source has its own dispatcher, whose ledger ([`ledger`]) holds
//! every message's lease. Order follows the queue: a FIFO queue's lanes are its message groups
//! (a failing group waits, the others go on), a standard queue's messages run concurrently. A
//! message is deleted only when it is delivered or durably dead-lettered ([`leases`]); while it
//! is in flight or waiting for a retry its visibility is extended. Dead letters go to the
//! archive and to the dead-letter queue of the queue's `RedrivePolicy`
//! ([`crate::dlq::queue`]); a queue with neither is refused at start. A queue is delivered as the
//! first queue route of `[[routes]]` that names it says, else as the top-level settings say.
//!
//! On stop the receivers stop, the dispatcher drains within the grace (less two seconds, like
//! Kafka's), the deletes of what finished go out, and every message still leased is released
//! (visibility 0) so another consumer takes it at once.

pub mod leases;
pub mod message;
pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::archive::Archive;
use crate::config::{Ordering, SqsSourceConfig};
use crate::dispatch::{Command, leased};
use crate::dlq::queue::QueueDeadLetters;
use crate::record::TopicPartition;
use crate::source::leases::LeaseLedger;
use receiver::Receiver;

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SqsSourceError {
    /// The queue's attributes could not be read.
    #[error("SQS_QUEUE_URLS: cannot read the attributes of queue {queue}: {error}")]
    Queue {
        /// The queue's name.
        queue: String,
        /// The SDK's error.
        error: String,
    },
    /// The queue's dead letters would have nowhere to go.
    #[error(
        "SQS_QUEUE_URLS: queue {queue} has no dead-letter queue (RedrivePolicy) and SIDECAR_DLQ_ARCHIVE is none: its dead letters would have nowhere to go"
    )]
    NoDeadLetterPlace {
        /// The queue's name.
        queue: String,
    },
}

/// What the source needs from the rest of the process.
pub type Setup = leased::SourceSetup<SqsSourceConfig>;

/// A running source.
pub type SqsSource = leased::Running;

/// One queue as configured and found.
struct QueueSetup {
    url: String,
    tp: TopicPartition,
    fifo: bool,
    dead_letters: Arc<QueueDeadLetters>,
}

/// Reads each queue's attributes, then starts receivers, dispatcher, keeper and deleter; they
/// stop with `stop`.
pub async fn start(setup: Setup, stop: CancellationToken) -> Result<SqsSource, SqsSourceError> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // A call that gets no answer (a black-holed endpoint) gives up instead of holding a receiver,
    // the deletes or the shutdown for good: a receive after the long-poll wait plus ten seconds,
    // every other call after five.
    let with_timeout = |attempt: Duration| {
        let timeouts =
            aws_sdk_sqs::config::timeout::TimeoutConfig::builder().operation_attempt_timeout(attempt).build();
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&aws).timeout_config(timeouts).build(),
        )
    };
    let receive_client = with_timeout(setup.config.wait_time + Duration::from_secs(10));
    let client = with_timeout(Duration::from_secs(5));
    let mut queues = Vec::new();
    for url in &setup.config.queues {
        queues.push(resolve(&client, url.as_str(), setup.archive.clone()).await?);
    }
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let ledger = Arc::new(LeaseLedger::new(done_tx));
    let partitions = queues.iter().map(|q| leased::Partition {
        name: q.tp.topic.to_string(),
        dead_letters: q.dead_letters.clone(),
        // A FIFO queue's lanes are its message groups; a standard queue promises no order.
        ordering: Some(if q.fifo { Ordering::Key } else { Ordering::None }),
    });
    let routes = leased::routes_for(partitions.collect(), &setup.routes);
    let dispatcher = leased::spawn(
        crate::record::Origin::Sqs,
        routes,
        setup.max_in_flight,
        ledger.clone(),
        setup.metrics.clone(),
    );
    let (dispatch, paused) = (dispatcher.handle.clone(), dispatcher.paused.clone());
    let mut assigned = Vec::new();
    let mut receivers = Vec::new();
    for (index, queue) in queues.into_iter().enumerate() {
        let epoch = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        ledger.add_queue(queue.tp.clone(), queue.url.clone(), epoch);
        assigned.push((queue.tp.clone(), epoch));
        let receiver = Receiver {
            client: receive_client.clone(),
            url: queue.url,
            tp: queue.tp,
            epoch,
            ledger: ledger.clone(),
            dispatch: dispatch.clone(),
            paused: paused.clone(),
            health: setup.health.clone(),
            max_in_flight: setup.max_in_flight,
            max_messages: setup.config.max_messages,
            wait_time: setup.config.wait_time,
            visibility: setup.config.visibility_timeout,
        };
        receivers.push(receiver);
    }
    dispatch.send(Command::Assigned(assigned));
    let receiving: Vec<_> = receivers.into_iter().map(|r| tokio::spawn(r.run(stop.clone()))).collect();
    let keeper = tokio::spawn(leases::keep(
        client.clone(),
        ledger.clone(),
        setup.health.clone(),
        setup.config.visibility_timeout,
    ));
    let deleter = tokio::spawn(leases::delete(client.clone(), ledger.clone(), setup.health.clone(), done_rx));
    let (finished, done) = oneshot::channel();
    tokio::spawn(async move {
        stop.cancelled().await;
        let deadlines = leased::stop(receiving, dispatcher, &ledger, setup.grace, "sqs").await;
        let end = deadlines.end;
        let mut deleter = deleter;
        if tokio::time::timeout_at(deadlines.acknowledgements, &mut deleter).await.is_err() {
            deleter.abort();
            tracing::warn!(
                "Deletes of finished SQS messages did not all go through before the grace ended: SQS will deliver those again."
            );
        }
        keeper.abort();
        match tokio::time::timeout_at(end, leases::release(&client, &ledger)).await {
            Ok(released) => tracing::info!(released, "SQS source stopped; unfinished messages released."),
            Err(_) => tracing::warn!(
                "Releasing unfinished SQS messages did not finish in the grace: they come back when their lease lapses."
            ),
        }
        let _ = finished.send(());
    });
    Ok(SqsSource::new(done))
}

/// Reads what the source needs of a queue: FIFO or not, and its dead-letter queue.
async fn resolve(
    client: &aws_sdk_sqs::Client,
    url: &str,
    archive: Option<Archive>,
) -> Result<QueueSetup, SqsSourceError> {
    let name = url.rsplit('/').next().unwrap_or_default().to_string();
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|err| SqsSourceError::Queue {
            queue: name.clone(),
            error: crate::archive::describe_sdk_error(&err),
        })?;
    let policy = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy));
    // The dead-letter queue lives next to the queue (same endpoint): its URL follows from the
    // ARN without a GetQueueUrl call (and without the permission for it).
    let dead_letter_queue = policy.and_then(|p| dead_letter_target(p)).map(|(account, dlq_name)| {
        let base = url.rsplitn(3, '/').nth(2).unwrap_or(url);
        format!("{base}/{account}/{dlq_name}")
    });
    if dead_letter_queue.is_none() && archive.is_none() {
        return Err(SqsSourceError::NoDeadLetterPlace { queue: name });
    }
    tracing::info!(
        queue = %name,
        dead_letter_queue = dead_letter_queue.as_deref().map(crate::config::redact_text_url).unwrap_or_default(),
        "SQS queue found."
    );
    Ok(QueueSetup {
        url: url.to_string(),
        tp: TopicPartition::new(name.as_str(), 0),
        fifo: name.ends_with(".fifo"),
        dead_letters: Arc::new(QueueDeadLetters::new(client.clone(), name, dead_letter_queue, archive)),
    })
}

/// The account and name of the queue a `RedrivePolicy` sends dead letters to.
fn dead_letter_target(policy: &str) -> Option<(String, String)> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = policy.get("deadLetterTargetArn")?.as_str()?;
    // arn:aws:sqs:<region>:<account>:<name>
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", _, account, name] if !name.is_empty() => {
            Some(((*account).to_string(), (*name).to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redrive_policy_names_the_dead_letter_queue() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks";
        assert_eq!(url.rsplitn(3, '/').nth(2), Some("https://sqs.eu-west-1.amazonaws.com"));
        let policy =
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:tasks-dlq","maxReceiveCount":"5"}"#;
        assert_eq!(dead_letter_target(policy), Some(("123456789012".into(), "tasks-dlq".into())));
        assert_eq!(dead_letter_target("{}"), None);
        assert_eq!(dead_letter_target("not json"), None);
    }
}
