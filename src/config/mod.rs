//! The verification policy: what a valid login token looks like.
//!
//! One schema serves three places with the same key names: the daemon's TOML file, the `config:`
//! mapping of the Synapse module in homeserver.yaml (handed over as JSON by the Python shim), and
//! the NixOS `settings`. Both layouts of the original Python module are accepted: the 0.3.x flat
//! keys at the top level and the 0.4+ nested `jwt:` section.
//!
//! Parsing never stops at the first problem: every unknown key, wrong type and invalid value is
//! collected, so an admin fixes the whole file in one go.

use std::{path::Path, sync::Arc};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::keys::{KeySource, VerificationKey};

mod error;
mod keys;
mod published;
mod reader;

use self::keys::{parse_additional_keys, parse_key};
pub(crate) use self::reader::{Reader, kind};
pub use self::{
    error::{ConfigError, Origin, Problem},
    published::Published,
};

/// Default accepted algorithm, as in the original module.
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::HS512;
/// Default clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;
/// Largest accepted `leeway_seconds`: more than a day means expiry is effectively off.
pub const MAX_LEEWAY_SECONDS: u64 = 86_400;

/// The keys that name the key material; exactly one is set, at the top level and in each
/// `additional_keys` entry.
const KEY_SOURCES: &[&str] = &[
    "secret",
    "secret_file",
    "secret_credential",
    "keyfile",
    "keyfile_credential",
];

/// What binds a key besides its source, also in each `additional_keys` entry.
const KEY_BINDINGS: &[&str] = &["key_id", "algorithm", "allow_weak_secret"];

/// The rest of the policy, with the legacy spelling `require_expiracy`.
const POLICY_ONLY_KEYS: &[&str] = &[
    "additional_keys",
    "require_expiry",
    "require_expiracy",
    "leeway_seconds",
    "issuer",
    "audiences",
    "allow_registration",
    "subject_claim",
    "displayname_claim",
    "admin_claim",
    "update_displayname_on_login",
    "single_use_tokens",
];

/// The keys of one key: its source and bindings.
fn key_entry_keys() -> impl Iterator<Item = &'static str> {
    KEY_SOURCES.iter().chain(KEY_BINDINGS).copied()
}

/// Every key of the policy.
fn policy_keys() -> impl Iterator<Item = &'static str> {
    key_entry_keys()
        .chain(POLICY_ONLY_KEYS.iter().copied())
        .chain(published::PUBLISHED_SOURCES.iter().copied())
        .chain(published::remote_only_keys())
}

fn known_keys(keys: impl Iterator<Item = &'static str>) -> String {
    keys.collect::<Vec<_>>().join(", ")
}

/// Most `additional_keys` entries: a token without a matching `kid` may be tried against each,
/// so their number bounds the work a bad token costs.
pub const MAX_ADDITIONAL_KEYS: usize = 8;

/// The original module's other login types: sections of their own, read beside the policy.
const OTHER_LOGIN_SECTIONS: &[&str] = &["oidc", "oauth"];

/// A key that may sign login tokens, loaded and bound to the algorithms it verifies.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// `primary` for the key at the top of the policy, `additional_keys[N]` for the others:
    /// logged with every accepted login, so an admin sees when an old key falls out of use.
    pub name: Arc<str>,
    /// The key that verifies signatures.
    pub key: VerificationKey,
    /// Where the key came from (for `check-config` and `mint`; never the secret itself in output).
    pub source: KeySource,
    /// Algorithms this key verifies; all of them match the key's type.
    pub algorithms: Vec<Algorithm>,
    /// When set, the token's `kid` header must equal it for this key to be used.
    pub key_id: Option<String>,
}

