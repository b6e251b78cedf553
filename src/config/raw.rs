//! Raw configuration values: where each variable came from and its text.
//!
//! Every setting has one canonical name, the environment variable in `DESIGN.md`
//! (`KAFKA_BROKERS`, `SIDECAR_MAX_IN_FLIGHT`, ...). The TOML file uses the same names, in
//! any case (`kafka_brokers = "..."`), plus a `[librdkafka]` table with librdkafka's own
//! dotted keys. This module merges the file and the environment (the environment wins) into
//! one map of text values so that a single parser validates both and every error names the
//! variable it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::keys::{self, LIBRDKAFKA_PREFIX};

/// Where a raw value was read from, so that an error can say where to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The process environment.
    Env,
    /// The `--config` TOML file.
    File(PathBuf),
    /// The documented default (the value was not set).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env => f.write_str("environment"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One raw value with its origin.
#[derive(Clone, Debug)]
pub struct RawValue {
    /// The value as text (TOML lists are joined with commas).
    pub text: String,
    /// Where the value came from.
    pub origin: Origin,
}

/// Merged raw settings keyed by canonical variable name.
#[derive(Clone, Debug, Default)]
pub struct RawSettings {
    /// Canonical variable name → value.
    values: BTreeMap<String, RawValue>,
    /// `[[routes]]` tables of the file, in order, with the file they came from.
    pub routes: Vec<(toml::Table, PathBuf)>,
}

/// A problem found while reading the raw sources (before typed parsing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawProblem {
    /// The variable or file key the problem is about.
    pub variable: String,
    /// What is wrong, one line.
    pub message: String,
}

impl RawSettings {
    /// The value of a variable, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.values.get(name).filter(|v| !v.text.trim().is_empty())
    }

    /// All `SIDECAR_LIBRDKAFKA_*` values, by variable name.
    pub fn librdkafka(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.values.iter().filter(|(k, _)| k.starts_with(LIBRDKAFKA_PREFIX)).map(|(k, v)| (k.as_str(), v))
    }

    fn insert(&mut self, name: String, text: String, origin: Origin) {
        self.values.insert(name, RawValue { text, origin });
    }

    /// Builds the raw settings from the environment map and an optional parsed TOML file.
    ///
    /// Only known variables are kept from the environment (it holds much else); unknown
    /// `SIDECAR_*` variables are reported because they are almost always typos.
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        file: Option<(&Path, &str)>,
    ) -> (Self, Vec<RawProblem>) {
        let mut settings = RawSettings::default();
        let mut problems = Vec::new();
        if let Some((path, text)) = file {
            settings.merge_toml(path, text, &mut problems);
        }
        for (name, value) in env {
            if keys::is_known(name) || name.starts_with(LIBRDKAFKA_PREFIX) {
                settings.insert(name.clone(), value.clone(), Origin::Env);
            } else if name.starts_with("SIDECAR_") {
                problems.push(RawProblem {
                    variable: name.clone(),
                    // The value is not shown: a mistyped name may well hold a secret.
                    message: "unknown variable; see the README for the list".to_string(),
                });
            }
        }
        (settings, problems)
    }

    fn merge_toml(&mut self, path: &Path, text: &str, problems: &mut Vec<RawProblem>) {
        let origin = Origin::File(path.to_path_buf());
        let table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(err) => {
                problems.push(RawProblem {
                    variable: path.display().to_string(),
                    message: format!("not valid TOML: {}", one_line(&err.to_string())),
                });
                return;
            }
        };
        for (key, value) in table {
            if key.eq_ignore_ascii_case("librdkafka") {
                self.merge_librdkafka_table(path, &value, problems);
                continue;
            }
            if key.eq_ignore_ascii_case("routes") {
                match value {
                    toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                        for item in items {
                            if let toml::Value::Table(table) = item {
                                self.routes.push((table, path.to_path_buf()));
                            }
                        }
                    }
                    _ => problems.push(RawProblem {
                        variable: format!("routes in {}", path.display()),
                        message: "expected [[routes]] tables".to_string(),
                    }),
                }
                continue;
            }
            let name = key.to_ascii_uppercase();
            if !keys::is_known(&name) && !name.starts_with(LIBRDKAFKA_PREFIX) {
                problems.push(RawProblem {
                    variable: format!("{key} in {}", path.display()),
                    message: "unknown key".to_string(),
                });
                continue;
            }
            match toml_scalar_text(&value) {
                Some(text) => self.insert(name, text, origin.clone()),
                None => problems.push(RawProblem {
                    variable: format!("{key} in {}", path.display()),
                    message: format!("expected a string, number, boolean or list, got {}", value.type_str()),
                }),
            }
        }
    }

    fn merge_librdkafka_table(&mut self, path: &Path, value: &toml::Value, problems: &mut Vec<RawProblem>) {
        let Some(table) = value.as_table() else {
            problems.push(RawProblem {
                variable: format!("librdkafka in {}", path.display()),
                message: "expected a table of librdkafka properties".to_string(),
            });
            return;
        };
        for (property, value) in table {
            let name = format!("{LIBRDKAFKA_PREFIX}{}", property.replace('.', "_").to_ascii_uppercase());
            match toml_scalar_text(value) {
                Some(text) => self.insert(name, text, Origin::File(path.to_path_buf())),
                None => problems.push(RawProblem {
                    variable: format!("librdkafka.{property} in {}", path.display()),
                    message: format!("expected a string, number or boolean, got {}", value.type_str()),
                }),
            }
        }
    }
}

