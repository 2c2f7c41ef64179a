//! The claim-rule language (the original module's "validators") and its evaluation.
//!
//! A [`Rule`] is checked against one JSON value: at the top the whole claim set, below `in`
//! the value at a path, below `list_any_of`/`list_all_of` each list element. Evaluation never
//! fails: a value of the wrong type simply does not pass. Its recursion is bounded by the rule's
//! depth (at most [`super::MAX_DEPTH`], enforced by the parser), and regexes run in linear time.
//! Each rule node looks at each claim value at most once (`in` and the list rules only descend),
//! so a check costs at most the rule's size times the claims' size, plus the `equal` constants.

use serde_json::{Number, Value};

use super::{path::ClaimPath, pattern::Pattern};

/// One rule. Built by [`Rule::parse`] (see `parse.rs`), checked by [`Rule::check`].
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `exist`: always passes.
    Exist,
    /// `not`: passes when the inner rule does not.
    Not(Box<Rule>),
    /// `equal`: the value equals this constant (see [`json_equal`] for what "equal" means).
    Equal(Value),
    /// `regex`: the value is a string and matches.
    Regex(Pattern),
    /// `any_of`: at least one inner rule passes (none given: fails).
    AnyOf(Vec<Rule>),
    /// `all_of`: every inner rule passes (none given: passes).
    AllOf(Vec<Rule>),
    /// `in`: the value is an object and the value at `path` is present, truthy in Python's sense
    /// (see [`python_truthy`]) and passes the inner rule (`None`: `exist`).
    In {
        path: ClaimPath,
        rule: Option<Box<Rule>>,
    },
    /// `list_any_of`: the value is a list and at least one element passes.
    ListAnyOf(Box<Rule>),
    /// `list_all_of`: the value is a list and every element passes (an empty list passes).
    ListAllOf(Box<Rule>),
}

impl Rule {
    /// Whether `value` satisfies this rule.
    #[must_use]
    pub fn check(&self, value: &Value) -> bool {
        match self {
            Self::Exist => true,
            Self::Not(rule) => !rule.check(value),
            Self::Equal(constant) => json_equal(value, constant),
            Self::Regex(pattern) => value.as_str().is_some_and(|s| pattern.is_match(s)),
            Self::AnyOf(rules) => rules.iter().any(|rule| rule.check(value)),
            Self::AllOf(rules) => rules.iter().all(|rule| rule.check(value)),
            Self::In { path, rule } => {
                value.is_object()
                    && path
                        .lookup(value)
                        .filter(|found| python_truthy(found))
                        .is_some_and(|found| rule.as_ref().is_none_or(|rule| rule.check(found)))
            }
            Self::ListAnyOf(rule) => value
                .as_array()
                .is_some_and(|items| items.iter().any(|item| rule.check(item))),
            Self::ListAllOf(rule) => value
                .as_array()
                .is_some_and(|items| items.iter().all(|item| rule.check(item))),
        }
    }
}

/// Python's `claim == constant` for JSON values, except that a boolean never equals a number.
///
/// Like Python: numbers compare by value (`1` equals `1.0`), objects by their keys and values
/// whatever the order, lists element by element. Stricter than Python, where `True == 1`: a
/// claim `1` does not satisfy `['equal', true]`, nor `true` `['equal', 1]`.
///
/// Recursion follows the constant, whose depth the parser bounds, so a deep claim cannot
/// exhaust the stack.
#[must_use]
pub fn json_equal(claim: &Value, constant: &Value) -> bool {
    match (claim, constant) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => number_equal(a, b),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && b.iter()
                    .all(|(key, y)| a.get(key).is_some_and(|x| json_equal(x, y)))
        }
        _ => false,
    }
}

/// Exact numeric equality across serde_json's integer and float representations, as Python
/// compares `int` with `float` (exactly, not by rounding the integer to a float).
fn number_equal(a: &Number, b: &Number) -> bool {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x == y,
        (Some(i), None) => float_is(b.as_f64(), i),
        (None, Some(i)) => float_is(a.as_f64(), i),
        (None, None) => a.as_f64() == b.as_f64(),
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn float_is(f: Option<f64>, i: i128) -> bool {
    // `as` saturates; a float beyond i128 saturates to a value no JSON integer here has.
    f.is_some_and(|f| f.fract() == 0.0 && f as i128 == i)
}

/// Python's truth value of a JSON value: `null`, `false`, zero, `""`, `[]` and `{}` are false.
///
/// The original's `in` tests the found value with Python's `if val`, so a claim that is present
/// but false or empty fails `in` before the inner rule runs. That is kept: a rule such as
/// `['in', 'email_verified']` must keep refusing `"email_verified": false` as it does there.
#[must_use]
pub fn python_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => integer(n).map_or_else(|| n.as_f64() != Some(0.0), |i| i != 0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_accepts_python_equal_values() {
        for (claim, constant) in [
            (json!(3), json!(3)),
            (json!(3), json!(3.0)),
            (json!(-2.0), json!(-2)),
            (json!(u64::MAX), json!(u64::MAX)),
            (json!(0.5), json!(0.5)),
            (
                json!({"b": [1, {"c": null}], "a": "x"}),
                json!({"a": "x", "b": [1.0, {"c": null}]}),
            ),
            (json!(null), json!(null)),
        ] {
            assert!(json_equal(&claim, &constant), "{claim} == {constant}");
        }
    }

    #[test]
    fn equal_rejects_different_values_and_bool_number_mixes() {
        for (claim, constant) in [
            (json!(1), json!(true)),
            (json!(true), json!(1)),
            (json!(0), json!(false)),
            (json!(3), json!(3.5)),
            (
                json!(9_007_199_254_740_993_u64),
                json!(9_007_199_254_740_992.0),
            ),
            (json!("3"), json!(3)),
            (json!({"a": 1}), json!({"a": 1, "b": 2})),
            (json!({"a": 1, "b": 2}), json!({"a": 1})),
            (json!([1, 2]), json!([2, 1])),
            (json!([1]), json!(1)),
        ] {
            assert!(!json_equal(&claim, &constant), "{claim} != {constant}");
        }
    }

    #[test]
    fn truthiness_matches_python() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(-0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!python_truthy(&falsy), "{falsy}");
        }
        for truthy in [
            json!(true),
            json!(-1),
            json!(0.1),
            json!(" "),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(python_truthy(&truthy), "{truthy}");
        }
    }
}
