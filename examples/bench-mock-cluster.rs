//! Benchmark helper: a standalone librdkafka mock cluster holding a prepared backlog.
//!
//! `bench-mock-cluster --partitions P --records N --size S --topic T [--keys K] [--value-file F]`
//! creates topic T (P partitions) and T.dlq (1 partition), produces N records of S bytes (or, with
//! `--value-file`, that file's bytes: an encoded Avro or Protobuf record for the decoding rows;
//! key `k<i mod K>` when K is not 0; record i to partition i mod P), prints `READY <bootstrap>`
//! and runs until stdin closes.
//! Every tool in a benchmark row reads the same data from the same kind of broker.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 24)]
    partitions: i32,
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, default_value_t = 0)]
    keys: usize,
    #[arg(long)]
    value_file: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&args.topic, args.partitions, 1).expect("topic");
    cluster.create_topic(&format!("{}.dlq", args.topic), 1, 1).expect("dlq topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let value = match &args.value_file {
        Some(path) => std::fs::read(path).expect("read --value-file"),
        None => vec![b'x'; args.size],
    };
    for i in 0..args.records {
        let key = (args.keys > 0).then(|| format!("k{}", i % args.keys));
        let partition = i32::try_from(i).unwrap() % args.partitions;
        let mut record = BaseRecord::<String, [u8]>::to(&args.topic).partition(partition).payload(&value);
        if let Some(key) = key.as_ref() {
            record = record.key(key);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush the backlog");
    println!("READY {bootstrap}");
    std::io::stdout().flush().expect("stdout");
    // Stay up until the benchmark closes stdin (or kills us).
    for _ in std::io::stdin().lock().lines() {}
    drop(cluster);
}
