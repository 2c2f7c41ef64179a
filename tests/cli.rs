//! The admin's command line: check-config, mint and verify, with their exit codes.
#![cfg(feature = "daemon")]

mod common;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use common::{
    daemon::{BIN, serve_jwks},
    *,
};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SYNAPSE_TOKEN_AUTH_CONFIG")
        .output()
        .expect("run binary")
}

/// `verify TOKEN --user USER --server-name example.org` with `config`, plus `extra` arguments.
fn verify(config: &str, token: &str, user: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "-c",
        config,
        "verify",
        token,
        "--user",
        user,
        "--server-name",
        "example.org",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config_file(body: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, body).expect("write");
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn cli_check_config_prints_effective_config_without_the_secret() {
    let (_dir, path) = config_file(&format!(
        "secret = \"{SECRET}\"\nallow_registration = true\n"
    ));
    let out = run(&["check-config", &path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("allow_registration = true"), "{stdout}");
    assert!(stdout.contains("<redacted: 65 bytes>"), "{stdout}");
    assert!(!stdout.contains(SECRET), "secret printed");
    assert!(text(&out.stderr).contains("configuration OK"));
}

#[test]
fn cli_check_config_shows_the_oauth_and_oidc_tables_without_secrets() {
    let config = r#"
[oauth]
username_type = "localpart"
[oauth.introspection_validation]
endpoint = "https://idp.example.org/introspect"
localpart_path = "sub"
auth = { type = "basic", username = "matrix", password = "introspection-pw" }
[oidc]
issuer = "https://zitadel.example.org"
client_id = "c"
client_secret = "oidc-client-secret"
project_id = 5
organization_id = 7
"#;
    let (_dir, path) = config_file(config);
    let out = run(&["check-config", &path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("[oauth.introspection_validation]"),
        "{stdout}"
    );
    assert!(stdout.contains("project-id = \"5\""), "{stdout}");
    assert!(!stdout.contains("introspection-pw") && !stdout.contains("oidc-client-secret"));
    assert!(stderr.contains("JWT login: off"), "{stderr}");

    let (_dir, path) = config_file(&config.replace("endpoint =", "endpiont ="));
    let out = run(&["check-config", &path]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`oauth.introspection_validation.endpiont`: unknown key"),
        "{stderr}"
    );
}

#[test]
fn cli_check_config_refuses_single_use_tokens_without_expiry() {
    let (_dir, path) = config_file(&format!(
        "secret = \"{SECRET}\"\nsingle_use_tokens = true\nrequire_expiry = false\n"
    ));
    let out = run(&["check-config", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`single_use_tokens`: requires `require_expiry`"),
        "{stderr}"
    );
}

#[test]
fn cli_check_config_lists_every_problem_with_key_and_file() {
    let (_dir, path) = config_file(
        "secret = \"short\"\nalgorithm = \"HS999\"\nrequire_expiry = \"yes\"\n[server]\nlisten = [\"unix:relative\"]\n",
    );
    let out = run(&["--config", &path, "check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for needle in [
        "config.toml",
        "`algorithm`",
        "`require_expiry`",
        "`server.listen`",
        "must be absolute",
    ] {
        assert!(stderr.contains(needle), "{needle} missing in:\n{stderr}");
    }
    let (_dir, path) = config_file("secret = \n");
    let out = run(&["check-config", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid TOML"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["check-config", "/nonexistent/config.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/config.toml"));
}

#[test]
fn cli_check_config_accepts_the_legacy_jwt_layout() {
    let (_dir, path) = config_file(&format!(
        "[jwt]\nsecret = \"{SECRET}\"\nalgorithm = \"HS512\"\nrequire_expiracy = false\n"
    ));
    let out = run(&["check-config", &path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("require_expiry = false"));
}

#[test]
fn cli_mint_then_verify_roundtrip_and_exit_codes() {
    let (_dir, path) = config_file(&format!("secret = \"{SECRET}\"\n"));
    let out = run(&[
        "-c",
        &path,
        "mint",
        "--sub",
        "alice",
        "--expires-in",
        "10m",
        "--claim",
        "admin=true",
        "--claim",
        "displayname=Alice L",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let out = verify(&path, &token, "alice", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json verdict");
    assert_eq!(verdict["admin"], true);
    assert_eq!(verdict["displayname"], "Alice L");

    let out = verify(&path, &token, "bob", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).trim(), "rejected: subject_mismatch");
    // Beside the reason: what the token says, and what was expected.
    let why = text(&out.stderr);
    assert!(
        why.contains("token sub: \"alice\"") && why.contains("--user: bob"),
        "{why}"
    );

    // An hour later the 10-minute token is expired, by 50 minutes.
    let later = (synapse_token_auth::unix_now() + 3600).to_string();
    let out = verify(&path, &token, "alice", &["--now", &later]);
    assert_eq!(text(&out.stdout).trim(), "rejected: expired");
    let why = text(&out.stderr);
    assert!(
        why.contains("exp: ") && why.contains("(50 min") && why.contains("ago; leeway 60 s"),
        "{why}"
    );

    // A token for some audience, with no `audiences` configured: the answer says what to set.
    let out = run(&[
        "-c",
        &path,
        "mint",
        "--sub",
        "alice",
        "--claim",
        "aud=other-app",
    ]);
    let with_aud = text(&out.stdout).trim().to_owned();
    let out = verify(&path, &with_aud, "alice", &[]);
    assert_eq!(text(&out.stdout).trim(), "rejected: wrong_audience");
    let why = text(&out.stderr);
    assert!(
        why.contains("token aud: \"other-app\"")
            && why.contains("add the value meant for this homeserver to `audiences`"),
        "{why}"
    );

    // Token from standard input.
    let mut child = Command::new(BIN)
        .args([
            "-c",
            &path,
            "verify",
            "-",
            "--user",
            "alice",
            "--server-name",
            "example.org",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{token}\n").as_bytes())
        .expect("write");
    assert!(child.wait_with_output().expect("wait").status.success());

    // Invalid config: exit 2, not 1 (1 means "rejected").
    let out = verify("/nonexistent.toml", &token, "alice", &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cli_mint_with_kid_of_an_additional_key_signs_with_that_key() {
    let old = "old-cli-secret-0123456789abcdef0123456789abcdef0123456789abcdef01";
    let (_dir, path) = config_file(&format!(
        "secret = \"{SECRET}\"\nkey_id = \"new\"\n\
         [[additional_keys]]\nsecret = \"{old}\"\nkey_id = \"old\"\n"
    ));
    for (kid, key) in [("new", "primary"), ("old", "additional_keys[0]")] {
        let out = run(&["-c", &path, "mint", "--sub", "alice", "--kid", kid]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let token = text(&out.stdout).trim().to_owned();
        let out = verify(&path, &token, "alice", &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(verdict["kid"], kid);
        assert_eq!(verdict["key"], key);
    }
    // Without --kid: the primary key and its key_id.
    let out = run(&["-c", &path, "mint", "--sub", "alice"]);
    let token = text(&out.stdout).trim().to_owned();
    let verdict: serde_json::Value =
        serde_json::from_slice(&verify(&path, &token, "alice", &[]).stdout).expect("json");
    assert_eq!(verdict["key"], "primary");
    assert_eq!(verdict["kid"], "new");
    // A kid that names no key: the answer lists the configured ones.
    let out = run(&["-c", &path, "mint", "--sub", "alice", "--kid", "2024"]);
    let token = text(&out.stdout).trim().to_owned();
    let out = verify(&path, &token, "alice", &[]);
    assert_eq!(text(&out.stdout).trim(), "rejected: unknown_key_id");
    let why = text(&out.stderr);
    assert!(
        why.contains("token alg: \"HS512\", kid: \"2024\"")
            && why.contains(
                "configured keys: primary (HS512, kid \"new\"), additional_keys[0] (HS512, kid \"old\")"
            ),
        "{why}"
    );
    // check-config shows both keys, neither secret.
    let out = run(&["check-config", &path]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("additional_keys") && shown.contains("\"old\""),
        "{shown}"
    );
    assert!(!shown.contains(old) && !shown.contains(SECRET), "{shown}");
}

#[test]
fn cli_mint_with_private_key_for_asymmetric_config() {
    let pub_key = key_path("p256.pub").display().to_string();
    let (_dir, path) = config_file(&format!(
        "keyfile = \"{pub_key}\"\nalgorithm = \"ES256\"\nkey_id = \"k1\"\n"
    ));
    let private = key_path("p256.key").display().to_string();
    let out = run(&[
        "mint",
        "--key",
        &private,
        "--alg",
        "ES256",
        "--kid",
        "k1",
        "--sub",
        "@alice:example.org",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let out = verify(&path, &token, "alice", &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The configured key is public: minting from it fails with a clear message.
    let out = run(&["-c", &path, "mint", "--sub", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("private key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cli_help_lists_the_subcommands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["serve", "check-config", "mint", "verify"] {
        assert!(help.contains(command), "{command} missing in:\n{help}");
    }
    let out = run(&["mint", "--sub", "a", "--expires-in", "3 weeks"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn examples_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    // The example points at a credential; provide one as systemd would.
    std::fs::write(dir.path().join("jwt-secret"), format!("{SECRET}\n")).expect("credential");
    let out = Command::new(BIN)
        .args(["check-config", example])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn examples_oauth_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/oauth.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    for credential in ["introspection", "webhook"] {
        std::fs::write(dir.path().join(credential), "a-secret\n").expect("credential");
    }
    let out = Command::new(BIN)
        .args(["check-config", "--offline", example])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("JWT login: off"));
}

#[test]
fn cli_check_config_fetches_a_published_set_once_and_lists_its_keys() {
    let set = serde_json::json!({ "keys": [
        rsa_jwk("rsa.pub", "k1"),
        { "kty": "oct", "kid": "s", "k": "c2VjcmV0" },
    ] });
    let (url, server) = serve_jwks(set.to_string(), 1);
    let (_dir, path) = config_file(&format!("jwks_url = \"{url}\"\n"));
    let out = run(&["check-config", &path]);
    server.join().expect("server");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("key: kid k1, an RSA key, verifies RS256"),
        "{err}"
    );
    assert!(
        err.contains("key not used: kid s: symmetric (oct) key"),
        "{err}"
    );
    assert!(text(&out.stdout).contains(&format!("jwks_url = \"{url}\"")));

    // --offline: nothing fetched (the server is gone); the provider down: exit 1.
    let out = run(&["check-config", "--offline", &path]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("not fetched (--offline)"));
    let out = run(&["check-config", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no usable keys"),
        "{}",
        text(&out.stderr)
    );
}
