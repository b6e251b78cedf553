//! Benchmark helper: the minimal rust-rdkafka `BaseConsumer` loop the sidecar is compared with.
//!
//! `bench-baseline --bootstrap B --topic T --records N` consumes N records with the same
//! librdkafka settings as the sidecar (consumer group, no auto commit, the same fetch queue
//! settings) and prints `{"records": N, "seconds": <first to last record>}`.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    records: usize,
}

fn main() {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("baseline-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.min.messages", "20000")
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&args.topic]).expect("subscribe");
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    while count < args.records {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += message.payload().map_or(0, <[u8]>::len);
            count += 1;
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!("{{\"records\": {count}, \"seconds\": {seconds:.6}, \"bytes\": {bytes}}}");
}
