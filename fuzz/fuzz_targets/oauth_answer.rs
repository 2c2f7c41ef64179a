//! Any bytes as an introspection answer and any login user, for an `oauth` section that names the
//! user by two paths and an `oidc` section: deciding never panics, and an accepted login is for
//! the user the answer itself names, never one the client alone chose.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use synapse_token_auth::oauth::{HttpAnswer, OAuth, Oidc};

fuzz_target!(|data: &[u8]| {
    let oauth = OAuth::parse(
        &json!({"introspection_validation": {
            "endpoint": "http://127.0.0.1:9/introspect",
            "localpart_path": ["urn:matrix", "localpart"], "fq_uid_path": "mxid",
            "displayname_path": "name", "admin_path": [["roles", "admin"], ["admin"]],
            "email_path": "email", "required_scopes": "matrix",
            "validator": ["not", ["in", "blocked"]]},
            "username_type": "user_id"}),
        "oauth.",
    )
    .expect("valid config");
    let oidc = Oidc::parse(
        &json!({"issuer": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s",
            "project_id": 1, "organization_id": 2}),
        "oidc.",
    )
    .expect("valid config");
    // The first line is the login's user, the rest the answer.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(0);
    let user = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default().to_vec();
    let answer = HttpAnswer::Response {
        status: 200,
        body: body.clone(),
    };
    if let Ok(checked) = oauth.introspected(&answer)
        && let Ok(verdict) = oauth.decide(None, Some(&checked), &user, "example.org")
    {
        let claims = checked.claims();
        let named = [
            claims.get("urn:matrix").and_then(|m| m.get("localpart")),
            claims.get("mxid"),
        ];
        let lower = |v: &Value| v.as_str().map(str::to_lowercase);
        assert!(
            named.iter().flatten().any(|v| {
                lower(v).is_some_and(|n| n == verdict.localpart || n == verdict.user_id)
            }),
            "accepted {} which the answer does not name",
            verdict.user_id
        );
    }
    let _ = oidc.decide(&answer, &user, "example.org");
});
