//! `SIDECAR_FILTER` (and a route's `filter`): a CEL expression over `record`, the language Dapr
//! and Kubernetes use for the same job. A record for which it is false is finished without
//! delivery; one on which it fails (a missing field, a type mismatch, a result that is not a
//! bool) is dead-lettered as `filter-error`, never dropped and never delivered unfiltered.
//!
//! What `record` holds is the caller's (`crate::prepare` builds it from a record): this module
//! compiles the expression and evaluates it.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};

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

    /// Whether the record passes, given as CEL sees it (`record`).
    pub fn accepts(&self, record: Value) -> Result<bool, FilterError> {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("record", record);
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
pub fn text_or_bytes(bytes: &[u8]) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_that_cannot_work_are_refused_when_compiled() {
        assert!(matches!(Filter::compile("record.value.amount >"), Err(FilterError::Syntax(_))));
        let typo = Filter::compile("recrod.value.amount > 1").expect_err("a typo");
        assert_eq!(typo, FilterError::Variable("`recrod`".into()));
        assert!(Filter::compile("record.value.items.all(item, item.qty > 0)").is_ok());
        assert!(Filter::compile("record.value.items.map(i, i.sku).size() > 0").is_ok());
    }
}
