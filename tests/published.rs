//! Keys published by an identity provider, through the core alone: the configuration keys, and
//! the login steps an adapter carries out (fetch, report, ask again), with the fetched documents
//! handed in as bytes. The adapters' own tests run them against a real OpenID provider.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use synapse_token_auth::{
    Origin, RejectReason as R, Verifier,
    keys::published::{FetchAnswer, FetchKind, FetchRequest},
    verify::Step,
};

const JWKS_URL: &str = "https://idp.example.org/jwks";
const ISSUER: &str = "https://idp.example.org/realms/x";

fn problems(config: Value) -> Vec<(String, String)> {
    match try_verifier(config) {
        Ok(_) => Vec::new(),
        Err(err) => err
            .problems()
            .iter()
            .map(|p| (p.key.clone(), p.message.clone()))
            .collect(),
    }
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    sign_with_header(header, "rsa.key", claims)
}

fn jwks(keys: Vec<Value>) -> FetchAnswer {
    ok(json!({ "keys": keys }), None)
}

fn ok(body: Value, cache_control: Option<&str>) -> FetchAnswer {
    FetchAnswer::Response {
        status: 200,
        cache_control: cache_control.map(str::to_owned),
        body: body.to_string().into_bytes(),
    }
}

/// Runs a login as the adapters do, answering the fetch it asks for from `answer`; returns the
/// result and the URLs fetched.
fn login(
    v: &Verifier,
    token: &str,
    now: u64,
    mut answer: impl FnMut(&FetchRequest) -> FetchAnswer,
) -> (Result<String, R>, Vec<String>) {
    let mut fetched = Vec::new();
    let done = |result: Result<synapse_token_auth::Verdict, _>| {
        result
            .map(|v| v.user_id)
            .map_err(|r: synapse_token_auth::Rejection| r.reason)
    };
    match v.login(token, "alice", SERVER, now) {
        Step::Done { result, refresh } => {
            assert!(refresh.is_none(), "no background refresh expected here");
            return (done(result), fetched);
        }
        Step::Fetch(mut request) => loop {
            fetched.push(request.url.to_string());
            let remote = v.remote_keys().expect("remote");
            let report = remote.fetched(&request, now, answer(&request));
            match report.next {
                Some(next) => request = next,
                None => break,
            }
        },
        Step::Wait => panic!("nobody else is fetching"),
    }
    // After the fetch: decide without another one.
    (done(v.verify(token, "alice", SERVER, now)), fetched)
}

#[test]
fn published_config_keys_and_their_errors() {
    // Valid: a URL, discovery, a file; RS256 by default.
    let v = verifier(json!({ "jwks_url": JWKS_URL }));
    let published = v.config().published.as_ref().expect("published");
    assert_eq!(published.algorithms, [Algorithm::RS256]);
    assert!(v.config().keys.is_empty());
    let v = verifier(json!({ "oidc_issuer": ISSUER, "audiences": ["matrix"] }));
    // Discovery implies the `iss` every token must carry.
    assert_eq!(v.config().issuer.as_deref(), Some(ISSUER));
    verifier(json!({ "jwks_url": "http://127.0.0.1:9/jwks" }));
    verifier(json!({ "jwks_url": "http://[::1]:9/jwks" }));
    verifier(json!({ "jwks_url": "http://localhost/jwks" }));

    for (config, key, says) in [
        (
            json!({ "jwks_url": "http://idp.example.org/jwks" }),
            "jwks_url",
            "https",
        ),
        (
            json!({ "jwks_url": "ftp://idp.example.org/jwks" }),
            "jwks_url",
            "https",
        ),
        (
            json!({ "jwks_url": "https://user:pw@idp.example.org/" }),
            "jwks_url",
            "credentials",
        ),
        (json!({ "jwks_url": "not a url" }), "jwks_url", "not a URL"),
        (
            json!({ "oidc_issuer": "https://idp.example.org/?a=b" }),
            "oidc_issuer",
            "query",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "algorithm": ["RS256", "HS512"] }),
            "algorithm",
            "HS512",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "secret": SECRET }),
            "secret",
            "only one key source",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "oidc_issuer": ISSUER }),
            "oidc_issuer",
            "only one",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "key_id": "k" }),
            "key_id",
            "carry their own",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "jwks_refetch_cooldown_seconds": 0 }),
            "jwks_refetch_cooldown_seconds",
            "between 1 and 3600",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "jwks_fetch_timeout_seconds": 61 }),
            "jwks_fetch_timeout_seconds",
            "between 1 and 60",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "jwks_max_bytes": 2_000_000 }),
            "jwks_max_bytes",
            "between",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "jwks_freshness_seconds": "600" }),
            "jwks_freshness_seconds",
            "whole number",
        ),
        (
            json!({ "jwks_url": JWKS_URL, "jwks_ca_file": "/nonexistent/ca.pem" }),
            "jwks_ca_file",
            "cannot read",
        ),
        (
            json!({ "secret": SECRET, "jwks_freshness_seconds": 600 }),
            "jwks_freshness_seconds",
            "only for",
        ),
        (
            json!({ "oidc_issuer": ISSUER, "issuer": "https://other" }),
            "issuer",
            "differs",
        ),
        (
            json!({ "jwks_file": "/nonexistent/jwks.json" }),
            "jwks_file",
            "cannot read",
        ),
    ] {
        let found = problems(config.clone());
        assert!(
            found.iter().any(|(k, m)| k == key && m.contains(says)),
            "{config}: expected `{key}` … {says}, found {found:?}"
        );
    }
    // The nested layout names the path.
    let nested = json!({ "jwt": { "jwks_url": "http://idp.example.org/" } });
    let err = synapse_token_auth::Document::from_value(nested, &[], Origin::Other("test".into()))
        .expect_err("http");
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["jwt.jwks_url"]);
}

