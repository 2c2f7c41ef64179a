//! `verify`: what would the daemon say about this token? The tool for a login that gets 403.

use std::{io::Read as _, path::Path, process::ExitCode};

use synapse_token_auth::Verifier;

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
    match verifier.verify(&token, &options.user, &options.server_name, now) {
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
            super::exit(1)
        }
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
        R::UnsupportedHeader => "the header has `crit`; no JWS extensions are supported",
        R::UnknownKeyId => {
            "the header's `kid` matches the `key_id` of no key that accepts the token's `alg`"
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
        R::WrongAudience => "`aud` names none of the configured `audiences`",
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
