//! Any header and payload, correctly signed: every claim-checking path sees hostile JSON behind
//! a valid signature, and must answer without panicking. An accepted token must name the user.
#![no_main]

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use synapse_token_auth::{Document, Origin, Verifier};

const SECRET: &str = "fuzz-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef";

fn verifier() -> &'static Verifier {
    static VERIFIER: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    VERIFIER.get_or_init(|| {
        let config = serde_json::json!({
            "secret": SECRET, "require_expiry": false, "audiences": ["matrix"], "issuer": "idp",
        });
        let document = Document::from_value(config, &[], Origin::Other("fuzz".into()))
            .expect("valid fuzz config");
        Verifier::new(document.policy)
    })
}

fuzz_target!(|data: &[u8]| {
    // Header and payload separated by the first NUL; without one, a fixed HS512 header.
    let (header, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS512"}"#[..], data),
    };
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, signed.as_bytes());
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    if let Ok(verdict) = verifier().verify(&token, "alice", "example.org", 1_800_000_000) {
        assert_eq!(verdict.user_id, "@alice:example.org");
        assert_eq!(verdict.localpart, "alice");
    }
});
