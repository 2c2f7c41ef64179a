//! `verify`: what would the daemon say about this token? The tool for a login that gets 403.

use std::{io::Read as _, path::Path, process::ExitCode};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;
use synapse_token_auth::{Config, RejectReason, Verifier, config::TrustedKey, fetch::Fetcher};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The token, or `-` to read it from standard input (keeps it out of shell history).
    token: String,
    /// The user in the login request: a localpart or a full user id.
    #[arg(long)]
    user: String,
    /// The homeserver's `server_name`.
    #[arg(long)]
    server_name: String,
    /// Verify as if it were this Unix time (seconds) instead of now.
    #[arg(long)]
    now: Option<u64>,
}

pub fn run(config: &Path, options: &Options) -> ExitCode {
    let Ok(daemon) = super::load_config(config) else {
        return super::exit(2);
    };
    let token = if options.token == "-" {
        let mut text = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("error: cannot read the token from standard input: {err}");
            return super::exit(2);
        }
        text.trim().to_owned()
    } else {
        options.token.clone()
    };
    let verifier = Verifier::new(daemon.document.policy);
    let now = options.now.unwrap_or_else(synapse_token_auth::unix_now);
    let outcome = match verifier.remote_keys() {
        // Keys published at a URL: fetched as the daemon would, once.
        Some(remote) if options.now.is_none() => {
            let fetched = Fetcher::new(remote)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    super::block_on(f.login(&verifier, &token, &options.user, &options.server_name))
                        .map_err(|e| e.to_string())
                });
            match fetched {
                Ok(outcome) => {
                    eprintln!("keys: fetched from {}", remote.location.describe());
                    outcome
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    return super::exit(2);
                }
            }
        }
        _ => verifier.verify(&token, &options.user, &options.server_name, now),
    };
    match outcome {
        Ok(verdict) => {
            match serde_json::to_string_pretty(&verdict) {
                Ok(json) => println!("{json}"),
                Err(err) => eprintln!("warning: cannot print the verdict: {err}"),
            }
            eprintln!("accepted");
            ExitCode::SUCCESS
        }
        Err(rejection) => {
            println!("rejected: {}", rejection.reason);
            eprintln!("{}", explain(rejection.reason));
            let token = Token::decode(&token);
            for line in details(
                verifier.config(),
                &token,
                &options.user,
                now,
                rejection.reason,
            ) {
                eprintln!("  {line}");
            }
            super::exit(1)
        }
    }
}

/// Header and claims as the token states them, decoded without any check.
struct Token {
    header: Option<Value>,
    claims: Option<Value>,
}

impl Token {
    fn decode(token: &str) -> Self {
        let mut parts = token.split('.');
        let mut next = || {
            parts
                .next()
                .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        };
        let header = next();
        let claims = next();
        Self { header, claims }
    }

    fn header(&self, name: &str) -> String {
        shown(self.header.as_ref().and_then(|h| h.get(name)))
    }

    fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.as_ref().and_then(|c| c.get(name))
    }
}

