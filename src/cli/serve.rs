//! `serve`: run the verifier daemon.

use std::{path::Path, process::ExitCode};

use synapse_token_auth::{
    server,
    systemd::{self, ActivationError, Listener, notify},
    telemetry,
};

pub fn run(
    config_path: &Path,
    activated: Result<Vec<(String, Listener)>, ActivationError>,
) -> ExitCode {
    // Until `server::run` has installed its handlers: a SIGHUP sent as soon as the process
    // exists must reload it, not kill it.
    systemd::block_control_signals();
    telemetry::init_daemon();
    let config = match server::DaemonConfig::load(config_path) {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(config = %config_path.display(), "cannot start: invalid configuration");
            // One problem per line; under systemd stderr is the journal.
            super::report_config_error(&err);
            notify(&[sd_notify::NotifyState::Status("invalid configuration")]);
            return super::exit(1);
        }
    };
    let unprotected = match &activated {
        Ok(activated) => server::check_activated(&config, activated).err(),
        Err(_) => None,
    };
    if let Some(message) = unprotected {
        tracing::error!(config = %config_path.display(), error = %message, "cannot start: a TCP socket is not protected");
        notify(&[sd_notify::NotifyState::Status(
            "refusing an unprotected TCP socket",
        )]);
        return super::exit(1);
    }
    let listeners = match activated {
        Ok(activated) if !activated.is_empty() => activated
            .into_iter()
            .map(|(name, listener)| (format!("{} ({name})", listener.describe()), listener))
            .collect(),
        Ok(_) => match server::bind(&config) {
            Ok(listeners) => listeners,
            Err(err) => {
                tracing::error!(error = &err as &dyn std::error::Error, listen = ?config.server.listen, "cannot bind");
                return super::exit(1);
            }
        },
        Err(err) => {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "cannot use the sockets passed by systemd"
            );
            return super::exit(1);
        }
    };
    let result = actix_web::rt::System::new().block_on(server::run(
        config_path.to_owned(),
        config,
        listeners,
    ));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = &err as &dyn std::error::Error, "server failed");
            super::exit(1)
        }
    }
}
