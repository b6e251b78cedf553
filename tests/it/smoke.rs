//! The test bed itself: the broker and LocalStack answer the clients the sidecar uses.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;

use crate::common::{self, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_creates_topics_and_commits_group_offsets() {
    let topic = common::random_name("smoke");
    let group = common::random_name("smoke-group");
    common::create_topic(&topic, 2).await;

    let producer = common::producer();
    for i in 0..10i32 {
        let key = format!("k{i}");
        let payload = format!("v{i}");
        let record = FutureRecord::to(&topic).partition(i % 2).key(&key).payload(&payload);
        within(Duration::from_secs(30), "produce", producer.send(record, Duration::from_secs(10)))
            .await
            .unwrap_or_else(|(err, _)| panic!("produce failed: {err}"));
    }

    let consumer = common::consumer(&group);
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let message = within(Duration::from_secs(30), "records from the group consumer", consumer.recv())
            .await
            .expect("consume");
        seen.push((message.partition(), message.offset(), message.payload().map(<[u8]>::to_vec)));
        consumer.store_offset_from_message(&message).expect("store offset");
    }
    seen.sort();
    let payloads: Vec<String> = seen
        .iter()
        .map(|(_, _, p)| String::from_utf8(p.clone().unwrap_or_default()).expect("utf8"))
        .collect();
    assert_eq!(payloads.len(), 10);
    for i in 0..10 {
        assert!(payloads.contains(&format!("v{i}")), "v{i} not consumed");
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");

    // Read the committed offsets back; the list must be dropped before the consumer.
    let committed = {
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&topic, 0);
        wanted.add_partition(&topic, 1);
        let list = consumer.committed_offsets(wanted, Duration::from_secs(10)).expect("committed offsets");
        let offsets: Vec<Offset> = list.elements().iter().map(|e| e.offset()).collect();
        drop(list);
        offsets
    };
    assert_eq!(committed, vec![Offset::Offset(5), Offset::Offset(5)]);
}

#[tokio::test]
async fn localstack_s3_stores_and_returns_objects() {
    let s3 = common::s3().await;
    let bucket = common::random_name("smoke");
    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    let body = b"{\"hello\":\"s3\"}".to_vec();
    s3.put_object()
        .bucket(&bucket)
        .key("a/b/c.json")
        .body(body.clone().into())
        .send()
        .await
        .expect("put object");
    let object = s3.get_object().bucket(&bucket).key("a/b/c.json").send().await.expect("get object");
    let read = object.body.collect().await.expect("read body").into_bytes();
    assert_eq!(read.as_ref(), body.as_slice());
}

#[tokio::test]
async fn localstack_sqs_sends_and_receives_messages() {
    let sqs = common::sqs().await;
    let name = common::random_name("smoke");
    let queue = sqs.create_queue().queue_name(&name).send().await.expect("create queue");
    let url = queue.queue_url().expect("queue url").to_string();
    sqs.send_message().queue_url(&url).message_body("hello sqs").send().await.expect("send");
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(5)
        .max_number_of_messages(1)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<&str> = received.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["hello sqs"]);
}
