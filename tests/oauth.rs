//! The `oauth` and `oidc` login types' core: configuration, JWT and introspection checks, and
//! who logs in.

mod common;

use common::{NOW, SERVER, key_path, rsa_jwk, sign};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use synapse_token_auth::{
    RejectReason,
    oauth::{Checked, HttpAnswer, OAuth, Oidc},
};

fn oauth(config: Value) -> OAuth {
    OAuth::parse(&config, "oauth.").expect("valid oauth config")
}

fn problems(config: Value) -> Vec<String> {
    OAuth::parse(&config, "oauth.")
        .expect_err("an invalid config")
        .into_iter()
        .map(|p| p.key)
        .collect()
}

fn jwt_config(extra: Value) -> Value {
    let mut jwt = json!({"jwk_set": {"keys": [rsa_jwk("rsa.pub", "k1")]}, "localpart_path": "sub"});
    for (k, v) in extra.as_object().expect("object") {
        jwt[k] = v.clone();
    }
    json!({"jwt_validation": jwt})
}

fn rs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    common::sign_with_header(header, "rsa.key", claims)
}

/// Verifies `token` as the adapter does and checks the JWT source.
fn check_jwt(o: &OAuth, token: &str) -> Result<Checked, RejectReason> {
    let signed = o
        .jwt_verifier()
        .expect("jwt_validation")
        .verify_claims(token, NOW)
        .map_err(|r| r.reason)?;
    o.check_jwt(signed)
}

fn jwt_login(o: &OAuth, claims: &Value, user: &str) -> Result<String, RejectReason> {
    let checked = check_jwt(o, &rs256(claims))?;
    o.decide(Some(&checked), None, user, SERVER)
        .map(|v| v.user_id)
}

fn base_claims() -> Value {
    json!({"sub": "alice", "iss": "https://idp", "exp": NOW + 60, "scope": "openid matrix"})
}

fn answer(body: &Value) -> HttpAnswer {
    HttpAnswer::Response {
        status: 200,
        body: body.to_string().into_bytes(),
    }
}

#[test]
fn jwt_access_token_names_the_user() {
    let o = oauth(jwt_config(json!({})));
    assert_eq!(
        jwt_login(&o, &base_claims(), "ignored").as_deref(),
        Ok("@alice:example.org")
    );
}

#[test]
fn the_token_must_name_the_user_whatever_the_client_says() {
    // username_type compares the identifier with the token's user; it never replaces it.
    for username_type in ["localpart", "fq_uid", "user_id"] {
        let mut config = jwt_config(json!({}));
        config["username_type"] = json!(username_type);
        let o = oauth(config);
        let mut claims = base_claims();
        claims["sub"] = json!("mallory");
        let user = if username_type == "fq_uid" {
            "@alice:example.org"
        } else {
            "alice"
        };
        assert_eq!(
            jwt_login(&o, &claims, user),
            Err(RejectReason::SubjectMismatch),
            "{username_type}"
        );
        claims.as_object_mut().expect("object").remove("sub");
        assert_eq!(
            jwt_login(&o, &claims, user),
            Err(RejectReason::InvalidSubject),
            "{username_type}"
        );
    }
    // The wrong shape of identifier for the type.
    let mut config = jwt_config(json!({}));
    config["username_type"] = json!("fq_uid");
    assert_eq!(
        jwt_login(&oauth(config), &base_claims(), "alice"),
        Err(RejectReason::InvalidUser)
    );
    let mut config = jwt_config(json!({}));
    config["username_type"] = json!("user_id");
    let o = oauth(config);
    assert!(jwt_login(&o, &base_claims(), "@alice:example.org").is_ok());
    assert_eq!(
        jwt_login(&o, &base_claims(), "@alice:other.org"),
        Err(RejectReason::ForeignServer)
    );
}

#[test]
fn a_config_where_no_claim_names_the_user_is_refused() {
    assert_eq!(
        problems(json!({"jwt_validation": {"jwk_set": {"keys": [rsa_jwk("rsa.pub", "k1")]}}})),
        ["oauth.jwt_validation.localpart_path"]
    );
}

