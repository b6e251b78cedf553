//! `msk-sidecar demo --sqs`: the same demo with an SQS queue consumed next to the topic.
//!
//! The queue lives on LocalStack (or whatever `AWS_ENDPOINT_URL` points at): the demo creates a
//! queue, sends sample tasks with the same mix of outcomes as the orders, and the sidecar
//! delivers both sources to the one demo application. Without `AWS_ENDPOINT_URL` it says so and
//! how to start LocalStack, instead of reaching for a real AWS account.

use anyhow::{Context as _, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::demo::Kind;

/// The queue the demo fills.
pub struct SqsDemo {
    /// Its URL (for `SQS_QUEUE_URLS`).
    pub url: String,
    /// Its name (the topic its metrics are counted under).
    pub name: String,
    /// Tasks per kind.
    pub expected: [u32; 4],
}

/// Creates the demo queue and sends `count` tasks.
pub async fn prepare(count: u32, failures: bool) -> anyhow::Result<SqsDemo> {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        bail!(
            "demo --sqs needs LocalStack (or another SQS endpoint): start it with `localstack/testbed.sh up`, then `set -a; . .testbed/env; set +a` (AWS_ENDPOINT_URL, AWS_REGION and test keys)"
        );
    };
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = format!("msk-sidecar-demo-tasks-{}", std::process::id());
    let created = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .with_context(|| format!("creating the demo queue at {endpoint} (is LocalStack running?)"))?;
    let url = created.queue_url().context("the new queue has no URL")?.to_string();
    let mut expected = [0u32; 4];
    let tasks: Vec<(u32, Kind)> = (0..count).map(|task| (task, Kind::of(task, failures))).collect();
    for chunk in tasks.chunks(10) {
        let entries = chunk
            .iter()
            .map(|(task, kind)| {
                expected[*kind as usize] += 1;
                let body = format!("{{\"task\":{task},\"kind\":\"{}\"}}", kind.name());
                SendMessageBatchRequestEntry::builder().id(format!("t{task}")).message_body(body).build()
            })
            .collect::<Result<Vec<_>, _>>()
            .context("building the sample tasks")?;
        let sent = sqs.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
        if !sent.failed().is_empty() {
            bail!("SQS refused {} sample tasks", sent.failed().len());
        }
    }
    Ok(SqsDemo { url, name, expected })
}
