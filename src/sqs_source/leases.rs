//! What the SQS source does with leases: deletes the messages that are done, keeps the
//! visibility of those in flight from lapsing, and releases the rest on shutdown.
//!
//! Deletes go in `DeleteMessageBatch` calls of up to ten per queue, the batches of a round at
//! once; an entry that fails for a reason that may pass (throttling, a service error, no answer)
//! is tried again with backoff, a few times, while the keeper keeps its lease. A receipt handle SQS no longer accepts
//! means the lease lapsed: the message will be delivered again (at least once), and that is
//! logged. The keeper extends every lease in flight to the visibility timeout each third of
//! it, so a slow application or a long retry never makes SQS hand the message to someone else.

use std::time::Duration;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry};
use std::sync::Arc;

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::health::{Component, Health, Latch};

use crate::source::leases::{Done, LeaseLedger};

/// Entries per batch call.
const BATCH: usize = 10;
/// How long the deleter waits for more completions before it sends what it has.
const LINGER: Duration = Duration::from_millis(20);
/// Tries of one delete before it is left to the visibility timeout.
const DELETE_TRIES: u32 = 5;

/// Deletes completed messages until the ledger closes its side and everything sent is tried.
/// The batches of one round go out at once (up to ten messages each), so one slow or retried
/// batch does not hold the others back.
pub async fn delete(
    client: aws_sdk_sqs::Client,
    ledger: Arc<LeaseLedger>,
    health: Arc<Health>,
    mut done: mpsc::UnboundedReceiver<Done>,
) {
    // A queue whose deletes keep failing (a policy that denies DeleteMessage) is on `/ready`
    // until one of its deletes goes through: its messages come back as duplicates meanwhile.
    let mut failing: HashMap<String, Latch> = HashMap::new();
    while let Some(first) = done.recv().await {
        // Completions arrive one lane at a time: wait a little for company, so a call deletes
        // up to ten messages instead of one (each call costs as much CPU as a delivery).
        let mut waiting = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while waiting.len() < 200 {
            match tokio::time::timeout_at(until, done.recv()).await {
                Ok(Some(more)) => waiting.push(more),
                Ok(None) | Err(_) => break,
            }
        }
        let batches = group(waiting);
        let outcomes = futures::future::join_all(batches.into_iter().map(|batch| {
            let queue = batch[0].tp.topic.to_string();
            let deleting = delete_batch(&client, &ledger, batch);
            async move { (queue, deleting.await) }
        }))
        .await;
        for (queue, outcome) in outcomes {
            match outcome {
                Ok(()) => drop(failing.remove(&queue)),
                Err(reason) => {
                    let reason = format!(
                        "deleting finished messages of SQS queue {queue} fails ({reason}): they will be delivered again"
                    );
                    match failing.get(&queue) {
                        Some(latch) => latch.update(reason),
                        None => drop(
                            failing.insert(queue.clone(), health.latch(Component::Source, &queue, reason)),
                        ),
                    }
                }
            }
        }
    }
}

/// Completions grouped by queue, at most [`BATCH`] per group.
fn group(mut done: Vec<Done>) -> Vec<Vec<Done>> {
    done.sort_by(|a, b| a.address.cmp(&b.address));
    let mut groups: Vec<Vec<Done>> = Vec::new();
    for item in done {
        match groups.last_mut() {
            Some(last) if last[0].address == item.address && last.len() < BATCH => last.push(item),
            _ => groups.push(vec![item]),
        }
    }
    groups
}

/// Deletes up to ten messages of one queue, trying again what may succeed later. A lease
/// leaves the ledger when its delete is confirmed or SQS says the handle is no longer valid;
/// one that could not be deleted after every try also leaves (its lease lapses, and SQS
/// delivers it again: at least once).
async fn delete_batch(
    client: &aws_sdk_sqs::Client,
    ledger: &LeaseLedger,
    mut batch: Vec<Done>,
) -> Result<(), String> {
    let url = batch[0].address.clone();
    let mut last_error = String::new();
    for attempt in 1..=DELETE_TRIES {
        let entries: Vec<DeleteMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&d.lease)
                    .build()
                    .ok()
            })
            .collect();
        let answer = client.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await;
        let retry: Vec<Done> = match answer {
            Ok(output) => {
                let mut retry = Vec::new();
                let mut failed_ids = Vec::new();
                for failed in output.failed() {
                    let Some(item) = failed.id().parse::<usize>().ok().and_then(|i| batch.get(i)) else {
                        continue;
                    };
                    failed_ids.push(failed.id().to_string());
                    if failed.sender_fault() {
                        tracing::warn!(
                            queue = %item.tp.topic,
                            code = failed.code(),
                            "A finished message could not be deleted (its lease lapsed): SQS will deliver it again."
                        );
                        ledger.deleted(&item.tp, item.sequence);
                    } else {
                        retry.push(item.clone());
                    }
                }
                for (i, item) in batch.iter().enumerate() {
                    if !failed_ids.contains(&i.to_string()) {
                        ledger.deleted(&item.tp, item.sequence);
                    }
                }
                retry
            }
            Err(err) => {
                last_error = crate::archive::describe_sdk_error(&err);
                tracing::warn!(
                    queue = %batch[0].tp.topic,
                    attempt,
                    error = %last_error,
                    "Deleting finished messages failed; trying again."
                );
                batch
            }
        };
        if retry.is_empty() {
            return Ok(());
        }
        batch = retry;
        tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
    }
    tracing::warn!(
        queue = %batch[0].tp.topic,
        messages = batch.len(),
        "Finished messages could not be deleted: SQS will deliver them again."
    );
    for item in &batch {
        ledger.deleted(&item.tp, item.sequence);
    }
    Err(if last_error.is_empty() { "SQS refused the entries".to_string() } else { last_error })
}

