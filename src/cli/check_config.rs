//! `check-config`: validate a configuration file and show what it means.

use std::{path::PathBuf, process::ExitCode};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// File to check instead of `--config`.
    path: Option<PathBuf>,
}

pub fn run(config: &std::path::Path, options: &Options) -> ExitCode {
    let path = options.path.as_deref().unwrap_or(config);
    let Ok(daemon) = super::load_config(path) else {
        return super::exit(1);
    };
    let mut effective = serde_json::Map::new();
    effective.insert("jwt".into(), daemon.document.policy.redacted());
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
    eprintln!("configuration OK");
    ExitCode::SUCCESS
}
