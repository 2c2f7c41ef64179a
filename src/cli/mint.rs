//! `mint`: create a signed token, for testing a setup end to end.

use std::{path::PathBuf, process::ExitCode};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use synapse_token_auth::keys;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The user the token logs in: a localpart or a full user id.
    #[arg(long)]
    sub: String,
    /// Lifetime: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    expires_in: u64,
    /// Leave out `exp` (only accepted when `require_expiry = false`).
    #[arg(long, conflicts_with = "expires_in")]
    no_exp: bool,
    /// An extra claim; VALUE is parsed as JSON when it is valid JSON, else taken as a string.
    /// Repeatable: `--claim admin=true --claim displayname="Alice"`.
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
    /// Sign with this private key (PEM) instead of the configured key; needs `--alg`.
    #[arg(long, requires = "alg")]
    key: Option<PathBuf>,
    /// Algorithm; default: the first configured one.
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
    /// `kid` header value; default: the configured `key_id`, if any. Naming the `key_id` of one
    /// of `additional_keys` signs with that key.
    #[arg(long)]
    kid: Option<String>,
}

fn parse_duration(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 3600, 10m or 1h"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unit `{unit}` is not s, m, h or d")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long"))
}

fn parse_claim(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

fn parse_alg(text: &str) -> Result<Algorithm, String> {
    text.parse()
        .map_err(|_| format!("algorithm `{text}` is not supported"))
}

pub fn run(config: &std::path::Path, options: &Options) -> ExitCode {
    let (key, alg, kid) = match signing_key(config, options) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let now = synapse_token_auth::unix_now();
    let mut claims = Map::new();
    claims.insert("sub".into(), options.sub.clone().into());
    claims.insert("iat".into(), now.into());
    if !options.no_exp {
        claims.insert("exp".into(), now.saturating_add(options.expires_in).into());
    }
    for (name, value) in &options.claims {
        claims.insert(name.clone(), value.clone());
    }
    let mut header = Header::new(alg);
    header.kid = kid;
    match jsonwebtoken::encode(&header, &claims, &key) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: cannot sign: {err}");
            super::exit(2)
        }
    }
}

fn signing_key(
    config: &std::path::Path,
    options: &Options,
) -> Result<(EncodingKey, Algorithm, Option<String>), ExitCode> {
    if let (Some(path), Some(alg)) = (&options.key, options.alg) {
        return keys::encoding_key_from_pem_file(path, alg)
            .map(|key| (key, alg, options.kid.clone()))
            .map_err(|err| {
                eprintln!("error: `{}`: {err}", path.display());
                super::exit(2)
            });
    }
    let daemon = super::load_config(config).map_err(|()| super::exit(2))?;
    let policy = &daemon.document.policy;
    // `--kid` naming an additional key signs with that key: how to try a rotation end to end.
    let trusted = policy
        .keys
        .iter()
        .find(|k| options.kid.is_some() && k.key_id == options.kid)
        .or(policy.keys.first())
        .ok_or_else(|| super::exit(2))?;
    let alg = options
        .alg
        .or(trusted.algorithms.first().copied())
        .unwrap_or(Algorithm::HS512);
    let key = trusted.source.encoding_key(alg).map_err(|err| {
        eprintln!("error: `{}`: {err}", trusted.source.config_key());
        super::exit(2)
    })?;
    Ok((
        key,
        alg,
        options.kid.clone().or_else(|| trusted.key_id.clone()),
    ))
}
