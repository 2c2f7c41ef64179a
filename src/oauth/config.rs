//! Reading the `oauth` section, with the original's key names (0.14.1), every problem named by
//! its path (`oauth.jwt_validation.jwk_file`, …). Unlike the original, which ignores keys it does
//! not know, a misspelt key is an error: a typo must not silently turn a check off.

use std::{path::PathBuf, sync::Arc};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{
    Introspection, JwtValidation, OAuth, UsernameType, Webhook,
    claims::{ClaimSource, SOURCE_KEYS},
    http::Endpoint,
};
use crate::{
    config::{Config, DEFAULT_LEEWAY_SECONDS, Problem, Published, Reader, TrustedKey, kind},
    keys::{
        KeySource, KeyType, VerificationKey,
        cache::CachePolicy,
        jwks::KeySet,
        published::{DEFAULT_MAX_BYTES, Location, PublishedSource, RemoteKeys, check_url},
    },
    verify::Verifier,
};

const OAUTH_KEYS: &[&str] = &[
    "jwt_validation",
    "introspection_validation",
    "username_type",
    "notify_on_registration",
    "expose_metadata_resource",
    "registration_enabled",
    "check_external_id",
];
/// `jwt_validation` besides the claim source keys; `issuer`, `audiences` and `leeway_seconds`
/// are this project's, for checks the original leaves to a `validator`.
const JWT_KEYS: &[&str] = &[
    "require_expiry",
    "jwk_set",
    "jwk_file",
    "jwks_endpoint",
    "issuer",
    "audiences",
    "leeway_seconds",
    "single_use_tokens",
];
const INTROSPECTION_KEYS: &[&str] = &["endpoint", "auth", "timeout_seconds"];
const WEBHOOK_KEYS: &[&str] = &["url", "auth", "interrupt_on_error", "timeout_seconds"];

/// What a published or PEM key may verify: asymmetric algorithms only, so that no public key can
/// ever be used as an HMAC secret.
pub(super) const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl OAuth {
    /// Reads the `oauth` section; `prefix` names it in problems (e.g. `oauth.`).
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    pub fn parse(value: &Value, prefix: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let parsed = section(value, prefix, &mut problems, OAUTH_KEYS, parse_oauth);
        match parsed.flatten() {
            Some(oauth) if problems.is_empty() => Ok(oauth),
            _ => Err(problems),
        }
    }

    /// The effective configuration for the start-up log line, without secrets.
    #[must_use]
    pub fn redacted(&self) -> Value {
        let mut out = Map::new();
        if let Some(jwt) = &self.jwt {
            out.insert("jwt_validation".into(), jwt.verifier.config().redacted());
        }
        if let Some(i) = &self.introspection {
            out.insert(
                "introspection_validation".into(),
                serde_json::json!({"endpoint": i.endpoint.url.as_str(), "auth": i.endpoint.auth.redacted()}),
            );
        }
        if let Some(w) = &self.notify {
            out.insert(
                "notify_on_registration".into(),
                serde_json::json!({"url": w.endpoint.url.as_str(), "auth": w.endpoint.auth.redacted(),
                    "interrupt_on_error": w.interrupt_on_error}),
            );
        }
        out.insert(
            "registration_enabled".into(),
            self.registration_enabled.into(),
        );
        out.insert("check_external_id".into(), self.check_external_id.into());
        Value::Object(out)
    }
}

