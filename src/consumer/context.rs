//! The consumer's librdkafka context: rebalance handling, commit results, statistics, logs.
//!
//! librdkafka calls these on the poll thread. On revoke the callback blocks that thread (it is
//! the consumer's own thread, not a tokio worker) until the dispatcher has drained the revoked
//! partitions or the drain deadline passes, then commits their watermarks and offset maps
//! synchronously, and only then lets librdkafka release them: a record finished by this member
//! is never delivered again by the next owner. On assign it reads the offset map the previous
//! owner committed, so the records that owner finished above its commit are skipped, and it
//! resumes the partitions: librdkafka keeps a partition's pause flag across revoke and assign,
//! and a pause of an earlier assignment must not outlive it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext as RdConsumerContext, Rebalance,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::dispatch::{Command, DispatchHandle};
use crate::health::Health;
use crate::kafka;
use crate::offsets::{Commit, DoneRanges, OffsetTracker, map};
use crate::record::TopicPartition;
use crate::telemetry::metrics::Metrics;

/// State the callbacks need.
pub struct ConsumerContext {
    /// Token signing and error routing shared with the producer.
    pub shared: kafka::Shared,
    /// Watermarks: assigned on assign, final commit taken on revoke.
    pub tracker: Arc<OffsetTracker>,
    /// The dispatcher, told about assignments and revokes.
    pub dispatch: DispatchHandle,
    /// Readiness (group joined).
    pub health: Arc<Health>,
    /// Metrics (lag, commit failures).
    pub metrics: Metrics,
    /// How long a revoke waits for in-flight records.
    pub drain_timeout: Duration,
    /// Set when the assignment changed, so the poll loop re-applies pauses.
    pub assignment_changed: AtomicBool,
    /// Partitions assigned (and resumed) since the poll loop last looked, with their epochs: a
    /// pause reason of an earlier assignment no longer applies to them.
    pub newly_assigned: Mutex<Vec<(TopicPartition, u64)>>,
}

/// How long the assign callback waits for the committed offset maps.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// The partitions of a list.
pub fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition::new(e.topic(), e.partition())).collect()
}

/// Metadata bytes per commit request at most: the coordinator writes a request as one batch to
/// `__consumer_offsets`, whose message size is bounded (1 MB by default).
const COMMIT_METADATA_BUDGET: usize = 256 * 1024;

/// Lists of offsets to commit, each request's metadata within the budget.
pub fn commit_lists(commits: &[(TopicPartition, Commit)]) -> Vec<TopicPartitionList> {
    let mut lists = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (index, (_, commit)) in commits.iter().enumerate() {
        if index > start && size + commit.metadata.len() > COMMIT_METADATA_BUDGET {
            lists.push(commit_list(&commits[start..index]));
            (start, size) = (index, 0);
        }
        size += commit.metadata.len();
    }
    if start < commits.len() {
        lists.push(commit_list(&commits[start..]));
    }
    lists
}

/// Whether a commit error means the metadata (the offset maps) is too large for the brokers.
pub fn maps_too_large(err: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{InvalidCommitOffsetSize, OffsetMetadataTooLarge};
    matches!(err.rdkafka_error_code(), Some(OffsetMetadataTooLarge | InvalidCommitOffsetSize))
}

/// Reports a commit the brokers refused for its metadata's size (once).
pub fn report_maps_refused(tracker: &OffsetTracker, err: &KafkaError) {
    if maps_too_large(err) && tracker.refuse_maps() {
        tracing::warn!(error = %err, "The brokers refuse commits with offset maps this large: committing without them; records finished above a commit point are delivered again after a handover.");
    }
}

