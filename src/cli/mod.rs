//! Command line: `serve` (default), `check-config`, `mint`, `verify`.
//!
//! Exit codes: 0 success; 1 the thing checked is bad (invalid config, rejected token);
//! 2 the command could not do its job (usage, unreadable or invalid config for `verify`/`mint`).

mod check_config;
mod mint;
mod serve;
mod verify;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use synapse_token_auth::{
    ConfigError,
    server::{DEFAULT_CONFIG, DaemonConfig},
};

/// JWT login for Synapse: the verifier daemon and tools to check its configuration and tokens.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, global = true, env = "SYNAPSE_TOKEN_AUTH_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the verifier daemon (the default): socket-activated or on `server.listen`.
    Serve,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig(check_config::Options),
    /// Create a signed token for testing, from the configured key or a private key.
    Mint(mint::Options),
    /// Verify a token as the daemon would, and print the verdict or the exact rejection reason.
    Verify(verify::Options),
}

pub fn main() -> ExitCode {
    // Socket activation first: the listening fds must be taken before anything else runs.
    let activated = synapse_token_auth::systemd::take_activated_listeners();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(&cli.config, activated),
        Command::CheckConfig(options) => check_config::run(&cli.config, &options),
        Command::Mint(options) => mint::run(&cli.config, &options),
        Command::Verify(options) => verify::run(&cli.config, &options),
    }
}

/// Loads the daemon configuration, printing every problem on its own line on failure.
fn load_config(path: &std::path::Path) -> Result<DaemonConfig, ()> {
    DaemonConfig::load(path).map_err(|err| report_config_error(&err))
}

fn report_config_error(err: &ConfigError) {
    match err {
        ConfigError::Invalid { origin, problems } => {
            eprintln!("error: invalid configuration in {origin}:");
            for problem in problems {
                eprintln!("  - {problem}");
            }
        }
        other => eprintln!("error: {}", error_chain(other)),
    }
}

/// The whole chain of an error on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Runs `future` to completion on a runtime of its own, for the commands that fetch keys.
fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, future))
}

fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}
