//! Any bytes as the application's 2xx answer to a batch: the parser never panics, and what it
//! accepts names only records of the batch.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msk_sidecar::delivery::http_batch::read_answer;
use msk_sidecar::record::{Record, TopicPartition};

fuzz_target!(|body: &[u8]| {
    let records: Vec<Record> = (0..4)
        .map(|offset| Record {
            tp: TopicPartition::new(if offset % 2 == 0 { "a" } else { "b" }, 0),
            offset,
            timestamp: None,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
            malformed: None,
            origin: msk_sidecar::record::Origin::Kafka,
        })
        .collect();
    let batch: Vec<&Record> = records.iter().collect();
    if let Ok(failures) = read_answer(body, &batch) {
        for failure in failures {
            assert!(records.iter().any(|r| r.offset == failure.offset && r.tp.partition == failure.partition));
        }
    }
});
