//! Claim paths: where in a claim set (a JWT payload or an introspection answer) a value lives.
//!
//! A [`ClaimPath`] is the original module's `Path`: a string (one top-level key) or a list of
//! strings (keys into nested objects). A [`PathList`] is its `PathList` (used by `admin_path`):
//! a `Path`, or a list of `Path`s tried in order, the first one that finds a value winning.
//!
//! Lookup follows the original's `get_path_in_dict` (0.13.1 and later): only objects are
//! descended into (no list indices: the original has none), a path that meets a non-object or a
//! missing key finds nothing and the next path is tried, and a JSON `null` counts as "not found".

use serde_json::Value;

use crate::config::{Problem, kind};

/// A path into nested JSON objects: never empty, no empty key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    keys: Vec<String>,
}

impl ClaimPath {
    /// Reads a path from configuration: a string, or a list of strings.
    ///
    /// Stricter than the original: an empty path, an empty key and a non-string key are errors.
    /// The original returns the whole claim set for `[]` outside `in`, looks up the key `""`,
    /// and fails at login time (Python `TypeError`) on a list where a key should be.
    ///
    /// # Errors
    /// Every problem found, each naming `key` (or `key[i]` for a list element).
    pub fn parse(value: &Value, key: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let path = match value {
            Value::String(s) => one_key(s, key, &mut problems).map(|k| vec![k]),
            Value::Array(items) if items.is_empty() => {
                problems.push(problem(key, "a path needs at least one key"));
                None
            }
            Value::Array(items) => {
                let keys: Vec<Option<String>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = format!("{key}[{i}]");
                        match item {
                            Value::String(s) => one_key(s, &at, &mut problems),
                            other => {
                                problems.push(problem(
                                    &at,
                                    format!("a path key must be a string, found {}", kind(other)),
                                ));
                                None
                            }
                        }
                    })
                    .collect();
                keys.into_iter().collect()
            }
            other => {
                problems.push(problem(
                    key,
                    format!(
                        "expected a path (a string or a list of strings), found {}",
                        kind(other)
                    ),
                ));
                None
            }
        };
        match path {
            Some(keys) if problems.is_empty() => Ok(Self { keys }),
            _ => Err(problems),
        }
    }

    /// The keys, outermost first.
    #[must_use]
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The value at this path, or `None` when a key is missing, a step is not an object, or the
    /// value found is `null` (the original cannot tell a `null` claim from a missing one).
    #[must_use]
    pub fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        let mut at = claims;
        for key in &self.keys {
            at = at.as_object()?.get(key)?;
        }
        (!at.is_null()).then_some(at)
    }
}

/// One or more [`ClaimPath`]s tried in order (the original's `PathList`, for `admin_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathList {
    paths: Vec<ClaimPath>,
}

impl PathList {
    /// Reads a path list: a string, a list of strings (one path), or a list of lists of strings.
    ///
    /// Stricter than the original: a list that mixes strings and lists is an error (the original
    /// decides by the first element alone and then walks a string's characters as keys), and so
    /// is an empty list of paths.
    ///
    /// # Errors
    /// Every problem found, each naming its place under `key`.
    pub fn parse(value: &Value, key: &str) -> Result<Self, Vec<Problem>> {
        let Value::Array(items) = value else {
            return ClaimPath::parse(value, key).map(|path| Self { paths: vec![path] });
        };
        let lists = items.iter().filter(|item| item.is_array()).count();
        if lists == 0 {
            return ClaimPath::parse(value, key).map(|path| Self { paths: vec![path] });
        }
        if lists != items.len() {
            return Err(vec![problem(
                key,
                "expected a path (a list of strings) or a list of paths (a list of lists \
                 of strings), found a list mixing strings and lists",
            )]);
        }
        let mut problems = Vec::new();
        let mut paths = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match ClaimPath::parse(item, &format!("{key}[{i}]")) {
                Ok(path) => paths.push(path),
                Err(mut more) => problems.append(&mut more),
            }
        }
        if problems.is_empty() {
            Ok(Self { paths })
        } else {
            Err(problems)
        }
    }

    /// The paths, in the order they are tried.
    #[must_use]
    pub fn paths(&self) -> &[ClaimPath] {
        &self.paths
    }

    /// The value at the first path that finds one (see [`ClaimPath::lookup`]).
    #[must_use]
    pub fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.paths.iter().find_map(|path| path.lookup(claims))
    }
}

