//! JWT login for the Synapse Matrix homeserver.
//!
//! The library is the verification core shared by the verifier daemon and the Python module
//! Synapse loads: a [`config::Document`] validates the policy and loads the key once, and a
//! [`Verifier`] checks each login token against it, returning a [`Verdict`] or a [`Rejection`]
//! with a stable reason code. Nothing here does I/O at verification time: keys that an identity provider publishes are
//! fetched by the callers, when [`Verifier::login`] asks for it.
//!
//! With the default `daemon` feature the crate also builds the `synapse-token-auth` binary
//! (socket-activated HTTP verifier and admin CLI).

pub mod claims;
pub mod config;
pub mod keys;
pub mod oauth;
mod subject;
pub mod verify;

#[cfg(feature = "daemon")]
pub mod fetch;
#[cfg(feature = "daemon")]
pub mod server;
#[cfg(feature = "daemon")]
pub mod systemd;
#[cfg(feature = "daemon")]
pub mod telemetry;

pub use config::{Config, ConfigError, Document, Origin};
pub use jsonwebtoken::Algorithm;
pub use subject::{UserError, localpart};
pub use verify::{MAX_TOKEN_BYTES, RejectReason, Rejection, Verdict, Verifier};

/// Selects aws-lc as jsonwebtoken's crypto backend for this process.
///
/// Explicit rather than inferred from cargo features: if feature unification ever enabled a
/// second backend, jsonwebtoken would panic on the first decode instead of picking one.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is fine: it is this one or a caller's choice.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Seconds since the Unix epoch, for callers that verify at "now".
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
