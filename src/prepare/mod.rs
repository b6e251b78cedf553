//! What happens to a record between its source and its first delivery attempt, per route:
//! expiry (`SIDECAR_MAX_RECORD_AGE`), decoding (`SIDECAR_VALUE_FORMAT`, `SIDECAR_KEY_FORMAT`)
//! and filtering (`SIDECAR_FILTER`), in that order, so a filter reads decoded fields.
//!
//! The outcome is a [`Prepared`]: the record to deliver (decoded parts replaced by their JSON),
//! a record the filter turned away (finished: committed, counted, never delivered), or a dead
//! letter (`expired`, `undecodable`, `filter-error`) holding the record as the source gave it.
//! Nothing here waits or touches the network.

pub mod view;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::codec::Rules;
use crate::codec::{decode, registry};
use crate::dlq::ErrorClass;
use crate::record::{Decoded, Record};

/// What becomes of a record before delivery.
#[derive(Debug)]
pub enum Prepared<'a> {
    /// Deliver this (the record itself, or a copy with decoded parts).
    Deliver(Cow<'a, Record>),
    /// The filter turned it away: finished without delivery.
    Filtered,
    /// A part names a schema the registry has not given yet: fetch it, then prepare again.
    NeedsSchema(Arc<registry::Registry>, registry::wire::SchemaRef),
    /// Dead-letter the record as the source gave it.
    DeadLetter {
        /// `expired`, `undecodable` or `filter-error`.
        class: ErrorClass,
        /// Why, for `dlq-error` and the log (never record bytes).
        reason: String,
    },
}

/// Applies `rules` to `record` at `now`.
pub fn prepare<'a>(rules: &Rules, record: &'a Record, now: SystemTime) -> Prepared<'a> {
    let this = rules;
    {
        if let (Some(max), Some(timestamp)) = (this.max_age, record.timestamp) {
            let now_ms = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let age_ms = now_ms.saturating_sub(u128::try_from(timestamp).unwrap_or(0));
            if age_ms > max.as_millis() {
                let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(u64::MAX));
                return Prepared::DeadLetter {
                    class: ErrorClass::Expired,
                    reason: format!(
                        "the record is {} old, older than the maximum record age {}",
                        humantime::format_duration(Duration::from_secs(age.as_secs())),
                        humantime::format_duration(max)
                    ),
                };
            }
        }
        let mut out = Cow::Borrowed(record);
        let mut value_json = None;
        let mut key_json = None;
        if let (Some(decoder), Some(bytes)) = (&this.value, &record.value) {
            match decoder.decode(bytes, this.filter.is_some()) {
                Ok(part) => {
                    let copy = out.to_mut();
                    copy.value = Some(part.bytes);
                    copy.decoded.get_or_insert_with(Box::default).value = Some(part.schema);
                    value_json = part.json;
                }
                Err(decode::DecodeError::Undecodable(err)) => return undecodable("value", &err),
                Err(decode::DecodeError::NeedsSchema(registry, schema)) => {
                    return Prepared::NeedsSchema(registry, schema);
                }
            }
        }
        if let (Some(decoder), Some(bytes)) = (&this.key, &record.key) {
            match decoder.decode(bytes, this.filter.is_some()) {
                Ok(part) => {
                    let copy = out.to_mut();
                    copy.key = Some(part.bytes);
                    copy.decoded.get_or_insert_with(Box::<Decoded>::default).key = Some(part.schema);
                    key_json = part.json;
                }
                Err(decode::DecodeError::Undecodable(err)) => return undecodable("key", &err),
                Err(decode::DecodeError::NeedsSchema(registry, schema)) => {
                    return Prepared::NeedsSchema(registry, schema);
                }
            }
        }
        if let Some(filter) = &this.filter {
            match filter.accepts(view::record_value(&out, value_json.as_ref(), key_json.as_ref())) {
                Ok(true) => {}
                Ok(false) => return Prepared::Filtered,
                Err(err) => {
                    return Prepared::DeadLetter {
                        class: ErrorClass::FilterError,
                        reason: format!("the filter {err}"),
                    };
                }
            }
        }
        Prepared::Deliver(out)
    }
}

