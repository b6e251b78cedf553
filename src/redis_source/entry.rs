//! One Redis stream entry as a [`Record`]: the stream as its topic (partition 0), a sequence
//! number of the receiver as its offset, the entry's `data` field as its value (an entry without
//! one: a JSON object of its fields), its other fields as `x-redis-field-<name>` headers, and
//! `x-redis-stream`, `x-redis-id`, `x-redis-delivery-count` (`DESIGN.md`). The entry id's
//! milliseconds are the record's timestamp.
//!
//! Replies are read from [`redis::Value`] directly (RESP2 arrays or RESP3 maps), keeping field
//! order and bytes: a field name that is not UTF-8 makes the record malformed (dead-lettered,
//! never dropped), not a crash.

use bytes::Bytes;
use redis::Value;

use crate::record::{Header, Origin, Record, TopicPartition};

/// One entry as read: its id and its fields (`None`: the entry was deleted from the stream while
/// it was pending; there is nothing left to deliver).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `<ms>-<seq>`.
    pub id: String,
    /// Field name and value, in entry order.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Bytes of a string-like value.
fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes().to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// The items of an array-like value.
fn items(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items.clone()),
        Value::Map(pairs) => Some(pairs.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()),
        Value::Attribute { data, .. } => items(data),
        _ => None,
    }
}

