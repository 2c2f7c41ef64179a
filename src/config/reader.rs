//! Typed access to a configuration mapping that records a problem for every wrong value.

use serde_json::{Map, Value};

use super::Problem;

/// Typed access to a JSON map that records a problem for every wrong value.
pub(crate) struct Reader<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) prefix: &'a str,
    pub(crate) problems: &'a mut Vec<Problem>,
}

impl Reader<'_> {
    pub(crate) fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            key: format!("{}{key}", self.prefix),
            message: message.into(),
        });
    }

    pub(crate) fn string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => {
                self.problem(key, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    pub(crate) fn non_empty_string(&mut self, key: &str) -> Option<String> {
        let value = self.string(key)?;
        if value.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(value)
    }

    pub(crate) fn bool(&mut self, key: &str) -> Option<bool> {
        match self.map.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            other => {
                self.problem(
                    key,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub(crate) fn u64(&mut self, key: &str) -> Option<u64> {
        match self.map.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::Null => None,
            other => {
                self.problem(
                    key,
                    format!("expected a whole number of seconds, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A string or a list of strings.
    pub(crate) fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        match self.map.get(key)? {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            self.problem(
                                key,
                                format!("expected a list of strings, found {} in it", kind(other)),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            Value::Null => None,
            other => {
                self.problem(
                    key,
                    format!(
                        "expected a string or a list of strings, found {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }
}

/// Describes a JSON value's type for error messages, without echoing it (it may be a secret).
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
