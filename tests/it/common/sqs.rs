//! SQS helpers shared by the SQS tests and the fault suite: a queue with a random name, and a
//! receiver that drains a queue into plain messages.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

/// A received message: body and string attributes.
#[derive(Debug, Clone)]
pub struct Message {
    /// The body.
    pub body: String,
    /// String and number attributes.
    pub attributes: BTreeMap<String, String>,
    /// The FIFO message group.
    pub group: Option<String>,
}

/// `queue`'s URL with the fault proxy's address as its host: LocalStack finds the queue by the
/// URL's path, so every request for it goes through the proxy.
pub fn through_proxy(queue: &str, proxy: &super::proxy::FaultProxy) -> String {
    let mut url = url::Url::parse(queue).expect("queue URL");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.addr.port())).expect("port");
    url.to_string()
}

/// Creates a queue (FIFO when `fifo`) with a random name: (name, URL).
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, fifo: bool) -> (String, String) {
    let name = super::random_name("q") + if fifo { ".fifo" } else { "" };
    let mut request = sqs.create_queue().queue_name(&name);
    if fifo {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let url = request.send().await.expect("create queue").queue_url().expect("url").to_string();
    (name, url)
}

/// Makes `dead_letter_queue` (by name) the dead-letter queue of the queue at `url`
/// (`RedrivePolicy`).
pub async fn redrive_to(sqs: &aws_sdk_sqs::Client, url: &str, dead_letter_queue: &str) {
    let region = std::env::var("AWS_REGION").unwrap_or("us-east-1".into());
    let arn = format!("arn:aws:sqs:{region}:000000000000:{dead_letter_queue}");
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"10"}}"#),
        )
        .send()
        .await
        .expect("set the redrive policy");
}

/// Receives until `count` messages arrived (or nothing more comes for a while), deleting them.
pub async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, count: usize, patience: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + patience;
    while out.len() < count && tokio::time::Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .expect("receive");
        for message in received.messages() {
            let attributes = message
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let group = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned();
            out.push(Message { body: message.body().unwrap_or_default().to_string(), attributes, group });
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message().queue_url(url).receipt_handle(handle).send().await.expect("delete");
            }
        }
    }
    out
}
