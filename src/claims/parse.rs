//! Reading rules from configuration, in the original's two forms: a mapping with `type` and named
//! parameters (`{type: in, path: active, validator: {type: equal, value: true}}`) or a list with
//! the type first and the parameters by position (`['in', 'active', ['equal', true]]`).
//!
//! All problems are collected, each naming its place in the configuration: `.name` for a
//! mapping's parameter, `[i]` for a list's element (e.g. `oauth.jwt_validation.validator[2][1]`).

use serde_json::{Map, Value};

use super::{
    MAX_DEPTH,
    kind::{Kind, TYPES, unknown_type},
    path::{ClaimPath, problem},
    pattern::pattern,
    rules::{Rule, python_truthy},
};
use crate::config::{Problem, kind as kind_of};

/// A parameter as given, with its place in the configuration.
pub(super) type Arg<'v> = Option<(&'v Value, String)>;

impl Rule {
    /// Reads a rule from its configuration value; `path` names that value (e.g.
    /// `oauth.jwt_validation.validator`) and prefixes every problem's key.
    ///
    /// Besides the list and mapping forms, the bare string `'exist'` is read as `['exist']`, as
    /// the original's README writes it inside `not` (its code rejects it at start-up).
    ///
    /// # Errors
    /// Every problem found: unknown or missing types and parameters, wrongly typed parameters,
    /// invalid or oversized regexes, empty paths, nesting deeper than [`MAX_DEPTH`].
    pub fn parse(value: &Value, path: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let rule = rule(value, path, 1, &mut problems);
        match rule {
            Some(rule) if problems.is_empty() => Ok(rule),
            _ => Err(problems),
        }
    }
}

fn rule(value: &Value, at: &str, depth: usize, problems: &mut Vec<Problem>) -> Option<Rule> {
    if depth > MAX_DEPTH {
        // Checked before looking inside, so a hostile nesting cannot exhaust the stack here.
        problems.push(problem(
            at,
            format!("rules nest more than {MAX_DEPTH} levels deep"),
        ));
        return None;
    }
    let (kind, args) = match value {
        Value::String(name) => match Kind::from_name(name) {
            Some(Kind::Exist) => return Some(Rule::Exist),
            Some(_) => {
                problems.push(problem(
                    at,
                    format!("`{name}` needs parameters: write `['{name}', …]` or a mapping with `type: {name}`"),
                ));
                return None;
            }
            None => {
                problems.push(unknown_type(at, name));
                return None;
            }
        },
        Value::Array(items) => list_form(items, at, problems)?,
        Value::Object(map) => mapping_form(map, at, problems)?,
        other => {
            problems.push(problem(
                at,
                format!(
                    "expected a rule (a list or a mapping), found {}",
                    kind_of(other)
                ),
            ));
            return None;
        }
    };
    build(kind, args, depth, problems)
}

