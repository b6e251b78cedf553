//! Record rules as configured: `SIDECAR_VALUE_FORMAT`, `SIDECAR_KEY_FORMAT`,
//! `SIDECAR_PROTOBUF_DESCRIPTOR` / `SIDECAR_PROTOBUF_MESSAGE`, `SIDECAR_FILTER` and
//! `SIDECAR_MAX_RECORD_AGE`, and the same per route (`value_format`, `key_format`,
//! `protobuf_message`, `filter`, `max_record_age`). Everything that can be checked before a
//! record arrives is checked here (the filter compiles, the descriptor holds the message), so
//! a mistake exits 64 naming the variable instead of dead-lettering a whole topic.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::validate::Reader;
use super::{keys, parse};
use crate::codec::Rules;
use crate::codec::decode::{Decoder, Format};
use crate::codec::filter::Filter;
use crate::codec::registry::Registry;

/// Where schemas come from: the descriptor file `protobuf` reads without a registry, and the
/// registry `avro`, `json-schema` and framed `protobuf` records name their schemas in.
#[derive(Clone, Debug, Default)]
pub struct Schemas {
    /// `SIDECAR_SCHEMA_REGISTRY`.
    pub registry: Option<Arc<Registry>>,
    /// `SIDECAR_PROTOBUF_DESCRIPTOR`.
    pub descriptor: Option<PathBuf>,
    /// `SIDECAR_PROTOBUF_MESSAGE`.
    pub message: Option<String>,
}

/// The decoder of `format`, with `message` of the descriptor for Protobuf.
pub(super) fn decoder(
    format: Format,
    protobuf: &Schemas,
    message: Option<&str>,
) -> Result<Option<Arc<Decoder>>, String> {
    match format {
        Format::Raw => Ok(None),
        Format::Json => Ok(Some(Arc::new(Decoder::Json))),
        Format::Protobuf => {
            match (&protobuf.descriptor, message.or(protobuf.message.as_deref()), &protobuf.registry) {
                (Some(path), Some(message), _) => Decoder::protobuf(path, message).map(|d| Some(Arc::new(d))),
                (None, None, Some(registry)) => {
                    Ok(Some(Arc::new(Decoder::Registry { registry: registry.clone(), format })))
                }
                _ => Err(format!(
                    "protobuf needs {} and {} (the message type of its records), or {} (records framed by a registry)",
                    keys::SIDECAR_PROTOBUF_DESCRIPTOR,
                    keys::SIDECAR_PROTOBUF_MESSAGE,
                    keys::SIDECAR_SCHEMA_REGISTRY
                )),
            }
        }
        Format::Avro | Format::JsonSchema => match &protobuf.registry {
            Some(registry) => Ok(Some(Arc::new(Decoder::Registry { registry: registry.clone(), format }))),
            None => Err(format!(
                "{} records carry their schema's id: set {} (glue, or a Confluent-compatible registry's URL)",
                format.name(),
                keys::SIDECAR_SCHEMA_REGISTRY
            )),
        },
    }
}

/// A compiled filter.
pub(super) fn filter(text: &str) -> Result<Arc<Filter>, String> {
    Filter::compile(text).map(Arc::new).map_err(|err| err.to_string())
}

/// A maximum record age.
pub(super) fn max_age(text: &str) -> Result<Duration, String> {
    parse::positive_duration(text)
}