/// A list of offsets (with their offset maps as metadata) to commit.
pub fn commit_list(commits: &[(TopicPartition, Commit)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(commits.len());
    for (tp, commit) in commits {
        let mut element = tpl.add_partition(&tp.topic, tp.partition);
        // Setting an offset fails only for offsets librdkafka cannot represent; ours are real.
        if element.set_offset(Offset::Offset(commit.offset)).is_ok() && !commit.metadata.is_empty() {
            element.set_metadata(&commit.metadata);
        }
    }
    tpl
}

/// The metadata of a list element, or `None` when it is not UTF-8 (rdkafka panics reading it).
pub fn metadata_of(element: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>) -> Option<String> {
    crate::panics::quietly(|| element.metadata().to_string()).ok()
}

impl ConsumerContext {
    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let _span =
            tracing::info_span!("rebalance", otel.name = "rebalance assign", partitions = tpl.count())
                .entered();
        let tps = partitions_of(tpl);
        let maps = self.inherited_maps(consumer, &tps);
        let assigned: Vec<(TopicPartition, u64)> =
            tps.into_iter().zip(maps).map(|(tp, map)| (tp.clone(), self.tracker.assign(&tp, map))).collect();
        if !assigned.is_empty() {
            // A partition paused by an earlier assignment of this member stays paused in
            // librdkafka: resume it now, the poll loop pauses it again if a reason still holds.
            if let Err(err) = consumer.resume(tpl) {
                tracing::warn!(error = %err, "Cannot resume newly assigned partitions.");
            }
            let names: Vec<String> = assigned.iter().map(|(tp, _)| tp.to_string()).collect();
            tracing::info!(partitions = %names.join(","), "Partitions assigned.");
        }
        self.newly_assigned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(assigned.iter().cloned());
        self.metrics.rebalanced(true);
        self.dispatch.send(Command::Assigned(assigned));
        self.health.mark_joined();
        self.assignment_changed.store(true, Ordering::Release);
    }

    /// The offset maps the group's commits hold for `tps` (`None` for a partition without one).
    /// Any failure means no map: the records above the commit point are delivered again.
    fn inherited_maps(
        &self,
        consumer: &BaseConsumer<Self>,
        tps: &[TopicPartition],
    ) -> Vec<Option<DoneRanges>> {
        if tps.is_empty() {
            return Vec::new();
        }
        let mut wanted = TopicPartitionList::with_capacity(tps.len());
        tps.iter().for_each(|tp| {
            wanted.add_partition(&tp.topic, tp.partition);
        });
        let committed = match consumer.committed_offsets(wanted, COMMITTED_TIMEOUT) {
            Ok(committed) => committed,
            Err(err) => {
                tracing::warn!(error = %err, "Cannot read the committed offset maps: records finished above the commit point are delivered again.");
                return vec![None; tps.len()];
            }
        };
        tps.iter()
            .map(|tp| {
                let element = committed.find_partition(&tp.topic, tp.partition)?;
                let Offset::Offset(offset) = element.offset() else { return None };
                let Some(metadata) = metadata_of(&element) else {
                    tracing::warn!(partition = %tp, "The committed metadata is not UTF-8: records finished above the commit point are delivered again.");
                    return None;
                };
                match map::decode(offset, &metadata) {
                    Ok(Some(ranges)) => {
                        tracing::info!(partition = %tp, offset, finished = ranges.len(), "Resuming with the records finished above the commit point.");
                        Some(ranges)
                    }
                    Ok(None) => None,
                    Err(err) => {
                        tracing::warn!(partition = %tp, offset, error = %err, "No usable offset map: records above the commit point are delivered again.");
                        None
                    }
                }
            })
            .collect()
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let tps = partitions_of(tpl);
        if tps.is_empty() {
            return;
        }
        let _span = tracing::info_span!("rebalance", otel.name = "rebalance revoke", partitions = tps.len())
            .entered();
        self.metrics.forget_lag(&tps);
        self.assignment_changed.store(true, Ordering::Release);
        let names: Vec<String> = tps.iter().map(ToString::to_string).collect();
        if consumer.assignment_lost() {
            self.metrics.partitions_lost();
            // Another member may already own them: abandon without committing.
            self.dispatch.send(Command::Abort(tps.clone()));
            let (done, _) = std::sync::mpsc::sync_channel(1);
            self.dispatch.send(Command::Revoke { tps: tps.clone(), done });
            tps.iter().for_each(|tp| self.tracker.forget(tp));
            tracing::warn!(partitions = %names.join(","), "Partitions lost (session timeout): abandoned without commit.");
            return;
        }
        self.metrics.rebalanced(false);
        let (done, drained) = std::sync::mpsc::sync_channel(1);
        // A disconnected channel means the dispatcher has stopped: nothing runs any more.
        if self.dispatch.send(Command::Revoke { tps: tps.clone(), done })
            && matches!(
                drained.recv_timeout(self.drain_timeout),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            )
        {
            tracing::warn!(
                partitions = %names.join(","), deadline = ?self.drain_timeout,
                "Revoked partitions did not drain in time: abandoning their records in flight."
            );
            self.dispatch.send(Command::Abort(tps.clone()));
            let _ = drained.recv_timeout(Duration::from_secs(2));
        }
        let commits: Vec<(TopicPartition, Commit)> =
            tps.iter().filter_map(|tp| self.tracker.revoke(tp).map(|commit| (tp.clone(), commit))).collect();
        for list in commit_lists(&commits) {
            let mut result = consumer.commit(&list, CommitMode::Sync);
            if let Err(err) = &result
                && maps_too_large(err)
            {
                // The last chance to commit: without the maps rather than not at all.
                report_maps_refused(&self.tracker, err);
                let bare: Vec<(TopicPartition, Commit)> = partitions_of(&list)
                    .into_iter()
                    .filter_map(|tp| {
                        let commit = commits.iter().find(|(t, _)| *t == tp)?.1.clone();
                        Some((tp, Commit { metadata: String::new(), ..commit }))
                    })
                    .collect();
                result = consumer.commit(&commit_list(&bare), CommitMode::Sync);
            }
            if let Err(err) = result {
                self.metrics.commit_failed();
                tracing::warn!(error = %err, "Commit of revoked partitions failed: their last records may be delivered again.");
            }
        }
        tracing::info!(partitions = %names.join(","), "Partitions revoked after drain and commit.");
    }
}

