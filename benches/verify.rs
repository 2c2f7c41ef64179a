//! Cost of one verification, per algorithm: our whole `Verifier::verify` (signature and every
//! claim rule) beside a plain `jsonwebtoken::decode` of the same token (signature, exp, and
//! deserialising the claims), so the overhead of the policy layer is read off one run.
//!
//! `cargo bench --bench verify`; target: HS512 verify within 1.5x of the plain decode.
//!
//! The `published` group: a login whose key comes from a cached JWK Set (`Verifier::login` with
//! the cache's lock and key selection) beside the same key from a PEM file; target ratio 1.05.
//!
//! The `oauth` group: an `oauth` login with a cached JWKS key beside a JWT login with a PEM key;
//! target ratio 1.1.

use std::{hint::black_box, path::PathBuf, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use synapse_token_auth::{Document, Origin, Verifier};

const SECRET: &str = "bench-only-secret-0123456789abcdef0123456789abcdef0123456789abcdef";

fn key(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    std::fs::read(path).expect("fixture key")
}

struct Case {
    alg: Algorithm,
    config: Value,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

fn cases() -> Vec<Case> {
    let keyfile = |name: &str| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name)
            .display()
            .to_string()
    };
    let hmac = |alg: Algorithm| Case {
        alg,
        config: json!({ "secret": SECRET, "algorithm": format!("{alg:?}") }),
        encoding: EncodingKey::from_secret(SECRET.as_bytes()),
        decoding: DecodingKey::from_secret(SECRET.as_bytes()),
    };
    vec![
        hmac(Algorithm::HS256),
        hmac(Algorithm::HS512),
        Case {
            alg: Algorithm::RS256,
            config: json!({ "keyfile": keyfile("rsa.pub"), "algorithm": "RS256" }),
            encoding: EncodingKey::from_rsa_pem(&key("rsa.key")).expect("rsa"),
            decoding: DecodingKey::from_rsa_pem(&key("rsa.pub")).expect("rsa"),
        },
        Case {
            alg: Algorithm::ES256,
            config: json!({ "keyfile": keyfile("p256.pub"), "algorithm": "ES256" }),
            encoding: EncodingKey::from_ec_pem(&key("p256.key")).expect("ec"),
            decoding: DecodingKey::from_ec_pem(&key("p256.pub")).expect("ec"),
        },
        Case {
            alg: Algorithm::EdDSA,
            config: json!({ "keyfile": keyfile("ed25519.pub"), "algorithm": "EdDSA" }),
            encoding: EncodingKey::from_ed_pem(&key("ed25519.key")).expect("ed"),
            decoding: DecodingKey::from_ed_pem(&key("ed25519.pub")).expect("ed"),
        },
    ]
}

fn bench(c: &mut Criterion) {
    synapse_token_auth::install_crypto_provider();
    let now = synapse_token_auth::unix_now();
    let claims = json!({ "sub": "alice", "exp": now + 3600, "iat": now, "displayname": "Alice" });
    let mut group = c.benchmark_group("verify");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for case in cases() {
        let token =
            jsonwebtoken::encode(&Header::new(case.alg), &claims, &case.encoding).expect("sign");
        let doc = Document::from_value(case.config.clone(), &[], Origin::Other("bench".into()))
            .expect("config");
        let verifier = Verifier::new(doc.policy);
        verifier
            .verify(&token, "alice", "example.org", now)
            .expect("valid");
        let name = format!("{:?}", case.alg);
        group.bench_function(format!("{name}/synapse-token-auth"), |b| {
            b.iter(|| verifier.verify(black_box(&token), "alice", "example.org", now));
        });
        let validation = Validation::new(case.alg);
        jsonwebtoken::decode::<Value>(&token, &case.decoding, &validation).expect("valid");
        group.bench_function(format!("{name}/jsonwebtoken-decode"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Value>(black_box(&token), &case.decoding, &validation)
            });
        });
    }
    // A rejection must not cost more than an acceptance: bad signature on HS512.
    let doc = Document::from_value(
        json!({ "secret": SECRET }),
        &[],
        Origin::Other("bench".into()),
    )
    .expect("config");
    let verifier = Verifier::new(doc.policy);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(
            b"another-secret-another-secret-another-secret-another-secret-0000",
        ),
    )
    .expect("sign");
    group.bench_function("HS512/rejected-bad-signature", |b| {
        b.iter(|| verifier.verify(black_box(&forged), "alice", "example.org", now));
    });
    group.finish();
}

#[path = "../tests/common/mod.rs"]
mod common;