/// Entries of a list of `[id, [field, value, ...]]`.
pub fn entries(list: &Value) -> Vec<Entry> {
    let Some(list) = items(list) else { return Vec::new() };
    list.iter()
        .filter_map(|entry| {
            let parts = items(entry)?;
            let id = String::from_utf8(bytes(parts.first()?)?).ok()?;
            let fields = parts.get(1).and_then(items).map(|flat| {
                flat.chunks(2)
                    .filter_map(|pair| Some((bytes(pair.first()?)?, bytes(pair.get(1)?).unwrap_or_default())))
                    .collect()
            });
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of one stream in an `XREADGROUP` reply (`Nil` when nothing came).
pub fn read_reply(reply: &Value) -> Vec<Entry> {
    // RESP2: [[stream, entries]]; RESP3: {stream: entries}.
    let Some(streams) = items(reply) else { return Vec::new() };
    match reply {
        Value::Map(_) => streams.get(1).map(entries).unwrap_or_default(),
        _ => streams.first().and_then(items).and_then(|s| s.get(1).map(entries)).unwrap_or_default(),
    }
}

/// An `XAUTOCLAIM` reply: the next cursor, the claimed entries and the ids of entries that were
/// deleted while pending (Redis 7 removes those from the pending list itself).
pub fn claim_reply(reply: &Value) -> (String, Vec<Entry>, Vec<String>) {
    let parts = items(reply).unwrap_or_default();
    let cursor =
        parts.first().and_then(bytes).and_then(|b| String::from_utf8(b).ok()).unwrap_or_else(|| "0-0".into());
    let claimed = parts.get(1).map(entries).unwrap_or_default();
    let deleted = parts
        .get(2)
        .and_then(items)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| String::from_utf8(bytes(v)?).ok())
        .collect();
    (cursor, claimed, deleted)
}

/// The milliseconds of an entry id.
fn id_millis(id: &str) -> Option<i64> {
    id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

/// An entry with fields as a record of `tp`, numbered `sequence`, delivered `deliveries` times
/// by Redis (this one included).
pub fn to_record(
    tp: &TopicPartition,
    sequence: i64,
    id: &str,
    fields: &[(Vec<u8>, Vec<u8>)],
    deliveries: u64,
) -> Record {
    let mut headers = Vec::with_capacity(3 + fields.len());
    let mut add =
        |name: String, value: Vec<u8>| headers.push(Header { name, value: Some(Bytes::from(value)) });
    add("x-redis-stream".into(), tp.topic.as_bytes().to_vec());
    add("x-redis-id".into(), id.as_bytes().to_vec());
    add("x-redis-delivery-count".into(), deliveries.max(1).to_string().into_bytes());
    let data = fields.iter().find(|(name, _)| name == b"data").map(|(_, value)| value.clone());
    let mut malformed = None;
    for (name, value) in fields {
        match std::str::from_utf8(name) {
            Ok("data") if data.is_some() => {}
            Ok(name) => add(format!("x-redis-field-{}", name.to_ascii_lowercase()), value.clone()),
            Err(_) => malformed = Some("a field name that is not UTF-8".into()),
        }
    }
    let value = match data {
        Some(data) => data,
        None => {
            // No `data` field: the fields as a JSON object (values as text, lossy for bytes that
            // are not UTF-8; the archive keeps the headers whole).
            let object: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect();
            serde_json::to_vec(&object).unwrap_or_default()
        }
    };
    Record {
        tp: tp.clone(),
        offset: sequence,
        timestamp: id_millis(id),
        key: None,
        value: Some(Bytes::from(value)),
        headers,
        malformed,
        decoded: None,
        origin: Origin::Redis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    #[test]
    fn read_replies_give_entries_in_order_with_their_fields() {
        let entry =
            |id: &str, fields: Vec<Value>| Value::Array(vec![bulk(id.as_bytes()), Value::Array(fields)]);
        let list = Value::Array(vec![
            entry("1700000000000-0", vec![bulk(b"data"), bulk(b"{\"a\":1}"), bulk(b"Kind"), bulk(b"order")]),
            Value::Array(vec![bulk(b"1700000000000-1"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"s"), list.clone()])]);
        let resp3 = Value::Map(vec![(bulk(b"s"), list)]);
        for reply in [resp2, resp3] {
            let read = read_reply(&reply);
            assert_eq!(read.len(), 2);
            assert_eq!(read[0].id, "1700000000000-0");
            assert_eq!(read[1].fields, None, "deleted while pending");
            let fields = read[0].fields.clone().expect("fields");
            let record = to_record(&TopicPartition::new("s", 0), 3, &read[0].id, &fields, 2);
            assert_eq!(record.value.as_deref(), Some(&b"{\"a\":1}"[..]));
            assert_eq!(record.header_text("x-redis-field-kind"), Some("order"));
            assert_eq!(record.header_text("x-redis-delivery-count"), Some("2"));
            assert_eq!(record.header_text("x-redis-id"), Some("1700000000000-0"));
            assert_eq!(record.timestamp, Some(1_700_000_000_000));
            assert_eq!(record.origin, Origin::Redis);
        }
        assert!(read_reply(&Value::Nil).is_empty());
    }

    #[test]
    fn an_entry_without_data_is_a_json_object_and_hostile_names_are_malformed_not_fatal() {
        let tp = TopicPartition::new("s", 0);
        let record =
            to_record(&tp, 1, "5-0", &[(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"x".to_vec())], 1);
        let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({"a": "1", "b": "x"}));
        let hostile = to_record(
            &tp,
            2,
            "5-1",
            &[(vec![0xff, 0xfe], b"v".to_vec()), (b"data".to_vec(), b"d".to_vec())],
            1,
        );
        assert!(hostile.malformed.is_some());
        assert_eq!(hostile.value.as_deref(), Some(&b"d"[..]), "the data is kept for the dead letter");
    }

    #[test]
    fn claim_replies_give_the_cursor_the_entries_and_the_deleted_ids() {
        let reply = Value::Array(vec![
            bulk(b"9-0"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"3-0"),
                Value::Array(vec![bulk(b"data"), bulk(b"x")]),
            ])]),
            Value::Array(vec![bulk(b"4-0")]),
        ]);
        let (cursor, claimed, deleted) = claim_reply(&reply);
        assert_eq!((cursor.as_str(), claimed.len(), deleted), ("9-0", 1, vec!["4-0".to_string()]));
        assert_eq!(claim_reply(&Value::Nil).0, "0-0");
    }
}
