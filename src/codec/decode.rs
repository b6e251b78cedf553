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

use super::registry::wire::SchemaRef;
use super::registry::{Parsed, Registry};

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

/// Why a part was not decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// It cannot be: dead-letter it.
    Undecodable(Undecodable),
    /// It names a schema the registry has not given yet: fetch it, then decode again.
    NeedsSchema(Arc<Registry>, SchemaRef),
}

impl From<Undecodable> for DecodeError {
    fn from(err: Undecodable) -> Self {
        DecodeError::Undecodable(err)
    }
}

/// A decoded part of a record: the JSON text to deliver, the value to filter on, the schema.
#[derive(Clone, Debug)]
pub struct DecodedPart {
    /// What the application receives.
    pub bytes: Bytes,
    /// The same, parsed, when a filter reads it (Protobuf: every field, 64-bit integers as
    /// numbers).
    pub json: Option<serde_json::Value>,
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
    /// Framed by a schema registry, decoded with the schema the record names.
    Registry {
        /// The registry.
        registry: Arc<Registry>,
        /// What the route expects: `avro`, `protobuf` or `json-schema`.
        format: Format,
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

    /// Decodes `bytes`; with `filter`, also the JSON value a filter reads.
    pub fn decode(&self, bytes: &Bytes, filter: bool) -> Result<DecodedPart, DecodeError> {
        match self {
            Decoder::Registry { registry, format } => decode_framed(registry, *format, bytes, filter),
            Decoder::Json => {
                let json = if filter {
                    Some(
                        serde_json::from_slice(bytes)
                            .map_err(|err| Undecodable(format!("not JSON: {err}")))?,
                    )
                } else {
                    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                        .map_err(|err| Undecodable(format!("not JSON: {err}")))?;
                    None
                };
                Ok(DecodedPart { bytes: bytes.clone(), json, schema: None })
            }
            Decoder::Protobuf { message, schema } => {
                let decoded = DynamicMessage::decode(message.clone(), bytes.as_ref())
                    .map_err(|err| Undecodable(format!("not a {}: {err}", message.full_name())))?;
                Ok(protobuf_part(&decoded, filter, schema.clone())?)
            }
        }
    }
}

/// A decoded Protobuf message: the proto3 JSON mapping to deliver, and for a filter every field
/// (defaults too) with 64-bit integers as numbers, so `record.value.status == 'NEW'` and
/// `record.value.amount > 100` work whatever the values.
fn protobuf_part(
    message: &DynamicMessage,
    filter: bool,
    schema: Arc<str>,
) -> Result<DecodedPart, Undecodable> {
    let mut text = Vec::with_capacity(128);
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut text), &SerializeOptions::new())
        .map_err(|err| Undecodable(format!("no JSON form: {err}")))?;
    let json = if filter {
        let options = SerializeOptions::new().skip_default_fields(false).stringify_64_bit_integers(false);
        Some(
            message
                .serialize_with_options(serde_json::value::Serializer, &options)
                .map_err(|err| Undecodable(format!("no JSON form: {err}")))?,
        )
    } else {
        None
    };
    Ok(DecodedPart { bytes: Bytes::from(text), json, schema: Some(schema) })
}

/// Decodes registry-framed bytes with the schema they name, once it is cached.
fn decode_framed(
    registry: &Arc<Registry>,
    format: Format,
    bytes: &[u8],
    filter: bool,
) -> Result<DecodedPart, DecodeError> {
    let framed = registry.frame(bytes, format == Format::Protobuf).map_err(Undecodable)?;
    let Some(entry) = registry.cached(framed.schema) else {
        return Err(DecodeError::NeedsSchema(registry.clone(), framed.schema));
    };
    let name = &entry.name;
    let parsed = entry.parsed.as_ref().map_err(|err| Undecodable(format!("{name}: {err}")))?;
    match (format, parsed) {
        (Format::Avro, Parsed::Avro(schema)) => {
            let json = super::avro::decode(schema, &framed.payload)
                .map_err(|e| Undecodable(format!("{name}: {e}")))?;
            let text = serde_json::to_vec(&json).map_err(|err| Undecodable(err.to_string()))?;
            Ok(DecodedPart {
                bytes: Bytes::from(text),
                json: filter.then_some(json),
                schema: Some(name.clone()),
            })
        }
        (Format::Protobuf, Parsed::Protobuf(file)) => {
            if registry.is_glue() {
                return Err(Undecodable(format!("{name}: Glue-framed Protobuf is not decoded yet")).into());
            }
            let message = message_at(file, &framed.indexes)
                .ok_or_else(|| Undecodable(format!("{name}: no message at indexes {:?}", framed.indexes)))?;
            let decoded = DynamicMessage::decode(message.clone(), framed.payload.as_slice())
                .map_err(|err| Undecodable(format!("{name}: not a {}: {err}", message.full_name())))?;
            Ok(protobuf_part(&decoded, filter, name.clone())?)
        }
        (Format::JsonSchema, Parsed::Json(validator)) => {
            let json: serde_json::Value = serde_json::from_slice(&framed.payload)
                .map_err(|err| Undecodable(format!("{name}: not JSON: {err}")))?;
            if let Err(err) = validator.validate(&json) {
                return Err(Undecodable(format!("{name}: does not match its schema: {err}")).into());
            }
            // Delivered as the producer wrote it: no number or key order changes.
            let bytes = Bytes::from(framed.payload);
            Ok(DecodedPart { bytes, json: filter.then_some(json), schema: Some(name.clone()) })
        }
        (format, parsed) => Err(Undecodable(format!(
            "{name} is a {} schema, but this route decodes {}",
            parsed.kind(),
            format.name()
        ))
        .into()),
    }
}

/// The message at Confluent message indexes: the file's messages, then nested ones.
fn message_at(file: &prost_reflect::FileDescriptor, indexes: &[usize]) -> Option<MessageDescriptor> {
    let (first, rest) = indexes.split_first()?;
    let mut message = file.messages().nth(*first)?;
    for index in rest {
        let child = message.child_messages().nth(*index)?;
        message = child;
    }
    Some(message)
}
