//! The `record` variable a filter reads (`SIDECAR_FILTER`): `topic` (the queue or stream for
//! those sources), `partition`, `offset`, `timestamp` (ms, or null), `source` (`kafka`, `sqs`,
//! `redis`, `amqp`), `headers` (name to text, bytes when not UTF-8), `key` and `value`: the
//! decoded JSON when a format is set, else text (bytes when not UTF-8), null when absent.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;

use crate::codec::filter::{json_to_cel, text_or_bytes};
use crate::record::Record;

/// The `record` variable.
pub fn record_value(
    record: &Record,
    value: Option<&serde_json::Value>,
    key: Option<&serde_json::Value>,
) -> Value {
    let part = |decoded: Option<&serde_json::Value>, raw: Option<&bytes::Bytes>| match (decoded, raw) {
        (Some(json), _) => json_to_cel(json),
        (None, Some(bytes)) => text_or_bytes(bytes),
        (None, None) => Value::Null,
    };
    let headers: HashMap<String, Value> = record
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.as_deref().map_or(Value::Null, text_or_bytes)))
        .collect();
    let fields: HashMap<String, Value> = [
        ("topic", Value::String(Arc::new(record.tp.topic.to_string()))),
        ("partition", Value::Int(i64::from(record.tp.partition))),
        ("offset", Value::Int(record.offset)),
        ("timestamp", record.timestamp.map_or(Value::Null, Value::Int)),
        ("source", Value::String(Arc::new(record.origin.name().to_string()))),
        ("headers", Value::from(headers)),
        ("key", part(key, record.key.as_ref())),
        ("value", part(value, record.value.as_ref())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Value::from(fields)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::filter::{Filter, FilterError};
    use crate::record::{Header, Origin, TopicPartition};

    fn record(value: &[u8]) -> Record {
        Record {
            tp: TopicPartition::new("orders", 3),
            offset: 42,
            timestamp: Some(1_700_000_000_000),
            key: Some(Bytes::from_static(b"customer-7")),
            value: Some(Bytes::copy_from_slice(value)),
            headers: vec![Header { name: "type".into(), value: Some(Bytes::from_static(b"created")) }],
            malformed: None,
            decoded: None,
            origin: Origin::Kafka,
        }
    }

    fn accepts(
        expression: &str,
        value: &[u8],
        decoded: Option<serde_json::Value>,
    ) -> Result<bool, FilterError> {
        Filter::compile(expression).expect("compiles").accepts(record_value(
            &record(value),
            decoded.as_ref(),
            None,
        ))
    }

    #[test]
    fn decoded_fields_headers_and_coordinates_can_be_tested() {
        let order =
            serde_json::json!({"amount": 120, "country": "FR", "items": [{"sku": "a"}, {"sku": "b"}]});
        assert_eq!(accepts("record.value.amount > 100", b"", Some(order.clone())), Ok(true));
        assert_eq!(accepts("record.value.amount + 1 == 121", b"", Some(order.clone())), Ok(true));
        assert_eq!(accepts("record.value.country in ['DE', 'NL']", b"", Some(order.clone())), Ok(false));
        assert_eq!(accepts("record.value.items.exists(i, i.sku == 'b')", b"", Some(order.clone())), Ok(true));
        assert_eq!(
            accepts("record.headers['type'] == 'created' && record.partition == 3", b"", None),
            Ok(true)
        );
        assert_eq!(accepts("record.key.startsWith('customer-') && record.offset == 42", b"", None), Ok(true));
        assert_eq!(accepts("record.topic.matches('^ord') && record.source == 'kafka'", b"", None), Ok(true));
        // Without a format the value is its text.
        assert_eq!(accepts("record.value.contains('refund')", b"{\"kind\":\"refund\"}", None), Ok(true));
        assert_eq!(accepts("has(record.value.discount)", b"", Some(order)), Ok(false));
    }

    #[test]
    fn an_expression_that_fails_on_a_record_is_an_error_not_a_verdict() {
        let missing = accepts("record.value.amount > 100", b"", Some(serde_json::json!({"other": 1})));
        assert!(matches!(missing, Err(FilterError::Failed(_))), "{missing:?}");
        let not_bool = accepts("record.offset", b"", None);
        assert!(matches!(not_bool, Err(FilterError::NotBool(_))), "{not_bool:?}");
        // Bytes that are not UTF-8 are bytes: comparing them with text fails, it does not pass.
        let bytes = accepts("record.value == 'x'", b"\xff\xfe", None);
        assert!(matches!(bytes, Ok(false) | Err(FilterError::Failed(_))), "{bytes:?}");
    }
}
