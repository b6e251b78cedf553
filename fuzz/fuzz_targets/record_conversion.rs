//! A record with arbitrary key, value, header names and values, converted to everything the
//! sidecar makes of it: the HTTP request headers, the dead letter's headers and archive document.
//! No panic; header names decode back to the record's names; values and keys survive base64.

#![no_main]

use std::time::SystemTime;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msk_sidecar::delivery::Attempt;
use msk_sidecar::delivery::http::{encode_name, request_headers};
use msk_sidecar::dlq::{DeadLetter, ErrorClass};
use msk_sidecar::record::{Header, Record, TopicPartition};

#[derive(Debug, Arbitrary)]
struct Input {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    error: String,
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let record = Record {
        tp: TopicPartition::new("orders", input.partition),
        offset: input.offset,
        timestamp: input.timestamp,
        key: input.key.map(Bytes::from),
        value: input.value.map(Bytes::from),
        headers: input.headers.iter().map(|(n, v)| Header { name: n.clone(), value: v.clone().map(Bytes::from) }).collect(),
        malformed: None,
        origin: msk_sidecar::record::Origin::Kafka,
    };
    let headers = request_headers(&record, &Attempt { number: 1, ..Attempt::default() });
    for header in &record.headers {
        let encoded = encode_name(&header.name);
        assert_eq!(percent_decode(&encoded), header.name.to_ascii_lowercase().into_bytes(), "{:?}", header.name);
        let name = format!("x-kafka-header-{encoded}");
        let values: Vec<&[u8]> = headers.get_all(name.as_str()).iter().map(|v| v.as_bytes()).collect();
        let expected = BASE64.encode(header.value.as_deref().unwrap_or_default());
        assert!(values.iter().any(|v| *v == expected.as_bytes()), "{name}: {values:?}");
    }
    if let Some(key) = &record.key {
        let shown = headers.get("x-kafka-key").expect("key header");
        assert_eq!(BASE64.decode(shown.as_bytes()).expect("base64"), key.to_vec());
    }
    let letter = DeadLetter {
        record: &record,
        group: "g",
        class: ErrorClass::Permanent,
        error: input.error,
        attempts: 1,
        first_failure: SystemTime::UNIX_EPOCH,
        last_failure: SystemTime::UNIX_EPOCH,
        traceparent: None,
    };
    let dlq_headers = letter.headers(Some("k"), true);
    let error = dlq_headers.iter().find(|(n, _)| n == "dlq-error").expect("dlq-error");
    assert!(error.1.len() <= 1024 && !error.1.contains(&b'\n'));
    let document = serde_json::to_vec(&letter.archive_document()).expect("archive document encodes");
    let back: serde_json::Value = serde_json::from_slice(&document).expect("archive document decodes");
    let value = back["value_b64"].as_str().map(|v| BASE64.decode(v).expect("base64"));
    assert_eq!(value, record.value.as_ref().map(|v| v.to_vec()));
    let _ = letter.archive_key("prefix");
});