#[test]
fn fq_uid_path_and_nested_paths() {
    let o = oauth(jwt_config(
        json!({"localpart_path": null, "fq_uid_path": ["urn:matrix", "user"]}),
    ));
    let mut claims = base_claims();
    claims["urn:matrix"] = json!({"user": "@Bob:example.org"});
    assert_eq!(
        jwt_login(&o, &claims, "x").as_deref(),
        Ok("@bob:example.org")
    );
    claims["urn:matrix"] = json!({"user": "@bob:elsewhere.org"});
    assert_eq!(
        jwt_login(&o, &claims, "x"),
        Err(RejectReason::ForeignServer)
    );
    claims["urn:matrix"] = json!({"user": "bob"});
    assert_eq!(
        jwt_login(&o, &claims, "x"),
        Err(RejectReason::InvalidSubject)
    );
}

#[test]
fn expiry_is_checked_whenever_present_and_nbf_always() {
    // require_expiry defaults to false (the original's default): a token without exp passes,
    // one with a past exp does not, nor one that is not yet valid.
    let o = oauth(jwt_config(json!({})));
    let mut claims = base_claims();
    claims.as_object_mut().expect("object").remove("exp");
    assert!(jwt_login(&o, &claims, "alice").is_ok());
    claims["exp"] = json!(NOW - 3600);
    assert_eq!(jwt_login(&o, &claims, "alice"), Err(RejectReason::Expired));
    let mut claims = base_claims();
    claims["nbf"] = json!(NOW + 3600);
    assert_eq!(
        jwt_login(&o, &claims, "alice"),
        Err(RejectReason::NotYetValid)
    );
    let o = oauth(jwt_config(json!({"require_expiry": true})));
    let mut claims = base_claims();
    claims.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        jwt_login(&o, &claims, "alice"),
        Err(RejectReason::MissingExpiry)
    );
}

