//! Any bytes as a claim rule: if they are JSON, parsing either yields a rule or problems that
//! each name a place under the given key, and checking the rule never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use synapse_token_auth::claims::Rule;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let rule = match Rule::parse(&value, "validator") {
        Ok(rule) => rule,
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(problems.iter().all(|p| p.key.starts_with("validator")));
            return;
        }
    };
    let claims = json!({
        "active": true,
        "sub": "alice",
        "scope": "openid profile",
        "aud": ["synapse", "other"],
        "exp": 1_900_000_000,
        "ratio": 0.5,
        "empty": "",
        "zero": 0,
        "none": null,
        "roles": [{"name": "admin"}, {"name": "user", "level": 3}],
        "realm_access": {"roles": ["a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"]},
    });
    let _ = rule.check(&claims);
    // Also against parts of it, as `in` and the list rules hand them to inner rules.
    for part in claims.as_object().into_iter().flat_map(|map| map.values()) {
        let _ = rule.check(part);
    }
    // A rule and its double negation agree.
    let twice = Rule::Not(Box::new(Rule::Not(Box::new(rule.clone()))));
    assert_eq!(twice.check(&claims), rule.check(&claims));
});