fn one_key(s: &str, at: &str, problems: &mut Vec<Problem>) -> Option<String> {
    if s.is_empty() {
        problems.push(problem(at, "a path key must not be empty"));
        return None;
    }
    Some(s.to_owned())
}

pub(super) fn problem(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        key: key.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn path_accepts_string_and_list_forms() {
        let claims = json!({"foo": 3, "a": {"b": {"c": "deep"}}});
        let one = ClaimPath::parse(&json!("foo"), "p").expect("valid");
        assert_eq!(one.lookup(&claims), Some(&json!(3)));
        let one_list = ClaimPath::parse(&json!(["foo"]), "p").expect("valid");
        assert_eq!(one, one_list);
        let nested = ClaimPath::parse(&json!(["a", "b", "c"]), "p").expect("valid");
        assert_eq!(nested.lookup(&claims), Some(&json!("deep")));
    }

    #[test]
    fn path_finds_nothing_through_non_objects_missing_keys_and_null() {
        let claims = json!({"list": [{"x": 1}], "s": "str", "n": null, "o": {"n": null}});
        for path in [
            json!(["list", "0", "x"]),
            json!(["s", "len"]),
            json!("missing"),
            json!("n"),
            json!(["o", "n"]),
            json!(["o", "n", "deeper"]),
        ] {
            let parsed = ClaimPath::parse(&path, "p").expect("valid");
            assert_eq!(parsed.lookup(&claims), None, "{path}");
        }
        let parsed = ClaimPath::parse(&json!("x"), "p").expect("valid");
        assert_eq!(parsed.lookup(&json!([1, 2])), None);
    }

    #[test]
    fn path_rejects_empty_and_non_string_keys_naming_each() {
        let err = ClaimPath::parse(&json!(["a", 3, "", ["b"]]), "oauth.localpart_path");
        let err = err.expect_err("rejected");
        assert_eq!(
            keys(&err),
            [
                "oauth.localpart_path[1]",
                "oauth.localpart_path[2]",
                "oauth.localpart_path[3]"
            ]
        );
        assert_eq!(
            keys(&ClaimPath::parse(&json!([]), "p").expect_err("rejected")),
            ["p"]
        );
        assert_eq!(
            keys(&ClaimPath::parse(&json!(""), "p").expect_err("rejected")),
            ["p"]
        );
        let err = ClaimPath::parse(&json!({"a": 1}), "p").expect_err("rejected");
        assert!(err[0].message.contains("found a mapping"), "{err:?}");
    }

    #[test]
    fn path_list_tries_each_path_in_order() {
        // The original README's PathList example.
        let list = PathList::parse(&json!([["a", "b"], ["c", "d"]]), "admin_path").expect("valid");
        assert_eq!(
            list.lookup(&json!({"a": {"e": 1}, "c": {"d": 2}})),
            Some(&json!(2))
        );
        // The 0.13.1 fix: a path failing half-way does not end the search.
        assert_eq!(
            list.lookup(&json!({"a": 5, "c": {"d": false}})),
            Some(&json!(false))
        );
        assert_eq!(list.lookup(&json!({"a": {"b": null}, "c": {}})), None);
        let single = PathList::parse(&json!(["a", "b"]), "admin_path").expect("valid");
        assert_eq!(single.paths().len(), 1);
        assert_eq!(
            PathList::parse(&json!("a"), "x")
                .expect("valid")
                .paths()
                .len(),
            1
        );
    }

    #[test]
    fn path_list_rejects_mixed_and_bad_inner_paths() {
        let err = PathList::parse(&json!([["a"], "b"]), "admin_path").expect_err("rejected");
        assert_eq!(keys(&err), ["admin_path"]);
        let err =
            PathList::parse(&json!([["a"], [], ["b", 1]]), "admin_path").expect_err("rejected");
        assert_eq!(keys(&err), ["admin_path[1]", "admin_path[2][1]"]);
    }
}
