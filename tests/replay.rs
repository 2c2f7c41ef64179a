//! `single_use_tokens`: the verdict names the token (its replay key) and how long a store must
//! remember it. Whether a key was used before is the store's decision (Synapse's database, see
//! python-shim), so these tests only pin down the keys.

mod common;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use synapse_token_auth::{RejectReason as R, Verdict, Verifier};

fn single_use() -> Verifier {
    verifier(json!({ "single_use_tokens": true }))
}

fn check(v: &Verifier, token: &str) -> Result<Verdict, R> {
    v.verify(token, "alice", SERVER, NOW).map_err(|r| r.reason)
}

#[test]
fn replay_key_is_absent_unless_single_use_tokens() {
    let verdict = check(
        &default_verifier(),
        &hs512(&json!({ "sub": "alice", "exp": NOW + 60, "jti": "a" })),
    )
    .expect("accepted");
    assert_eq!((verdict.replay_key, verdict.replay_until), (None, None));
    // Without single use a `jti` of any shape is ignored, as before.
    check(
        &default_verifier(),
        &hs512(&json!({ "sub": "alice", "exp": NOW + 60, "jti": 7 })),
    )
    .expect("accepted");
}

fn default_verifier() -> Verifier {
    verifier(json!({}))
}

#[test]
fn replay_key_is_the_jti_remembered_until_exp_plus_leeway() {
    let verdict = check(
        &single_use(),
        &hs512(&json!({ "sub": "alice", "exp": NOW + 30, "jti": "id-1" })),
    )
    .expect("accepted");
    assert_eq!(verdict.replay_key.as_deref(), Some("jti:id-1"));
    assert_eq!(verdict.replay_until, Some(NOW + 30 + 60));
    // A fractional `exp` rounds up: never forget a token before it expires.
    let verdict = check(
        &single_use(),
        &hs512(&json!({ "sub": "alice", "exp": NOW as f64 + 0.5, "jti": "x" })),
    )
    .expect("accepted");
    assert_eq!(verdict.replay_until, Some(NOW + 61));
    // Far-future expiry fits a signed 64-bit column.
    let verdict = check(
        &single_use(),
        &hs512(&json!({ "sub": "alice", "exp": 1e300, "jti": "x" })),
    )
    .expect("accepted");
    assert_eq!(verdict.replay_until, Some(i64::MAX as u64));
}

#[test]
fn replay_key_without_jti_is_a_digest_of_the_signed_part() {
    let v = single_use();
    let token = hs512(&claims());
    let first = check(&v, &token)
        .expect("accepted")
        .replay_key
        .expect("key");
    assert!(
        first.starts_with("sig:") && first.len() == 4 + 64,
        "{first}"
    );
    assert_eq!(
        check(&v, &token).expect("again").replay_key,
        Some(first.clone())
    );
    let other = hs512(&json!({ "sub": "alice", "exp": NOW + 3601 }));
    assert_ne!(check(&v, &other).expect("accepted").replay_key, Some(first));
}

/// P-256's group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

#[test]
fn replay_key_survives_the_ecdsa_twin_signature() {
    // (r, n - s) verifies whenever (r, s) does: whoever sees a token can make a second,
    // different-looking one. It must be the same token for replay purposes.
    let v = verifier(json!({
        "algorithm": "ES256", "keyfile": key_path("p256.pub"), "single_use_tokens": true
    }));
    let token = sign(Algorithm::ES256, "p256.key", &claims());
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64");
    let mut twin = signature[..32].to_vec();
    let mut borrow = 0i16;
    let mut s = [0u8; 32];
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(signature[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = (d + 256 * borrow) as u8;
    }
    twin.extend_from_slice(&s);
    let twin = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(twin));
    assert_ne!(twin, token);
    let a = check(&v, &token).expect("accepted");
    let b = check(&v, &twin).expect("the twin verifies too");
    assert_eq!(a.replay_key, b.replay_key);
}

#[test]
fn replay_rejects_a_jti_that_cannot_be_a_key() {
    let v = single_use();
    let long = "j".repeat(257);
    for jti in [
        json!(""),
        json!(long),
        json!("a\u{0}b"),
        json!(1),
        json!(null),
        json!(["a"]),
    ] {
        let token = hs512(&json!({ "sub": "alice", "exp": NOW + 60, "jti": jti }));
        assert_eq!(check(&v, &token).map(drop), Err(R::InvalidTokenId), "{jti}");
    }
    let longest = "é".repeat(128);
    let token = hs512(&json!({ "sub": "alice", "exp": NOW + 60, "jti": longest }));
    assert_eq!(
        check(&v, &token).expect("256 bytes").replay_key,
        Some(format!("jti:{longest}"))
    );
}

#[test]
fn replay_checks_everything_else_first() {
    // A forged or expired token never reaches the store.
    let v = single_use();
    let expired = hs512(&json!({ "sub": "alice", "exp": NOW - 3600, "jti": "" }));
    assert_eq!(check(&v, &expired).map(drop), Err(R::Expired));
    let forged = sign(
        Algorithm::HS512,
        &SECRET.repeat(2),
        &json!({ "sub": "alice", "exp": NOW + 60 }),
    );
    assert_eq!(check(&v, &forged).map(drop), Err(R::BadSignature));
    let no_exp = hs512(&json!({ "sub": "alice", "jti": "a" }));
    assert_eq!(check(&v, &no_exp).map(drop), Err(R::MissingExpiry));
}

#[test]
fn replay_config_error_names_the_key() {
    let err = try_verifier(json!({ "single_use_tokens": true, "require_expiry": false }))
        .expect_err("contradiction");
    assert!(err.to_string().contains("`single_use_tokens`"), "{err}");
}
