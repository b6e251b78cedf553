//! Avro values as the plain JSON the application reads (`DESIGN.md`): a union is its value (not
//! `{"type": value}`), an enum its symbol, bytes and fixed base64, a map an object, a record an
//! object in field order, and logical types their underlying value (days, milliseconds, a
//! decimal's two's-complement bytes in base64, a UUID's text). A float that JSON cannot hold
//! (NaN, infinity) is null.

use apache_avro::types::Value;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;

/// The payload as apache-avro reads it, noting a read past its end: the decoder takes a short
/// read for a null union branch or an empty string, which would turn a truncated record into a
/// record of nulls.
struct Strict<'a> {
    data: &'a [u8],
    overrun: bool,
}

impl std::io::Read for Strict<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.data.is_empty() {
            self.overrun = true;
            return Ok(0);
        }
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decodes one Avro datum written with `schema` (no container header) into JSON. The schema
/// has no cycles ([`super::registry::parse`] refuses them): decoding cannot recurse without end.
pub fn decode(schema: &apache_avro::Schema, payload: &[u8]) -> Result<Json, String> {
    let mut reader = Strict { data: payload, overrun: false };
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .map_err(|err| err.to_string())?
        .read_value(&mut reader)
        .map_err(|err| format!("not an Avro datum of its schema: {err}"))?;
    if reader.overrun {
        return Err("the Avro datum is cut short".into());
    }
    if !reader.data.is_empty() {
        return Err(format!("{} bytes after the Avro datum", reader.data.len()));
    }
    Ok(to_json(value))
}

fn float(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number)
}

/// The JSON form of an Avro value.
pub fn to_json(value: Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Json::from(i),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => Json::from(i),
        Value::Float(f) => float(f64::from(f)),
        Value::Double(f) => float(f),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::String(BASE64.encode(bytes)),
        Value::String(s) => Json::String(s),
        Value::Enum(_, symbol) => Json::String(symbol),
        Value::Union(_, inner) => to_json(*inner),
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(entries) => {
            let mut sorted: Vec<_> = entries.into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(sorted.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        Value::Record(fields) => Json::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        Value::Decimal(decimal) => {
            Json::String(Vec::<u8>::try_from(&decimal).map(|b| BASE64.encode(b)).unwrap_or_default())
        }
        Value::BigDecimal(decimal) => Json::String(decimal.to_string()),
        Value::Duration(duration) => {
            let bytes: [u8; 12] = duration.into();
            Json::String(BASE64.encode(bytes))
        }
        Value::Uuid(uuid) => Json::String(uuid.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_enums_bytes_maps_and_logical_types_map_to_plain_json() {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"Order","fields":[
                {"name":"id","type":"string"},
                {"name":"note","type":["null","string"]},
                {"name":"status","type":{"type":"enum","name":"S","symbols":["NEW","DONE"]}},
                {"name":"raw","type":"bytes"},
                {"name":"tags","type":{"type":"map","values":"int"}},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"score","type":"double"}
            ]}"#,
        )
        .expect("schema");
        let mut record = apache_avro::types::Record::new(&schema).expect("record");
        record.put("id", "o-1");
        record.put("note", Value::Union(1, Box::new(Value::String("hi".into()))));
        record.put("status", Value::Enum(1, "DONE".into()));
        record.put("raw", Value::Bytes(vec![0, 1, 255]));
        record.put(
            "tags",
            Value::Map([("b".to_string(), Value::Int(2)), ("a".to_string(), Value::Int(1))].into()),
        );
        record.put("at", Value::TimestampMillis(1_700_000_000_123));
        record.put("score", Value::Double(f64::NAN));
        let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer")
            .write_value_to_vec(record)
            .expect("encode");
        let json = decode(&schema, &bytes).expect("decode");
        assert_eq!(
            json,
            serde_json::json!({"id": "o-1", "note": "hi", "status": "DONE", "raw": "AAH/",
                "tags": {"a": 1, "b": 2}, "at": 1_700_000_000_123_i64, "score": null})
        );
        assert!(decode(&schema, &bytes[..bytes.len() - 3]).is_err(), "truncated");
        // Cut before an optional field: not a record of nulls.
        let optional = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":["null","string"]}]}"#,
        )
        .expect("schema");
        assert!(decode(&optional, &[0x02]).is_err(), "the union index is missing");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&schema, &longer).is_err(), "trailing bytes are not ignored");
    }
}
