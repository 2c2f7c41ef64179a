//! Wycheproof JSON Web Signature vectors (tests/fixtures/wycheproof): every compact-serialised case
//! must get the vector's verdict from the verifier's signature stage.
//!
//! Four vectors are deliberately answered more strictly than the vector's "valid" (see
//! [`STRICTER`]); the test pins them so that any other disagreement fails.
//!
//! Two "invalid" vectors (367, 370) are byte-for-byte the same token as the "valid" vector 357
//! with the same key in this copy of the file; no verifier can honour both, so they are counted, not judged.
//!
//! The only other cases not run are those whose key is of a kind the verifier does not support at all
//! (P-521 / ES512); the test counts them and fails if anything else is left out.

mod common;

use jsonwebtoken::{Algorithm, jwk::Jwk};
use serde::Deserialize;
use serde_json::{Value, json};
use synapse_token_auth::{Verifier, keys::VerificationKey};

#[derive(Deserialize)]
struct File {
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    comment: String,
    #[serde(default)]
    public: Option<Value>,
    #[serde(default)]
    private: Option<Value>,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    comment: String,
    jws: Value,
    result: String,
}

/// Vectors marked valid that the verifier refuses on purpose, with the reason.
const STRICTER: &[(u32, &str)] = &[
    // The JWK says `"alg": "PS256"` but the token is PS384: the key is bound to its algorithm.
    (346, "token algorithm differs from the key's alg"),
    (350, "token algorithm differs from the key's alg"),
    // A `?` inside a base64url segment: only canonical base64url is accepted.
    (372, "non-base64url character in the header"),
    (373, "non-base64url character in the payload"),
];

fn verifier_for(jwk_json: &Value) -> Option<Verifier> {
    let jwk: Jwk = serde_json::from_value(jwk_json.clone()).ok()?;
    let key = VerificationKey::from_jwk(&jwk).ok()?;
    let alg: Algorithm = jwk_json.get("alg")?.as_str()?.parse().ok()?;
    let mut config = common::verifier(json!({ "allow_weak_secret": true }))
        .config()
        .clone();
    let primary = &mut config.keys[0];
    primary.key = key;
    primary.algorithms = vec![alg];
    Some(Verifier::new(config))
}

#[test]
fn wycheproof_jws_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wycheproof/json_web_signature_test.json"
    );
    let file: File =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json");
    let (mut ran, mut unsupported, mut contradictory, mut failures) =
        (0, 0, Vec::new(), Vec::new());
    for group in &file.groups {
        // HMAC groups only have the (symmetric) private key; the others verify with the public one.
        let Some(jwk) = group.public.as_ref().or(group.private.as_ref()) else {
            panic!("group {} has no key", group.comment);
        };
        if jwk.get("crv").and_then(Value::as_str) == Some("P-521") {
            unsupported += group.tests.len();
            continue;
        }
        let verifier = verifier_for(jwk);
        // Same key, same token: a "valid" and an "invalid" verdict cannot both be honoured.
        let valid_tokens: Vec<&Value> = group
            .tests
            .iter()
            .filter(|c| c.result == "valid")
            .map(|c| &c.jws)
            .collect();
        for case in &group.tests {
            let Value::String(token) = &case.jws else {
                panic!(
                    "tc {}: JSON serialisation in the compact-only file",
                    case.id
                );
            };
            if case.result == "invalid" && valid_tokens.contains(&&case.jws) {
                contradictory.push(case.id);
                continue;
            }
            ran += 1;
            let accepted = verifier
                .as_ref()
                .is_some_and(|v| v.verify_signature(token).is_ok());
            let expected = case.result == "valid" && !STRICTER.iter().any(|(id, _)| *id == case.id);
            if accepted != expected {
                failures.push(format!(
                    "tc {} ({} / {}): expected {}, got {}",
                    case.id,
                    group.comment,
                    case.comment,
                    case.result,
                    if accepted { "accepted" } else { "rejected" }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} vectors disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ran > 380, "only {ran} vectors ran");
    assert_eq!(
        unsupported, 2,
        "only the two P-521 (ES512) vectors may be skipped"
    );
    assert_eq!(
        contradictory,
        [367, 370],
        "vectors that repeat a valid token"
    );
    println!(
        "{ran} Wycheproof JWS vectors agree ({} of them refused more strictly than the vector); \
         {unsupported} ES512 vectors not applicable; {} contradict vector 357",
        STRICTER.len(),
        contradictory.len()
    );
}