impl Reader<'_> {
    /// The top-level rules and the descriptor settings routes share; `None` when one is
    /// invalid (the problem is recorded).
    pub(super) fn rules(&mut self) -> Option<(Rules, Schemas)> {
        let registry = match self.raw.get(keys::SIDECAR_SCHEMA_REGISTRY) {
            Some(_) => Some(self.parse(keys::SIDECAR_SCHEMA_REGISTRY, |t| Registry::new(t).map(Arc::new))?),
            None => None,
        };
        let protobuf = Schemas {
            registry,
            descriptor: self.raw.get(keys::SIDECAR_PROTOBUF_DESCRIPTOR).map(|v| PathBuf::from(v.text.trim())),
            message: self.raw.get(keys::SIDECAR_PROTOBUF_MESSAGE).map(|v| v.text.trim().to_string()),
        };
        if protobuf.message.is_some() && protobuf.descriptor.is_none() {
            self.problem(
                keys::SIDECAR_PROTOBUF_MESSAGE,
                format!("needs {} (a FileDescriptorSet file)", keys::SIDECAR_PROTOBUF_DESCRIPTOR),
            );
        }
        let mut ok = true;
        let mut decoder_of = |reader: &mut Self, name: &str| -> Option<Arc<Decoder>> {
            let format = reader.parse(name, Format::parse)?;
            match decoder(format, &protobuf, None) {
                Ok(decoder) => decoder,
                Err(message) => {
                    if let Some(value) = reader.raw.get(name).cloned() {
                        reader.problem_with_value(name, &value, message);
                    }
                    ok = false;
                    None
                }
            }
        };
        let value = decoder_of(self, keys::SIDECAR_VALUE_FORMAT);
        let key = decoder_of(self, keys::SIDECAR_KEY_FORMAT);
        let filter = match self.raw.get(keys::SIDECAR_FILTER) {
            Some(_) => Some(self.parse(keys::SIDECAR_FILTER, filter)?),
            None => None,
        };
        let max_age = match self.raw.get(keys::SIDECAR_MAX_RECORD_AGE) {
            Some(_) => Some(self.parse(keys::SIDECAR_MAX_RECORD_AGE, max_age)?),
            None => None,
        };
        ok.then_some((Rules { value, key, filter, max_age }, protobuf))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use prost::Message as _;

    use crate::codec::decode::Decoder;
    use crate::config::Config;

    fn env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        [
            ("KAFKA_BROKERS", "localhost:9092"),
            ("KAFKA_TOPICS", "orders,payments"),
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("KAFKA_AUTH", "none"),
            ("SIDECAR_DELIVERY_URL", "http://127.0.0.1:8080/events"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn problems(env: &BTreeMap<String, String>, routes: Option<&str>) -> String {
        let file = routes.map(|text| (Path::new("routes.toml"), text));
        Config::from_sources(env, file).expect_err("refused").to_string()
    }

    fn descriptor(dir: &Path) -> String {
        std::fs::write(
            dir.join("m.proto"),
            "syntax = \"proto3\"; package t; message A { string x = 1; } message B { int64 y = 1; }",
        )
        .expect("write");
        let set = protox::compile(["m.proto"], [dir]).expect("compiles");
        let path = dir.join("m.pb");
        std::fs::write(&path, set.encode_to_vec()).expect("write");
        path.display().to_string()
    }

    #[test]
    fn a_filter_that_cannot_work_is_refused_naming_the_variable() {
        let text = problems(&env(&[("SIDECAR_FILTER", "record.value.amount >")]), None);
        assert!(text.contains("SIDECAR_FILTER") && text.contains("is not a CEL expression"), "{text}");
        let text = problems(&env(&[("SIDECAR_FILTER", "recrod.value.amount > 1")]), None);
        assert!(text.contains("SIDECAR_FILTER") && text.contains("`recrod`"), "{text}");
    }

    #[test]
    fn protobuf_needs_a_descriptor_that_holds_the_message() {
        let text = problems(&env(&[("SIDECAR_VALUE_FORMAT", "protobuf")]), None);
        assert!(
            text.contains("SIDECAR_VALUE_FORMAT") && text.contains("SIDECAR_PROTOBUF_DESCRIPTOR"),
            "{text}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = descriptor(dir.path());
        let wrong = env(&[
            ("SIDECAR_VALUE_FORMAT", "protobuf"),
            ("SIDECAR_PROTOBUF_DESCRIPTOR", &path),
            ("SIDECAR_PROTOBUF_MESSAGE", "t.C"),
        ]);
        let text = problems(&wrong, None);
        assert!(text.contains("has no message \"t.C\"") && text.contains("t.A, t.B"), "{text}");
        let missing = env(&[
            ("SIDECAR_VALUE_FORMAT", "protobuf"),
            ("SIDECAR_PROTOBUF_DESCRIPTOR", "/nonexistent/set.pb"),
            ("SIDECAR_PROTOBUF_MESSAGE", "t.A"),
        ]);
        assert!(problems(&missing, None).contains("cannot read /nonexistent/set.pb"));
        let text = problems(&env(&[("SIDECAR_VALUE_FORMAT", "avro")]), None);
        assert!(text.contains("SIDECAR_SCHEMA_REGISTRY"), "{text}");
        let text = problems(&env(&[("SIDECAR_VALUE_FORMAT", "xml")]), None);
        assert!(text.contains("expected raw, json, protobuf, avro or json-schema"), "{text}");
    }

    #[test]
    fn a_route_brings_its_own_rules_and_inherits_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = descriptor(dir.path());
        let base = env(&[
            ("SIDECAR_VALUE_FORMAT", "json"),
            ("SIDECAR_FILTER", "record.value.ok == true"),
            ("SIDECAR_MAX_RECORD_AGE", "1h"),
            ("SIDECAR_PROTOBUF_DESCRIPTOR", &path),
        ]);
        let routes = "[[routes]]\ntopic = \"payments\"\nvalue_format = \"protobuf\"\nprotobuf_message = \"t.B\"\nfilter = \"\"\nmax_record_age = \"none\"\n";
        let config = Config::from_sources(&base, Some((Path::new("routes.toml"), routes))).expect("valid");
        let route = &config.routes[0];
        assert!(
            matches!(route.rules.value.as_deref(), Some(Decoder::Protobuf { message, .. }) if message.full_name() == "t.B")
        );
        assert!(route.rules.filter.is_none() && route.rules.max_age.is_none(), "turned off");
        let default = config.default_route();
        assert!(matches!(default.rules.value.as_deref(), Some(Decoder::Json)));
        assert_eq!(default.rules.filter.as_ref().map(|f| f.text()), Some("record.value.ok == true"));
        let shown = config.effective_routes().join("\n");
        assert!(
            shown.contains("protobuf_message = \"t.B\"") && shown.contains("max_record_age = \"none\""),
            "{shown}"
        );
        let effective: BTreeMap<String, String> = config.effective().into_iter().collect();
        assert_eq!(effective["SIDECAR_FILTER"], "record.value.ok == true");
        assert_eq!(effective["SIDECAR_MAX_RECORD_AGE"], "1h");

        let bad = "[[routes]]\ntopic = \"payments\"\nfilter = \"record.(\"\nprotobuf_message = \"t.B\"\n";
        let text = problems(&base, Some(bad));
        assert!(text.contains("routes[0].filter") && text.contains("routes[0].protobuf_message"), "{text}");
    }
}
