//! `regex` rules: compiled once at start-up by a linear-time engine, with a size limit.
//!
//! The original compiles Python `re` patterns, which backtrack: `(a+)+$` against a long run of
//! `a`s takes exponential time there. Here the `regex` crate guarantees time linear in the claim's
//! length; the price is that look-around and backreferences are configuration errors.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::{parse::Arg, path::problem};
use crate::config::{Problem, kind as kind_of};

/// Upper bound, in bytes, on a compiled regex (`RegexBuilder::size_limit`): a pattern such as
/// `(?:a{1000}){1000}` is a configuration error instead of a large allocation per process.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled `regex` rule. Two patterns are equal when their source and mode are.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    full_match: bool,
    /// For `full_match`, the source wrapped as `\A(?:…)\z`, so that the whole string has to
    /// match (Python's `fullmatch`) and not merely the leftmost match found first.
    regex: Regex,
}

impl Pattern {
    /// The pattern as configured.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `true`: the whole string must match; `false`: a match anywhere is enough.
    #[must_use]
    pub fn full_match(&self) -> bool {
        self.full_match
    }

    pub(super) fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.full_match == other.full_match
    }
}

pub(super) fn pattern(
    source: (&Value, String),
    full: Arg<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Pattern> {
    let (value, at) = source;
    let full_match = match full {
        None => true,
        Some((Value::Bool(b), _)) => *b,
        Some((other, at)) => {
            // Stricter than the original, which takes any Python truth value here and reads
            // `null` as a partial match although the default is a full one.
            problems.push(problem(
                &at,
                format!("expected true or false, found {}", kind_of(other)),
            ));
            return None;
        }
    };
    let Value::String(source) = value else {
        problems.push(problem(
            &at,
            format!("expected a regex (a string), found {}", kind_of(value)),
        ));
        return None;
    };
    // Compiled on its own first, so that a source such as `a)|(b` cannot escape the wrapping.
    let compile = |text: &str| {
        RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|err| regex_problem(&at, &err))
    };
    let checked = compile(source).map_err(|p| problems.push(p)).ok()?;
    let regex = if full_match {
        compile(&format!(r"\A(?:{source})\z"))
            .map_err(|p| problems.push(p))
            .ok()?
    } else {
        checked
    };
    Some(Pattern {
        source: source.clone(),
        full_match,
        regex,
    })
}

fn regex_problem(at: &str, err: &regex::Error) -> Problem {
    match err {
        regex::Error::CompiledTooBig(limit) => problem(
            at,
            format!("the regex is too large once compiled (limit {limit} bytes); simplify it"),
        ),
        // The engine's message spans several lines (pattern, caret, reason); keep the reason.
        other => {
            let text = other.to_string();
            let reason = text
                .lines()
                .rev()
                .find_map(|line| line.trim().strip_prefix("error: "))
                .unwrap_or("syntax error");
            problem(
                at,
                format!(
                    "invalid regex: {reason} (this engine runs in linear time: no look-around, no backreferences)"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::claims::Rule;

    fn rule(value: Value) -> Rule {
        Rule::parse(&value, "v").expect("valid")
    }

    fn message(value: Value) -> String {
        let err = Rule::parse(&value, "v").expect_err("rejected");
        assert_eq!(err.len(), 1, "{err:?}");
        err[0].to_string()
    }

    #[test]
    fn regex_full_match_needs_the_whole_string() {
        let full = rule(json!(["regex", "a|ab"]));
        assert!(full.check(&json!("ab")));
        assert!(full.check(&json!("a")));
        assert!(!full.check(&json!("abc")));
        let partial = rule(json!(["regex", "a|ab", false]));
        assert!(partial.check(&json!("xxabxx")));
        assert!(!partial.check(&json!("xyz")));
        assert!(!partial.check(&json!(["a"])));
    }

    #[test]
    fn regex_rejects_what_would_escape_the_anchors() {
        assert!(message(json!(["regex", "a)|(b"])).contains("invalid regex"));
    }

    #[test]
    fn regex_rejects_backtracking_only_syntax_and_huge_patterns() {
        let backref = message(json!(["regex", r"(a)\1"]));
        assert!(
            backref.starts_with("`v[1]`: invalid regex: backreferences"),
            "{backref}"
        );
        let lookahead = message(json!({"type": "regex", "regex": "a(?=b)"}));
        assert!(
            lookahead.starts_with("`v.regex`: invalid regex"),
            "{lookahead}"
        );
        let huge = message(json!(["regex", "(?:a{1000}){1000}"]));
        assert!(huge.contains("too large once compiled"), "{huge}");
        assert!(
            message(json!(["regex", "a", "yes"])).starts_with("`v[2]`: expected true or false")
        );
        assert!(message(json!(["regex", "a", null])).starts_with("`v[2]`"));
        assert!(message(json!(["regex", 5])).starts_with("`v[1]`: expected a regex"));
    }

    #[test]
    fn regex_pathological_pattern_finishes() {
        let claim = json!(format!("{}b", "a".repeat(30)));
        assert!(!rule(json!(["regex", "(a+)+$"])).check(&claim));
        assert!(rule(json!(["regex", "(a+)+$", false])).check(&json!("b a")));
        assert!(!rule(json!(["regex", "(a+)+$", false])).check(&claim));
    }
}
