//! One queue's receiver: a connection and channel of its own, `basic.qos(AMQP_PREFETCH)` as the
//! in-flight bound, `basic.consume` with manual acknowledgements, each delivery registered in
//! the ledger (lease `<epoch>:<tag>`) and handed to the dispatcher.
//!
//! When the connection or channel fails, the broker requeues what was unacknowledged on it: the
//! receiver cancels what still runs of that channel's deliveries (their acknowledgements would
//! mean nothing on another channel), connects again with backoff under a new epoch, and shows
//! the queue on `/ready` until it consumes again. While the dispatcher asks it to pause it reads
//! nothing more; the broker stops sending at the prefetch bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use super::acks::{self, Channels};
use super::message;
use crate::dispatch::{Command, DispatchHandle, Paused};
use crate::health::{Component, Health, Latch};
use crate::record::TopicPartition;
use crate::source::leases::LeaseLedger;

/// How long connecting, opening the channel and starting the consumer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a receiver works with.
pub struct Receiver {
    /// `AMQP_URL` (credentials inside: never logged).
    pub url: String,
    /// The queue as a partition.
    pub tp: TopicPartition,
    /// Epochs, shared by the source's receivers (each channel gets a new one).
    pub epochs: Arc<AtomicU64>,
    /// Unacknowledged deliveries at most.
    pub prefetch: u16,
    /// Channels by queue, for the acknowledgements.
    pub channels: Arc<Channels>,
    /// Leases.
    pub ledger: Arc<LeaseLedger>,
    /// Where records go.
    pub dispatch: DispatchHandle,
    /// Back-pressure.
    pub paused: Arc<Paused>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Each queue's connection, kept until shutdown closes it (after the acknowledgements).
    pub connections: Arc<std::sync::Mutex<std::collections::HashMap<String, Connection>>>,
}

/// Why consuming stopped.
enum Ended {
    /// The process is stopping.
    Stopped,
    /// The connection or channel failed: connect again.
    Failed(String),
}

impl Receiver {
    /// Consumes until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut sequence: i64 = 0;
        let mut failing: Option<Latch> = None;
        let mut backoff = Duration::from_millis(200);
        let mut previous: Option<u64> = None;
        loop {
            let reason = match self.consume(&stop, &mut sequence, &mut previous, &mut failing).await {
                Ended::Stopped => return,
                Ended::Failed(reason) => reason,
            };
            tracing::warn!(queue = %self.tp.topic, error = %reason, "Consuming from the queue failed; connecting again.");
            let reason = format!("consuming from RabbitMQ queue {} fails: {reason}", self.tp.topic);
            match &failing {
                Some(latch) => latch.update(reason),
                None => failing = Some(self.health.latch(Component::Source, &self.tp.topic, reason)),
            }
            // What still runs of the lost channel's deliveries is cancelled: the broker has
            // requeued them, and their acknowledgements could not reach it.
            self.dispatch.send(Command::Abort(vec![self.tp.clone()]));
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One connection's life: connect, consume until it fails or the process stops.
    async fn consume(
        &self,
        stop: &CancellationToken,
        sequence: &mut i64,
        previous: &mut Option<u64>,
        failing: &mut Option<Latch>,
    ) -> Ended {
        // Named after the queue, so an operator sees which connection consumes what.
        let name = format!("msk-sidecar {}", self.tp.topic);
        let setup = async {
            let properties = ConnectionProperties::default().with_connection_name(name.as_str().into());
            let connection = Connection::connect(&self.url, properties)
                .await
                .map_err(|err| crate::config::redact_text_url(&err.to_string()))?;
            let channel = connection.create_channel().await.map_err(|err| err.to_string())?;
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await
                .map_err(|err| err.to_string())?;
            let consumer = channel
                .basic_consume(
                    self.tp.topic.as_ref().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|err| err.to_string())?;
            Ok::<_, String>((connection, channel, consumer))
        };
        // A broker that accepts the connection and says nothing neither holds a stop nor the
        // receiver for good.
        let (connection, channel, mut consumer) = tokio::select! {
            set_up = tokio::time::timeout(CONNECT_TIMEOUT, setup) => match set_up {
                Ok(Ok(parts)) => parts,
                Ok(Err(reason)) => return Ended::Failed(reason),
                Err(_) => return Ended::Failed(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
            },
            () = stop.cancelled() => return Ended::Stopped,
        };
        let epoch = self.epochs.fetch_add(1, Ordering::SeqCst) + 1;
        // The leases of an earlier channel leave with it (the broker requeued them).
        self.ledger.add_queue(self.tp.clone(), self.tp.topic.to_string(), epoch);
        self.channels.set(&self.tp.topic, epoch, channel.clone());
        self.dispatch.send(Command::Assigned(vec![(self.tp.clone(), epoch)]));
        if previous.replace(epoch).is_some() {
            tracing::info!(queue = %self.tp.topic, "Consuming from the queue again.");
        }
        *failing = None;
        // A connection it replaces has failed already: dropping it frees it.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.tp.topic.to_string(), connection);
        loop {
            while self.paused.is_paused(&self.tp, epoch) {
                tokio::select! {
                    () = stop.cancelled() => return Ended::Stopped,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            let next = tokio::select! {
                next = consumer.next() => next,
                () = stop.cancelled() => return Ended::Stopped,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => return Ended::Failed(err.to_string()),
                None => return Ended::Failed("the broker cancelled the consumer".to_string()),
            };
            *sequence += 1;
            let record = message::to_record(&self.tp, *sequence, &delivery);
            self.ledger.register(&self.tp, *sequence, acks::lease(epoch, delivery.delivery_tag));
            if !self.dispatch.send(Command::Records { records: vec![record], polled_at: epoch }) {
                return Ended::Stopped; // the dispatcher stopped: the process is stopping
            }
        }
    }
}