/// The validated policy, with the key material loaded.
#[derive(Debug, Clone)]
pub struct Config {
    /// The keys that verify signatures: the primary key first, then `additional_keys` (during a
    /// key rotation). Empty only when the primary key source is `published`.
    pub keys: Vec<TrustedKey>,
    /// The primary key source when an identity provider publishes the keys (`jwks_url`,
    /// `oidc_issuer`, `jwks_file`).
    pub published: Option<Published>,
    /// Reject tokens without `exp`.
    pub require_expiry: bool,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_seconds: u64,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values; when non-empty the token must name one of them, when empty the
    /// token must carry no `aud`.
    pub audiences: Vec<String>,
    /// Whether a valid token for an unknown user creates the account.
    pub allow_registration: bool,
    /// The claim that names the user.
    pub subject_claim: String,
    /// The claim that carries the display name.
    pub displayname_claim: String,
    /// The claim that promotes or demotes the user to server admin.
    pub admin_claim: String,
    /// Whether the display name claim is applied on every login, not only at registration.
    pub update_displayname_on_login: bool,
    /// Whether each token logs in at most once: accepted verdicts carry a replay key for the
    /// store (Synapse's database) to record. Requires `require_expiry`.
    pub single_use_tokens: bool,
}

impl Config {
    /// A policy that accepts no token: for a daemon that serves only the `oauth` and `oidc`
    /// login types. Every JWT login is refused (`algorithm_not_allowed`). Its other values are
    /// the defaults, which the `oauth` type's JWT policy starts from.
    #[must_use]
    pub fn no_jwt_login() -> Self {
        Self {
            keys: Vec::new(),
            published: None,
            require_expiry: true,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            issuer: None,
            audiences: Vec::new(),
            allow_registration: false,
            subject_claim: "sub".into(),
            displayname_claim: "displayname".into(),
            admin_claim: "admin".into(),
            update_displayname_on_login: true,
            single_use_tokens: false,
        }
    }

    /// The effective policy as a JSON object, in the configuration's own key names, with the
    /// secret replaced by its length. What `check-config` prints.
    #[must_use]
    pub fn redacted(&self) -> Value {
        let mut keys = self.keys.iter().map(TrustedKey::redacted);
        let mut out = match &self.published {
            Some(published) => published.redacted(),
            None => match keys.next() {
                Some(Value::Object(out)) => out,
                _ => return Value::Null,
            },
        };
        let additional: Vec<Value> = keys.collect();
        if !additional.is_empty() {
            out.insert("additional_keys".into(), additional.into());
        }
        out.insert("require_expiry".into(), self.require_expiry.into());
        out.insert("leeway_seconds".into(), self.leeway_seconds.into());
        if let Some(issuer) = &self.issuer {
            out.insert("issuer".into(), issuer.clone().into());
        }
        out.insert("audiences".into(), self.audiences.clone().into());
        out.insert("allow_registration".into(), self.allow_registration.into());
        out.insert("subject_claim".into(), self.subject_claim.clone().into());
        out.insert(
            "displayname_claim".into(),
            self.displayname_claim.clone().into(),
        );
        out.insert("admin_claim".into(), self.admin_claim.clone().into());
        out.insert(
            "update_displayname_on_login".into(),
            self.update_displayname_on_login.into(),
        );
        out.insert("single_use_tokens".into(), self.single_use_tokens.into());
        Value::Object(out)
    }
}

impl TrustedKey {
    /// The key's configuration with the secret replaced by its length.
    fn redacted(&self) -> Value {
        let mut out = Map::new();
        let key = match &self.source {
            KeySource::Secret(s) => Value::String(format!("<redacted: {} bytes>", s.len())),
            KeySource::SecretFile(p) | KeySource::Keyfile(p) => p.display().to_string().into(),
            KeySource::SecretCredential(n) | KeySource::KeyfileCredential(n) => n.clone().into(),
        };
        out.insert(self.source.config_key().into(), key);
        out.insert("algorithm".into(), algorithm_names(&self.algorithms));
        if let Some(kid) = &self.key_id {
            out.insert("key_id".into(), kid.clone().into());
        }
        Value::Object(out)
    }
}

/// Algorithms as the configuration names them, for `check-config`.
fn algorithm_names(algorithms: &[Algorithm]) -> Value {
    algorithms
        .iter()
        .map(|a| Value::String(format!("{a:?}")))
        .collect()
}

/// A parsed configuration document: the policy and the sections that belong to its host
/// (`server` for the daemon, `verifier` for the Synapse module), left for the host to read.
#[derive(Debug, Clone)]
pub struct Document {
    pub policy: Config,
    pub sections: Map<String, Value>,
}

