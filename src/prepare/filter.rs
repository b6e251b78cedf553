//! `SIDECAR_FILTER` (and a route's `filter`): a CEL expression over `record`, the language Dapr
//! and Kubernetes use for the same job. A record for which it is false is finished without
//! delivery; one on which it fails (a missing field, a type mismatch, a result that is not a
//! bool) is dead-lettered as `filter-error`, never dropped and never delivered unfiltered.
//!
//! `record` holds `topic` (the queue or stream for those sources), `partition`, `offset`,
//! `timestamp` (ms, or null), `source` (`kafka`, `sqs`, `redis`, `amqp`), `headers` (name to
//! text, bytes when not UTF-8), `key` and `value`: the decoded JSON when a format is set, else
//! text (bytes when not UTF-8), null when absent.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};

use crate::record::Record;

/// Why an expression was refused, or failed on a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// It does not parse.
    #[error("is not a CEL expression: {0}")]
    Syntax(String),
    /// It names a variable other than `record`: it would fail on every record.
    #[error("uses {0}, but the only variable is `record` (record.value, record.key, record.headers, ...)")]
    Variable(String),
    /// It failed on this record.
    #[error("failed on this record: {0}")]
    Failed(String),
    /// Its result on this record is not a bool.
    #[error("gave {0} on this record, not true or false")]
    NotBool(String),
}

/// A compiled filter.
pub struct Filter {
    text: String,
    program: Program,
    env: Arc<Env>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Filter").field(&self.text).finish()
    }
}

impl Filter {
    /// Compiles `text`, refusing what cannot work on any record.
    pub fn compile(text: &str) -> Result<Filter, FilterError> {
        let env = Arc::new(Env::stdlib());
        let program = env.compile(text).map_err(|err| {
            FilterError::Syntax(err.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
        })?;
        // Comprehension macros (`exists(h, ...)`) bind their own names: only a free name other
        // than `record` is refused.
        let bound = comprehension_names(text);
        let references = program.references();
        if let Some(unknown) =
            references.variables().into_iter().find(|v| *v != "record" && !bound.iter().any(|b| b == v))
        {
            return Err(FilterError::Variable(format!("`{unknown}`")));
        }
        Ok(Filter { text: text.to_string(), program, env })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `record` passes; `value` and `key` are its decoded parts, when decoded.
    pub fn accepts(
        &self,
        record: &Record,
        value: Option<&serde_json::Value>,
        key: Option<&serde_json::Value>,
    ) -> Result<bool, FilterError> {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("record", record_value(record, value, key));
        match self.program.execute(&context) {
            Ok(Value::Bool(pass)) => Ok(pass),
            Ok(other) => Err(FilterError::NotBool(format!("{:?}", other.type_of()))),
            Err(err) => Err(FilterError::Failed(err.to_string())),
        }
    }
}

/// Names a comprehension macro binds (`list.exists(x, ...)`, `map(k, v, ...)`): the first
/// argument of each such call, read from the text.
fn comprehension_names(text: &str) -> Vec<String> {
    const MACROS: [&str; 6] = ["all(", "exists(", "exists_one(", "map(", "filter(", "existsOne("];
    let mut names = Vec::new();
    for (i, _) in text.char_indices() {
        let rest = &text[i..];
        if let Some(args) = MACROS.iter().find_map(|m| rest.strip_prefix(m)) {
            let preceded_by_dot = text[..i].trim_end().ends_with('.');
            if preceded_by_dot {
                for name in args.split(',').take(2) {
                    let name = name.trim();
                    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        names.push(name.to_string());
                    }
                }
            }
        }
    }
    names
}

/// Text, or bytes when not UTF-8.
fn text_or_bytes(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(Arc::new(text.to_string())),
        Err(_) => Value::Bytes(Arc::new(bytes.to_vec())),
    }
}

/// A JSON value as CEL sees it: integers as `int` where they fit (so `record.value.n > 1`
/// compares and adds like the literal it is written against).
pub fn json_to_cel(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(fields) => {
            let map: HashMap<String, Value> =
                fields.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
            Value::from(map)
        }
    }
}

/// The `record` variable.
fn record_value(
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
        Filter::compile(expression).expect("compiles").accepts(&record(value), decoded.as_ref(), None)
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

    #[test]
    fn expressions_that_cannot_work_are_refused_when_compiled() {
        assert!(matches!(Filter::compile("record.value.amount >"), Err(FilterError::Syntax(_))));
        let typo = Filter::compile("recrod.value.amount > 1").expect_err("a typo");
        assert_eq!(typo, FilterError::Variable("`recrod`".into()));
        assert!(Filter::compile("record.value.items.all(item, item.qty > 0)").is_ok());
        assert!(Filter::compile("record.value.items.map(i, i.sku).size() > 0").is_ok());
    }
}