/// A token value for the terminal: JSON (so control characters arrive escaped), bounded.
fn shown(value: Option<&Value>) -> String {
    const MAX: usize = 200;
    let Some(value) = value else {
        return "(none)".to_owned();
    };
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// What the token says that bears on `reason`, beside what the configuration expects. For the
/// claim checks the signature has verified, so the claims are the issuer's.
fn details(
    config: &Config,
    token: &Token,
    user: &str,
    now: u64,
    reason: RejectReason,
) -> Vec<String> {
    use synapse_token_auth::RejectReason as R;
    let keys = |describe: &dyn Fn(&TrustedKey) -> String| {
        config
            .keys
            .iter()
            .map(|k| format!("{} ({})", k.name, describe(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let time = |name: &str, past: bool| {
        let Some(at) = token.claim(name).and_then(Value::as_f64) else {
            return vec![format!("{name}: {}", shown(token.claim(name)))];
        };
        let (delta, direction) = if past {
            (now as f64 - at, "ago")
        } else {
            (at - now as f64, "from now")
        };
        vec![format!(
            "{name}: {at} ({} {direction}; leeway {} s)",
            human(delta.max(0.0) as u64),
            config.leeway_seconds
        )]
    };
    match reason {
        R::AlgorithmNotAllowed => vec![
            format!("token alg: {}", token.header("alg")),
            format!("configured keys: {}", keys(&algorithms)),
        ],
        R::UnknownKeyId | R::BadSignature => vec![
            format!(
                "token alg: {}, kid: {}",
                token.header("alg"),
                token.header("kid")
            ),
            format!(
                "configured keys: {}",
                keys(&|k| match &k.key_id {
                    Some(kid) => format!("{}, kid {kid:?}", algorithms(k)),
                    None => format!("{}, any kid", algorithms(k)),
                })
            ),
        ],
        R::Expired => time("exp", true),
        R::NotYetValid => time("nbf", false),
        R::IssuedInFuture => time("iat", false),
        R::WrongIssuer => vec![
            format!("token iss: {}", shown(token.claim("iss"))),
            format!("expected: {}", config.issuer.as_deref().unwrap_or("(any)")),
        ],
        R::WrongAudience if config.audiences.is_empty() => vec![
            format!("token aud: {}", shown(token.claim("aud"))),
            "accepted: none configured; a token that names an audience is accepted only when \
             `audiences` lists it: add the value meant for this homeserver to `audiences`"
                .to_owned(),
        ],
        R::WrongAudience => vec![
            format!("token aud: {}", shown(token.claim("aud"))),
            format!("accepted: {}", config.audiences.join(", ")),
        ],
        R::InvalidSubject | R::ForeignServer | R::SubjectMismatch => vec![
            format!(
                "token {}: {}",
                config.subject_claim,
                shown(token.claim(&config.subject_claim))
            ),
            format!("--user: {user}"),
        ],
        R::InvalidAdminClaim => vec![format!(
            "token {}: {}",
            config.admin_claim,
            shown(token.claim(&config.admin_claim))
        )],
        _ => Vec::new(),
    }
}

/// A key's algorithms, as `HS256/HS512`.
fn algorithms(key: &TrustedKey) -> String {
    let names: Vec<String> = key.algorithms.iter().map(|a| format!("{a:?}")).collect();
    names.join("/")
}

/// A duration for people: the two largest units.
fn human(seconds: u64) -> String {
    let units = [("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(seconds, |rest, (name, size)| {
            let count = *rest / size;
            *rest %= size;
            Some((count, name))
        })
        .skip_while(|(count, _)| *count == 0)
        .take(2)
        .filter(|(count, _)| *count > 0)
        .map(|(count, name)| format!("{count} {name}"))
        .collect();
    if parts.is_empty() {
        "0 s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// One line of advice per reason code.
fn explain(reason: synapse_token_auth::RejectReason) -> &'static str {
    use synapse_token_auth::RejectReason as R;
    match reason {
        R::MalformedToken => {
            "the token is not a compact JWS: three base64url parts, JSON header and payload"
        }
        R::TokenTooLarge => "the token is longer than 8 KiB",
        R::AlgorithmNotAllowed => "the header's `alg` is not in the configured `algorithm` list",
        R::UnsupportedHeader => {
            "the header has `crit` or `b64` (no JWS extension is supported) or `cty: JWT` (nested \
             tokens are not supported)"
        }
        R::UnknownKeyId => {
            "the header's `kid` matches the `key_id` of no key that accepts the token's `alg`"
        }
        R::KeysUnavailable => {
            "the key source has no usable keys: the identity provider could not be reached, or \
             its last key set is older than the maximum staleness"
        }
        R::BadSignature => {
            "the signature verifies with no configured key: wrong key or modified token"
        }
        R::MalformedClaim => "`exp`, `nbf` or `iat` is not a number",
        R::MissingExpiry => "no `exp` claim, and `require_expiry` is on",
        R::Expired => "`exp` is in the past (more than `leeway_seconds` ago)",
        R::NotYetValid => "`nbf` is in the future (beyond `leeway_seconds`)",
        R::IssuedInFuture => "`iat` is in the future (beyond `leeway_seconds`): check the clocks",
        R::WrongIssuer => "`iss` is missing or differs from the configured `issuer`",
        R::WrongAudience => {
            "`aud` names none of the configured `audiences` (a token with `aud` needs `audiences`)"
        }
        R::InvalidSubject => {
            "the subject claim is missing, not a string, or not a valid Matrix user"
        }
        R::InvalidUser => "`--user` is not a valid localpart or user id",
        R::ForeignServer => "a full user id of another homeserver than `--server-name`",
        R::SubjectMismatch => "the subject claim names another user than `--user`",
        R::ChatboxLocalpart => "`type: chatbox` requires a localpart ending in a UUID",
        R::InvalidAdminClaim => "the admin claim must be a JSON boolean",
        R::InvalidDisplayname => {
            "the display name claim must be a string of at most 256 characters"
        }
        _ => "see the documentation of this reason code",
    }
}