fn list_form<'v>(
    items: &'v [Value],
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<(Kind, [Arg<'v>; 2])> {
    let Some((first, rest)) = items.split_first() else {
        problems.push(problem(
            at,
            "an empty list is not a rule; its first element names the type",
        ));
        return None;
    };
    let Value::String(name) = first else {
        problems.push(problem(
            &format!("{at}[0]"),
            format!(
                "expected the rule type (a string), found {}",
                kind_of(first)
            ),
        ));
        return None;
    };
    let Some(kind) = Kind::from_name(name) else {
        problems.push(unknown_type(&format!("{at}[0]"), name));
        return None;
    };
    let (names, required) = kind.params();
    if rest.len() > names.len() || rest.len() < required {
        let wanted = if names.len() == required {
            format!("{required}")
        } else {
            format!("{required} to {}", names.len())
        };
        problems.push(problem(
            at,
            format!(
                "`{name}` takes {wanted} parameter(s) after its type ({}), found {}",
                names.join(", "),
                rest.len()
            ),
        ));
        return None;
    }
    let mut args: [Arg<'v>; 2] = [None, None];
    for (i, value) in rest.iter().enumerate() {
        args[i] = Some((value, format!("{at}[{}]", i + 1)));
    }
    Some((kind, args))
}

fn mapping_form<'v>(
    map: &'v Map<String, Value>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<(Kind, [Arg<'v>; 2])> {
    let (kind, type_name) = match map.get("type") {
        None => {
            problems.push(problem(
                at,
                format!("a rule mapping needs `type` (one of {TYPES})"),
            ));
            return None;
        }
        Some(Value::String(name)) => {
            let Some(kind) = Kind::from_name(name) else {
                problems.push(unknown_type(&format!("{at}.type"), name));
                return None;
            };
            (kind, name)
        }
        Some(other) => {
            problems.push(problem(
                &format!("{at}.type"),
                format!(
                    "expected the rule type (a string), found {}",
                    kind_of(other)
                ),
            ));
            return None;
        }
    };
    let (names, required) = kind.params();
    let mut args: [Arg<'v>; 2] = [None, None];
    let mut ok = true;
    for (key, value) in map.iter().filter(|(key, _)| *key != "type") {
        if let Some(i) = names.iter().position(|name| name == key) {
            args[i] = Some((value, format!("{at}.{key}")));
        } else {
            let expected = if names.is_empty() {
                "it takes none".to_owned()
            } else {
                format!("expected {}", names.join(", "))
            };
            // Recorded, and the known parameters still read, so that all problems show at once.
            problems.push(problem(
                &format!("{at}.{key}"),
                format!("unknown parameter for a `{type_name}` rule; {expected}"),
            ));
        }
    }
    for name in &names[..required] {
        if !map.contains_key(*name) {
            problems.push(problem(at, format!("a `{type_name}` rule needs `{name}`")));
            ok = false;
        }
    }
    ok.then_some((kind, args))
}

fn build(
    kind: Kind,
    args: [Arg<'_>; 2],
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Rule> {
    let [first, second] = args;
    let inner = |arg: Arg<'_>, problems: &mut Vec<Problem>| {
        let (value, at) = arg?;
        rule(value, &at, depth + 1, problems).map(Box::new)
    };
    match kind {
        Kind::Exist => Some(Rule::Exist),
        Kind::Not => inner(first, problems).map(Rule::Not),
        Kind::ListAnyOf => inner(first, problems).map(Rule::ListAnyOf),
        Kind::ListAllOf => inner(first, problems).map(Rule::ListAllOf),
        Kind::Equal => {
            let (value, at) = first?;
            if exceeds_depth(value, MAX_DEPTH) {
                problems.push(problem(
                    &at,
                    format!("the value nests more than {MAX_DEPTH} levels deep"),
                ));
                return None;
            }
            Some(Rule::Equal(value.clone()))
        }
        Kind::Regex => pattern(first?, second, problems).map(Rule::Regex),
        Kind::AnyOf | Kind::AllOf => {
            let (value, at) = first?;
            let Value::Array(items) = value else {
                problems.push(problem(
                    &at,
                    format!("expected a list of rules, found {}", kind_of(value)),
                ));
                return None;
            };
            let rules: Vec<Option<Rule>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| rule(item, &format!("{at}[{i}]"), depth + 1, problems))
                .collect();
            let rules: Vec<Rule> = rules.into_iter().collect::<Option<_>>()?;
            Some(if kind == Kind::AnyOf {
                Rule::AnyOf(rules)
            } else {
                Rule::AllOf(rules)
            })
        }
        Kind::In => {
            let (value, at) = first?;
            let path = ClaimPath::parse(value, &at).map_err(|mut more| problems.append(&mut more));
            // `null` means "no inner rule" as in the original, where it is Python's None.
            let second = second.filter(|(value, _)| !value.is_null());
            let rule_at = second.as_ref().map(|(_, at)| at.clone());
            let inner = match second {
                Some(arg) => Some(inner(Some(arg), problems)?),
                None => None,
            };
            if let (Some(Rule::Equal(constant)), Some(rule_at)) = (inner.as_deref(), rule_at)
                && !python_truthy(constant)
            {
                problems.push(problem(
                    &rule_at,
                    "can never pass: `in` treats a null, false, zero or empty value as missing \
                     (as the original module does); test for its absence with `not` instead",
                ));
                return None;
            }
            Some(Rule::In {
                path: path.ok()?,
                rule: inner,
            })
        }
    }
}

/// Whether `value` nests arrays/objects more than `limit` levels, found without recursion.
fn exceeds_depth(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 0_usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth >= limit {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(value: &Value) -> Vec<(String, String)> {
        Rule::parse(value, "v")
            .expect_err("rejected")
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    fn keys(value: &Value) -> Vec<String> {
        problems(value).into_iter().map(|(key, _)| key).collect()
    }

    #[test]
    fn parse_accepts_both_forms_as_the_same_rule() {
        let mapping =
            json!({"type": "in", "path": "active", "validator": {"type": "equal", "value": true}});
        let list = json!(["in", "active", ["equal", true]]);
        assert_eq!(
            Rule::parse(&mapping, "v").expect("valid"),
            Rule::parse(&list, "v").expect("valid")
        );
        let bare = json!({"type": "not", "validator": "exist"});
        assert_eq!(
            Rule::parse(&bare, "v").expect("valid"),
            Rule::Not(Box::new(Rule::Exist))
        );
    }

    #[test]
    fn parse_accepts_null_inner_rule_of_in_as_absent() {
        let rule = Rule::parse(&json!(["in", "a", null]), "v").expect("valid");
        assert!(matches!(rule, Rule::In { rule: None, .. }));
        let rule = Rule::parse(&json!({"type": "in", "path": "a", "validator": null}), "v");
        assert!(matches!(rule, Ok(Rule::In { rule: None, .. })));
    }

    #[test]
    fn parse_rejects_unknown_types_and_keys_naming_their_place() {
        assert_eq!(keys(&json!(["nope"])), ["v[0]"]);
        assert_eq!(keys(&json!({"type": "nope"})), ["v.type"]);
        assert_eq!(keys(&json!({"type": 3})), ["v.type"]);
        assert_eq!(keys(&json!({"validator": ["exist"]})), ["v"]);
        assert_eq!(keys(&json!({"type": "exist", "value": 1})), ["v.value"]);
        assert_eq!(keys(&json!({"type": "not"})), ["v"]);
        assert_eq!(keys(&json!([])), ["v"]);
        assert_eq!(keys(&json!([3])), ["v[0]"]);
        assert_eq!(keys(&json!("not")), ["v"]);
        assert_eq!(keys(&json!(7)), ["v"]);
        assert!(Rule::parse(&json!(["matches_regex", "a"]), "v").is_ok());
    }

    #[test]
    fn parse_rejects_wrong_arity_in_list_form() {
        assert_eq!(keys(&json!(["exist", 1])), ["v"]);
        assert_eq!(keys(&json!(["not"])), ["v"]);
        assert_eq!(keys(&json!(["regex", "a", true, 1])), ["v"]);
        assert_eq!(keys(&json!(["any_of", ["exist"], ["exist"]])), ["v"]);
        let (_, message) = &problems(&json!(["in"]))[0];
        assert!(message.contains("1 to 2 parameter(s)"), "{message}");
    }

    #[test]
    fn parse_collects_every_problem_with_nested_paths() {
        let rule = json!(["all_of", [["exist"], ["in", "", ["bogus"]], {"type": "list_any_of", "validator": ["equal"]}]]);
        assert_eq!(
            keys(&rule),
            ["v[1][1][1]", "v[1][1][2][0]", "v[1][2].validator"]
        );
        let in_config = Rule::parse(
            &json!(["in", "x", ["not", ["in", ["a", 1]]]]),
            "oauth.jwt_validation.validator",
        );
        let err = in_config.expect_err("rejected");
        assert_eq!(err[0].key, "oauth.jwt_validation.validator[2][1][1][1]");
    }

    #[test]
    fn parse_rejects_in_equal_to_a_value_in_never_passes() {
        for constant in [json!(false), json!(0), json!(""), json!([]), json!({})] {
            assert_eq!(keys(&json!(["in", "a", ["equal", constant]])), ["v[2]"]);
        }
        assert!(Rule::parse(&json!(["in", "a", ["equal", "x"]]), "v").is_ok());
    }

    #[test]
    fn parse_bounds_rule_and_constant_depth() {
        let mut deep = json!(["exist"]);
        for _ in 0..MAX_DEPTH - 1 {
            deep = json!(["not", deep]);
        }
        assert!(Rule::parse(&deep, "v").is_ok());
        let deeper = json!(["not", deep]);
        let (_, message) = &problems(&deeper)[0];
        assert!(message.contains("more than 32 levels"), "{message}");

        let mut value = json!(1);
        for _ in 0..MAX_DEPTH {
            value = json!([value]);
        }
        assert!(Rule::parse(&json!(["equal", value.clone()]), "v").is_ok());
        assert_eq!(keys(&json!(["equal", [value]])), ["v[1]"]);
    }
}