/// Reads a TOML file into JSON values, so that TOML and homeserver.yaml share one code path.
pub fn read_toml_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|err| ConfigError::Syntax {
        path: path.to_owned(),
        message: err.message().to_owned() + &line_hint(&text, err.span()),
    })?;
    serde_json::to_value(table).map_err(|err| ConfigError::Syntax {
        path: path.to_owned(),
        message: err.to_string(),
    })
}

fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

impl Document {
    /// Validates a whole document. `host_sections` names the top-level tables that belong to the
    /// caller rather than to the policy; any other unknown key is an error.
    pub fn from_value(
        value: Value,
        host_sections: &[&str],
        origin: Origin,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let invalid = |problems| ConfigError::Invalid {
            origin: origin.clone(),
            problems,
        };
        let Value::Object(mut top) = value else {
            return Err(invalid(vec![Problem {
                key: "(top level)".into(),
                message: "expected a mapping of configuration keys".into(),
            }]));
        };

        let mut sections = Map::new();
        for name in host_sections {
            if let Some(section) = top.remove(*name) {
                sections.insert((*name).to_owned(), section);
            }
        }

        // Both layouts: flat keys at the top, or everything under `jwt`.
        let (policy_map, prefix) = match top.remove("jwt") {
            Some(Value::Object(jwt)) => {
                for key in top.keys() {
                    problems.push(unknown_top_level(key, true));
                }
                (jwt, "jwt.")
            }
            Some(_) => {
                problems.push(Problem {
                    key: "jwt".into(),
                    message: "expected a mapping".into(),
                });
                (Map::new(), "jwt.")
            }
            None => (top, ""),
        };

        let policy = parse_policy(&policy_map, prefix, &mut problems);
        match policy {
            Some(policy) if problems.is_empty() => Ok(Self { policy, sections }),
            _ => Err(invalid(problems)),
        }
    }
}

fn unknown_top_level(key: &str, jwt_layout: bool) -> Problem {
    let message = if key == "epa" {
        "the original module's ePA login type (encrypted JWE tokens) is not supported".to_owned()
    } else if OTHER_LOGIN_SECTIONS.contains(&key) {
        "a section of its own beside the JWT policy (`[oauth]`/`[oidc]` in the daemon's file, \
         `oauth:`/`oidc:` in the module's config), not inside `jwt`"
            .to_owned()
    } else if jwt_layout && policy_keys().any(|k| k == key) {
        "belongs inside the `jwt` section when that section is used".to_owned()
    } else {
        format!("unknown key; known keys are {}", known_keys(policy_keys()))
    };
    Problem {
        key: key.to_owned(),
        message,
    }
}

