//! One queue's receiver: long-polls the queue while fewer than `SIDECAR_MAX_IN_FLIGHT` of its
//! messages are in flight and the dispatcher has not asked it to pause, registers each message's
//! lease in the ledger and hands the records to the dispatcher.
//!
//! A receive that fails (SQS unreachable, access denied) is tried again with backoff, and the
//! queue shows on `/ready` until a receive succeeds. On stop a receive under way gets a second
//! to finish (a long poll on an empty queue is then cut off, having leased nothing); what it
//! brings is registered but not delivered, so the source's release hands it back at once.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use tokio_util::sync::CancellationToken;

use super::message;
use crate::dispatch::{Command, DispatchHandle, Paused, leased};
use crate::health::{Component, Health, Latch};
use crate::record::TopicPartition;
use crate::source::leases::LeaseLedger;

/// What a receiver works with.
pub struct Receiver {
    /// The client.
    pub client: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub url: String,
    /// The queue as a partition.
    pub tp: TopicPartition,
    /// Its assignment epoch.
    pub epoch: u64,
    /// Leases.
    pub ledger: Arc<LeaseLedger>,
    /// Where records go.
    pub dispatch: DispatchHandle,
    /// Back-pressure.
    pub paused: Arc<Paused>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Messages in flight at most.
    pub max_in_flight: usize,
    /// Messages per receive at most.
    pub max_messages: i32,
    /// Long-poll wait.
    pub wait_time: Duration,
    /// The lease a receive takes.
    pub visibility: Duration,
}

impl Receiver {
    /// Receives until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut sequence: i64 = 0;
        let mut failing: Option<Latch> = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(room) = self.room(&stop).await else { return };
            let count = i32::try_from(room).unwrap_or(i32::MAX).min(self.max_messages);
            let receive = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(count)
                .wait_time_seconds(i32::try_from(self.wait_time.as_secs()).unwrap_or(20))
                .visibility_timeout(i32::try_from(self.visibility.as_secs()).unwrap_or(30))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send();
            let mut receive = std::pin::pin!(receive);
            let answer = tokio::select! {
                answer = &mut receive => answer,
                () = stop.cancelled() => {
                    if let Ok(Ok(output)) = tokio::time::timeout(Duration::from_secs(1), &mut receive).await {
                        for received in output.messages() {
                            sequence += 1;
                            if let Some((_, lease)) = message::to_record(&self.tp, sequence, received) {
                                self.ledger.register(&self.tp, sequence, lease);
                            }
                        }
                    }
                    return;
                }
            };
            let output = match answer {
                Ok(output) => output,
                Err(err) => {
                    let error = crate::archive::describe_sdk_error(&err);
                    tracing::warn!(queue = %self.tp.topic, error = %error, "Receiving from the queue failed; trying again.");
                    let reason = format!("receiving from SQS queue {} fails: {error}", self.tp.topic);
                    match &failing {
                        Some(latch) => latch.update(reason),
                        None => failing = Some(self.health.latch(Component::Source, &self.tp.topic, reason)),
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            failing = None;
            backoff = Duration::from_millis(200);
            let mut records = Vec::with_capacity(output.messages().len());
            for received in output.messages() {
                sequence += 1;
                if let Some((record, lease)) = message::to_record(&self.tp, sequence, received) {
                    self.ledger.register(&self.tp, sequence, lease);
                    records.push(record);
                }
            }
            if !records.is_empty() && !self.dispatch.send(Command::Records { records, polled_at: self.epoch })
            {
                return; // the dispatcher stopped: the process is stopping
            }
        }
    }

    /// Waits until the queue may take more messages; how many, or `None` on stop.
    async fn room(&self, stop: &CancellationToken) -> Option<usize> {
        leased::room(&self.ledger, &self.tp, self.epoch, self.max_in_flight, &self.paused, stop).await
    }
}
