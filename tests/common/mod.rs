//! Helpers shared by the integration tests: fixture keys, token minting, verifier construction.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use synapse_token_auth::{Document, Origin, Verifier};

/// 64 bytes: long enough for HS512 without `allow_weak_secret`.
pub const SECRET: &str = "test-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef";
/// A fixed "now" so that expiry tests do not depend on the clock.
pub const NOW: u64 = 1_800_000_000;
pub const SERVER: &str = "example.org";

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

pub fn key_pem(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("fixture key")
}

/// A verifier for `config`; `{"secret": SECRET}` is added when no key source is given.
pub fn verifier(config: Value) -> Verifier {
    try_verifier(config).expect("valid test config")
}

pub fn try_verifier(mut config: Value) -> Result<Verifier, synapse_token_auth::ConfigError> {
    let has_key = [
        "secret",
        "secret_file",
        "secret_credential",
        "keyfile",
        "keyfile_credential",
        "jwks_url",
        "jwks_file",
        "oidc_issuer",
    ]
    .iter()
    .any(|k| config.get(k).is_some());
    if !has_key {
        config["secret"] = json!(SECRET);
    }
    let doc = Document::from_value(config, &[], Origin::Other("test".into()))?;
    Ok(Verifier::new(doc.policy))
}

/// Claims of a valid login for `alice`, expiring an hour after [`NOW`].
pub fn claims() -> Value {
    json!({ "sub": "alice", "exp": NOW + 3600 })
}

pub fn encoding_key(alg: Algorithm, key: &str) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(key.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(&key_pem(key)).expect("ec key")
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&key_pem(key)).expect("ed key"),
        _ => EncodingKey::from_rsa_pem(&key_pem(key)).expect("rsa key"),
    }
}

/// Signs `claims` with `alg`; `key` is the secret for HS*, else a fixture file name.
pub fn sign(alg: Algorithm, key: &str, claims: &Value) -> String {
    sign_with_header(Header::new(alg), key, claims)
}

pub fn sign_with_header(header: Header, key: &str, claims: &Value) -> String {
    let alg = header.alg;
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, key)).expect("sign")
}

pub fn hs512(claims: &Value) -> String {
    sign(Algorithm::HS512, SECRET, claims)
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with arbitrary header and payload text and a raw signature: for hostile input.
pub fn raw_token(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(signature)
    )
}

/// A token with any header and payload text, HMAC-SHA-`bits` signed with `secret`: for tokens
/// jsonwebtoken refuses to create (crit headers, non-JSON payloads, algorithm confusion).
pub fn hmac_token(header: &str, payload: &str, bits: u16, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = hmac(bits, secret, message.as_bytes());
    format!("{message}.{}", b64(&signature))
}

/// HMAC-SHA-`bits` over `message`, for forging tokens with chosen bytes as the secret.
pub fn hmac(bits: u16, secret: &[u8], message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let alg = match bits {
        256 => hmac::HMAC_SHA256,
        384 => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    };
    hmac::sign(&hmac::Key::new(alg, secret), message)
        .as_ref()
        .to_vec()
}

fn der(name: &str) -> Vec<u8> {
    pem::parse(key_pem(name)).expect("pem").into_contents()
}

/// The public JWK of an RSA fixture key (SPKI PEM).
pub fn rsa_jwk(name: &str, kid: &str) -> Value {
    let key = aws_lc_rs::rsa::PublicKey::from_der(&der(name)).expect("rsa spki");
    json!({
        "kty": "RSA",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(key.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(key.exponent().big_endian_without_leading_zero()),
    })
}

/// The public JWK of the P-256 fixture key.
pub fn p256_jwk(kid: &str) -> Value {
    let spki = der("p256.pub");
    let point = &spki[spki.len() - 64..];
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[..32]),
        "y": URL_SAFE_NO_PAD.encode(&point[32..]),
    })
}

/// The public JWK of the Ed25519 fixture key.
pub fn ed25519_jwk(kid: &str) -> Value {
    let spki = der("ed25519.pub");
    json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode(&spki[spki.len() - 32..]) })
}

#[cfg(feature = "daemon")]
pub mod daemon;

/// Claims valid at the real current time, for tests against the running daemon.
pub fn live_claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": synapse_token_auth::unix_now() + 3600 })
}