fn undecodable(part: &str, err: &decode::Undecodable) -> Prepared<'static> {
    Prepared::DeadLetter {
        class: ErrorClass::Undecodable,
        reason: format!("the {part} cannot be decoded: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::decode::Decoder;
    use crate::codec::filter::Filter;
    use crate::record::{Origin, TopicPartition};

    fn record(timestamp: Option<i64>, key: &[u8], value: &[u8]) -> Record {
        Record {
            tp: TopicPartition::new("t", 0),
            offset: 7,
            timestamp,
            key: Some(Bytes::copy_from_slice(key)),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            malformed: None,
            decoded: None,
            origin: Origin::Kafka,
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn expiry_counts_from_the_record_timestamp_and_spares_records_without_one() {
        let rules = Rules { max_age: Some(Duration::from_secs(60)), ..Rules::default() };
        let fresh = record(Some(1_000_000), b"", b"");
        assert!(
            matches!(prepare(&rules, &fresh, at(1_060_000)), Prepared::Deliver(_)),
            "exactly the maximum age"
        );
        let expired = prepare(&rules, &fresh, at(1_060_001));
        assert!(matches!(expired, Prepared::DeadLetter { class: ErrorClass::Expired, .. }), "{expired:?}");
        let timeless = record(None, b"", b"");
        assert!(matches!(prepare(&rules, &timeless, at(u64::MAX / 2)), Prepared::Deliver(_)));
        // A timestamp in the future is not old.
        assert!(matches!(
            prepare(&rules, &record(Some(9_999_999_999), b"", b""), at(0)),
            Prepared::Deliver(_)
        ));
    }

    #[test]
    fn a_filter_reads_every_protobuf_field_while_the_application_gets_the_proto3_mapping() {
        use prost::Message as _;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("o.proto"),
            "syntax = \"proto3\"; package o; enum S { NEW = 0; DONE = 1; } message O { S state = 1; int64 cents = 2; }",
        )
        .expect("write");
        let set = protox::compile(["o.proto"], [dir.path()]).expect("compiles");
        std::fs::write(dir.path().join("o.pb"), set.encode_to_vec()).expect("write");
        let decoder = Decoder::protobuf(&dir.path().join("o.pb"), "o.O").expect("decoder");
        let filter = Filter::compile("record.value.state == 'NEW' && record.value.cents > 4000000000")
            .expect("compiles");
        let rules =
            Rules { value: Some(Arc::new(decoder)), filter: Some(Arc::new(filter)), ..Rules::default() };
        // cents = 5,000,000,000, state left at its default.
        let source = record(None, b"", &[0x10, 0x80, 0xe4, 0x97, 0xd0, 0x12]);
        let Prepared::Deliver(prepared) = prepare(&rules, &source, at(0)) else {
            panic!("passes the filter")
        };
        assert_eq!(
            prepared.value.as_deref(),
            Some(&br#"{"cents":"5000000000"}"#[..]),
            "proto3 JSON: defaults left out"
        );
    }

    #[test]
    fn keys_and_values_decode_on_their_own_and_the_copy_says_so() {
        let rules = Rules { key: Some(Arc::new(Decoder::Json)), ..Rules::default() };
        let source = record(None, b"{\"id\":1}", b"\xff raw");
        let Prepared::Deliver(prepared) = prepare(&rules, &source, at(0)) else { panic!("delivered") };
        let decoded = prepared.decoded.as_deref().expect("decoded");
        assert_eq!(decoded.key, Some(None), "the key is JSON, without a schema");
        assert_eq!(decoded.value, None, "the value is as it came");
        assert_eq!(prepared.value.as_deref(), Some(&b"\xff raw"[..]));
        let bad_key = record(None, b"not json", b"{}");
        let outcome = prepare(&rules, &bad_key, at(0));
        assert!(
            matches!(&outcome, Prepared::DeadLetter { class: ErrorClass::Undecodable, reason } if reason.starts_with("the key")),
            "{outcome:?}"
        );
        // Without rules nothing is copied.
        assert!(matches!(
            prepare(&Rules::default(), &source, at(0)),
            Prepared::Deliver(std::borrow::Cow::Borrowed(_))
        ));
    }
}