/// Extends the visibility of every lease in the ledger every third of the timeout, on a fixed
/// tick: every call of a sweep goes out at once and gives up at the next tick, so one slow call
/// never lets the other leases lapse. Runs until aborted.
pub async fn keep(
    client: aws_sdk_sqs::Client,
    ledger: Arc<LeaseLedger>,
    health: Arc<Health>,
    visibility: Duration,
) {
    // A queue whose leases cannot be extended is on `/ready` until a sweep extends them all: its
    // messages in flight may come back to another consumer meanwhile.
    let mut failing: HashMap<String, Latch> = HashMap::new();
    let every = (visibility / 3).max(Duration::from_millis(500));
    let seconds = i32::try_from(visibility.as_secs()).unwrap_or(i32::MAX);
    let client = &client;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let snapshot = ledger.snapshot();
        let calls = snapshot.iter().flat_map(|(url, handles)| {
            handles.chunks(BATCH).map(move |chunk| async move {
                (url.as_str(), change_visibility(client, url, chunk, seconds).await)
            })
        });
        let outcomes = match tokio::time::timeout(every, futures::future::join_all(calls)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                tracing::warn!(
                    every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                    "Extending the leases of messages in flight took longer than the tick: some may lapse."
                );
                snapshot
                    .iter()
                    .map(|(url, _)| (url.as_str(), Err("no answer within the tick".to_string())))
                    .collect()
            }
        };
        let mut failed: HashMap<&str, String> = HashMap::new();
        for (url, outcome) in outcomes {
            if let Err(reason) = outcome {
                failed.insert(url, reason);
            }
        }
        failing.retain(|url, _| failed.contains_key(url.as_str()));
        for (url, reason) in failed {
            let queue = url.rsplit('/').next().unwrap_or_default();
            let reason = format!(
                "extending the leases of messages in flight of SQS queue {queue} fails ({reason}): another consumer may get them"
            );
            match failing.get(url) {
                Some(latch) => latch.update(reason),
                None => drop(failing.insert(url.to_string(), health.latch(Component::Source, queue, reason))),
            }
        }
    }
}

/// Makes every message still in the ledger visible again at once (on shutdown): another
/// consumer takes it instead of waiting for the lease to lapse.
pub async fn release(client: &aws_sdk_sqs::Client, ledger: &LeaseLedger) -> usize {
    let mut released = 0;
    for (url, handles) in ledger.take_unfinished() {
        for chunk in handles.chunks(BATCH) {
            // A release that fails is logged; the lease then lapses by itself (a delay only).
            if change_visibility(client, &url, chunk, 0).await.is_ok() {
                released += chunk.len();
            }
        }
    }
    released
}

/// One `ChangeMessageVisibilityBatch` call; failures are logged (a message deleted meanwhile
/// has no lease to change).
async fn change_visibility(
    client: &aws_sdk_sqs::Client,
    url: &str,
    handles: &[String],
    seconds: i32,
) -> Result<(), String> {
    let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = handles
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(h)
                .visibility_timeout(seconds)
                .build()
                .ok()
        })
        .collect();
    let answer =
        client.change_message_visibility_batch().queue_url(url).set_entries(Some(entries)).send().await;
    match answer {
        Ok(output) if output.failed().is_empty() => Ok(()),
        // Entries SQS refuses (deleted meanwhile, past its 12 hours) are not the queue's problem.
        Ok(output) => {
            tracing::warn!(
                queue = %crate::config::redact_text_url(url),
                failed = output.failed().len(),
                code = output.failed().first().map(|f| f.code()).unwrap_or_default(),
                "Some message leases could not be changed (deleted meanwhile, or past SQS's 12 hours)."
            );
            Ok(())
        }
        Err(err) => {
            let error = crate::archive::describe_sdk_error(&err);
            tracing::warn!(
                queue = %crate::config::redact_text_url(url),
                visibility_s = seconds,
                error = %error,
                "Changing the visibility of messages in flight failed."
            );
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_are_grouped_by_queue_ten_at_a_time() {
        let item = |url: &str, i: i64| Done {
            tp: crate::record::TopicPartition::new(url, 0),
            address: url.to_string(),
            sequence: i,
            lease: format!("{url}{i}"),
        };
        let mut done: Vec<Done> = (0..12).map(|i| item("a", i)).collect();
        done.insert(3, item("b", 0));
        let groups = group(done);
        let sizes: Vec<(&str, usize)> = groups.iter().map(|g| (g[0].address.as_str(), g.len())).collect();
        assert_eq!(sizes, vec![("a", 10), ("a", 2), ("b", 1)]);
    }
}