fn parse_policy(
    map: &Map<String, Value>,
    prefix: &str,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let mut r = Reader {
        map,
        prefix,
        problems,
    };
    let mut unknown: Vec<String> = map
        .keys()
        .filter(|k| !policy_keys().any(|known| known == k.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    for key in unknown {
        let Problem { message, .. } = unknown_top_level(&key, false);
        r.problem(&key, message);
    }

    // The primary key: published by an identity provider, or a secret or key file.
    let published_given = published::PUBLISHED_SOURCES
        .iter()
        .any(|k| map.contains_key(*k));
    let (primary, published) = if published_given {
        if let Some(key) = KEY_SOURCES.iter().find(|k| map.contains_key(**k)) {
            r.problem(
                key,
                "only one key source may be set: a secret or key file, or a published key set \
                 (`jwks_url`, `oidc_issuer`, `jwks_file`); older keys go in `additional_keys`",
            );
        }
        (Some(None), published::parse_published(&mut r).map(Some))
    } else {
        for key in published::remote_only_keys().filter(|k| map.contains_key(*k)) {
            r.problem(key, "only for `jwks_url` or `oidc_issuer`");
        }
        (parse_key(&mut r, "primary").map(Some), Some(None))
    };
    let additional = parse_additional_keys(&mut r);
    let require_expiry = match (r.bool("require_expiry"), r.bool("require_expiracy")) {
        (Some(a), Some(b)) if a != b => {
            r.problem(
                "require_expiracy",
                "contradicts `require_expiry`; keep only `require_expiry`",
            );
            a
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => true,
    };
    let leeway_seconds = r.u64("leeway_seconds").unwrap_or(DEFAULT_LEEWAY_SECONDS);
    if leeway_seconds > MAX_LEEWAY_SECONDS {
        r.problem(
            "leeway_seconds",
            format!("{leeway_seconds} is more than the maximum of {MAX_LEEWAY_SECONDS} (one day)"),
        );
    }
    let mut issuer = r.non_empty_string("issuer");
    let audiences = r.strings("audiences").unwrap_or_default();
    if audiences.iter().any(String::is_empty) {
        r.problem("audiences", "must not contain an empty string");
    }
    let allow_registration = r.bool("allow_registration").unwrap_or(false);
    let subject_claim = r
        .non_empty_string("subject_claim")
        .unwrap_or_else(|| "sub".into());
    let displayname_claim = r
        .non_empty_string("displayname_claim")
        .unwrap_or_else(|| "displayname".into());
    let admin_claim = r
        .non_empty_string("admin_claim")
        .unwrap_or_else(|| "admin".into());
    let update_displayname_on_login = r.bool("update_displayname_on_login").unwrap_or(true);
    let single_use_tokens = r.bool("single_use_tokens").unwrap_or(false);
    if single_use_tokens && !require_expiry {
        // A used token is remembered until its `exp`: without one it would be kept forever.
        r.problem(
            "single_use_tokens",
            "requires `require_expiry` (a used token is remembered until its `exp`); remove \
             `require_expiry: false` or turn `single_use_tokens` off",
        );
    }

    let (Some(primary), Some(published), Some(additional)) = (primary, published, additional)
    else {
        return None;
    };
    // With discovery the provider's issuer is the one tokens must name.
    if let Some(discovered) = published.as_ref().and_then(Published::issuer) {
        match &issuer {
            Some(configured) if configured != discovered => r.problem(
                "issuer",
                format!("`{configured}` differs from `oidc_issuer`; remove `issuer`"),
            ),
            _ => issuer = Some(discovered.to_owned()),
        }
    }
    let mut keys: Vec<TrustedKey> = primary.into_iter().collect();
    keys.extend(additional);
    for (i, key) in keys.iter().enumerate() {
        let Some(kid) = &key.key_id else { continue };
        if let Some(first) = keys[..i].iter().find(|k| k.key_id.as_ref() == Some(kid)) {
            r.problem(
                &format!("{}.key_id", key.name),
                format!("`{kid}` is already the `key_id` of the {} key", first.name),
            );
        }
    }
    Some(Config {
        keys,
        published,
        require_expiry,
        leeway_seconds,
        issuer,
        audiences,
        allow_registration,
        subject_claim,
        displayname_claim,
        admin_claim,
        update_displayname_on_login,
        single_use_tokens,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(value: Value) -> Result<Document, ConfigError> {
        Document::from_value(value, &["server"], Origin::Other("test".into()))
    }

    fn problem_keys(err: &ConfigError) -> Vec<&str> {
        err.problems().iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn config_accepts_flat_layout_with_defaults() {
        let doc = parse(json!({ "secret": SECRET64 })).expect("valid");
        let c = doc.policy;
        assert_eq!(c.keys[0].algorithms, vec![Algorithm::HS512]);
        assert!(c.require_expiry);
        assert_eq!(c.leeway_seconds, 60);
        assert!(!c.allow_registration);
        assert_eq!(c.subject_claim, "sub");
        assert_eq!(c.displayname_claim, "displayname");
        assert_eq!(c.admin_claim, "admin");
        assert!(c.update_displayname_on_login);
    }

    #[test]
    fn config_accepts_nested_jwt_layout_and_legacy_spelling() {
        let doc = parse(json!({
            "jwt": { "secret": SECRET64, "require_expiracy": false, "allow_registration": true }
        }))
        .expect("valid");
        assert!(!doc.policy.require_expiry);
        assert!(doc.policy.allow_registration);
    }

    #[test]
    fn config_keeps_host_sections() {
        let doc = parse(json!({ "secret": SECRET64, "server": { "listen": ["unix:/x"] } }))
            .expect("valid");
        assert_eq!(doc.sections["server"]["listen"][0], "unix:/x");
    }

    #[test]
    fn config_rejects_unknown_and_unsupported_keys_all_at_once() {
        let err = parse(json!({
            "secret": SECRET64, "algorithms": "HS256", "require_expiry": "yes"
        }))
        .expect_err("invalid");
        assert_eq!(problem_keys(&err), ["algorithms", "require_expiry"]);
        let err = parse(json!({ "jwt": { "secret": SECRET64 }, "epa": {} })).expect_err("invalid");
        assert_eq!(problem_keys(&err), ["epa"]);
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn config_rejects_weak_secret_unless_allowed() {
        let err = parse(json!({ "secret": "short" })).expect_err("weak");
        assert_eq!(problem_keys(&err), ["secret"]);
        assert!(err.to_string().contains("64 bytes"), "{err}");
        assert!(!err.to_string().contains("short"), "secret echoed: {err}");
        parse(json!({ "secret": "short", "allow_weak_secret": true })).expect("allowed");
    }

    #[test]
    fn config_rejects_alg_none_and_unknown_alg() {
        let err = parse(json!({ "secret": SECRET64, "algorithm": "none" })).expect_err("none");
        assert!(err.to_string().contains("never accepted"), "{err}");
        let err = parse(json!({ "secret": SECRET64, "algorithm": "HS1024" })).expect_err("bad");
        assert_eq!(problem_keys(&err), ["algorithm"]);
    }

    #[test]
    fn config_rejects_two_key_sources_and_none() {
        let err = parse(json!({ "secret": SECRET64, "keyfile": "/k.pem" })).expect_err("two");
        assert_eq!(problem_keys(&err), ["keyfile"]);
        let err = parse(json!({ "allow_registration": true })).expect_err("none");
        assert_eq!(problem_keys(&err), ["secret"]);
    }

    #[test]
    fn config_rejects_flat_key_beside_jwt_section() {
        let err = parse(json!({ "jwt": { "secret": SECRET64 }, "allow_registration": true }))
            .expect_err("mixed");
        assert_eq!(problem_keys(&err), ["allow_registration"]);
        assert!(
            err.to_string().contains("inside the `jwt` section"),
            "{err}"
        );
    }

    #[test]
    fn config_reports_a_wrongly_typed_key_once() {
        let err = parse(json!({ "secret": 64 })).expect_err("number");
        assert_eq!(problem_keys(&err), ["secret"]);
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn config_names_nested_key_paths() {
        let err = parse(json!({ "jwt": { "secret": SECRET64, "leeway_seconds": -1 } }))
            .expect_err("negative");
        assert_eq!(problem_keys(&err), ["jwt.leeway_seconds"]);
    }

    #[test]
    fn config_single_use_tokens_requires_expiry_in_both_layouts() {
        assert!(
            !parse(json!({ "secret": SECRET64 }))
                .expect("valid")
                .policy
                .single_use_tokens
        );
        let doc = parse(json!({ "secret": SECRET64, "single_use_tokens": true })).expect("valid");
        assert!(doc.policy.single_use_tokens);
        let err = parse(json!({
            "secret": SECRET64, "single_use_tokens": true, "require_expiry": false
        }))
        .expect_err("no expiry");
        assert_eq!(problem_keys(&err), ["single_use_tokens"]);
        assert!(err.to_string().contains("require_expiry"), "{err}");
        let err = parse(json!({
            "jwt": { "secret": SECRET64, "single_use_tokens": true, "require_expiracy": false }
        }))
        .expect_err("no expiry");
        assert_eq!(problem_keys(&err), ["jwt.single_use_tokens"]);
        let err =
            parse(json!({ "secret": SECRET64, "single_use_tokens": "yes" })).expect_err("type");
        assert_eq!(problem_keys(&err), ["single_use_tokens"]);
    }

    #[test]
    fn config_error_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "secret = \n").expect("write");
        let err = read_toml_file(&path).expect_err("syntax");
        let text = err.to_string();
        assert!(
            text.contains("bad.toml") && text.contains("line 1"),
            "{text}"
        );
    }
}