impl ClientContext for ConsumerContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        kafka::route_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.error(&error, reason);
    }

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.shared.oauth_token()
    }

    fn stats(&self, statistics: Statistics) {
        let mut lags = Vec::new();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 && p.fetch_state == "active" {
                    lags.push((TopicPartition::new(topic.as_str(), *partition), p.consumer_lag));
                }
            }
        }
        self.metrics.set_lag(lags);
    }
}

impl RdConsumerContext for ConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.on_revoke(consumer, tpl);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.on_assign(consumer, tpl),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => tracing::error!(error = %err, "Rebalance failed."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let committed = offsets.elements().into_iter().filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((
                TopicPartition::new(element.topic(), element.partition()),
                offset,
                metadata_of(&element),
            )),
            _ => None,
        });
        match result {
            // Only an acknowledged commit spares the revoke its own final commit.
            Ok(()) => committed
                .for_each(|(tp, offset, metadata)| self.tracker.commit_confirmed(&tp, offset, metadata)),
            Err(err) => {
                self.metrics.commit_failed();
                report_maps_refused(&self.tracker, &err);
                committed.for_each(|(tp, offset, _)| self.tracker.commit_failed(&tp, offset));
                tracing::warn!(error = %err, "Offset commit failed: it is retried at the next commit.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_with_large_maps_are_split_into_requests_within_the_budget() {
        let commits: Vec<(TopicPartition, Commit)> = (0..300)
            .map(|p| (TopicPartition::new("t", p), Commit { offset: 7, metadata: "m".repeat(3_300) }))
            .collect();
        let lists = commit_lists(&commits);
        assert!(lists.len() >= 4, "{} requests", lists.len());
        let mut seen = Vec::new();
        for list in &lists {
            let bytes: usize = list.elements().iter().map(|e| e.metadata().len()).sum();
            assert!(bytes <= COMMIT_METADATA_BUDGET, "{bytes}");
            seen.extend(partitions_of(list));
        }
        assert_eq!(seen, commits.iter().map(|(tp, _)| tp.clone()).collect::<Vec<_>>(), "each once, in order");
        assert_eq!(commit_lists(&[]).len(), 0);
        let small: Vec<_> = commits
            .iter()
            .take(3)
            .cloned()
            .map(|(tp, c)| (tp, Commit { metadata: String::new(), ..c }))
            .collect();
        assert_eq!(commit_lists(&small).len(), 1);
    }
}
