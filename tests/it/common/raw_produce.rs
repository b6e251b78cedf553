//! A Produce request written by hand, for records that librdkafka's Rust API cannot express: a
//! header whose name is not UTF-8 (legal on the wire; Go and C producers can write it).
//!
//! Written from the protocol description (kafka.apache.org/protocol, "Record Batch"): one
//! record batch of magic 2 per request (`baseOffset i64, batchLength i32, partitionLeaderEpoch
//! i32, magic i8, crc u32` (CRC-32C of everything after it), `attributes i16, lastOffsetDelta
//! i32, baseTimestamp i64, maxTimestamp i64, producerId i64, producerEpoch i16, baseSequence i32,
//! records [Record]`), sent in Produce v3 to the partition's leader (the test brokers have one).

use anyhow::{Context as _, ensure};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::kafka_wire::{self, Decoder, Encoder};

/// One record with raw header names.
pub struct RawRecord {
    /// Key (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Value (`None`: tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers: raw name bytes, value (`None`: null).
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// CRC-32C (Castagnoli), bit by bit: the test batches are small.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// A signed varint (zigzag), as record fields use.
fn varint(out: &mut Encoder, v: i64) {
    out.uvarint(((v << 1) ^ (v >> 63)) as u64);
}

fn nullable(out: &mut Encoder, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            varint(out, i64::try_from(b.len()).expect("length"));
            out.raw(b);
        }
        None => varint(out, -1),
    }
}

/// The record batch holding `records`, timestamps now.
pub fn record_batch(records: &[RawRecord]) -> Vec<u8> {
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis(),
    )
    .expect("ms");
    let mut body = Encoder::default();
    for (index, record) in records.iter().enumerate() {
        let mut r = Encoder::default();
        r.i8(0); // attributes
        varint(&mut r, 0); // timestamp delta
        varint(&mut r, i64::try_from(index).expect("index")); // offset delta
        nullable(&mut r, record.key.as_deref());
        nullable(&mut r, record.value.as_deref());
        varint(&mut r, i64::try_from(record.headers.len()).expect("headers"));
        for (name, value) in &record.headers {
            nullable(&mut r, Some(name));
            nullable(&mut r, value.as_deref());
        }
        varint(&mut body, i64::try_from(r.buf.len()).expect("record length"));
        body.raw(&r.buf);
    }
    let count = i32::try_from(records.len()).expect("count");
    let mut after_crc = Encoder::default();
    after_crc
        .i16(0) // attributes: no compression, create time
        .i32(count - 1)
        .i64(now)
        .i64(now)
        .i64(-1) // producer id
        .i16(-1) // producer epoch
        .i32(-1) // base sequence
        .i32(count)
        .raw(&body.buf);
    let mut batch = Encoder::default();
    let length = 4 + 1 + 4 + after_crc.buf.len(); // leader epoch, magic, crc, rest
    batch
        .i64(0)
        .i32(i32::try_from(length).expect("batch length"))
        .i32(-1)
        .i8(2)
        .raw(&crc32c(&after_crc.buf).to_be_bytes())
        .raw(&after_crc.buf);
    batch.buf
}

/// Produces `records` to `topic`/`partition` on the broker at `addr` (its leader), `acks=-1`.
pub async fn produce(addr: &str, topic: &str, partition: i32, records: &[RawRecord]) -> anyhow::Result<()> {
    let mut body = Encoder::default();
    body.nullable_string(None)
        .i16(-1)
        .i32(10_000)
        .i32(1)
        .nullable_string(Some(topic))
        .i32(1)
        .i32(partition)
        .bytes(&record_batch(records));
    let request = kafka_wire::request(kafka_wire::PRODUCE, 3, 1, "raw-producer", &body.buf);
    let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    stream.write_all(&request).await?;
    let frame = kafka_wire::read_frame(&mut stream).await?.context("no Produce response")?;
    let (_, body) = kafka_wire::parse_response(&frame, false)?;
    let mut d = Decoder::new(body);
    ensure!(d.i32()? == 1, "one topic in the answer");
    d.nullable_string()?;
    ensure!(d.i32()? == 1, "one partition in the answer");
    d.i32()?;
    let error = d.i16()?;
    ensure!(error == 0, "Produce answered error code {error}");
    Ok(())
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}
