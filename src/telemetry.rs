//! Logging: native journald records with structured fields under systemd, readable text otherwise.

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// True when stderr is connected to the journal, as systemd says through `JOURNAL_STREAM`
/// (`<device>:<inode>` of the stream it gave us). Checking the inode, not just the variable,
/// keeps a child started from a service with stderr redirected from logging into the void.
#[must_use]
pub fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    expected.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

/// Installs the global subscriber for the daemon. `RUST_LOG` overrides the default filter.
/// Journald falls back to stderr when its socket is missing.
pub fn init_daemon() {
    // actix logs every worker start at info; that is noise in an audit-oriented journal.
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"))
    };
    if stderr_is_journal()
        && let Ok(layer) = tracing_journald::layer()
    {
        // tracing-journald's default puts INFO at "notice"; journalctl -p and syslog
        // conventions expect the audit lines at "info" and errors at "err".
        let priorities = tracing_journald::PriorityMappings {
            info: tracing_journald::Priority::Informational,
            debug: tracing_journald::Priority::Debug,
            ..tracing_journald::PriorityMappings::new()
        };
        let layer = layer
            .with_priority_mappings(priorities)
            .with_field_prefix(None)
            .with_syslog_identifier("synapse-token-auth".to_owned());
        tracing_subscriber::registry()
            .with(layer.with_filter(filter()))
            .init();
        return;
    }
    init_stderr(filter());
}

/// Installs a plain stderr subscriber (CLI commands, and the daemon outside systemd).
pub fn init_stderr(filter: EnvFilter) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_filter(filter),
        )
        .init();
}
