//! `SIDECAR_VALUE_FORMAT` / `SIDECAR_KEY_FORMAT` (and a route's `value_format`, `key_format`):
//! turning a record's bytes into the JSON the application reads.
//!
//! `json` checks the bytes are one JSON document and delivers them as they are; `protobuf` with
//! `SIDECAR_PROTOBUF_DESCRIPTOR` and `SIDECAR_PROTOBUF_MESSAGE` decodes them as that message
//! type (the seeds' compacted topics) and delivers the proto3 JSON mapping (lowerCamelCase
//! names, 64-bit integers as strings, enums by name, `Timestamp` in RFC 3339, default values
//! left out). Bytes that do not decode are [`Undecodable`]: dead-lettered, never delivered.
//! Decoding needs no network call: the descriptor is read once, when the configuration is.

use std::sync::Arc;

use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

/// A format as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The bytes as they are.
    Raw,
    /// One JSON document.
    Json,
    /// Protobuf.
    Protobuf,
    /// Avro.
    Avro,
    /// JSON checked against a JSON Schema.
    JsonSchema,
}

impl Format {
    /// Parses a format name.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text.trim() {
            "raw" => Ok(Format::Raw),
            "json" => Ok(Format::Json),
            "protobuf" => Ok(Format::Protobuf),
            "avro" => Ok(Format::Avro),
            "json-schema" => Ok(Format::JsonSchema),
            _ => Err("expected raw, json, protobuf, avro or json-schema".to_string()),
        }
    }

    /// Its name as configured.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::Protobuf => "protobuf",
            Format::Avro => "avro",
            Format::JsonSchema => "json-schema",
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undecodable(pub String);

/// A decoded part of a record: the JSON text to deliver, the value to filter on, the schema.
#[derive(Clone, Debug)]
pub struct DecodedPart {
    /// What the application receives.
    pub bytes: Bytes,
    /// The same, parsed.
    pub json: serde_json::Value,
    /// The schema it was decoded with (`x-kafka-value-schema`), if any.
    pub schema: Option<Arc<str>>,
}

/// How one part of a record is decoded.
#[derive(Clone, Debug)]
pub enum Decoder {
    /// Checked to be JSON, delivered as it is.
    Json,
    /// Decoded as this Protobuf message type.
    Protobuf {
        /// The message type.
        message: MessageDescriptor,
        /// `protobuf:<full name>`.
        schema: Arc<str>,
    },
}

impl Decoder {
    /// A Protobuf decoder for `message` of the FileDescriptorSet at `path` (`protoc
    /// --descriptor_set_out --include_imports`).
    pub fn protobuf(path: &std::path::Path, message: &str) -> Result<Decoder, String> {
        let bytes = std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let pool = DescriptorPool::decode(bytes.as_slice())
            .map_err(|err| format!("{} is not a FileDescriptorSet: {err}", path.display()))?;
        let descriptor = pool.get_message_by_name(message.trim()).ok_or_else(|| {
            let known: Vec<String> =
                pool.all_messages().map(|m| m.full_name().to_string()).take(20).collect();
            format!("{} has no message {message:?} (it has {})", path.display(), known.join(", "))
        })?;
        let schema = Arc::from(format!("protobuf:{}", descriptor.full_name()));
        Ok(Decoder::Protobuf { message: descriptor, schema })
    }

    /// Decodes `bytes`.
    pub fn decode(&self, bytes: &Bytes) -> Result<DecodedPart, Undecodable> {
        match self {
            Decoder::Json => {
                let json: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|err| Undecodable(format!("not JSON: {err}")))?;
                Ok(DecodedPart { bytes: bytes.clone(), json, schema: None })
            }
            Decoder::Protobuf { message, schema } => {
                let decoded = DynamicMessage::decode(message.clone(), bytes.as_ref())
                    .map_err(|err| Undecodable(format!("not a {}: {err}", message.full_name())))?;
                let json = proto3_json(&decoded)?;
                let text = serde_json::to_vec(&json).map_err(|err| Undecodable(err.to_string()))?;
                Ok(DecodedPart { bytes: Bytes::from(text), json, schema: Some(schema.clone()) })
            }
        }
    }
}

/// The proto3 JSON mapping of a message.
fn proto3_json(message: &DynamicMessage) -> Result<serde_json::Value, Undecodable> {
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|err| Undecodable(format!("no JSON form: {err}")))
}