/// Runs `parse` on a mapping section after reporting its unknown keys.
pub(super) fn section<T>(
    value: &Value,
    prefix: &str,
    problems: &mut Vec<Problem>,
    known: &[&str],
    parse: impl FnOnce(&mut Reader<'_>) -> T,
) -> Option<T> {
    let at = prefix.trim_end_matches('.');
    let Value::Object(map) = value else {
        problems.push(Problem {
            key: at.to_owned(),
            message: format!("expected a mapping, found {}", kind(value)),
        });
        return None;
    };
    let mut r = Reader {
        map,
        prefix,
        problems,
    };
    report_unknown(&mut r, known);
    Some(parse(&mut r))
}

/// A problem for each key of the reader's map that is not in `known`, in name order.
pub(super) fn report_unknown(r: &mut Reader<'_>, known: &[&str]) {
    let mut unknown: Vec<&String> = r
        .map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    unknown.sort();
    for key in unknown {
        r.problem(
            key,
            format!("unknown key; known keys are {}", known.join(", ")),
        );
    }
}

fn parse_oauth(r: &mut Reader<'_>) -> Option<OAuth> {
    let sub = |r: &mut Reader<'_>, key: &str| r.map.get(key).filter(|v| !v.is_null()).cloned();
    let jwt = sub(r, "jwt_validation").map(|v| {
        let known: Vec<&str> = SOURCE_KEYS.iter().chain(JWT_KEYS).copied().collect();
        let prefix = format!("{}jwt_validation.", r.prefix);
        section(&v, &prefix, r.problems, &known, parse_jwt).flatten()
    });
    let introspection = sub(r, "introspection_validation").map(|v| {
        let known: Vec<&str> = SOURCE_KEYS
            .iter()
            .chain(INTROSPECTION_KEYS)
            .copied()
            .collect();
        let prefix = format!("{}introspection_validation.", r.prefix);
        section(&v, &prefix, r.problems, &known, |r| {
            let endpoint = Endpoint::parse(r, "endpoint");
            let claims = ClaimSource::parse(r);
            Some(Introspection {
                endpoint: endpoint?,
                claims: claims?,
            })
        })
        .flatten()
    });
    if jwt.is_none() && introspection.is_none() {
        r.problem(
            "jwt_validation",
            "set `jwt_validation`, `introspection_validation` or both",
        );
    }
    let named = [
        jwt.as_ref().and_then(Option::as_ref).map(|j| &j.claims),
        introspection
            .as_ref()
            .and_then(Option::as_ref)
            .map(|i| &i.claims),
    ];
    if named.iter().flatten().next().is_some() && !named.iter().flatten().any(|c| c.names_user()) {
        // The token must name the user; without a path to read it from, every login fails.
        r.problem(
            if jwt.is_some() {
                "jwt_validation.localpart_path"
            } else {
                "introspection_validation.localpart_path"
            },
            "no claim names the user: set `localpart_path` or `fq_uid_path`",
        );
    }
    // As the original: a list of allowed user ids in one source and a user path in the other
    // would leave it open which one names the user.
    if let [Some(a), Some(b)] = named {
        let list_and_path = |x: &ClaimSource, y: &ClaimSource| {
            x.alternative_fq_uids.is_some() && (y.localpart.is_some() || y.fq_uid.is_some())
        };
        if list_and_path(a, b) || list_and_path(b, a) {
            r.problem(
                "introspection_validation.alternative_fq_uids_path",
                "cannot be combined with `localpart_path` or `fq_uid_path` in the other validation",
            );
        }
    }
    let username_type = match r.map.get("username_type") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s == "localpart" => Some(Some(UsernameType::Localpart)),
        Some(Value::String(s)) if s == "fq_uid" => Some(Some(UsernameType::FqUid)),
        Some(Value::String(s)) if s == "user_id" => Some(Some(UsernameType::UserId)),
        Some(_) => {
            r.problem(
                "username_type",
                "expected `localpart`, `fq_uid`, `user_id` or null",
            );
            None
        }
    };
    let notify = sub(r, "notify_on_registration").map(|v| {
        let prefix = format!("{}notify_on_registration.", r.prefix);
        section(&v, &prefix, r.problems, WEBHOOK_KEYS, |r| {
            let endpoint = Endpoint::parse(r, "url");
            let interrupt_on_error = r.bool("interrupt_on_error").unwrap_or(true);
            Some(Webhook {
                endpoint: endpoint?,
                interrupt_on_error,
            })
        })
        .flatten()
    });
    let metadata_resource = match r.map.get("expose_metadata_resource") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(m)) if m.is_empty() => Some(None),
        Some(Value::Object(m)) => match m.get("name") {
            // The name becomes a path segment under /_famedly/login/.
            Some(Value::String(name))
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                Some(Some(m.clone()))
            }
            _ => {
                r.problem(
                    "expose_metadata_resource.name",
                    "required: a name of letters, digits, `.`, `_` and `-` (the resource is \
                     served at /_famedly/login/NAME)",
                );
                None
            }
        },
        Some(other) => {
            r.problem(
                "expose_metadata_resource",
                format!("expected a mapping with `name`, found {}", kind(other)),
            );
            None
        }
    };
    let registration_enabled = r.bool("registration_enabled").unwrap_or(false);
    let check_external_id = r.bool("check_external_id").unwrap_or(true);
    Some(OAuth {
        jwt: jwt.map(|j| j.ok_or(())).transpose().ok()?,
        introspection: introspection.map(|i| i.ok_or(())).transpose().ok()?,
        username_type: username_type?,
        notify: notify.map(|n| n.ok_or(())).transpose().ok()?,
        metadata_resource: metadata_resource?,
        registration_enabled,
        check_external_id,
    })
}