#[test]
fn only_asymmetric_algorithms_that_fit_the_key() {
    let o = oauth(jwt_config(json!({})));
    let claims = base_claims();
    // HS256 with the RSA public key's JWK text as the secret: never an HMAC key.
    let forged = common::hmac_token(
        r#"{"alg":"HS256","kid":"k1"}"#,
        &claims.to_string(),
        256,
        rsa_jwk("rsa.pub", "k1").to_string().as_bytes(),
    );
    assert_eq!(
        check_jwt(&o, &forged).err(),
        Some(RejectReason::AlgorithmNotAllowed)
    );
    let none = common::raw_token(r#"{"alg":"none"}"#, &claims.to_string(), b"");
    assert_eq!(
        check_jwt(&o, &none).err(),
        Some(RejectReason::AlgorithmNotAllowed)
    );
    // An ES256 token against an RSA-only set: no key for it.
    let es = sign(Algorithm::ES256, "p256.key", &claims);
    assert!(check_jwt(&o, &es).is_err());
}

#[test]
fn jwk_file_takes_a_pem_public_key() {
    let o = oauth(
        json!({"jwt_validation": {"jwk_file": key_path("p256.pub"), "localpart_path": "sub"}}),
    );
    let token = sign(Algorithm::ES256, "p256.key", &base_claims());
    let checked = check_jwt(&o, &token).expect("verifies");
    assert!(o.decide(Some(&checked), None, "alice", SERVER).is_ok());
    assert_eq!(
        problems(
            json!({"jwt_validation": {"jwk_file": "/nonexistent.pem", "localpart_path": "sub"}})
        ),
        ["oauth.jwt_validation.jwk_file"]
    );
}

#[test]
fn jwk_set_as_a_json_string_or_a_single_key() {
    let jwk = rsa_jwk("rsa.pub", "k1");
    for set in [
        json!(jwk.to_string()),
        jwk.clone(),
        json!(json!({"keys": [jwk]}).to_string()),
    ] {
        let o = oauth(json!({"jwt_validation": {"jwk_set": set, "localpart_path": "sub"}}));
        assert!(check_jwt(&o, &rs256(&base_claims())).is_ok());
    }
    // A symmetric key is refused at start-up, not used as an HMAC secret.
    assert_eq!(
        problems(
            json!({"jwt_validation": {"jwk_set": {"kty": "oct", "k": "c2VjcmV0"}, "localpart_path": "sub"}})
        ),
        ["oauth.jwt_validation.jwk_set"]
    );
}

#[test]
fn required_scopes_and_validators() {
    let o = oauth(jwt_config(json!({"required_scopes": "matrix openid"})));
    assert!(jwt_login(&o, &base_claims(), "alice").is_ok());
    let o = oauth(jwt_config(json!({"required_scopes": ["matrix", "admin"]})));
    assert_eq!(
        jwt_login(&o, &base_claims(), "alice"),
        Err(RejectReason::InsufficientScope)
    );
    let mut claims = base_claims();
    claims.as_object_mut().expect("object").remove("scope");
    assert_eq!(
        jwt_login(&o, &claims, "alice"),
        Err(RejectReason::InsufficientScope)
    );

    let o = oauth(jwt_config(
        json!({"validator": ["in", "iss", ["equal", "https://idp"]]}),
    ));
    assert!(jwt_login(&o, &base_claims(), "alice").is_ok());
    let o = oauth(jwt_config(
        json!({"validator": {"type": "in", "path": "iss",
        "validator": {"type": "matches_regex", "regex": "https://other.*"}}}),
    ));
    assert_eq!(
        jwt_login(&o, &base_claims(), "alice"),
        Err(RejectReason::ClaimsRejected)
    );
}

#[test]
fn attributes_and_the_external_id() {
    let o = oauth(jwt_config(
        json!({"displayname_path": "name", "admin_path": [["roles", "admin"], ["is_admin"]],
        "email_path": "email"}),
    ));
    let mut claims = base_claims();
    claims["name"] = json!("Alice A.");
    claims["is_admin"] = json!(1);
    claims["email"] = json!("alice@example.org");
    let checked = check_jwt(&o, &rs256(&claims)).expect("verifies");
    let v = o
        .decide(Some(&checked), None, "alice", SERVER)
        .expect("accepted");
    assert_eq!(v.displayname.as_deref(), Some("Alice A."));
    assert_eq!(v.admin, Some(true));
    assert_eq!(v.email.as_deref(), Some("alice@example.org"));
    assert_eq!(
        (v.issuer.as_str(), v.subject.as_str()),
        ("https://idp", "alice")
    );
    assert!(!v.may_register);

    claims["email"] = json!("not an address");
    let checked = check_jwt(&o, &rs256(&claims)).expect("verifies");
    assert_eq!(
        o.decide(Some(&checked), None, "alice", SERVER),
        Err(RejectReason::InvalidEmail)
    );
    claims["email"] = json!("alice@example.org");
    claims["is_admin"] = json!(false);
    claims.as_object_mut().expect("object").remove("iss");
    let checked = check_jwt(&o, &rs256(&claims)).expect("verifies");
    assert_eq!(
        o.decide(Some(&checked), None, "alice", SERVER),
        Err(RejectReason::WrongIssuer)
    );
    claims["iss"] = json!("https://idp");
    let checked = check_jwt(&o, &rs256(&claims)).expect("verifies");
    // A false admin claim demotes nobody.
    assert_eq!(
        o.decide(Some(&checked), None, "alice", SERVER)
            .map(|v| v.admin),
        Ok(None)
    );
}

fn introspection_config() -> Value {
    json!({"introspection_validation": {"endpoint": "http://127.0.0.1:9/introspect",
        "auth": {"type": "basic", "username": "matrix-rs", "password": "rs-secret"},
        "localpart_path": "sub", "required_scopes": "matrix:login"},
        "registration_enabled": true})
}

#[test]
fn introspection_request_and_answers() {
    let o = oauth(introspection_config());
    let request = o
        .introspection_request("opaque+token/=")
        .expect("introspects");
    assert_eq!(request.url.as_str(), "http://127.0.0.1:9/introspect");
    assert_eq!(request.body, b"token=opaque%2Btoken%2F%3D");
    assert_eq!(request.content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        request.authorization.as_deref(),
        Some("Basic bWF0cml4LXJzOnJzLXNlY3JldA==")
    );

    let active =
        json!({"active": true, "sub": "alice", "iss": "http://idp", "scope": "matrix:login"});
    let checked = o.introspected(&answer(&active)).expect("active");
    let v = o
        .decide(None, Some(&checked), "alice", SERVER)
        .expect("accepted");
    assert_eq!(v.user_id, "@alice:example.org");
    assert!(v.may_register);

    for (body, reason) in [
        (json!({"active": false}), RejectReason::TokenInactive),
        (
            json!({"active": "true", "sub": "alice"}),
            RejectReason::TokenInactive,
        ),
        (json!({"sub": "alice"}), RejectReason::TokenInactive),
        (
            json!({"active": true, "sub": "alice", "scope": "openid"}),
            RejectReason::InsufficientScope,
        ),
    ] {
        assert_eq!(
            o.introspected(&answer(&body)).err().map(|e| e.0),
            Some(reason),
            "{body}"
        );
    }
    for failed in [
        HttpAnswer::Failed("timeout".into()),
        HttpAnswer::Response {
            status: 401,
            body: b"{}".to_vec(),
        },
        HttpAnswer::Response {
            status: 200,
            body: b"<html>".to_vec(),
        },
        HttpAnswer::Response {
            status: 200,
            body: b"[true]".to_vec(),
        },
    ] {
        assert_eq!(
            o.introspected(&failed).err().map(|e| e.0),
            Some(RejectReason::IntrospectionFailed)
        );
    }
}

#[test]
fn jwt_and_introspection_together_must_agree() {
    let mut config = introspection_config();
    config["jwt_validation"] =
        jwt_config(json!({"displayname_path": "name"}))["jwt_validation"].clone();
    config["introspection_validation"]["displayname_path"] = json!("name");
    let o = oauth(config);
    let mut claims = base_claims();
    claims["name"] = json!("Alice");
    let jwt = check_jwt(&o, &rs256(&claims)).expect("verifies");
    let same = o
        .introspected(&answer(
            &json!({"active": true, "sub": "alice", "iss": "https://idp",
            "scope": "matrix:login", "name": "Alice"}),
        ))
        .expect("active");
    assert!(o.decide(Some(&jwt), Some(&same), "alice", SERVER).is_ok());
    // Deciding on one source when both are configured is refused.
    assert!(o.decide(Some(&jwt), None, "alice", SERVER).is_err());
    for (key, value) in [("sub", "bob"), ("name", "Eve"), ("iss", "https://other")] {
        let mut body = json!({"active": true, "sub": "alice", "iss": "https://idp",
            "scope": "matrix:login", "name": "Alice"});
        body[key] = json!(value);
        let other = o.introspected(&answer(&body)).expect("active");
        assert_eq!(
            o.decide(Some(&jwt), Some(&other), "alice", SERVER),
            Err(RejectReason::ClaimsDisagree),
            "{key}"
        );
    }
}

#[test]
fn registration_webhook_body() {
    let mut config = introspection_config();
    config["notify_on_registration"] =
        json!({"url": "http://127.0.0.1:9/hook", "auth": ["bearer", "hook-token"]});
    let o = oauth(config);
    let checked = o
        .introspected(&answer(
            &json!({"active": true, "sub": "alice", "iss": "x", "scope": "matrix:login"}),
        ))
        .expect("active");
    let v = o
        .decide(None, Some(&checked), "alice", SERVER)
        .expect("accepted");
    let request = o
        .registration_notice(&v.localpart, &v.user_id, v.displayname.as_deref())
        .expect("configured");
    let body: Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(
        body,
        json!({"localpart": "alice", "fully_qualified_uid": "@alice:example.org", "displayname": null})
    );
    assert_eq!(request.authorization.as_deref(), Some("Bearer hook-token"));
    assert!(o.webhook_interrupts());
}

#[test]
fn config_problems_name_their_keys() {
    assert_eq!(problems(json!({})), ["oauth.jwt_validation"]);
    assert_eq!(
        problems(json!({"jwt_validaton": {}})),
        ["oauth.jwt_validaton", "oauth.jwt_validation"]
    );
    assert_eq!(
        problems(jwt_config(json!({"jwks_endpoint": "https://idp/jwks"}))),
        ["oauth.jwt_validation.jwks_endpoint"]
    );
    assert_eq!(
        problems(jwt_config(json!({"validator": ["regex", "(unclosed"]}))),
        ["oauth.jwt_validation.validator[1]"]
    );
    let mut config = jwt_config(json!({}));
    config["username_type"] = json!("email");
    assert_eq!(problems(config), ["oauth.username_type"]);
    let mut config = jwt_config(json!({}));
    config["expose_metadata_resource"] = json!({"name": "../admin"});
    assert_eq!(problems(config), ["oauth.expose_metadata_resource.name"]);
    assert_eq!(
        problems(json!({"introspection_validation": {"localpart_path": "sub"}})),
        ["oauth.introspection_validation.endpoint"]
    );
    assert_eq!(
        problems(
            json!({"introspection_validation": {"endpoint": "http://idp.example/introspect", "localpart_path": "sub"}})
        ),
        ["oauth.introspection_validation.endpoint"]
    );
}

fn oidc() -> Oidc {
    Oidc::parse(
        &json!({"issuer": "http://127.0.0.1:9", "client_id": "matrix-rs", "client_secret": "rs-secret",
            "project_id": 5678, "organization_id": "1234", "allowed_client_ids": "svc other",
            "allow_registration": true}),
        "oidc.",
    )
    .expect("valid oidc config")
}

#[test]
fn oidc_discovers_then_introspects() {
    let o = oidc();
    let discovery = o.discovery_request(NOW).expect("nothing known yet");
    assert_eq!(
        discovery.url.as_str(),
        "http://127.0.0.1:9/.well-known/openid-configuration"
    );
    assert!(o.introspection_request("t").is_none());
    assert!(o.discovered(&answer(&json!({"issuer": "x"})), NOW).is_err());
    o.discovered(
        &answer(&json!({"introspection_endpoint": "http://127.0.0.1:9/token/introspection"})),
        NOW,
    )
    .expect("usable");
    assert!(o.discovery_request(NOW + 60).is_none());
    assert!(o.discovery_request(NOW + 3600).is_some());
    let request = o.introspection_request("t").expect("known");
    assert_eq!(
        request.body,
        b"token=t&token_type_hint=access_token&scope=openid"
    );
    assert_eq!(
        request.authorization.as_deref(),
        Some("Basic bWF0cml4LXJzOnJzLXNlY3JldA==")
    );
    assert_eq!(o.metadata()["project-id"], json!("5678"));
}

#[test]
fn oidc_checks_roles_issuer_client_and_localpart() {
    let o = oidc();
    let good = json!({"active": true, "iss": "http://127.0.0.1:9", "client_id": "svc", "localpart": "alice",
        "urn:zitadel:iam:org:project:5678:roles": {"User": {"1234": "org.example"}}});
    let v = o.decide(&answer(&good), "alice", SERVER).expect("accepted");
    assert_eq!(
        (v.user_id.as_str(), v.may_register),
        ("@alice:example.org", true)
    );
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        o.decide(&answer(&body), "alice", SERVER).err().map(|e| e.0)
    };
    assert_eq!(
        with("active", json!(false)),
        Some(RejectReason::TokenInactive)
    );
    assert_eq!(
        with(
            "urn:zitadel:iam:org:project:5678:roles",
            json!({"Viewer": {}})
        ),
        Some(RejectReason::MissingRole)
    );
    assert_eq!(
        with(
            "urn:zitadel:iam:org:project:5678:roles",
            json!(["OrgAdmin"])
        ),
        None
    );
    assert_eq!(
        with("iss", json!("http://evil")),
        Some(RejectReason::WrongIssuer)
    );
    assert_eq!(
        with("client_id", json!("intruder")),
        Some(RejectReason::ClientNotAllowed)
    );
    assert_eq!(
        with("localpart", json!("bob")),
        Some(RejectReason::SubjectMismatch)
    );
    assert_eq!(
        with("localpart", json!(7)),
        Some(RejectReason::InvalidSubject)
    );
    assert!(
        Oidc::parse(&json!({"issuer": "https://idp"}), "oidc.")
            .expect_err("invalid")
            .iter()
            .any(|p| p.key == "oidc.client_secret")
    );
}

