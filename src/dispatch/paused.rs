//! The pause requests of a dispatcher as a set its source's receivers check before they take
//! more (the Kafka consumer pauses partitions in librdkafka instead).

use std::collections::HashSet;
use std::sync::Mutex;

use super::Flow;
use crate::record::TopicPartition;

/// Queues (or streams) the dispatcher asked to pause (back-pressure), shared by the receivers.
#[derive(Debug, Default)]
pub struct Paused {
    queues: Mutex<HashSet<TopicPartition>>,
    all: std::sync::atomic::AtomicBool,
}

impl Paused {
    /// Applies one request of the dispatcher.
    pub fn apply(&self, flow: Flow) {
        let mut queues = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match flow {
            Flow::Pause(tp, _) => {
                queues.insert(tp);
            }
            Flow::Resume(tp, _) => {
                queues.remove(&tp);
            }
            Flow::PauseAll => self.all.store(true, std::sync::atomic::Ordering::Relaxed),
            Flow::ResumeAll => self.all.store(false, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether `tp` may not take more now.
    pub fn is_paused(&self, tp: &TopicPartition) -> bool {
        self.all.load(std::sync::atomic::Ordering::Relaxed)
            || self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(tp)
    }
}
