//! Claim rules and claim paths against the original module's documented examples (its
//! `README.md` and `tests/test_validators.py`), in both the mapping and the list form, plus
//! exhaustive small-case properties: `not(not(r))` behaves as `r`, and no rule panics on any
//! claim value.

use serde_json::{Value, json};
use synapse_token_auth::claims::{ClaimPath, PathList, Rule};

fn rule(value: &Value) -> Rule {
    match Rule::parse(value, "validator") {
        Ok(rule) => rule,
        Err(problems) => panic!("{value} did not parse: {problems:?}"),
    }
}

/// Asserts that the mapping and list forms parse to the same rule, and returns it.
fn both(mapping: &Value, list: &Value) -> Rule {
    let (a, b) = (rule(mapping), rule(list));
    assert_eq!(a, b, "{mapping} and {list} differ");
    a
}

fn problem_keys(value: &Value) -> Vec<String> {
    let problems = Rule::parse(value, "oauth.jwt_validation.validator").expect_err("rejected");
    problems.into_iter().map(|p| p.key).collect()
}

// ---- README.md examples, one per rule type ----

#[test]
fn claims_readme_exist() {
    let r = both(&json!({"type": "exist"}), &json!(["exist"]));
    assert!(r.check(&json!(null)) && r.check(&json!({})));
}

#[test]
fn claims_readme_not() {
    let r = both(
        &json!({"type": "not", "validator": "exist"}),
        &json!(["not", "exist"]),
    );
    assert!(!r.check(&json!({"a": 1})));
    let r = rule(&json!(["not", ["in", "foo"]]));
    assert!(!r.check(&json!({"foo": 3})));
    assert!(r.check(&json!({"loo": 3})));
}

#[test]
fn claims_readme_equal() {
    let r = both(&json!({"type": "equal", "value": 3}), &json!(["equal", 3]));
    assert!(r.check(&json!(3)) && r.check(&json!(3.0)));
    assert!(!r.check(&json!(4)) && !r.check(&json!("3")));
    let r = rule(&json!(["equal", {"hi": 3}]));
    assert!(r.check(&json!({"hi": 3})) && !r.check(&json!({"hi": 4})));
}

#[test]
fn claims_readme_regex() {
    let full = both(
        &json!({"type": "regex", "regex": "hello."}),
        &json!(["regex", "hello."]),
    );
    assert!(full.check(&json!("hello!")));
    assert!(!full.check(&json!("hello!!")) && !full.check(&json!(5)));
    let partial = both(
        &json!({"type": "regex", "regex": "hello.", "full_match": false}),
        &json!(["regex", "hello.", false]),
    );
    assert!(partial.check(&json!("say hello!!")));
    assert!(!partial.check(&json!("say hello")));
    // tests/test_validators.py
    let txt = "The rain in Spain";
    assert!(rule(&json!(["regex", "The.*Spain"])).check(&json!(txt)));
    assert!(rule(&json!(["regex", "The.*Spain", false])).check(&json!(format!("smth{txt}smth"))));
    assert!(!rule(&json!(["regex", "The.*Spain"])).check(&json!("bad string")));
}

#[test]
fn claims_readme_any_of() {
    // README.md writes `['in', 'bar' ['exist']]`, missing a comma; the intended rule is used.
    let r = both(
        &json!({"type": "any_of", "validators": [["in", "foo", ["equal", 3]], ["in", "bar", ["exist"]]]}),
        &json!([
            "any_of",
            [["in", "foo", ["equal", 3]], ["in", "bar", ["exist"]]]
        ]),
    );
    assert!(r.check(&json!({"foo": 3})) && r.check(&json!({"bar": "x", "foo": 4})));
    assert!(!r.check(&json!({"foo": 4})) && !r.check(&json!([])));
    assert!(!rule(&json!(["any_of", []])).check(&json!({})));
}

#[test]
fn claims_readme_all_of() {
    let r = both(
        &json!({"type": "all_of", "validators": [["exist"], ["in", "foo", ["equal", 3]]]}),
        &json!(["all_of", [["exist"], ["in", "foo", ["equal", 3]]]]),
    );
    assert!(r.check(&json!({"foo": 3})));
    assert!(!r.check(&json!({"foo": 4})) && !r.check(&json!({})));
    assert!(rule(&json!(["all_of", []])).check(&json!([])));
}