#[test]
fn published_jwks_file_verifies_without_fetching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    let set =
        json!({ "keys": [rsa_jwk("rsa.pub", "k1"), json!({ "kty": "oct", "k": "c2VjcmV0" })] });
    std::fs::write(&path, set.to_string()).expect("write");
    let v = verifier(json!({ "jwks_file": path }));
    assert!(v.remote_keys().is_none());
    let verdict = v
        .verify(&rs256(Some("k1"), &claims()), "alice", SERVER, NOW)
        .expect("accepted");
    assert_eq!(&*verdict.key, "primary");
    assert_eq!(verdict.kid.as_deref(), Some("k1"));
    // Without kid: tried against the set's keys.
    v.verify(&rs256(None, &claims()), "alice", SERVER, NOW)
        .expect("no kid");
    assert_eq!(
        v.verify(&rs256(Some("k2"), &claims()), "alice", SERVER, NOW)
            .map_err(|r| r.reason),
        Err(R::UnknownKeyId)
    );
    let other = sign_with_header(
        Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::RS256)
        },
        "rsa-other.key",
        &claims(),
    );
    assert_eq!(
        v.verify(&other, "alice", SERVER, NOW).map_err(|r| r.reason),
        Err(R::BadSignature)
    );
    // A file without a usable key is a configuration error.
    std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).expect("write");
    let found = problems(json!({ "jwks_file": path }));
    assert!(found[0].1.contains("no key in the set"), "{found:?}");
}

#[test]
fn published_first_login_fetches_then_logins_use_the_cache() {
    let v = verifier(json!({ "jwks_url": JWKS_URL }));
    let token = rs256(Some("k1"), &claims());
    // `verify` never fetches: nothing cached yet.
    assert_eq!(
        v.verify(&token, "alice", SERVER, NOW).map_err(|r| r.reason),
        Err(R::KeysUnavailable)
    );
    let (result, fetched) = login(&v, &token, NOW, |_| jwks(vec![rsa_jwk("rsa.pub", "k1")]));
    assert_eq!(result, Ok("@alice:example.org".into()));
    assert_eq!(fetched, [JWKS_URL]);
    let (result, fetched) = login(&v, &token, NOW + 1, |_| panic!("cached"));
    assert_eq!(result, Ok("@alice:example.org".into()));
    assert!(fetched.is_empty());
    // HMAC tokens are not even considered for published keys.
    let hs = hs512(&claims());
    let (result, fetched) = login(&v, &hs, NOW + 1, |_| panic!("no fetch for HS512"));
    assert_eq!(result, Err(R::AlgorithmNotAllowed));
    assert!(fetched.is_empty());
}

#[test]
fn published_discovery_then_key_set_and_issuer_rules() {
    let v = verifier(json!({ "oidc_issuer": ISSUER }));
    let mut claims = claims();
    claims["iss"] = json!(ISSUER);
    let token = rs256(Some("k1"), &claims);
    let answer = |request: &FetchRequest| match request.kind {
        FetchKind::Discovery => ok(
            json!({ "issuer": ISSUER, "jwks_uri": "https://keys.example.org/certs" }),
            None,
        ),
        FetchKind::KeySet => jwks(vec![rsa_jwk("rsa.pub", "k1")]),
    };
    let (result, fetched) = login(&v, &token, NOW, answer);
    assert_eq!(result, Ok("@alice:example.org".into()));
    assert_eq!(
        fetched,
        [
            format!("{ISSUER}/.well-known/openid-configuration"),
            "https://keys.example.org/certs".into()
        ]
    );
    // Tokens must name the issuer.
    claims["iss"] = json!("https://evil.example");
    let (result, _) = login(&v, &rs256(Some("k1"), &claims), NOW, answer);
    assert_eq!(result, Err(R::WrongIssuer));

    // A discovery document for another issuer, or a key set over http, is refused.
    for document in [
        json!({ "issuer": "https://evil.example", "jwks_uri": "https://keys.example.org/certs" }),
        json!({ "issuer": format!("{ISSUER}/"), "jwks_uri": "https://keys.example.org/certs" }),
        json!({ "issuer": ISSUER, "jwks_uri": "http://keys.example.org/certs" }),
        json!({ "issuer": ISSUER }),
    ] {
        let v = verifier(json!({ "oidc_issuer": ISSUER }));
        let (result, fetched) = login(&v, &token, NOW, |_| ok(document.clone(), None));
        assert_eq!(result, Err(R::KeysUnavailable), "{document}");
        assert_eq!(
            fetched.len(),
            1,
            "{document}: no key set fetch after a bad discovery"
        );
    }
}