#[test]
fn single_use_jwts_carry_a_replay_key() {
    let o = oauth(jwt_config(
        json!({"single_use_tokens": true, "require_expiry": true}),
    ));
    let mut claims = base_claims();
    claims["jti"] = json!("token-1");
    let checked = check_jwt(&o, &rs256(&claims)).expect("verifies");
    let v = o
        .decide(Some(&checked), None, "alice", SERVER)
        .expect("accepted");
    assert_eq!(v.replay_key.as_deref(), Some("jti:token-1"));
    assert_eq!(v.replay_until, Some(NOW + 60 + 60));
    // Off by default; and it needs `exp`.
    let o = oauth(jwt_config(json!({})));
    let checked = check_jwt(&o, &rs256(&claims)).expect("verifies");
    assert_eq!(
        o.decide(Some(&checked), None, "alice", SERVER)
            .map(|v| v.replay_key),
        Ok(None)
    );
    assert_eq!(
        problems(jwt_config(json!({"single_use_tokens": true}))),
        ["oauth.jwt_validation.single_use_tokens"]
    );
}

#[test]
fn alternative_fq_uids_list_the_users_a_token_may_log_in_as() {
    let o = oauth(jwt_config(
        json!({"localpart_path": null, "alternative_fq_uids_path": ["matrix", "ids"],
        "displayname_path": "name"}),
    ));
    let mut claims = base_claims();
    claims["name"] = json!("Shared Person");
    claims["matrix"] = json!({"ids": ["@alice:example.org", "@Work-Alice:example.org"]});
    let login = |user: &str, claims: &Value| {
        let checked = check_jwt(&o, &rs256(claims))?;
        o.decide(Some(&checked), None, user, SERVER)
    };
    let v = login("work-alice", &claims).expect("listed");
    assert_eq!(v.user_id, "@work-alice:example.org");
    assert_eq!(v.displayname, None, "not taken: one person, several users");
    assert!(login("@alice:example.org", &claims).is_ok());
    assert_eq!(
        login("bob", &claims).map(|v| v.user_id),
        Err(RejectReason::SubjectMismatch)
    );
    claims["matrix"] = json!({"ids": "@alice:example.org"});
    assert_eq!(
        login("alice", &claims).map(|v| v.user_id),
        Err(RejectReason::InvalidSubject)
    );
    claims.as_object_mut().expect("object").remove("matrix");
    assert_eq!(
        login("alice", &claims).map(|v| v.user_id),
        Err(RejectReason::InvalidSubject)
    );

    assert_eq!(
        problems(jwt_config(json!({"alternative_fq_uids_path": "ids"}))),
        ["oauth.jwt_validation.alternative_fq_uids_path"]
    );
    let mut config = jwt_config(json!({"localpart_path": null, "alternative_fq_uids_path": "ids"}));
    config["introspection_validation"] =
        json!({"endpoint": "http://127.0.0.1:9/i", "localpart_path": "sub"});
    assert_eq!(
        problems(config),
        ["oauth.introspection_validation.alternative_fq_uids_path"]
    );
}
