//! Schema registries (`SIDECAR_SCHEMA_REGISTRY`): a Confluent-compatible one by URL, or the AWS
//! Glue Schema Registry. A record names its schema in its first bytes ([`wire`]); the schema is
//! fetched once, parsed once and cached, so decoding costs no network call per record.
//!
//! A registry that answers "no such schema" makes the record undecodable (that answer is kept
//! for five minutes); one that does not answer (network, 5xx, throttling, credentials) is an
//! outage: the caller retries and says so on `/ready`, and nothing is dead-lettered for it.

pub mod confluent;
pub mod glue;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use wire::SchemaRef;

/// How long a "no such schema" answer is believed.
const MISSING_FOR: Duration = Duration::from_secs(300);

/// Schemas kept at most. Beyond it, answers of "no such schema" go first: records naming
/// random ids cannot grow the cache without end.
const CACHE_ENTRIES: usize = 4096;

/// The most one Avro string, bytes, array or map in a record may announce.
const AVRO_MAX_ALLOCATION: usize = 16 * 1024 * 1024;

/// A schema ready to decode with.
pub enum Parsed {
    /// An Avro schema.
    Avro(apache_avro::Schema),
    /// A Protobuf file (Confluent: the message indexes pick the message).
    Protobuf(prost_reflect::FileDescriptor),
    /// A JSON Schema.
    Json(Box<jsonschema::Validator>),
}

impl Parsed {
    /// Its kind, as formats are named.
    pub fn kind(&self) -> &'static str {
        match self {
            Parsed::Avro(_) => "avro",
            Parsed::Protobuf(_) => "protobuf",
            Parsed::Json(_) => "json-schema",
        }
    }
}

/// What the registry holds for one schema reference.
pub struct Entry {
    /// The schema, or why there is none to use (not registered, does not parse).
    pub parsed: Result<Parsed, String>,
    /// `confluent:<id>`, `glue:<registry>/<schema>@<version-id>`.
    pub name: Arc<str>,
    /// When it was fetched.
    fetched: Instant,
}

/// The registry did not answer: retry later.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Which registry.
enum Kind {
    Confluent(confluent::Confluent),
    Glue(glue::Glue),
}

/// A registry client with its schema cache.
pub struct Registry {
    kind: Kind,
    cache: RwLock<HashMap<SchemaRef, Arc<Entry>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registry").field(&self.describe()).finish()
    }
}

impl Registry {
    /// `glue`, or the URL of a Confluent-compatible registry (basic auth in its user info).
    pub fn new(text: &str) -> Result<Registry, String> {
        let kind = match text.trim() {
            "glue" => Kind::Glue(glue::Glue::new()),
            url => Kind::Confluent(confluent::Confluent::new(url)?),
        };
        // Avro lengths in a record are read before the bytes they announce: bound what a
        // hostile length can make the decoder allocate (the library's default is 512 MiB).
        apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION);
        Ok(Registry { kind, cache: RwLock::default() })
    }

    /// `glue`, or the URL without its user info.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Glue(_) => "glue".into(),
            Kind::Confluent(c) => c.describe(),
        }
    }

    /// Whether this is the Glue registry.
    pub fn is_glue(&self) -> bool {
        matches!(self.kind, Kind::Glue(_))
    }

    /// Splits a record's bytes by this registry's framing.
    pub fn frame(&self, bytes: &[u8], protobuf: bool) -> Result<wire::Framed, String> {
        match self.kind {
            Kind::Glue(_) => wire::glue(bytes),
            Kind::Confluent(_) => wire::confluent(bytes, protobuf),
        }
    }

    /// The cached entry for `schema`, if fresh.
    pub fn cached(&self, schema: SchemaRef) -> Option<Arc<Entry>> {
        let cache = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(&schema).filter(|e| e.parsed.is_ok() || e.fetched.elapsed() < MISSING_FOR).cloned()
    }

    /// Fetches `schema` into the cache.
    pub async fn fetch(&self, schema: SchemaRef) -> Result<(), Unreachable> {
        let (parsed, name) = match (&self.kind, schema) {
            (Kind::Confluent(c), SchemaRef::Confluent(id)) => c.fetch(id).await?,
            (Kind::Glue(g), SchemaRef::Glue(id)) => g.fetch(id).await?,
            _ => (Err("a schema reference of another registry".to_string()), Arc::from("?")),
        };
        let entry = Arc::new(Entry { parsed, name, fetched: Instant::now() });
        let mut cache = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, e| e.parsed.is_ok());
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(schema, entry);
        Ok(())
    }
}

/// Parses a schema's text of `kind` (`AVRO`, `PROTOBUF`, `JSON`).
pub fn parse(kind: &str, text: &str) -> Result<Parsed, String> {
    match kind {
        "AVRO" => {
            let schema =
                apache_avro::Schema::parse_str(text).map_err(|e| format!("not an Avro schema: {e}"))?;
            // A type that contains itself lets a few bytes nest as deep as they like: the decoder
            // recurses once per level, and a stack overflow cannot be caught.
            if recursive(&schema, &mut Vec::new()) {
                return Err("a recursive Avro schema (a type that contains itself) is not decoded".into());
            }
            Ok(Parsed::Avro(schema))
        }
        "JSON" => {
            let schema: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("not a JSON Schema: {e}"))?;
            jsonschema::validator_for(&schema)
                .map(|v| Parsed::Json(Box::new(v)))
                .map_err(|e| format!("not a JSON Schema: {e}"))
        }
        "PROTOBUF" => proto_file(text).map(Parsed::Protobuf),
        other => Err(format!("schema type {other:?} is not one the sidecar decodes")),
    }
}

