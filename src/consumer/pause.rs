//! Which partitions are paused, and why: the dispatcher's buffer bounds (per partition or all)
//! and the circuit breaker. The consumer's pause state is reconciled with the union of reasons.

use std::collections::HashSet;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer as _, StreamConsumer};

use super::ConsumerContext;
use crate::dispatch::Flow;
use crate::record::TopicPartition;
use crate::telemetry::metrics::Metrics;

/// Pause reasons and what is applied.
pub struct PauseState {
    /// Partitions over their own buffer bound.
    partitions: HashSet<TopicPartition>,
    /// Over the overall buffer bound.
    all: bool,
    /// The circuit breaker is open.
    pub breaker: bool,
    /// Partitions currently paused in librdkafka.
    applied: HashSet<TopicPartition>,
    /// Paused-partitions gauge.
    metrics: Metrics,
}

impl PauseState {
    /// Nothing paused.
    pub fn new(metrics: Metrics) -> Self {
        PauseState {
            partitions: HashSet::new(),
            all: false,
            breaker: false,
            applied: HashSet::new(),
            metrics,
        }
    }

    /// Applies a request of the dispatcher.
    pub fn apply(&mut self, flow: Flow) {
        match flow {
            Flow::Pause(tp) => {
                self.partitions.insert(tp);
            }
            Flow::Resume(tp) => {
                self.partitions.remove(&tp);
            }
            Flow::PauseAll => self.all = true,
            Flow::ResumeAll => self.all = false,
        }
    }

    /// The assignment changed: forget what librdkafka no longer holds, then reconcile.
    pub fn reassigned(&mut self, consumer: &StreamConsumer<ConsumerContext>) {
        let assigned = assignment(consumer);
        self.applied.retain(|tp| assigned.contains(tp));
        self.partitions.retain(|tp| assigned.contains(tp));
        self.reconcile(consumer);
    }

    /// Pauses and resumes so that librdkafka matches the reasons.
    pub fn reconcile(&mut self, consumer: &StreamConsumer<ConsumerContext>) {
        let assigned = assignment(consumer);
        let wanted: HashSet<TopicPartition> = assigned
            .iter()
            .filter(|tp| self.breaker || self.all || self.partitions.contains(*tp))
            .cloned()
            .collect();
        let pause: Vec<&TopicPartition> = wanted.difference(&self.applied).collect();
        let resume: Vec<&TopicPartition> =
            self.applied.intersection(&assigned).filter(|tp| !wanted.contains(*tp)).collect();
        if !pause.is_empty() {
            if let Err(err) = consumer.pause(&list(&pause)) {
                tracing::warn!(error = %err, "Cannot pause partitions.");
            }
            tracing::debug!(count = pause.len(), "Paused partitions.");
        }
        if !resume.is_empty() {
            if let Err(err) = consumer.resume(&list(&resume)) {
                tracing::warn!(error = %err, "Cannot resume partitions.");
            }
            tracing::debug!(count = resume.len(), "Resumed partitions.");
        }
        self.applied = wanted;
        self.metrics.set_paused_partitions(self.applied.len());
    }
}

fn assignment(consumer: &StreamConsumer<ConsumerContext>) -> HashSet<TopicPartition> {
    consumer
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect())
        .unwrap_or_default()
}

fn list(tps: &[&TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(tps.len());
    for tp in tps {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    tpl
}
