//! The pause requests of a dispatcher as a set its source's receivers check before they take
//! more (the Kafka consumer pauses partitions in librdkafka instead).
//!
//! A request names the assignment (epoch) it is about: a pause of an earlier assignment does
//! not hold a queue consumed again under a new one (a RabbitMQ channel opened after the last
//! was lost), whose dispatcher partition starts unpaused and would never send a resume.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Flow;
use crate::record::TopicPartition;

/// Queues (or streams) the dispatcher asked to pause (back-pressure), shared by the receivers.
#[derive(Debug, Default)]
pub struct Paused {
    /// The paused queues, with the epoch each pause was about.
    queues: Mutex<HashMap<TopicPartition, u64>>,
    all: std::sync::atomic::AtomicBool,
}

impl Paused {
    /// Applies one request of the dispatcher.
    pub fn apply(&self, flow: Flow) {
        let mut queues = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match flow {
            Flow::Pause(tp, epoch) => {
                queues.insert(tp, epoch);
            }
            Flow::Resume(tp, epoch) => {
                if queues.get(&tp) == Some(&epoch) {
                    queues.remove(&tp);
                }
            }
            Flow::PauseAll => self.all.store(true, std::sync::atomic::Ordering::Relaxed),
            Flow::ResumeAll => self.all.store(false, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether `tp`, consumed under `epoch`, may not take more now.
    pub fn is_paused(&self, tp: &TopicPartition, epoch: u64) -> bool {
        self.all.load(std::sync::atomic::Ordering::Relaxed)
            || self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(tp) == Some(&epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_only_the_assignment_it_was_about() {
        let paused = Paused::default();
        let tp = TopicPartition::new("q", 0);
        paused.apply(Flow::Pause(tp.clone(), 1));
        assert!(paused.is_paused(&tp, 1));
        assert!(!paused.is_paused(&tp, 2), "consumed again under a new epoch: not held by the old pause");
        paused.apply(Flow::Resume(tp.clone(), 2));
        assert!(paused.is_paused(&tp, 1), "a resume of another epoch leaves the pause");
        paused.apply(Flow::Resume(tp.clone(), 1));
        assert!(!paused.is_paused(&tp, 1));
        paused.apply(Flow::PauseAll);
        assert!(paused.is_paused(&tp, 7));
    }
}