/// Whether an Avro schema refers to a named type inside that type's own definition.
fn recursive(schema: &apache_avro::Schema, path: &mut Vec<String>) -> bool {
    use apache_avro::Schema;
    match schema {
        Schema::Record(record) => {
            let name = record.name.fullname(None);
            if path.contains(&name) {
                return true;
            }
            path.push(name);
            let found = record.fields.iter().any(|field| recursive(&field.schema, path));
            path.pop();
            found
        }
        Schema::Array(array) => recursive(&array.items, path),
        Schema::Map(map) => recursive(&map.types, path),
        Schema::Union(union) => union.variants().iter().any(|variant| recursive(variant, path)),
        Schema::Ref { name } => path.contains(&name.fullname(None)),
        _ => false,
    }
}

/// A Protobuf schema: `.proto` text (what registries answer by default), or a base64
/// FileDescriptorProto (what serializers register, and `format=serialized` answers). Imports of
/// Google's well-known types resolve; others are references, which are refused before this.
fn proto_file(text: &str) -> Result<prost_reflect::FileDescriptor, String> {
    use base64::Engine as _;
    use prost::Message as _;
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text.trim())
        && let Ok(file) = prost_types::FileDescriptorProto::decode(bytes.as_slice())
    {
        let name = file.name().to_string();
        let mut pool = prost_reflect::DescriptorPool::global();
        pool.add_file_descriptor_proto(file).map_err(|e| format!("not a usable FileDescriptorProto: {e}"))?;
        return pool.get_file_by_name(&name).ok_or_else(|| "the FileDescriptorProto holds no file".into());
    }
    proto_text(text)
}

/// Compiles a `.proto` schema's text.
fn proto_text(text: &str) -> Result<prost_reflect::FileDescriptor, String> {
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
    const NAME: &str = "schema.proto";
    struct Source(String);
    impl FileResolver for Source {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            if name == NAME {
                File::from_source(name, &self.0)
            } else {
                Err(protox::Error::file_not_found(name))
            }
        }
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Source(text.to_string()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(NAME).map_err(|e| format!("not a .proto schema: {e}"))?;
    compiler
        .descriptor_pool()
        .get_file_by_name(NAME)
        .ok_or_else(|| "the .proto schema compiled to nothing".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode::{DecodeError, Decoder, Format};

    #[test]
    fn json_schema_records_are_delivered_byte_for_byte_and_unknown_ids_wait_for_a_fetch() {
        let registry = Arc::new(Registry::new("http://127.0.0.1:9/").expect("valid"));
        let decoder = Decoder::Registry { registry: registry.clone(), format: Format::JsonSchema };
        // Framed with schema id 7: not cached yet, so the record asks for it.
        let payload = br#"{"b": 1, "a": 123456789012345678901234567890, "c": 1.10}"#;
        let mut framed = vec![0, 0, 0, 0, 7];
        framed.extend_from_slice(payload);
        let bytes = bytes::Bytes::from(framed);
        assert!(matches!(
            decoder.decode(&bytes, false),
            Err(DecodeError::NeedsSchema(_, wire::SchemaRef::Confluent(7)))
        ));
        let parsed = parse("JSON", r#"{"type": "object", "required": ["b"]}"#);
        let entry = Arc::new(Entry { parsed, name: Arc::from("confluent:7"), fetched: Instant::now() });
        registry.cache.write().expect("lock").insert(wire::SchemaRef::Confluent(7), entry);
        let part = decoder.decode(&bytes, true).expect("decodes");
        assert_eq!(part.bytes.as_ref(), payload, "as the producer wrote it: big numbers, key order, 1.10");
        assert!(part.json.is_some(), "the filter's view");
        let mut invalid = vec![0, 0, 0, 0, 7];
        invalid.extend_from_slice(br#"{"a": 1}"#);
        assert!(matches!(
            decoder.decode(&bytes::Bytes::from(invalid), false),
            Err(DecodeError::Undecodable(_))
        ));
    }

    #[test]
    fn protobuf_schemas_parse_from_proto_text_and_from_a_serialized_descriptor() {
        let text = "syntax = \"proto3\"; package p; import \"google/protobuf/timestamp.proto\";\n\
                    message M { google.protobuf.Timestamp at = 1; message N { int32 x = 1; } }";
        let Ok(Parsed::Protobuf(file)) = parse("PROTOBUF", text) else { panic!("parses") };
        assert_eq!(file.messages().map(|m| m.full_name().to_string()).collect::<Vec<_>>(), ["p.M"]);
        use base64::Engine as _;
        use prost::Message as _;
        let serialized =
            base64::engine::general_purpose::STANDARD.encode(file.file_descriptor_proto().encode_to_vec());
        let Ok(Parsed::Protobuf(again)) = parse("PROTOBUF", &serialized) else { panic!("parses") };
        assert_eq!(again.messages().next().map(|m| m.child_messages().count()), Some(1));
        assert!(parse("PROTOBUF", "message {").is_err());
        assert!(parse("AVRO", "{\"type\": \"nope\"}").is_err());
        assert!(parse("JSON", "{\"type\": \"object\"}").is_ok());
        assert!(parse("XML", "<a/>").is_err());
        let cyclic = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
        assert!(parse("AVRO", cyclic).is_err_and(|e| e.contains("recursive")));
        // The same named type twice, not inside itself, is fine.
        let reused = r#"{"type":"record","name":"P","fields":[
            {"name":"a","type":{"type":"record","name":"Q","fields":[{"name":"x","type":"int"}]}},
            {"name":"b","type":"Q"}]}"#;
        assert!(matches!(parse("AVRO", reused), Ok(Parsed::Avro(_))));
    }
}
