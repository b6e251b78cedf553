//! Which partitions are paused, and why: the dispatcher's bounds (per partition or all) and the
//! circuit breaker. The consumer's pause state is reconciled with the union of reasons.
//!
//! A per-partition reason belongs to one assignment (its epoch). When a partition is assigned
//! again, the assign callback has already resumed it in librdkafka (which keeps a pause flag
//! across revoke and assign); the reasons of the earlier assignment are dropped here, and
//! requests that still name it are ignored. So no pause outlives its reason.

use std::collections::{HashMap, HashSet};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer as _, StreamConsumer};

use tokio::sync::watch;

use super::ConsumerContext;
use crate::config::TopicMatcher;
use crate::dispatch::Flow;
use crate::record::TopicPartition;
use crate::telemetry::metrics::Metrics;

/// Pause reasons and what is applied.
pub struct PauseState {
    /// The current assignment (epoch) of each partition, as the assign callback reported it.
    epochs: HashMap<TopicPartition, u64>,
    /// Partitions over their own bounds.
    partitions: HashSet<TopicPartition>,
    /// Over the overall buffer bound.
    all: bool,
    /// Each route's circuit breaker, routes in order (the first match applies to a topic).
    breakers: Vec<(Option<TopicMatcher>, watch::Receiver<bool>)>,
    /// The breaker states last applied.
    seen: Vec<bool>,
    /// Partitions currently paused in librdkafka.
    applied: HashSet<TopicPartition>,
    /// Paused-partitions gauge.
    metrics: Metrics,
}

impl PauseState {
    /// Nothing paused.
    pub fn new(metrics: Metrics, breakers: Vec<(Option<TopicMatcher>, watch::Receiver<bool>)>) -> Self {
        let seen = breakers.iter().map(|(_, rx)| *rx.borrow()).collect();
        PauseState {
            epochs: HashMap::new(),
            partitions: HashSet::new(),
            all: false,
            breakers,
            seen,
            applied: HashSet::new(),
            metrics,
        }
    }

    /// Whether a breaker opened or closed since the last reconcile.
    pub fn breakers_changed(&self) -> bool {
        self.breakers.iter().zip(&self.seen).any(|((_, rx), seen)| *rx.borrow() != *seen)
    }

    /// Whether the breaker of `tp`'s route is open.
    fn breaker_open(&self, tp: &TopicPartition) -> bool {
        self.breakers
            .iter()
            .find(|(matcher, _)| matcher.as_ref().is_none_or(|m| m.matches(&tp.topic)))
            .is_some_and(|(_, rx)| *rx.borrow())
    }

    /// Takes in the partitions assigned since the last look: their earlier reasons are gone and
    /// librdkafka has them resumed.
    fn sync_assignments(&mut self, consumer: &StreamConsumer<ConsumerContext>) {
        let newly = std::mem::take(
            &mut *consumer.context().newly_assigned.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (tp, epoch) in newly {
            self.partitions.remove(&tp);
            self.applied.remove(&tp);
            self.epochs.insert(tp, epoch);
        }
    }

    /// Applies a request of the dispatcher.
    pub fn apply(&mut self, consumer: &StreamConsumer<ConsumerContext>, flow: Flow) {
        // The assign callback records an assignment before the dispatcher hears of it, so a
        // request about it always finds its epoch here.
        self.sync_assignments(consumer);
        match flow {
            Flow::Pause(tp, epoch) if self.epochs.get(&tp) == Some(&epoch) => {
                self.partitions.insert(tp);
            }
            Flow::Resume(tp, epoch) if self.epochs.get(&tp) == Some(&epoch) => {
                self.partitions.remove(&tp);
            }
            Flow::Pause(..) | Flow::Resume(..) => {} // about an earlier assignment
            Flow::PauseAll => self.all = true,
            Flow::ResumeAll => self.all = false,
        }
    }

    /// The assignment changed: forget what librdkafka no longer holds, then reconcile.
    pub fn reassigned(&mut self, consumer: &StreamConsumer<ConsumerContext>) {
        self.sync_assignments(consumer);
        let assigned = assignment(consumer);
        self.epochs.retain(|tp, _| assigned.contains(tp));
        self.applied.retain(|tp| assigned.contains(tp));
        self.partitions.retain(|tp| assigned.contains(tp));
        self.reconcile(consumer);
    }

    /// Pauses and resumes so that librdkafka matches the reasons.
    pub fn reconcile(&mut self, consumer: &StreamConsumer<ConsumerContext>) {
        let assigned = assignment(consumer);
        self.seen = self.breakers.iter().map(|(_, rx)| *rx.borrow()).collect();
        let wanted: HashSet<TopicPartition> = assigned
            .iter()
            .filter(|tp| self.all || self.partitions.contains(*tp) || self.breaker_open(tp))
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
