//! The behaviour contract (DESIGN.md), row by row, with real signed tokens and hostile input.
//! Every negative test asserts the reason code, not just "rejected".

mod common;

use common::*;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use synapse_token_auth::{RejectReason as R, Verdict, Verifier};

fn check(v: &Verifier, token: &str, user: &str) -> Result<Verdict, R> {
    v.verify(token, user, SERVER, NOW).map_err(|r| r.reason)
}

fn default_verifier() -> Verifier {
    verifier(json!({}))
}

#[test]
fn verify_accepts_valid_hs512_token() {
    let v = default_verifier();
    let verdict = check(&v, &hs512(&claims()), "alice").expect("accepted");
    assert_eq!(verdict.user_id, "@alice:example.org");
    assert_eq!(verdict.localpart, "alice");
    assert!(!verdict.may_register);
    assert_eq!(verdict.admin, None);
    assert_eq!(verdict.displayname, None);
    assert_eq!(verdict.alg, "HS512");
}

#[test]
fn verify_accepts_every_algorithm_with_its_key() {
    let cases = [
        (Algorithm::HS256, "", ""),
        (Algorithm::HS384, "", ""),
        (Algorithm::RS256, "rsa.key", "rsa.pub"),
        (Algorithm::RS384, "rsa.key", "rsa.pub"),
        (Algorithm::RS512, "rsa.key", "rsa.pub"),
        (Algorithm::PS256, "rsa.key", "rsa.pub"),
        (Algorithm::PS384, "rsa.key", "rsa.pub"),
        (Algorithm::PS512, "rsa.key", "rsa.pub"),
        (Algorithm::ES256, "p256.key", "p256.pub"),
        (Algorithm::ES384, "p384.key", "p384.pub"),
        (Algorithm::EdDSA, "ed25519.key", "ed25519.pub"),
    ];
    for (alg, private, public) in cases {
        let name = format!("{alg:?}");
        let (config, token) = if private.is_empty() {
            (json!({ "algorithm": name }), sign(alg, SECRET, &claims()))
        } else {
            (
                json!({ "algorithm": name, "keyfile": key_path(public) }),
                sign(alg, private, &claims()),
            )
        };
        let verdict = check(&verifier(config), &token, "alice")
            .unwrap_or_else(|e| panic!("{name} rejected: {e}"));
        assert_eq!(verdict.alg, name);
    }
}

#[test]
fn verify_accepts_keyfile_as_certificate_pkcs1_and_private_key() {
    let token = sign(Algorithm::RS256, "rsa.key", &claims());
    for keyfile in ["rsa.crt", "rsa-pkcs1.pub", "rsa.key", "rsa-pkcs1.key"] {
        let v = verifier(json!({ "algorithm": "RS256", "keyfile": key_path(keyfile) }));
        check(&v, &token, "alice").unwrap_or_else(|e| panic!("{keyfile}: {e}"));
        // and the key really verifies: a token of another key fails
        let other = sign(Algorithm::RS256, "rsa-other.key", &claims());
        assert_eq!(
            check(&v, &other, "alice"),
            Err(R::BadSignature),
            "{keyfile}"
        );
    }
    let token = sign(Algorithm::ES256, "p256.key", &claims());
    for keyfile in ["p256.key", "p256-sec1.key"] {
        let v = verifier(json!({ "algorithm": "ES256", "keyfile": key_path(keyfile) }));
        check(&v, &token, "alice").unwrap_or_else(|e| panic!("{keyfile}: {e}"));
    }
    let token = sign(Algorithm::EdDSA, "ed25519.key", &claims());
    let v = verifier(json!({ "algorithm": "EdDSA", "keyfile": key_path("ed25519.key") }));
    check(&v, &token, "alice").expect("ed25519 private key as keyfile");
}

#[test]
fn verify_rejects_bad_signature_and_other_secret() {
    let v = default_verifier();
    let mut token = hs512(&claims());
    let last = token.pop().expect("non-empty");
    token.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(check(&v, &token, "alice"), Err(R::BadSignature));
    let other = sign(Algorithm::HS512, &SECRET.replace('0', "1"), &claims());
    assert_eq!(check(&v, &other, "alice"), Err(R::BadSignature));
}