#[test]
fn claims_readme_in() {
    let r = both(
        &json!({"type": "in", "path": ["foo", "bar"], "validator": ["equal", 3]}),
        &json!(["in", ["foo", "bar"], ["equal", 3]]),
    );
    assert!(r.check(&json!({"foo": {"bar": 3}})));
    assert!(!r.check(&json!({"foo": {"bar": 4}})) && !r.check(&json!({"foo": 3})));
    assert!(!r.check(&json!([{"foo": {"bar": 3}}])));
    let present = rule(&json!(["in", "foo"]));
    assert!(present.check(&json!({"foo": 3})) && !present.check(&json!({"loo": 3})));
    // As in the original, a present but false, zero, empty or null value fails `in`.
    for falsy in [
        json!(false),
        json!(0),
        json!(""),
        json!([]),
        json!({}),
        json!(null),
    ] {
        assert!(!present.check(&json!({"foo": falsy})), "{falsy}");
    }
}

#[test]
fn claims_readme_list_all_of() {
    let r = both(
        &json!({"type": "list_all_of", "validator": {"type": "regex", "regex": "ab.."}}),
        &json!(["list_all_of", ["regex", "ab.."]]),
    );
    assert!(r.check(&json!(["abcd", "ab12"])) && r.check(&json!([])));
    assert!(!r.check(&json!(["abcd", "abc"])) && !r.check(&json!("abcd")));
    // README.md's mapping example under ListAnyOf says `list_all_of`; read as written.
    let r = rule(&json!({"type": "list_all_of", "validator": {"type": "equal", "value": 3}}));
    assert!(r.check(&json!([3, 3.0])) && !r.check(&json!([3, 4])));
}

#[test]
fn claims_readme_list_any_of() {
    let r = both(
        &json!({"type": "list_any_of", "validator": {"type": "equal", "value": 3}}),
        &json!(["list_any_of", ["equal", 3]]),
    );
    assert!(r.check(&json!([1, 3])));
    assert!(!r.check(&json!([1, 2])) && !r.check(&json!([])) && !r.check(&json!(3)));
    let r = rule(&json!(["list_any_of", ["in", "foo"]]));
    assert!(r.check(&json!([{"foo": 3}, {"loo": 4}])));
}

#[test]
fn claims_readme_introspection_active() {
    let r = both(
        &json!({"type": "in", "path": "active", "validator": {"type": "equal", "value": true}}),
        &json!(["in", "active", ["equal", true]]),
    );
    assert!(r.check(&json!({"active": true, "sub": "alice"})));
    for refused in [
        json!({"active": false}),
        json!({"active": 1}),
        json!({"active": "true"}),
        json!({}),
    ] {
        assert!(!r.check(&refused), "{refused}");
    }
}

#[test]
fn claims_original_tests_full_and_short_forms() {
    // tests/test_validators.py: test_validator_full and test_validator_short.
    let claims = json!({"foo": "hello", "bar": "hi", "baz": {"laz": {"loo": 3, "goo": 4}}});
    let r = both(
        &json!({"type": "all_of", "validators": [
            {"type": "in", "path": "foo", "validator": {"type": "regex", "regex": "hell", "full_match": false}},
            {"type": "in", "path": "bar", "validator": {"type": "equal", "value": "hi"}},
            {"type": "in", "path": ["baz", "laz", "loo"], "validator": {"type": "equal", "value": 3}},
        ]}),
        &json!([
            "all_of",
            [
                ["in", "foo", ["regex", "hell", false]],
                ["in", "bar", ["equal", "hi"]],
                ["in", ["baz", "laz", "loo"], ["equal", 3]],
            ]
        ]),
    );
    assert!(r.check(&claims));
    let mut changed = claims.clone();
    changed["baz"]["laz"]["loo"] = json!(4);
    assert!(!r.check(&changed));
}

// ---- claim paths ----

#[test]
fn claims_readme_paths() {
    for (path, claims) in [
        (json!("foo"), json!({"foo": 3})),
        (json!(["foo"]), json!({"foo": 3})),
        (json!(["foo", "bar"]), json!({"foo": {"bar": 3}})),
    ] {
        let parsed = ClaimPath::parse(&path, "oauth.jwt_validation.localpart_path").expect("valid");
        assert_eq!(parsed.lookup(&claims), Some(&json!(3)));
    }
    let list = PathList::parse(&json!([["a", "b"], ["c", "d"]]), "admin_path").expect("valid");
    assert_eq!(
        list.lookup(&json!({"a": {"e": 1}, "c": {"d": 2}})),
        Some(&json!(2))
    );
    let err = ClaimPath::parse(&json!(["a", 1]), "oauth.jwt_validation.email_path")
        .expect_err("rejected");
    assert_eq!(err[0].key, "oauth.jwt_validation.email_path[1]");
}

// ---- malformed rules name their place ----