/// Renders a TOML scalar (or a list of scalars) as the text an environment variable would hold.
fn toml_scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                other => toml_scalar_text(other),
            })
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// Folds a multi-line message into one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_wins_over_the_file() {
        let file = "kafka_brokers = \"file:9092\"\nKAFKA_TOPICS = [\"a\", \"b\"]\n";
        let (raw, problems) = RawSettings::from_sources(
            &env(&[("KAFKA_BROKERS", "env:9092")]),
            Some((Path::new("c.toml"), file)),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(raw.get("KAFKA_BROKERS").map(|v| v.text.as_str()), Some("env:9092"));
        let topics = raw.get("KAFKA_TOPICS").expect("topics from file");
        assert_eq!(topics.text, "a,b");
        assert_eq!(topics.origin, Origin::File(PathBuf::from("c.toml")));
    }

    #[test]
    fn unknown_file_keys_and_sidecar_variables_are_problems() {
        let (_, problems) = RawSettings::from_sources(
            &env(&[("SIDECAR_MAX_INFLIGHT", "3"), ("KAFKA_HEAP_OPTS", "-Xmx1g"), ("HOME", "/root")]),
            Some((Path::new("c.toml"), "kafka_brokerz = \"x\"\n")),
        );
        let names: Vec<_> = problems.iter().map(|p| p.variable.as_str()).collect();
        assert_eq!(names, vec!["kafka_brokerz in c.toml", "SIDECAR_MAX_INFLIGHT"]);
    }

    #[test]
    fn librdkafka_table_maps_to_prefixed_variables() {
        let file = "[librdkafka]\n\"fetch.min.bytes\" = 1024\n";
        let (raw, problems) = RawSettings::from_sources(&env(&[]), Some((Path::new("c.toml"), file)));
        assert!(problems.is_empty(), "{problems:?}");
        let all: Vec<_> = raw.librdkafka().map(|(k, v)| (k.to_string(), v.text.clone())).collect();
        assert_eq!(all, vec![("SIDECAR_LIBRDKAFKA_FETCH_MIN_BYTES".to_string(), "1024".to_string())]);
    }

    #[test]
    fn invalid_toml_and_nested_values_are_problems() {
        let (_, problems) = RawSettings::from_sources(&env(&[]), Some((Path::new("c.toml"), "x = = 1")));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("not valid TOML"), "{problems:?}");
        let (_, problems) =
            RawSettings::from_sources(&env(&[]), Some((Path::new("c.toml"), "kafka_topics = [[\"a\"]]")));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let (raw, _) = RawSettings::from_sources(&env(&[("KAFKA_BROKERS", "  ")]), None);
        assert!(raw.get("KAFKA_BROKERS").is_none());
    }
}
