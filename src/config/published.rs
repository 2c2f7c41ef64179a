//! The keys of a policy whose primary key source is published by an identity provider:
//! `jwks_url`, `oidc_issuer` or `jwks_file`, and the cache tuning of a remote source.

use std::{path::PathBuf, sync::Arc};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{Reader, algorithm_names, keys::parse_algorithms};
use crate::keys::{
    KeyType,
    cache::CachePolicy,
    jwks::{KeySet, MAX_JWKS_BYTES},
    published::{DEFAULT_MAX_BYTES, Location, PublishedSource, RemoteKeys, check_url},
};

/// The keys that name a published key source; at most one, and not beside a static key source.
pub(super) const PUBLISHED_SOURCES: &[&str] = &["jwks_url", "oidc_issuer", "jwks_file"];

/// Tuning of a remote key source: `(key, default, least, most)`.
const TUNING: &[(&str, u64, u64, u64)] = &[
    ("jwks_freshness_seconds", 600, 60, 86_400),
    ("jwks_refetch_cooldown_seconds", 30, 1, 3_600),
    ("jwks_max_staleness_seconds", 86_400, 0, 7 * 86_400),
    ("jwks_fetch_timeout_seconds", 5, 1, 60),
    (
        "jwks_max_bytes",
        DEFAULT_MAX_BYTES as u64,
        4_096,
        MAX_JWKS_BYTES as u64,
    ),
];

/// The tuning keys, and the CA file of a private PKI.
pub(super) fn remote_only_keys() -> impl Iterator<Item = &'static str> {
    TUNING
        .iter()
        .map(|(key, ..)| *key)
        .chain(std::iter::once("jwks_ca_file"))
}

/// The published primary key source of a policy.
#[derive(Debug, Clone)]
pub struct Published {
    pub source: PublishedSource,
    /// Algorithms tokens signed with these keys may use; asymmetric only.
    pub algorithms: Vec<Algorithm>,
}

impl Published {
    /// For `check-config`: the source, its algorithms and tuning, no key material.
    pub(super) fn redacted(&self) -> Map<String, Value> {
        let mut out = Map::new();
        match &self.source {
            PublishedSource::File { path, .. } => {
                out.insert("jwks_file".into(), path.display().to_string().into());
            }
            PublishedSource::Remote(remote) => {
                match &remote.location {
                    Location::KeySet(url) => out.insert("jwks_url".into(), url.as_str().into()),
                    Location::Discovery { issuer, .. } => {
                        out.insert("oidc_issuer".into(), issuer.clone().into())
                    }
                };
                let p = remote.policy;
                for (key, value) in [
                    ("jwks_freshness_seconds", p.default_freshness),
                    ("jwks_refetch_cooldown_seconds", p.cooldown),
                    ("jwks_max_staleness_seconds", p.max_staleness),
                    ("jwks_fetch_timeout_seconds", p.fetch_timeout),
                    ("jwks_max_bytes", remote.max_bytes as u64),
                ] {
                    out.insert(key.into(), value.into());
                }
                if let Some(ca) = &remote.ca_file {
                    out.insert("jwks_ca_file".into(), ca.display().to_string().into());
                }
            }
        }
        out.insert("algorithm".into(), algorithm_names(&self.algorithms));
        out
    }

    /// The issuer that `oidc_issuer` implies for the `iss` check.
    pub(super) fn issuer(&self) -> Option<&str> {
        match &self.source {
            PublishedSource::Remote(remote) => match &remote.location {
                Location::Discovery { issuer, .. } => Some(issuer),
                Location::KeySet(_) => None,
            },
            PublishedSource::File { .. } => None,
        }
    }
}

/// Reads the published key source of `r`'s map. `None` means a problem was recorded.
pub(super) fn parse_published(r: &mut Reader<'_>) -> Option<Published> {
    let algorithms = if r.map.get("algorithm").is_none_or(Value::is_null) {
        Some(vec![Algorithm::RS256])
    } else {
        parse_algorithms(r).and_then(|algorithms| {
            let hmac: Vec<String> = algorithms
                .iter()
                .filter(|a| KeyType::for_algorithm(**a) == Some(KeyType::Hmac))
                .map(|a| format!("{a:?}"))
                .collect();
            if hmac.is_empty() {
                return Some(algorithms);
            }
            r.problem(
                "algorithm",
                format!(
                    "{} needs a shared secret; a published key set holds public keys only \
                     (use RS256, PS256, ES256, EdDSA, …)",
                    hmac.join(", ")
                ),
            );
            None
        })
    };
    for key in ["key_id", "allow_weak_secret"] {
        if r.map.contains_key(key) {
            r.problem(
                key,
                "binds a secret or key file; the keys of a published set carry their own `kid`",
            );
        }
    }
    let given: Vec<&str> = PUBLISHED_SOURCES
        .iter()
        .copied()
        .filter(|k| r.map.contains_key(*k))
        .collect();
    if given.len() > 1 {
        r.problem(
            given[1],
            format!(
                "only one key source may be set, found `{}`",
                given.join("` and `")
            ),
        );
        return None;
    }
    let algorithms = algorithms?;
    let source = if let Some(path) = r.non_empty_string("jwks_file") {
        if let Some(key) = remote_only_keys().find(|k| r.map.contains_key(*k)) {
            r.problem(key, "only for `jwks_url` or `oidc_issuer`");
        }
        let path = PathBuf::from(path);
        let keys = crate::keys::read_file(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| KeySet::parse(&bytes, &algorithms).map_err(|e| e.to_string()));
        match keys {
            Ok((keys, _ignored)) => PublishedSource::File {
                path,
                keys: Arc::new(keys),
            },
            Err(message) => {
                r.problem("jwks_file", message);
                return None;
            }
        }
    } else {
        let location = if let Some(url) = r.non_empty_string("jwks_url") {
            check_url(&url)
                .map(Location::KeySet)
                .map_err(|message| r.problem("jwks_url", message))
                .ok()
        } else {
            let issuer = r.non_empty_string("oidc_issuer")?;
            Location::discovery(&issuer)
                .map_err(|message| r.problem("oidc_issuer", message))
                .ok()
        };
        let tuning: Vec<u64> = TUNING
            .iter()
            .map(|&(key, default, least, most)| {
                let value = r.u64(key).unwrap_or(default);
                if !(least..=most).contains(&value) {
                    r.problem(key, format!("must be between {least} and {most}"));
                }
                value
            })
            .collect();
        let &[
            default_freshness,
            cooldown,
            max_staleness,
            fetch_timeout,
            max_bytes,
        ] = tuning.as_slice()
        else {
            return None;
        };
        let policy = CachePolicy {
            default_freshness,
            cooldown,
            max_staleness,
            fetch_timeout,
            ..CachePolicy::default()
        };
        let max_bytes = usize::try_from(max_bytes).unwrap_or(DEFAULT_MAX_BYTES);
        let ca_file = r.non_empty_string("jwks_ca_file").map(PathBuf::from);
        if let Some(ca) = &ca_file
            && let Err(e) = crate::keys::read_file(ca)
        {
            r.problem("jwks_ca_file", e.to_string());
        }
        PublishedSource::Remote(Arc::new(RemoteKeys::new(
            location?,
            algorithms.clone(),
            policy,
            max_bytes,
            ca_file,
        )))
    };
    Some(Published { source, algorithms })
}