/// The same key from a PEM file and from a fetched, cached JWK Set.
fn bench_published(c: &mut Criterion) {
    use synapse_token_auth::{keys::published::FetchAnswer, verify::Step};
    synapse_token_auth::install_crypto_provider();
    let now = synapse_token_auth::unix_now();
    let claims = json!({ "sub": "alice", "exp": now + 3600, "iat": now, "displayname": "Alice" });
    let mut group = c.benchmark_group("published");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let cases = [
        (
            Algorithm::RS256,
            "rsa.pub",
            "rsa.key",
            common::rsa_jwk("rsa.pub", "k1"),
        ),
        (
            Algorithm::ES256,
            "p256.pub",
            "p256.key",
            common::p256_jwk("k1"),
        ),
        (
            Algorithm::EdDSA,
            "ed25519.pub",
            "ed25519.key",
            common::ed25519_jwk("k1"),
        ),
    ];
    for (alg, public, private, jwk) in cases {
        let name = format!("{alg:?}");
        let mut header = Header::new(alg);
        header.kid = Some("k1".into());
        let token = common::sign_with_header(header, private, &claims);
        let pem =
            common::verifier(json!({ "keyfile": common::key_path(public), "algorithm": name }));
        let jwks = common::verifier(
            json!({ "jwks_url": "https://idp.example.org/jwks", "algorithm": name }),
        );
        // Fill the cache as an adapter would.
        let Step::Fetch(request) = jwks.login(&token, "alice", "example.org", now) else {
            panic!("expected a fetch")
        };
        let body = json!({ "keys": [jwk] }).to_string().into_bytes();
        let remote = jwks.remote_keys().expect("remote");
        let answer = FetchAnswer::Response {
            status: 200,
            cache_control: None,
            body,
        };
        assert!(remote.fetched(&request, now, answer).ok);
        assert!(matches!(
            jwks.login(&token, "alice", "example.org", now),
            Step::Done {
                result: Ok(_),
                refresh: None
            }
        ));
        pem.verify(&token, "alice", "example.org", now)
            .expect("pem");
        group.bench_function(format!("{name}/pem-file"), |b| {
            b.iter(|| pem.verify(black_box(&token), "alice", "example.org", now));
        });
        group.bench_function(format!("{name}/jwks-cached"), |b| {
            b.iter(|| jwks.login(black_box(&token), "alice", "example.org", now));
        });
    }
    group.finish();
}

/// An `oauth` login whose JWT's key comes from a cached JWKS endpoint (verify, scopes, validator,
/// naming the user) beside a JWT login with the same key from a PEM file; target ratio 1.1.
fn bench_oauth(c: &mut Criterion) {
    use synapse_token_auth::{keys::published::FetchAnswer, oauth::OAuth, verify::Step};
    synapse_token_auth::install_crypto_provider();
    let now = synapse_token_auth::unix_now();
    let claims = json!({ "sub": "alice", "iss": "https://idp.example.org", "exp": now + 3600,
        "iat": now, "scope": "openid matrix:login", "name": "Alice" });
    let mut group = c.benchmark_group("oauth");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let token = common::sign_with_header(header, "rsa.key", &claims);
    let oauth = OAuth::parse(
        &json!({"jwt_validation": {"jwks_endpoint": "https://idp.example.org/jwks",
            "localpart_path": "sub", "displayname_path": "name", "required_scopes": "matrix:login",
            "validator": ["in", "iss", ["equal", "https://idp.example.org"]]},
            "username_type": "localpart"}),
        "oauth.",
    )
    .expect("config");
    let verifier = oauth.jwt_verifier().expect("jwt_validation");
    let Step::Fetch(request) = verifier.login_claims(&token, now) else {
        panic!("expected a fetch")
    };
    let body = json!({ "keys": [common::rsa_jwk("rsa.pub", "k1")] })
        .to_string()
        .into_bytes();
    let answer = FetchAnswer::Response {
        status: 200,
        cache_control: None,
        body,
    };
    assert!(
        verifier
            .remote_keys()
            .expect("remote")
            .fetched(&request, now, answer)
            .ok
    );
    let login = |token: &str| {
        let Step::Done { result, .. } = verifier.login_claims(token, now) else {
            panic!("keys are cached")
        };
        let checked = oauth.check_jwt(result.expect("valid"))?;
        oauth.decide(Some(&checked), None, "alice", "example.org")
    };
    login(&token).expect("accepted");
    let pem = common::verifier(
        json!({ "keyfile": common::key_path("rsa.pub"), "algorithm": "RS256",
        "displayname_claim": "name", "issuer": "https://idp.example.org" }),
    );
    pem.verify(&token, "alice", "example.org", now)
        .expect("pem");
    group.bench_function("RS256/jwt-login-pem-file", |b| {
        b.iter(|| pem.verify(black_box(&token), "alice", "example.org", now));
    });
    group.bench_function("RS256/oauth-jwks-cached", |b| {
        b.iter(|| login(black_box(&token)));
    });
    group.finish();
}

criterion_group!(benches, bench, bench_published, bench_oauth);
criterion_main!(benches);