fn parse_jwt(r: &mut Reader<'_>) -> Option<JwtValidation> {
    let claims = ClaimSource::parse(r);
    // The original's default, kept for drop-in configurations: `exp` is still checked whenever
    // a token has one.
    let require_expiry = r.bool("require_expiry").unwrap_or(false);
    let leeway_seconds = r.u64("leeway_seconds").unwrap_or(DEFAULT_LEEWAY_SECONDS);
    if leeway_seconds > crate::config::MAX_LEEWAY_SECONDS {
        r.problem("leeway_seconds", "must be at most 86400 (one day)");
    }
    let issuer = r.non_empty_string("issuer");
    let audiences = r.strings("audiences").unwrap_or_default();
    let single_use_tokens = r.bool("single_use_tokens").unwrap_or(false);
    if single_use_tokens && !require_expiry {
        // A used token is remembered until its `exp`: without one it would be kept forever.
        r.problem(
            "single_use_tokens",
            "requires `require_expiry: true` (a used token is remembered until its `exp`)",
        );
    }
    let (keys, published) = parse_jwt_keys(r)?;
    // Only the keys and the validity checks: the oauth type names the user by its own paths.
    let config = Config {
        keys,
        published,
        require_expiry,
        leeway_seconds,
        issuer,
        audiences,
        single_use_tokens,
        ..Config::no_jwt_login()
    };
    Some(JwtValidation {
        verifier: Verifier::new(config),
        claims: claims?,
    })
}

/// Exactly one of `jwk_set` (a JWK Set or one JWK, inline as a mapping or a JSON string),
/// `jwk_file` (a PEM public key) and `jwks_endpoint` (fetched and cached like `jwks_url`).
fn parse_jwt_keys(r: &mut Reader<'_>) -> Option<(Vec<TrustedKey>, Option<Published>)> {
    let given: Vec<&str> = ["jwk_set", "jwk_file", "jwks_endpoint"]
        .into_iter()
        .filter(|k| r.map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match given.as_slice() {
        [_] => {}
        [] => {
            r.problem(
                "jwk_set",
                "set exactly one of `jwk_set`, `jwk_file` and `jwks_endpoint`",
            );
            return None;
        }
        [_, second, ..] => {
            r.problem(
                second,
                format!(
                    "only one key source may be set, found `{}`",
                    given.join("` and `")
                ),
            );
            return None;
        }
    }
    let published = |source| Published {
        source,
        algorithms: ASYMMETRIC.to_vec(),
    };
    if let Some(url) = r.non_empty_string("jwks_endpoint") {
        let url = check_url(&url)
            .map_err(|message| r.problem("jwks_endpoint", message))
            .ok()?;
        let remote = RemoteKeys::new(
            Location::KeySet(url),
            ASYMMETRIC.to_vec(),
            CachePolicy::default(),
            DEFAULT_MAX_BYTES,
            None,
        );
        return Some((
            Vec::new(),
            Some(published(PublishedSource::Remote(Arc::new(remote)))),
        ));
    }
    if let Some(path) = r.non_empty_string("jwk_file") {
        let source = KeySource::Keyfile(PathBuf::from(path));
        let key = VerificationKey::load(&source, &[], false)
            .map_err(|e| r.problem("jwk_file", e.to_string()))
            .ok()?;
        if key.key_type() == KeyType::Hmac {
            r.problem("jwk_file", "expected a PEM public key");
            return None;
        }
        let algorithms: Vec<Algorithm> = ASYMMETRIC
            .iter()
            .copied()
            .filter(|a| KeyType::for_algorithm(*a) == Some(key.key_type()))
            .collect();
        return Some((
            vec![TrustedKey {
                name: Arc::from("jwk_file"),
                key,
                source,
                algorithms,
                key_id: None,
            }],
            None,
        ));
    }
    let value = r.map.get("jwk_set")?;
    let set = match value {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| r.problem("jwk_set", format!("not JSON: {e}")))
            .ok()?,
        other => other.clone(),
    };
    // One JWK is a set of one, as the original reads it.
    let set = match set {
        Value::Object(ref m) if !m.contains_key("keys") => serde_json::json!({"keys": [set]}),
        other => other,
    };
    let bytes = serde_json::to_vec(&set).unwrap_or_default();
    let (keys, ignored) = KeySet::parse(&bytes, ASYMMETRIC)
        .map_err(|e| r.problem("jwk_set", e.to_string()))
        .ok()?;
    if let Some(first) = ignored.first() {
        r.problem(
            "jwk_set",
            format!(
                "key {} cannot be used: {} (only public RSA, EC P-256/P-384 and Ed25519 keys for \
                 signatures)",
                first.kid.as_deref().unwrap_or("without kid"),
                first.why
            ),
        );
        return None;
    }
    Some((
        Vec::new(),
        Some(published(PublishedSource::File {
            path: PathBuf::from("jwk_set"),
            keys: Arc::new(keys),
        })),
    ))
}
