//! Any bytes as a fetched key set and as a discovery document: parsed without panicking, and a
//! set that parses holds only keys bound to a configured asymmetric algorithm, never an `oct` key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_token_auth::{
    Algorithm, Document, Origin,
    keys::{
        KeyType,
        jwks::KeySet,
        published::{FetchAnswer, FetchKind},
    },
    verify::Step,
};

const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fuzz_target!(|data: &[u8]| {
    if let Ok((set, _ignored)) = KeySet::parse(data, ALGORITHMS) {
        for key in set.keys() {
            assert!(!key.algorithms.is_empty());
            assert_ne!(key.key.key_type(), KeyType::Hmac);
            for alg in &key.algorithms {
                assert!(ALGORITHMS.contains(alg));
                assert!(key.alg.is_none_or(|own| own == *alg));
            }
        }
    }

    // The same bytes as the answer to discovery and to the key set fetch that follows.
    let config =
        serde_json::json!({ "oidc_issuer": "https://idp.example.org", "algorithm": "RS256" });
    let Ok(document) = Document::from_value(config, &[], Origin::Other("fuzz".into())) else {
        return;
    };
    let verifier = synapse_token_auth::Verifier::new(document.policy);
    let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.AAAA";
    let Step::Fetch(mut request) = verifier.login(token, "alice", "example.org", 1) else {
        panic!("the first login asks for a fetch");
    };
    let Some(remote) = verifier.remote_keys() else {
        return;
    };
    for _ in 0..2 {
        let answer = FetchAnswer::Response {
            status: 200,
            cache_control: None,
            body: data.to_vec(),
        };
        let report = remote.fetched(&request, 1, answer);
        match report.next {
            Some(next) => {
                assert_eq!(request.kind, FetchKind::Discovery);
                request = next;
            }
            None => break,
        }
    }
    let _ = verifier.verify(token, "alice", "example.org", 1);
});