#[test]
fn verify_rejects_algorithm_outside_configuration() {
    // Configured HS512: an HS256 token with the same secret is refused.
    let v = default_verifier();
    assert_eq!(
        check(&v, &sign(Algorithm::HS256, SECRET, &claims()), "alice"),
        Err(R::AlgorithmNotAllowed)
    );
    // Several configured algorithms: each is accepted, nothing else.
    let v = verifier(json!({ "algorithm": ["HS256", "HS512"] }));
    check(&v, &sign(Algorithm::HS256, SECRET, &claims()), "alice").expect("HS256");
    check(&v, &hs512(&claims()), "alice").expect("HS512");
    assert_eq!(
        check(&v, &sign(Algorithm::HS384, SECRET, &claims()), "alice"),
        Err(R::AlgorithmNotAllowed)
    );
}

#[test]
fn verify_rejects_alg_none_in_every_spelling() {
    let v = default_verifier();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let token = raw_token(&header, &claims().to_string(), b"");
        assert_eq!(
            check(&v, &token, "alice"),
            Err(R::AlgorithmNotAllowed),
            "{alg}"
        );
        // also with the trailing dot omitted entirely
        let token = token.trim_end_matches('.').to_owned();
        assert!(
            check(&v, &token, "alice").is_err(),
            "{alg} without signature"
        );
    }
}