#[test]
fn claims_malformed_rules_name_their_path() {
    assert_eq!(
        problem_keys(&json!(["in", "x", ["not", ["regex", "(a"]]])),
        ["oauth.jwt_validation.validator[2][1][1]"]
    );
    assert_eq!(
        problem_keys(
            &json!({"type": "all_of", "validators": [["exist"], {"type": "in"}, ["equal", 1, 2]]})
        ),
        [
            "oauth.jwt_validation.validator.validators[1]",
            "oauth.jwt_validation.validator.validators[2]"
        ]
    );
    assert_eq!(
        problem_keys(
            &json!({"type": "list_any_of", "validator": {"type": "in", "path": [], "extra": 1}})
        ),
        [
            "oauth.jwt_validation.validator.validator.extra",
            "oauth.jwt_validation.validator.validator.path"
        ]
    );
    assert_eq!(
        problem_keys(&json!(["any_of", "exist"])),
        ["oauth.jwt_validation.validator[1]"]
    );
    assert_eq!(
        problem_keys(&json!(["in", ["a", ""]])),
        ["oauth.jwt_validation.validator[1][1]"]
    );
}

#[test]
fn claims_pathological_regex_finishes() {
    let r = rule(&json!(["in", "name", ["regex", "(a+)+$", false]]));
    let claims = json!({"name": format!("{}b", "a".repeat(30))});
    // Printed (see `--nocapture`), not asserted: a time limit would make the test flaky.
    let started = std::time::Instant::now();
    assert!(!r.check(&claims));
    eprintln!("(a+)+$ against 30 a's and a b: {:?}", started.elapsed());
    let long = json!({"name": format!("{}b", "a".repeat(100_000))});
    assert!(!r.check(&long));
}

// ---- exhaustive small cases ----

fn leaf_rules() -> Vec<Value> {
    vec![
        json!(["exist"]),
        json!(["equal", 3]),
        json!(["equal", "a"]),
        json!(["equal", true]),
        json!(["list_any_of", ["equal", null]]),
        json!(["equal", {"b": 3}]),
        json!(["regex", "a.*"]),
        json!(["regex", "b", false]),
        json!(["in", "a"]),
        json!(["in", ["a", "b"], ["equal", 3]]),
        json!(["list_any_of", ["equal", 3]]),
        json!(["list_all_of", ["in", "a"]]),
        json!(["any_of", []]),
        json!(["all_of", []]),
    ]
}

fn rules() -> Vec<Value> {
    let leaves = leaf_rules();
    let mut out = leaves.clone();
    for a in &leaves {
        out.push(json!(["not", a]));
        out.push(json!(["in", "a", a]));
        out.push(json!(["list_any_of", a]));
        out.push(json!(["list_all_of", a]));
        for b in leaves.iter().take(6) {
            out.push(json!(["any_of", [a, b]]));
            out.push(json!(["all_of", [a, b]]));
        }
    }
    out
}

fn claim_values() -> Vec<Value> {
    let atoms = vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(3),
        json!(3.0),
        json!(-1.5),
        json!(""),
        json!("a"),
        json!("ab"),
        json!("b"),
        json!([]),
        json!({}),
    ];
    let mut level = atoms.clone();
    let mut all = atoms;
    for _ in 0..2 {
        let mut next = Vec::new();
        for v in &level {
            next.push(json!([v]));
            next.push(json!([3, v]));
            next.push(json!({"a": v}));
            next.push(json!({"b": v}));
            next.push(json!({"a": {"b": v}}));
        }
        all.extend(next.iter().cloned());
        level = next;
    }
    all
}

#[test]
fn claims_double_not_is_identity_and_not_inverts() {
    let values = claim_values();
    let mut checked = 0;
    for r in rules() {
        let plain = rule(&r);
        let not = rule(&json!(["not", r]));
        let not_not = rule(&json!({"type": "not", "validator": {"type": "not", "validator": r}}));
        for v in &values {
            let expected = plain.check(v);
            assert_eq!(not_not.check(v), expected, "not(not({r})) on {v}");
            assert_eq!(not.check(v), !expected, "not({r}) on {v}");
            checked += 1;
        }
    }
    assert!(checked > 90_000, "{checked}");
}

#[test]
fn claims_rules_never_panic_on_deep_or_odd_claims() {
    // serde_json refuses to parse deeper than 128 levels, so claims are at most this deep.
    let deep_list: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(120), "]".repeat(120))).expect("valid");
    let deep_map: Value =
        serde_json::from_str(&format!("{}1{}", r#"{"a":"#.repeat(120), "}".repeat(120)))
            .expect("valid");
    let odd = [
        deep_list,
        deep_map,
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!("\u{0}\u{10FFFF}"),
    ];
    for r in rules() {
        let r = rule(&r);
        for v in &odd {
            let _ = r.check(v);
        }
    }
}