#[test]
fn published_failures_fail_closed_with_their_reason() {
    for answer in [
        FetchAnswer::Failed("timed out".into()),
        FetchAnswer::Response {
            status: 500,
            cache_control: None,
            body: Vec::new(),
        },
        FetchAnswer::Response {
            status: 200,
            cache_control: None,
            body: b"<html>".to_vec(),
        },
        jwks(vec![json!({ "kty": "oct", "k": "c2VjcmV0" })]),
        FetchAnswer::Response {
            status: 200,
            cache_control: None,
            body: vec![b' '; 2 * 1024 * 1024],
        },
    ] {
        let v = verifier(json!({ "jwks_url": JWKS_URL }));
        let (result, fetched) = login(&v, &rs256(Some("k1"), &claims()), NOW, |_| answer.clone());
        assert_eq!(result, Err(R::KeysUnavailable), "{answer:?}");
        assert_eq!(fetched.len(), 1);
        // Within the cooldown no second fetch: still refused.
        let (result, fetched) = login(&v, &rs256(Some("k1"), &claims()), NOW + 29, |_| {
            panic!("cooldown")
        });
        assert_eq!(result, Err(R::KeysUnavailable));
        assert!(fetched.is_empty());
    }
}

#[test]
fn published_rotation_refetches_once_for_a_new_kid_and_waiters_share_it() {
    let v = verifier(json!({ "jwks_url": JWKS_URL }));
    let old = rs256(Some("k1"), &claims());
    let (result, _) = login(&v, &old, NOW, |_| jwks(vec![rsa_jwk("rsa.pub", "k1")]));
    assert!(result.is_ok());
    let new = sign_with_header(
        Header {
            kid: Some("k2".into()),
            ..Header::new(Algorithm::RS256)
        },
        "rsa-other.key",
        &claims(),
    );
    // The first login with the new kid fetches; logins meanwhile wait.
    let Step::Fetch(request) = v.login(&new, "alice", SERVER, NOW + 40) else {
        panic!("expected a fetch")
    };
    for _ in 0..50 {
        assert!(matches!(
            v.login(&new, "alice", SERVER, NOW + 40),
            Step::Wait
        ));
    }
    // Old tokens keep logging in while the fetch runs.
    assert!(matches!(
        v.login(&old, "alice", SERVER, NOW + 40),
        Step::Done { result: Ok(_), .. }
    ));
    let report = v.remote_keys().expect("remote").fetched(
        &request,
        NOW + 41,
        jwks(vec![
            rsa_jwk("rsa.pub", "k1"),
            rsa_jwk("rsa-other.pub", "k2"),
        ]),
    );
    assert!(
        report.ok && report.message.contains("kids added: k2"),
        "{}",
        report.message
    );
    let (result, fetched) = login(&v, &new, NOW + 41, |_| panic!("fetched already"));
    assert_eq!(result, Ok("@alice:example.org".into()));
    assert!(fetched.is_empty());
    // An unknown kid within the cooldown is refused without a fetch.
    let (result, fetched) = login(&v, &rs256(Some("k3"), &claims()), NOW + 42, |_| {
        panic!("cooldown")
    });
    assert_eq!(result, Err(R::UnknownKeyId));
    assert!(fetched.is_empty());
}

#[test]
fn published_static_additional_keys_need_no_fetch() {
    let v = verifier(json!({
        "jwks_url": JWKS_URL,
        "additional_keys": [{ "secret": SECRET, "algorithm": "HS512", "key_id": "legacy" }],
    }));
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("legacy".into());
    let token = sign_with_header(header, SECRET, &claims());
    let (result, fetched) = login(&v, &token, NOW, |_| panic!("static key"));
    assert_eq!(result, Ok("@alice:example.org".into()));
    assert!(fetched.is_empty());
}

#[test]
fn published_stale_keys_are_refreshed_in_the_background() {
    let v = verifier(json!({ "jwks_url": JWKS_URL }));
    let token = rs256(Some("k1"), &claims());
    let (result, _) = login(&v, &token, NOW, |_| {
        ok(
            json!({ "keys": [rsa_jwk("rsa.pub", "k1")] }),
            Some("max-age=120"),
        )
    });
    assert!(result.is_ok());
    let Step::Done {
        result: Ok(_),
        refresh: Some(request),
    } = v.login(&token, "alice", SERVER, NOW + 120)
    else {
        panic!("expected a verdict and a background refresh")
    };
    assert_eq!(request.url.as_str(), JWKS_URL);
    // The others do not refresh again.
    assert!(matches!(
        v.login(&token, "alice", SERVER, NOW + 120),
        Step::Done {
            result: Ok(_),
            refresh: None
        }
    ));
}
