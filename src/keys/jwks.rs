//! JWK Sets (RFC 7517 section 5): the keys an identity provider publishes at its `jwks_uri`.
//!
//! A set is read whole, key by key: a key this verifier cannot or must not use is set aside with
//! the reason (logged once by the adapter), and the set is refused only when no key is left that
//! fits a configured algorithm. Nothing here does I/O: the adapters fetch the bytes.

use std::fmt;

use jsonwebtoken::{
    Algorithm,
    jwk::{AlgorithmParameters, Jwk},
};
use serde_json::Value;

use super::{KeyType, VerificationKey};

/// Largest JWK Set document read. Real sets are a few KiB; the bound keeps a hostile or broken
/// endpoint from costing memory and parse time.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys read from one set. Providers publish a handful (current, next, previous).
pub const MAX_KEYS: usize = 64;
/// Most keys tried for a token without `kid`: each try is a signature verification, and a set
/// is not a list to brute-force through.
pub const MAX_TRIES_WITHOUT_KID: usize = 4;

/// A key from a set that fits at least one configured algorithm.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    /// The JWK's `kid`, if any.
    pub kid: Option<String>,
    /// The JWK's `alg`, if any: then the key verifies only that algorithm (RFC 7517 section 4.4).
    pub alg: Option<Algorithm>,
    /// The configured algorithms this key verifies.
    pub algorithms: Vec<Algorithm>,
    pub key: VerificationKey,
}

/// A key of a set that will not be used, and why: for the fetch's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    pub kid: Option<String>,
    pub why: IgnoredWhy,
}

/// Why a published key is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoredWhy {
    /// A symmetric (`oct`) key: a shared secret published on the web is a misconfiguration.
    Symmetric,
    /// `use` is not `sig`, or `key_ops` does not allow `verify`.
    NotForSigning,
    /// Not a JWK this verifier reads (unknown `kty`, curve or `alg`, or missing members).
    Unsupported(String),
    /// A key of a supported type that is not safe to use (for example an RSA key under 2048 bits).
    Unusable(String),
    /// A usable key that fits none of the configured algorithms.
    NoConfiguredAlgorithm,
}

impl fmt::Display for IgnoredWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Symmetric => f.write_str("symmetric (oct) key in a published set"),
            Self::NotForSigning => f.write_str("not for signatures (`use` or `key_ops`)"),
            Self::Unsupported(detail) => write!(f, "unsupported: {detail}"),
            Self::Unusable(detail) => write!(f, "unusable: {detail}"),
            Self::NoConfiguredAlgorithm => f.write_str("fits none of the configured algorithms"),
        }
    }
}

/// Why a fetched document is not a usable key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is larger than {} KiB", MAX_JWKS_BYTES / 1024)]
    TooLarge,
    #[error("the key set is not JSON: {0}")]
    NotJson(String),
    #[error("the document is not a JWK Set (a JSON object with a `keys` array)")]
    NotASet,
    #[error("the key set has {0} keys; at most {MAX_KEYS} are read")]
    TooManyKeys(usize),
    #[error("no key in the set fits the configured algorithms ({ignored} ignored)")]
    NoUsableKey { ignored: usize },
}

/// The usable keys of one JWK Set.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<PublishedKey>,
}

impl KeySet {
    /// Reads a JWK Set, keeping the keys that verify one of `algorithms`.
    pub fn parse(
        bytes: &[u8],
        algorithms: &[Algorithm],
    ) -> Result<(Self, Vec<IgnoredKey>), JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let document: Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(JwksError::NotASet);
        };
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(entries.len()));
        }
        let mut keys = Vec::new();
        let mut ignored = Vec::new();
        for entry in entries {
            match read_key(entry, algorithms) {
                Ok(key) => keys.push(key),
                Err(why) => ignored.push(IgnoredKey {
                    kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    why,
                }),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey {
                ignored: ignored.len(),
            });
        }
        Ok((Self { keys }, ignored))
    }

    /// The keys a token signed with `alg` may be verified with: exactly the keys with its `kid`,
    /// or without a `kid` the first few that fit `alg`.
    pub fn candidates<'s>(
        &'s self,
        alg: Algorithm,
        kid: Option<&'s str>,
    ) -> impl Iterator<Item = &'s PublishedKey> + 's {
        let limit = if kid.is_some() {
            MAX_KEYS
        } else {
            MAX_TRIES_WITHOUT_KID
        };
        self.keys
            .iter()
            .filter(move |k| {
                k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid)
            })
            .take(limit)
    }

    /// Whether a key with this `kid` is in the set (whatever its algorithm).
    #[must_use]
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The usable keys, for logs and `check-config`.
    #[must_use]
    pub fn keys(&self) -> &[PublishedKey] {
        &self.keys
    }
}

fn read_key(entry: &Value, algorithms: &[Algorithm]) -> Result<PublishedKey, IgnoredWhy> {
    if entry.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(IgnoredWhy::Symmetric);
    }
    let jwk: Jwk = serde_json::from_value(entry.clone())
        .map_err(|e| IgnoredWhy::Unsupported(e.to_string()))?;
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err(IgnoredWhy::Symmetric);
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(Algorithm::try_from(alg).map_err(|_| {
            IgnoredWhy::Unsupported(format!("`alg` {alg} is not a signature algorithm"))
        })?),
    };
    let key = VerificationKey::from_jwk(&jwk).map_err(|e| match e {
        super::KeyError::NotForSigning => IgnoredWhy::NotForSigning,
        other => IgnoredWhy::Unsupported(other.to_string()),
    })?;
    let mut unusable = None;
    let fitting: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|&a| alg.is_none_or(|alg| alg == a))
        .filter(|&a| KeyType::for_algorithm(a) == Some(key.key_type()))
        .filter(|&a| match key.check(a) {
            Ok(()) => true,
            Err(e) => {
                unusable = Some(e.to_string());
                false
            }
        })
        .collect();
    if fitting.is_empty() {
        return Err(unusable.map_or(IgnoredWhy::NoConfiguredAlgorithm, IgnoredWhy::Unusable));
    }
    Ok(PublishedKey {
        kid: jwk.common.key_id,
        alg,
        algorithms: fitting,
        key,
    })
}
