//! The key material of a policy: the primary key, `additional_keys`, and the algorithms each
//! verifies.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::{
    DEFAULT_ALGORITHM, KEY_SOURCES, MAX_ADDITIONAL_KEYS, Reader, TrustedKey, key_entry_keys, kind,
    known_keys,
};
use crate::keys::{KeySource, KeyType, VerificationKey};

/// One key: its source, algorithms, `key_id` and `allow_weak_secret`, from the reader's map.
pub(super) fn parse_key(r: &mut Reader<'_>, name: &str) -> Option<TrustedKey> {
    let algorithms = parse_algorithms(r);
    let allow_weak_secret = r.bool("allow_weak_secret").unwrap_or(false);
    let key_id = r.non_empty_string("key_id");
    let source = parse_key_source(r);
    let (Some(source), Some(algorithms)) = (source, algorithms) else {
        return None;
    };
    match VerificationKey::load(&source, &algorithms, allow_weak_secret) {
        Ok(key) => Some(TrustedKey {
            name: Arc::from(name),
            key,
            source,
            algorithms,
            key_id,
        }),
        Err(err) => {
            r.problem(source.config_key(), err.to_string());
            None
        }
    }
}

/// `additional_keys`: a list of mappings, each one key as at the top level.
pub(super) fn parse_additional_keys(r: &mut Reader<'_>) -> Option<Vec<TrustedKey>> {
    let entries = match r.map.get("additional_keys") {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            let found = kind(other);
            r.problem(
                "additional_keys",
                format!("expected a list of key mappings, found {found}"),
            );
            return None;
        }
    };
    if entries.len() > MAX_ADDITIONAL_KEYS {
        r.problem(
            "additional_keys",
            format!(
                "{} entries is more than the maximum of {MAX_ADDITIONAL_KEYS}",
                entries.len()
            ),
        );
        return None;
    }
    let mut keys = Vec::with_capacity(entries.len());
    let mut complete = true;
    for (i, entry) in entries.iter().enumerate() {
        let name = format!("additional_keys[{i}]");
        let prefix = format!("{}{name}.", r.prefix);
        let Value::Object(map) = entry else {
            r.problem(
                &name,
                format!(
                    "expected a mapping with a key source, found {}",
                    kind(entry)
                ),
            );
            complete = false;
            continue;
        };
        let mut entry_reader = Reader {
            map,
            prefix: &prefix,
            problems: &mut *r.problems,
        };
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| !key_entry_keys().any(|known| known == k.as_str()))
            .collect();
        unknown.sort();
        for key in unknown {
            entry_reader.problem(
                key,
                format!(
                    "unknown key in an additional key; known keys are {}",
                    known_keys(key_entry_keys())
                ),
            );
        }
        match parse_key(&mut entry_reader, &name) {
            Some(key) => keys.push(key),
            None => complete = false,
        }
    }
    complete.then_some(keys)
}

pub(super) fn parse_algorithms(r: &mut Reader<'_>) -> Option<Vec<Algorithm>> {
    if r.map.get("algorithm").is_none_or(Value::is_null) {
        return Some(vec![DEFAULT_ALGORITHM]);
    }
    // A wrong type has been reported by `strings`.
    let names = r.strings("algorithm")?;
    if names.is_empty() {
        r.problem("algorithm", "must name at least one algorithm");
        return None;
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for name in &names {
        if name.eq_ignore_ascii_case("none") {
            r.problem("algorithm", "`none` (unsigned tokens) is never accepted");
            return None;
        }
        let supported = name
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| KeyType::for_algorithm(*alg).is_some());
        match supported {
            Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Some(_) => {}
            None => {
                r.problem(
                    "algorithm",
                    format!(
                        "`{name}` is not supported; use one of HS256, HS384, HS512, RS256, RS384, \
                         RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
                    ),
                );
                return None;
            }
        }
    }
    Some(algorithms)
}

fn parse_key_source(r: &mut Reader<'_>) -> Option<KeySource> {
    let candidates = [
        r.string("secret").map(KeySource::Secret),
        r.non_empty_string("secret_file")
            .map(|p| KeySource::SecretFile(p.into())),
        r.non_empty_string("secret_credential")
            .map(KeySource::SecretCredential),
        r.non_empty_string("keyfile")
            .map(|p| KeySource::Keyfile(p.into())),
        r.non_empty_string("keyfile_credential")
            .map(KeySource::KeyfileCredential),
    ];
    let mut given: Vec<KeySource> = candidates.into_iter().flatten().collect();
    match given.len() {
        1 => given.pop(),
        // A key given with the wrong type has been reported already; say "missing" only when
        // none was given at all.
        0 if KEY_SOURCES.iter().any(|k| r.map.contains_key(*k)) => None,
        0 => {
            r.problem(
                "secret",
                "no key configured: set exactly one of `secret`, `secret_file`, \
                 `secret_credential`, `keyfile` or `keyfile_credential`",
            );
            None
        }
        _ => {
            let names: Vec<_> = given
                .iter()
                .map(|s| format!("`{}`", s.config_key()))
                .collect();
            r.problem(
                given[1].config_key(),
                format!(
                    "only one key source may be set, found {}",
                    names.join(" and ")
                ),
            );
            None
        }
    }
}
