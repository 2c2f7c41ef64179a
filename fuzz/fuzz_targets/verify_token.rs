//! Any bytes as the token and the login user: the verifier answers, never panics, and accepts
//! nothing it did not sign (the fuzzer cannot forge an HMAC-SHA512).
#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_token_auth::{Document, Origin, Verifier};

const SECRET: &str = "fuzz-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef";

fn verifier() -> &'static Verifier {
    static VERIFIER: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    VERIFIER.get_or_init(|| {
        let config = serde_json::json!({ "secret": SECRET, "algorithm": ["HS256", "HS512"] });
        let document = Document::from_value(config, &[], Origin::Other("fuzz".into()))
            .expect("valid fuzz config");
        Verifier::new(document.policy)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (token, user) = text.split_once('\n').unwrap_or((&text, "alice"));
    let outcome = verifier().verify(token, user, "example.org", 1_800_000_000);
    assert!(
        outcome.is_err(),
        "accepted a token the fuzzer made up: {token:?}"
    );
});
