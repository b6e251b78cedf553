//! What the RabbitMQ source does with deliveries that are done: `basic.ack`, or
//! `basic.reject(requeue=false)` for a dead-lettered one (the queue's dead-letter exchange then
//! receives it), on the channel that received it.
//!
//! A delivery tag means something only on its channel: a lease is `<epoch>:<tag>`, the epoch
//! naming the channel. A completion for a channel that is gone (the connection dropped, the
//! broker requeued everything unacknowledged on it) is dropped, never sent on the new channel,
//! where the same tag names another message. Nothing is retried: an acknowledgement that fails
//! means the channel is broken, and the broker requeues the message (delivered again, at least
//! once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio::sync::mpsc;

use crate::source::leases::{Done, LeaseLedger};

/// The current channel of each queue, with its epoch.
#[derive(Default)]
pub struct Channels {
    by_queue: Mutex<HashMap<String, (u64, Channel)>>,
}

impl Channels {
    /// `channel` is now `queue`'s, under `epoch`.
    pub fn set(&self, queue: &str, epoch: u64, channel: Channel) {
        self.lock().insert(queue.to_string(), (epoch, channel));
    }

    /// The channel of `queue` if it is still the one of `epoch`.
    fn get(&self, queue: &str, epoch: u64) -> Option<Channel> {
        self.lock().get(queue).filter(|(e, _)| *e == epoch).map(|(_, c)| c.clone())
    }

    /// Every channel (to close on shutdown).
    pub fn all(&self) -> Vec<Channel> {
        self.lock().values().map(|(_, c)| c.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Channel)>> {
        // A map of handles, consistent after a panic elsewhere.
        self.by_queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Deliveries the dead-letter writer decided to reject (queue, sequence): their completion
/// rejects instead of acknowledging.
#[derive(Default)]
pub struct Rejects(Mutex<HashSet<(String, i64)>>);

impl Rejects {
    /// Marks a delivery for rejection.
    pub fn mark(&self, queue: &str, sequence: i64) {
        self.lock().insert((queue.to_string(), sequence));
    }

    /// Whether the delivery was marked (and unmarks it).
    fn take(&self, queue: &str, sequence: i64) -> bool {
        self.lock().remove(&(queue.to_string(), sequence))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, i64)>> {
        // A set of coordinates, consistent after a panic elsewhere.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A lease: the channel's epoch and the delivery tag.
pub fn lease(epoch: u64, tag: u64) -> String {
    format!("{epoch}:{tag}")
}

fn parse(lease: &str) -> Option<(u64, u64)> {
    let (epoch, tag) = lease.split_once(':')?;
    Some((epoch.parse().ok()?, tag.parse().ok()?))
}

/// Acknowledges (or rejects) completed deliveries until the ledger closes its side.
pub async fn acknowledge(
    channels: Arc<Channels>,
    rejects: Arc<Rejects>,
    ledger: Arc<LeaseLedger>,
    mut done: mpsc::UnboundedReceiver<Done>,
) {
    while let Some(item) = done.recv().await {
        let queue = item.tp.topic.to_string();
        let reject = rejects.take(&queue, item.sequence);
        let channel = parse(&item.lease).and_then(|(epoch, tag)| Some((channels.get(&queue, epoch)?, tag)));
        match channel {
            Some((channel, tag)) => {
                let result = if reject {
                    channel.basic_reject(tag, BasicRejectOptions { requeue: false }).await
                } else {
                    channel.basic_ack(tag, BasicAckOptions::default()).await
                };
                if let Err(err) = result {
                    tracing::warn!(queue = %queue, error = %err, "Acknowledging a finished message failed: the broker will deliver it again.");
                }
            }
            None => {
                tracing::warn!(queue = %queue, "A finished message's channel closed before its acknowledgement: the broker delivers it again.")
            }
        }
        ledger.deleted(&item.tp, item.sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_name_the_channel_and_the_tag() {
        assert_eq!(parse(&lease(3, 17)), Some((3, 17)));
        assert_eq!(parse("x"), None);
        let rejects = Rejects::default();
        rejects.mark("q", 4);
        assert!(rejects.take("q", 4));
        assert!(!rejects.take("q", 4), "once");
    }
}
