//! Reading published key sets: which keys of a JWK Set are used, which are set aside and why,
//! and which sets are refused. Key material comes from the committed PEM fixtures.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use synapse_token_auth::keys::jwks::{IgnoredWhy, JwksError, KeySet, MAX_JWKS_BYTES, MAX_KEYS};

fn with(mut jwk: Value, extra: Value) -> Value {
    jwk.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    jwk
}

fn parse(keys: Vec<Value>, algorithms: &[Algorithm]) -> Result<KeySet, JwksError> {
    let doc = json!({ "keys": keys }).to_string();
    KeySet::parse(doc.as_bytes(), algorithms).map(|(set, _)| set)
}

const ALL_ASYMMETRIC: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

#[test]
fn jwks_keeps_signature_keys_and_sets_the_others_aside_with_a_reason() {
    let keys = vec![
        rsa_jwk("rsa.pub", "rsa"),
        p256_jwk("ec"),
        ed25519_jwk("ed"),
        json!({ "kty": "oct", "kid": "secret", "k": "c2VjcmV0" }),
        with(rsa_jwk("rsa.pub", "enc"), json!({ "use": "enc" })),
        with(rsa_jwk("rsa.pub", "ops"), json!({ "key_ops": ["encrypt"] })),
        rsa_jwk("rsa-1024.pub", "short"),
        with(rsa_jwk("rsa.pub", "oaep"), json!({ "alg": "RSA-OAEP" })),
        json!({ "kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA" }),
        json!({ "kty": "XYZ", "kid": "alien" }),
    ];
    let doc = json!({ "keys": keys }).to_string();
    let (set, ignored) = KeySet::parse(doc.as_bytes(), ALL_ASYMMETRIC).expect("set");
    let kids: Vec<_> = set.keys().iter().filter_map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, ["rsa", "ec", "ed"]);
    let why = |kid: &str| {
        ignored
            .iter()
            .find(|i| i.kid.as_deref() == Some(kid))
            .map(|i| i.why.clone())
            .unwrap_or_else(|| panic!("{kid} not ignored"))
    };
    assert_eq!(why("secret"), IgnoredWhy::Symmetric);
    assert_eq!(why("enc"), IgnoredWhy::NotForSigning);
    assert_eq!(why("ops"), IgnoredWhy::NotForSigning);
    assert!(matches!(why("short"), IgnoredWhy::Unusable(d) if d.contains("2048")));
    assert!(matches!(why("oaep"), IgnoredWhy::Unsupported(_)));
    assert!(matches!(why("p521"), IgnoredWhy::Unsupported(_)));
    assert!(matches!(why("alien"), IgnoredWhy::Unsupported(_)));
    assert_eq!(ignored.len(), 7);
}

#[test]
fn jwks_binds_each_key_to_its_own_alg_and_the_configured_ones() {
    let keys = vec![
        with(rsa_jwk("rsa.pub", "ps"), json!({ "alg": "PS256" })),
        rsa_jwk("rsa.pub", "any"),
        ed25519_jwk("ed"),
    ];
    let set = parse(keys, &[Algorithm::RS256, Algorithm::PS256]).expect("set");
    let candidates = |alg, kid| -> Vec<String> {
        set.candidates(alg, kid)
            .filter_map(|k| k.kid.clone())
            .collect()
    };
    // The JWK's `alg` limits the key; the configured list limits every key.
    assert_eq!(candidates(Algorithm::RS256, None), ["any"]);
    assert_eq!(candidates(Algorithm::PS256, None), ["ps", "any"]);
    assert_eq!(
        candidates(Algorithm::RS256, Some("ps")),
        Vec::<String>::new()
    );
    assert_eq!(candidates(Algorithm::PS256, Some("ps")), ["ps"]);
    // EdDSA is not configured: the Ed25519 key is set aside, and never a candidate.
    assert!(!set.has_kid("ed"));
    assert_eq!(
        candidates(Algorithm::EdDSA, Some("ed")),
        Vec::<String>::new()
    );
}

#[test]
fn jwks_tries_few_keys_for_a_token_without_kid() {
    let keys = (0..10).map(|i| ed25519_jwk(&format!("k{i}"))).collect();
    let set = parse(keys, &[Algorithm::EdDSA]).expect("set");
    assert_eq!(set.candidates(Algorithm::EdDSA, None).count(), 4);
    assert_eq!(set.candidates(Algorithm::EdDSA, Some("k9")).count(), 1);
}

#[test]
fn jwks_refuses_documents_that_are_not_usable_sets() {
    let parse_raw = |bytes: &[u8]| KeySet::parse(bytes, ALL_ASYMMETRIC).map(drop);
    assert!(matches!(parse_raw(b"<html>"), Err(JwksError::NotJson(_))));
    assert_eq!(parse_raw(b"[]"), Err(JwksError::NotASet));
    assert_eq!(parse_raw(br#"{"keys": {}}"#), Err(JwksError::NotASet));
    assert_eq!(parse_raw(br#"{"kty": "RSA"}"#), Err(JwksError::NotASet));
    assert_eq!(
        parse_raw(br#"{"keys": []}"#),
        Err(JwksError::NoUsableKey { ignored: 0 })
    );
    assert_eq!(
        parse(
            vec![
                json!({ "kty": "oct", "k": "c2VjcmV0" }),
                with(ed25519_jwk("e"), json!({ "use": "enc" }))
            ],
            ALL_ASYMMETRIC
        )
        .map(drop),
        Err(JwksError::NoUsableKey { ignored: 2 })
    );
    let many = (0..=MAX_KEYS)
        .map(|i| ed25519_jwk(&i.to_string()))
        .collect();
    assert_eq!(
        parse(many, ALL_ASYMMETRIC).map(drop),
        Err(JwksError::TooManyKeys(MAX_KEYS + 1))
    );
    let mut large = br#"{"keys": [], "padding": ""#.to_vec();
    large.resize(MAX_JWKS_BYTES + 1, b'a');
    assert_eq!(parse_raw(&large), Err(JwksError::TooLarge));
}
