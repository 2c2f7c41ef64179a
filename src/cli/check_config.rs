//! `check-config`: validate a configuration file and show what it means.

use std::{path::PathBuf, process::ExitCode};

use synapse_token_auth::{fetch::Fetcher, keys::published::RemoteKeys};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// File to check instead of `--config`.
    path: Option<PathBuf>,
    /// Do not fetch a published key set (`jwks_url`, `oidc_issuer`) to list its keys.
    #[arg(long)]
    offline: bool,
}

pub fn run(config: &std::path::Path, options: &Options) -> ExitCode {
    let path = options.path.as_deref().unwrap_or(config);
    let Ok(daemon) = super::load_config(path) else {
        return super::exit(1);
    };
    let mut effective = serde_json::Map::new();
    let policy = &daemon.document.policy;
    if policy.keys.is_empty() && policy.published.is_none() {
        eprintln!("JWT login: off (only the [oauth]/[oidc] login types are configured)");
    } else {
        effective.insert("jwt".into(), policy.redacted());
    }
    if let Some(oauth) = &daemon.oauth {
        effective.insert("oauth".into(), without_nulls(oauth.redacted()));
    }
    if let Some(oidc) = &daemon.oidc {
        effective.insert("oidc".into(), without_nulls(oidc.redacted()));
    }
    match serde_json::to_value(&daemon.server) {
        Ok(server) => {
            effective.insert("server".into(), server);
        }
        Err(err) => eprintln!("warning: cannot show [server]: {err}"),
    }
    match toml::to_string_pretty(&effective) {
        Ok(text) => print!("# effective configuration of {}\n{text}", path.display()),
        Err(err) => eprintln!("warning: cannot show the effective configuration: {err}"),
    }
    let verifier = synapse_token_auth::Verifier::new(daemon.document.policy);
    if let Some(remote) = verifier.remote_keys() {
        if options.offline {
            eprintln!(
                "keys at {}: not fetched (--offline)",
                remote.location.describe()
            );
        } else if !list_published_keys(remote) {
            return super::exit(1);
        }
    }
    eprintln!("configuration OK");
    ExitCode::SUCCESS
}

/// TOML has no null: leave those keys out.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect(),
        other => other,
    }
}

/// Fetches the published key set once and lists its keys; false when that failed.
fn list_published_keys(remote: &std::sync::Arc<RemoteKeys>) -> bool {
    let now = synapse_token_auth::unix_now();
    let (Some(request), Ok(fetcher)) = (remote.begin_fetch(now), Fetcher::new(remote)) else {
        eprintln!("error: cannot set up the HTTPS client for the key set");
        return false;
    };
    let mut good = true;
    let ran = super::block_on(fetcher.run_reporting(remote, request, |_, report| {
        eprintln!("{}", report.message);
        for ignored in &report.ignored {
            eprintln!(
                "  key not used: kid {}: {}",
                ignored.kid.as_deref().unwrap_or("(none)"),
                ignored.why
            );
        }
        good &= report.ok;
    }));
    let Some(keys) = remote.cached(now).filter(|_| ran.is_ok() && good) else {
        eprintln!("error: no usable keys at {}", remote.location.describe());
        return false;
    };
    for key in keys.keys() {
        let algorithms: Vec<String> = key.algorithms.iter().map(|a| format!("{a:?}")).collect();
        eprintln!(
            "  key: kid {}, {}, verifies {}",
            key.kid.as_deref().unwrap_or("(none)"),
            key.key.key_type(),
            algorithms.join("/")
        );
    }
    true
}
