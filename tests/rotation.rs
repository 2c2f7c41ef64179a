//! Key rotation: `additional_keys` are trusted beside the primary key, each bound to its own
//! algorithms and `kid`, and a token never reaches a key that its algorithm or `kid` rules out.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use synapse_token_auth::{RejectReason as R, Verifier};

const OLD_SECRET: &str = "old-test-secret-0123456789abcdef0123456789abcdef0123456789abcdef";
const STRANGER: &str = "stranger-secret-0123456789abcdef0123456789abcdef0123456789abcdef";

/// The name of the key that accepted the token, or the rejection reason.
fn accepted_by(v: &Verifier, token: &str) -> Result<String, R> {
    v.verify(token, "alice", SERVER, NOW)
        .map(|verdict| verdict.key.to_string())
        .map_err(|r| r.reason)
}

fn with_kid(alg: Algorithm, kid: Option<&str>, key: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    sign_with_header(header, key, &claims())
}

fn problems(config: Value) -> String {
    try_verifier(config)
        .map(|_| ())
        .expect_err("invalid config")
        .to_string()
}

#[test]
fn rotation_accepts_old_and_new_secret_and_names_the_key() {
    let v = verifier(json!({ "additional_keys": [{ "secret": OLD_SECRET }] }));
    assert_eq!(accepted_by(&v, &hs512(&claims())).as_deref(), Ok("primary"));
    assert_eq!(
        accepted_by(&v, &sign(Algorithm::HS512, OLD_SECRET, &claims())).as_deref(),
        Ok("additional_keys[0]")
    );
    assert_eq!(
        accepted_by(&v, &sign(Algorithm::HS512, STRANGER, &claims())),
        Err(R::BadSignature)
    );
    // Each key keeps its own algorithms: HS256 is allowed for none of them.
    assert_eq!(
        accepted_by(&v, &sign(Algorithm::HS256, OLD_SECRET, &claims())),
        Err(R::AlgorithmNotAllowed)
    );
}

#[test]
fn rotation_kid_selects_exactly_one_key() {
    let v = verifier(json!({
        "keyfile": key_path("rsa.pub"), "algorithm": "RS256", "key_id": "2026",
        "additional_keys": [
            { "keyfile": key_path("rsa-other.pub"), "algorithm": "RS256", "key_id": "2025" },
        ],
    }));
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::RS256, Some("2026"), "rsa.key")).as_deref(),
        Ok("primary")
    );
    assert_eq!(
        accepted_by(
            &v,
            &with_kid(Algorithm::RS256, Some("2025"), "rsa-other.key")
        )
        .as_deref(),
        Ok("additional_keys[0]")
    );
    // Signed by the old key but naming the new one: only the named key is tried.
    assert_eq!(
        accepted_by(
            &v,
            &with_kid(Algorithm::RS256, Some("2026"), "rsa-other.key")
        ),
        Err(R::BadSignature)
    );
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::RS256, Some("2024"), "rsa.key")),
        Err(R::UnknownKeyId)
    );
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::RS256, None, "rsa.key")),
        Err(R::UnknownKeyId),
        "every key has a key_id, so a token without kid matches none"
    );
}

#[test]
fn rotation_between_key_types_allows_no_algorithm_confusion() {
    // An HMAC secret now, an RSA key from the identity provider beside it.
    let v = verifier(json!({
        "additional_keys": [
            { "keyfile": key_path("rsa.pub"), "algorithm": "RS256", "key_id": "idp" },
        ],
    }));
    assert_eq!(accepted_by(&v, &hs512(&claims())).as_deref(), Ok("primary"));
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::RS256, Some("idp"), "rsa.key")).as_deref(),
        Ok("additional_keys[0]")
    );
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::RS256, None, "rsa.key")),
        Err(R::UnknownKeyId),
        "the RSA key is bound to its kid"
    );
    // HS512 keyed with the RSA public PEM and naming the RSA key: that key verifies RS256 only,
    // and the kid rules out the HMAC secret.
    let public_pem = String::from_utf8(key_pem("rsa.pub")).expect("pem");
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::HS512, Some("idp"), &public_pem)),
        Err(R::UnknownKeyId)
    );
    // A kid that names no key falls back to the keys without key_id, as with one key.
    assert_eq!(
        accepted_by(&v, &with_kid(Algorithm::HS512, Some("other"), SECRET)).as_deref(),
        Ok("primary")
    );
}

#[test]
fn rotation_config_errors_name_the_entry_and_key() {
    let text = problems(json!({ "additional_keys": { "secret": OLD_SECRET } }));
    assert!(
        text.contains("`additional_keys`: expected a list"),
        "{text}"
    );

    let text = problems(json!({ "additional_keys": [
        { "secret": OLD_SECRET },
        { "secret": "short" },
        { "keyfile": key_path("rsa.pub") },
        "not a mapping",
        { "secret": OLD_SECRET, "secret_file": "/x", "colour": "red" },
        {},
    ] }));
    for expected in [
        "`additional_keys[1].secret`: ",
        "`additional_keys[2].keyfile`: ",
        "`additional_keys[3]`: expected a mapping",
        "`additional_keys[4].secret_file`: only one key source",
        "`additional_keys[4].colour`: unknown key",
        "`additional_keys[5].secret`: no key configured",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(
        !text.contains("short") && !text.contains(OLD_SECRET),
        "secret echoed: {text}"
    );

    let text = problems(json!({ "jwt": {
        "secret": SECRET, "key_id": "a",
        "additional_keys": [{ "secret": OLD_SECRET, "key_id": "a" }],
    } }));
    assert!(
        text.contains(
            "`jwt.additional_keys[0].key_id`: `a` is already the `key_id` of the primary key"
        ),
        "{text}"
    );

    let many: Vec<Value> = (0..9).map(|_| json!({ "secret": OLD_SECRET })).collect();
    let text = problems(json!({ "additional_keys": many }));
    assert!(text.contains("more than the maximum of 8"), "{text}");
}

#[test]
fn rotation_effective_config_lists_additional_keys_redacted() {
    let v = verifier(json!({
        "additional_keys": [
            { "secret": OLD_SECRET },
            { "keyfile": key_path("rsa.pub"), "algorithm": ["RS256", "PS256"], "key_id": "idp" },
        ],
    }));
    let shown = v.config().redacted();
    assert_eq!(
        shown["secret"],
        format!("<redacted: {} bytes>", SECRET.len())
    );
    assert_eq!(
        shown["additional_keys"][0]["secret"],
        format!("<redacted: {} bytes>", OLD_SECRET.len())
    );
    assert_eq!(shown["additional_keys"][0]["algorithm"], json!(["HS512"]));
    assert_eq!(
        shown["additional_keys"][1]["algorithm"],
        json!(["RS256", "PS256"])
    );
    assert_eq!(shown["additional_keys"][1]["key_id"], "idp");
    assert!(!shown.to_string().contains(OLD_SECRET));
}
