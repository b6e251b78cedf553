//! The RabbitMQ source (`AMQP_URL`, Amazon MQ for RabbitMQ): messages of classic and quorum
//! queues delivered through the same dispatcher, pipeline and application as Kafka records, and
//! acknowledged (`basic.ack`) when done.
//!
//! Each queue is one partition of the source (its name as the topic, partition 0) with its own
//! receiver, connection and channel ([`receiver`]); `basic.qos(AMQP_PREFETCH)` bounds what is
//! unacknowledged. Retries are held in the sidecar, the message unacknowledged meanwhile. Order:
//! per queue with `SIDECAR_ORDERING=partition`, `none` for full concurrency. Dead letters go to
//! the archive, then the message is rejected without requeue so the queue's dead-letter
//! exchange receives it ([`crate::dlq::reject`], [`acks`]). Quorum queues' `x-delivery-count`
//! counts earlier deliveries in `x-delivery-attempt`.
//!
//! On stop the receivers stop reading, the dispatcher drains within the grace, the
//! acknowledgements of what finished go out, and the connections close: the broker requeues
//! every message not acknowledged, for another consumer at once.

pub mod acks;
pub mod message;
pub mod receiver;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::AmqpSourceConfig;
use crate::dispatch::leased;
use crate::dlq::reject::{RejectDeadLetters, RejectMarker};
use crate::record::TopicPartition;
use crate::source::leases::LeaseLedger;
use acks::{Channels, Rejects};
use receiver::Receiver;

/// What the source needs from the rest of the process.
pub type Setup = leased::SourceSetup<AmqpSourceConfig>;

/// A running source.
pub type AmqpSource = leased::Running;

impl RejectMarker for Rejects {
    fn mark(&self, queue: &str, sequence: i64) {
        Rejects::mark(self, queue, sequence);
    }
}

/// Starts receivers, dispatcher and acknowledger; they stop with `stop`. Connecting happens in
/// the receivers (a broker that is down at start is retried, shown on `/ready`).
pub fn start(setup: Setup, stop: CancellationToken) -> AmqpSource {
    let config = setup.config.clone();
    if setup.archive.is_none() {
        tracing::warn!(queues = %config.queues.join(","), "No SIDECAR_DLQ_ARCHIVE: dead letters of the RabbitMQ queues go only to their dead-letter exchanges; a queue without one drops them.");
    }
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let ledger = Arc::new(LeaseLedger::new(done_tx));
    let channels = Arc::new(Channels::default());
    let rejects = Arc::new(Rejects::default());
    let partitions = config.queues.iter().map(|queue| leased::Partition {
        name: queue.clone(),
        dead_letters: Arc::new(RejectDeadLetters::new(rejects.clone(), queue, setup.archive.clone())),
        ordering: None,
    });
    let routes = leased::routes_for(partitions.collect(), &setup.routes);
    let dispatcher = leased::spawn(
        crate::record::Origin::Amqp,
        routes,
        setup.max_in_flight,
        ledger.clone(),
        setup.metrics.clone(),
    );
    let (dispatch, paused) = (dispatcher.handle.clone(), dispatcher.paused.clone());
    let epochs = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let receiving: Vec<_> = config
        .queues
        .iter()
        .map(|queue| {
            let receiver = Receiver {
                url: config.url.to_string(),
                tp: TopicPartition::new(queue.as_str(), 0),
                epochs: epochs.clone(),
                prefetch: config.prefetch,
                channels: channels.clone(),
                ledger: ledger.clone(),
                dispatch: dispatch.clone(),
                paused: paused.clone(),
                health: setup.health.clone(),
                connections: connections.clone(),
            };
            tokio::spawn(receiver.run(stop.clone()))
        })
        .collect();
    let acknowledger = tokio::spawn(acks::acknowledge(channels.clone(), rejects, ledger.clone(), done_rx));
    let (finished, done) = oneshot::channel();
    tokio::spawn(async move {
        stop.cancelled().await;
        let deadlines = leased::stop(receiving, dispatcher, &ledger, setup.grace, "amqp").await;
        let end = deadlines.end;
        let mut acknowledger = acknowledger;
        if tokio::time::timeout_at(deadlines.acknowledgements, &mut acknowledger).await.is_err() {
            acknowledger.abort();
            tracing::warn!(
                "Acknowledgements of finished RabbitMQ messages did not all go through before the grace ended: they will be delivered again."
            );
        }
        // Closing requeues every message not acknowledged, for another consumer at once.
        let open: Vec<lapin::Connection> = connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, c)| c)
            .collect();
        let closing =
            futures::future::join_all(open.iter().map(|c| c.close(200, "msk-sidecar stopping".into())));
        if tokio::time::timeout_at(end, closing).await.is_err() {
            tracing::warn!(
                "Closing the RabbitMQ connections did not finish in the grace: the broker requeues on its own when they drop."
            );
        }
        drop(channels);
        tracing::info!("RabbitMQ source stopped; unfinished messages requeued.");
        let _ = finished.send(());
    });
    AmqpSource::new(done)
}