#[test]
fn verify_rejects_hmac_signed_with_rsa_public_key() {
    // The classic algorithm confusion: HS256 keyed with the PEM of the configured RSA public key.
    let v = verifier(json!({ "algorithm": "RS256", "keyfile": key_path("rsa.pub") }));
    let public_pem = key_pem("rsa.pub");
    for (alg, bits) in [("HS256", 256), ("HS512", 512)] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let token = hmac_token(&header, &claims().to_string(), bits, &public_pem);
        assert_eq!(
            check(&v, &token, "alice"),
            Err(R::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn verify_rejects_key_of_wrong_type_at_configuration() {
    let err = try_verifier(json!({ "algorithm": "HS256", "keyfile": key_path("rsa.pub") }))
        .expect_err("HS256 with an RSA key");
    assert!(err.to_string().contains("needs an HMAC secret"), "{err}");
    let err = try_verifier(json!({ "algorithm": "RS256" })).expect_err("RS256 with a secret");
    assert!(err.to_string().contains("needs a key file"), "{err}");
    let err = try_verifier(json!({ "algorithm": "ES384", "keyfile": key_path("p256.pub") }))
        .expect_err("ES384 with a P-256 key");
    assert!(err.to_string().contains("P-256"), "{err}");
    let err = try_verifier(json!({ "keyfile": key_path("rsa.pub") })).expect_err("default HS512");
    assert!(err.to_string().contains("HS512"), "{err}");
    let err = try_verifier(json!({ "algorithm": "RS256", "keyfile": key_path("rsa-1024.pub") }))
        .expect_err("1024-bit RSA");
    assert!(err.to_string().contains("2048"), "{err}");
}

#[test]
fn verify_refuses_a_key_file_that_is_not_a_key_file() {
    // An endless file: the read stops at the bound instead of filling memory.
    let err = try_verifier(json!({ "algorithm": "RS256", "keyfile": "/dev/zero" }))
        .expect_err("endless file");
    assert!(err.to_string().contains("larger than 1024 KiB"), "{err}");
    let err = try_verifier(json!({ "secret_file": "/nonexistent/secret" })).expect_err("missing");
    assert!(
        err.to_string()
            .contains("cannot read `/nonexistent/secret`"),
        "{err}"
    );
}

#[test]
fn verify_checks_kid_when_configured() {
    let v = verifier(json!({ "key_id": "2026-11" }));
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("2026-11".into());
    let verdict = check(
        &v,
        &sign_with_header(header.clone(), SECRET, &claims()),
        "alice",
    )
    .expect("right kid");
    assert_eq!(verdict.kid.as_deref(), Some("2026-11"));
    header.kid = Some("2025-01".into());
    assert_eq!(
        check(&v, &sign_with_header(header, SECRET, &claims()), "alice"),
        Err(R::UnknownKeyId)
    );
    assert_eq!(
        check(&v, &hs512(&claims()), "alice"),
        Err(R::UnknownKeyId),
        "no kid"
    );
    // Without key_id any kid is accepted (the original module ignored it).
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("whatever".into());
    check(
        &default_verifier(),
        &sign_with_header(header, SECRET, &claims()),
        "alice",
    )
    .expect("kid ignored");
}

#[test]
fn verify_rejects_crit_header() {
    let header = r#"{"alg":"HS512","crit":["b64"],"b64":false}"#;
    let token = hmac_token(header, &claims().to_string(), 512, SECRET.as_bytes());
    assert_eq!(
        check(&default_verifier(), &token, "alice"),
        Err(R::UnsupportedHeader)
    );
}

#[test]
fn verify_is_strict_about_the_jose_header_and_the_claims_object() {
    let v = default_verifier();
    let signed = |header: &str, payload: &str| hmac_token(header, payload, 512, SECRET.as_bytes());
    let claims = claims().to_string();
    let hs512 = r#""alg":"HS512""#;
    let unsupported = [
        // `crit` present counts, whatever its value (RFC 7515 section 4.1.11).
        format!(r#"{{{hs512},"crit":null}}"#),
        format!(r#"{{{hs512},"crit":[]}}"#),
        // `b64` without `crit` is invalid (RFC 7797 section 6); with it, unsupported.
        format!(r#"{{{hs512},"b64":false}}"#),
        format!(r#"{{{hs512},"b64":true}}"#),
        // A nested JWT (RFC 7519 section 7.2) is not a claims set.
        format!(r#"{{{hs512},"cty":"JWT"}}"#),
        format!(r#"{{{hs512},"cty":"jwt"}}"#),
    ];
    for header in &unsupported {
        assert_eq!(
            check(&v, &signed(header, &claims), "alice"),
            Err(R::UnsupportedHeader),
            "{header}"
        );
    }
    let malformed = [
        // The header is a JSON object (RFC 7515 section 5.2), not an array of its values.
        r#"["HS512"]"#.to_owned(),
        r#"["HS512", null, null]"#.to_owned(),
        // Member names are unique; a second `alg` is not "the last one wins".
        format!(r#"{{"alg":"none",{hs512}}}"#),
        // `kid` is a string when present.
        format!(r#"{{{hs512},"kid":null}}"#),
        format!(r#"{{{hs512},"kid":7}}"#),
    ];
    for header in &malformed {
        assert_eq!(
            check(&v, &signed(header, &claims), "alice"),
            Err(R::MalformedToken),
            "{header}"
        );
    }
    // Invalid UTF-8 in a member the verifier does not read is still invalid.
    let mut header = format!(r#"{{{hs512},"x":""#).into_bytes();
    header.extend_from_slice(b"\xff\xfe\"}");
    let message = format!("{}.{}", b64(&header), b64(claims.as_bytes()));
    let token = format!(
        "{message}.{}",
        b64(&hmac(512, SECRET.as_bytes(), message.as_bytes()))
    );
    assert_eq!(check(&v, &token, "alice"), Err(R::MalformedToken));
    // Duplicate claim names: two parsers could read two different users.
    let twice = format!(r#"{{"sub":"mallory","exp":{},"sub":"alice"}}"#, NOW + 60);
    assert_eq!(
        check(&v, &signed(&format!("{{{hs512}}}"), &twice), "alice"),
        Err(R::MalformedToken)
    );
    // A content type other than a nested JWT is no reason to refuse.
    check(
        &v,
        &signed(&format!(r#"{{{hs512},"cty":"json"}}"#), &claims),
        "alice",
    )
    .expect("cty json");
}

#[test]
fn verify_rejects_malformed_tokens() {
    let v = default_verifier();
    let good = hs512(&claims());
    let cases: Vec<(String, R)> = vec![
        (String::new(), R::MalformedToken),
        ("garbage".into(), R::MalformedToken),
        ("a.b".into(), R::MalformedToken),
        ("a.b.c.d".into(), R::MalformedToken),
        (format!("{good}.extra"), R::MalformedToken),
        (
            good[..good.find('.').expect("dot") + 10].to_owned(),
            R::MalformedToken,
        ),
        (good[..good.len() - 10].to_owned(), R::BadSignature),
        ("!!!.???.***".into(), R::MalformedToken),
        (format!("{}.e30.", b64(b"not json")), R::MalformedToken),
        (format!("{}.e30.", b64(b"[1,2]")), R::MalformedToken),
        ("x".repeat(9000), R::TokenTooLarge),
        // JSON serialisation of a JWS is not accepted
        (
            r#"{"payload":"e30","signatures":[]}"#.into(),
            R::MalformedToken,
        ),
        // padding is not base64url as JWS uses it
        (good.replacen('.', "=.", 1), R::MalformedToken),
    ];
    for (token, reason) in cases {
        assert_eq!(check(&v, &token, "alice"), Err(reason), "{token:.60}");
    }
    // A correctly signed token whose payload is not a JSON object.
    let header = r#"{"alg":"HS512"}"#;
    for payload in ["not json", "[]", "\"alice\"", "{"] {
        let token = hmac_token(header, payload, 512, SECRET.as_bytes());
        assert_eq!(
            check(&v, &token, "alice"),
            Err(R::MalformedToken),
            "{payload}"
        );
    }
}

#[test]
fn verify_rejects_oversized_claims_before_crypto_but_accepts_a_few_kib() {
    let v = default_verifier();
    let mut big = claims();
    big["pad"] = json!("x".repeat(4000));
    check(&v, &hs512(&big), "alice").expect("a 5 KiB token is fine");
    big["pad"] = json!("x".repeat(9000));
    assert_eq!(check(&v, &hs512(&big), "alice"), Err(R::TokenTooLarge));
}

#[test]
fn verify_expiry_rules() {
    let v = default_verifier();
    let with_exp = |exp: Value| hs512(&json!({ "sub": "alice", "exp": exp }));
    assert_eq!(
        check(&v, &hs512(&json!({ "sub": "alice" })), "alice"),
        Err(R::MissingExpiry)
    );
    assert_eq!(
        check(&v, &with_exp(json!(NOW - 61)), "alice"),
        Err(R::Expired)
    );
    assert_eq!(
        check(&v, &with_exp(json!(NOW - 60)), "alice"),
        Err(R::Expired)
    );
    check(&v, &with_exp(json!(NOW - 59)), "alice").expect("inside the 60 s leeway");
    check(&v, &with_exp(json!((NOW + 10) as f64 + 0.5)), "alice").expect("fractional NumericDate");
    assert_eq!(
        check(&v, &with_exp(json!((NOW - 120) as f64 + 0.5)), "alice"),
        Err(R::Expired)
    );
    assert_eq!(
        check(&v, &with_exp(json!(NOW.to_string())), "alice"),
        Err(R::MalformedClaim)
    );
    assert_eq!(
        check(&v, &with_exp(json!(null)), "alice"),
        Err(R::MalformedClaim)
    );
    assert_eq!(
        check(&v, &with_exp(json!(true)), "alice"),
        Err(R::MalformedClaim)
    );
    assert_eq!(check(&v, &with_exp(json!(-1)), "alice"), Err(R::Expired));
    assert_eq!(
        check(&v, &with_exp(json!(1e300)), "alice").map(|_| ()),
        Ok(())
    );

    // Not required: a missing exp passes, but a present one is still checked (FIX).
    let lax = verifier(json!({ "require_expiry": false }));
    check(&lax, &hs512(&json!({ "sub": "alice" })), "alice").expect("exp optional");
    assert_eq!(
        check(&lax, &with_exp(json!(NOW - 3600)), "alice"),
        Err(R::Expired)
    );
    // Leeway is configurable.
    let strict = verifier(json!({ "leeway_seconds": 0 }));
    assert_eq!(
        check(&strict, &with_exp(json!(NOW)), "alice"),
        Err(R::Expired)
    );
    check(&strict, &with_exp(json!(NOW + 1)), "alice").expect("one second left");
}

#[test]
fn verify_nbf_and_iat_rules() {
    let v = default_verifier();
    let token = |extra: Value| {
        let mut c = claims();
        c.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        hs512(&c)
    };
    assert_eq!(
        check(&v, &token(json!({ "nbf": NOW + 61 })), "alice"),
        Err(R::NotYetValid)
    );
    check(&v, &token(json!({ "nbf": NOW + 59 })), "alice").expect("nbf within leeway");
    check(&v, &token(json!({ "nbf": NOW - 10 })), "alice").expect("nbf past");
    assert_eq!(
        check(&v, &token(json!({ "nbf": "soon" })), "alice"),
        Err(R::MalformedClaim)
    );
    assert_eq!(
        check(&v, &token(json!({ "iat": NOW + 3600 })), "alice"),
        Err(R::IssuedInFuture)
    );
    check(&v, &token(json!({ "iat": NOW })), "alice").expect("iat now");
    assert_eq!(
        check(&v, &token(json!({ "iat": [1] })), "alice"),
        Err(R::MalformedClaim)
    );
}

#[test]
fn verify_issuer_and_audience_rules() {
    let v = verifier(
        json!({ "issuer": "https://idp.example.org", "audiences": ["synapse", "matrix"] }),
    );
    let token = |extra: Value| {
        let mut c = claims();
        c.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        hs512(&c)
    };
    let iss = "https://idp.example.org";
    check(&v, &token(json!({ "iss": iss, "aud": "synapse" })), "alice").expect("string aud");
    check(
        &v,
        &token(json!({ "iss": iss, "aud": ["other", "matrix"] })),
        "alice",
    )
    .expect("array aud");
    assert_eq!(
        check(&v, &token(json!({ "iss": iss, "aud": "other" })), "alice"),
        Err(R::WrongAudience)
    );
    assert_eq!(
        check(&v, &token(json!({ "iss": iss, "aud": [] })), "alice"),
        Err(R::WrongAudience)
    );
    assert_eq!(
        check(&v, &token(json!({ "iss": iss, "aud": 7 })), "alice"),
        Err(R::WrongAudience)
    );
    assert_eq!(
        check(&v, &token(json!({ "iss": iss })), "alice"),
        Err(R::WrongAudience)
    );
    assert_eq!(
        check(
            &v,
            &token(json!({ "iss": "https://evil.example", "aud": "synapse" })),
            "alice"
        ),
        Err(R::WrongIssuer)
    );
    assert_eq!(
        check(&v, &token(json!({ "aud": "synapse" })), "alice"),
        Err(R::WrongIssuer)
    );
    // No issuer configured: `iss` is not checked (as the original module).
    check(&default_verifier(), &token(json!({ "iss": "x" })), "alice").expect("iss unchecked");
}

#[test]
fn verify_refuses_a_token_for_another_audience_when_none_is_configured() {
    // RFC 7519 section 4.1.3: a present `aud` that does not name this recipient is refused.
    let v = default_verifier();
    let with_aud = |aud: Value| {
        let mut c = claims();
        c["aud"] = aud;
        hs512(&c)
    };
    for aud in [
        json!("some-other-app"),
        json!(["a", "b"]),
        json!([]),
        json!(null),
    ] {
        assert_eq!(
            check(&v, &with_aud(aud.clone()), "alice"),
            Err(R::WrongAudience),
            "{aud}"
        );
    }
    check(&v, &hs512(&claims()), "alice").expect("no aud, no audiences");
}

#[test]
fn verify_subject_rules() {
    let v = default_verifier();
    let sub = |s: Value| hs512(&json!({ "sub": s, "exp": NOW + 60 }));
    // localpart or full id on either side, case-insensitive
    for (subject, user) in [
        ("alice", "alice"),
        ("alice", "@alice:example.org"),
        ("@alice:example.org", "alice"),
        ("@alice:example.org", "@alice:example.org"),
        ("alice", "Alice"),
        ("Alice", "alice"),
    ] {
        let verdict = check(&v, &sub(json!(subject)), user)
            .unwrap_or_else(|e| panic!("{subject} / {user}: {e}"));
        assert_eq!(verdict.user_id, "@alice:example.org");
    }
    assert_eq!(
        check(&v, &sub(json!("bob")), "alice"),
        Err(R::SubjectMismatch)
    );
    assert_eq!(
        check(&v, &sub(json!("@alice:other.server")), "alice"),
        Err(R::ForeignServer)
    );
    assert_eq!(
        check(&v, &sub(json!("alice")), "@alice:other.server"),
        Err(R::ForeignServer)
    );
    assert_eq!(check(&v, &sub(json!(42)), "alice"), Err(R::InvalidSubject));
    assert_eq!(
        check(&v, &sub(json!(["alice"])), "alice"),
        Err(R::InvalidSubject)
    );
    assert_eq!(check(&v, &sub(json!("")), "alice"), Err(R::InvalidSubject));
    assert_eq!(
        check(&v, &sub(json!("al ice")), "al ice"),
        Err(R::InvalidSubject)
    );
    assert_eq!(check(&v, &sub(json!("alice")), ""), Err(R::InvalidUser));
    assert_eq!(
        check(&v, &hs512(&json!({ "exp": NOW + 60 })), "alice"),
        Err(R::InvalidSubject)
    );

    // Another claim may name the user.
    let v = verifier(json!({ "subject_claim": "preferred_username" }));
    let token = hs512(&json!({ "sub": "uuid-1", "preferred_username": "alice", "exp": NOW + 60 }));
    check(&v, &token, "alice").expect("subject_claim");
}

#[test]
fn verify_chatbox_rule() {
    let v = default_verifier();
    let user = "guest-123e4567-e89b-42d3-a456-426614174000";
    let token = |sub: &str| hs512(&json!({ "sub": sub, "exp": NOW + 60, "type": "chatbox" }));
    check(&v, &token(user), user).expect("uuid localpart");
    assert_eq!(
        check(&v, &token("guest"), "guest"),
        Err(R::ChatboxLocalpart)
    );
    // other types are not special
    check(
        &v,
        &hs512(&json!({ "sub": "guest", "exp": NOW + 60, "type": "web" })),
        "guest",
    )
    .expect("type web");
}

#[test]
fn verify_admin_claim_must_be_boolean() {
    let v = default_verifier();
    let token = |admin: Value| hs512(&json!({ "sub": "alice", "exp": NOW + 60, "admin": admin }));
    assert_eq!(
        check(&v, &token(json!(true)), "alice").map(|v| v.admin),
        Ok(Some(true))
    );
    assert_eq!(
        check(&v, &token(json!(false)), "alice").map(|v| v.admin),
        Ok(Some(false))
    );
    for bad in [
        json!("true"),
        json!(1),
        json!(null),
        json!("false"),
        json!({}),
    ] {
        assert_eq!(
            check(&v, &token(bad.clone()), "alice"),
            Err(R::InvalidAdminClaim),
            "{bad}"
        );
    }
    let v = verifier(json!({ "admin_claim": "is_admin" }));
    let t = hs512(&json!({ "sub": "alice", "exp": NOW + 60, "is_admin": true, "admin": "x" }));
    assert_eq!(check(&v, &t, "alice").map(|v| v.admin), Ok(Some(true)));
}

#[test]
fn verify_displayname_claim() {
    let v = verifier(json!({ "allow_registration": true, "update_displayname_on_login": false }));
    let token =
        |name: Value| hs512(&json!({ "sub": "alice", "exp": NOW + 60, "displayname": name }));
    let verdict = check(&v, &token(json!("Alice Liddell")), "alice").expect("accepted");
    assert_eq!(verdict.displayname.as_deref(), Some("Alice Liddell"));
    assert!(verdict.may_register);
    assert!(!verdict.update_displayname_on_login);
    assert_eq!(
        check(&v, &token(json!(5)), "alice"),
        Err(R::InvalidDisplayname)
    );
    assert_eq!(
        check(&v, &token(json!("x".repeat(257))), "alice"),
        Err(R::InvalidDisplayname)
    );
}

#[test]
fn verify_rejection_carries_header_fields_for_the_audit_log() {
    let v = verifier(json!({ "key_id": "k1" }));
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("k2".into());
    let rejection = v
        .verify(
            &sign_with_header(header, SECRET, &claims()),
            "alice",
            SERVER,
            NOW,
        )
        .expect_err("wrong kid");
    assert_eq!(rejection.alg.as_deref(), Some("HS512"));
    assert_eq!(rejection.kid.as_deref(), Some("k2"));
}

#[test]
fn reject_reason_codes_are_stable_and_unique() {
    let codes: Vec<&str> = synapse_token_auth::RejectReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    let mut unique = codes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
    // serde uses the same codes as as_str (the daemon's JSON and the logs agree)
    for reason in synapse_token_auth::RejectReason::ALL {
        assert_eq!(
            serde_json::to_value(reason).expect("serialize"),
            json!(reason.as_str())
        );
    }
    assert!(codes.contains(&"expired") && codes.contains(&"bad_signature"));
}
