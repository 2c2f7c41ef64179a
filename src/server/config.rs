//! The daemon's configuration file: the policy, plus the `[server]` table read here.

use std::{
    fs, io,
    net::{SocketAddr, ToSocketAddrs},
    os::unix::{fs::PermissionsExt, net::UnixListener},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DEFAULT_SOCKET, tls::CertificateSource};
use crate::{
    config::{ConfigError, Document, Origin, Problem, read_toml_file},
    keys,
    oauth::{OAuth, Oidc},
    systemd::Listener,
};

/// The `[server]` table of the daemon's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Addresses to bind when not socket-activated: `unix:/path` or `tcp:host:port`
    /// (`host:port` alone means TCP). Ignored under socket activation.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Worker threads, each with its own event loop. Default: the number of CPUs, at most 4.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How long a client may take to send its whole request, head and body, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Permissions of unix sockets the daemon binds itself, as an octal string.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Open connections per worker; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// PEM certificate chain for TLS on every TCP listener (a file path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for `tls_certificate` (a file path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Like `tls_certificate`, from `$CREDENTIALS_DIRECTORY/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate_credential: Option<String>,
    /// Like `tls_key`, from `$CREDENTIALS_DIRECTORY/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_credential: Option<String>,
    /// A file holding the bearer token clients must send to `POST /v1/verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_file: Option<PathBuf>,
    /// Like `client_token_file`, from `$CREDENTIALS_DIRECTORY/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_credential: Option<String>,
}

fn default_listen() -> Vec<String> {
    vec![format!("unix:{DEFAULT_SOCKET}")]
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}
fn default_request_timeout_ms() -> u64 {
    5_000
}
fn default_socket_mode() -> String {
    "0660".to_owned()
}
fn default_max_connections() -> usize {
    256
}

/// Upper bound of `server.max_connections`: far more than any Synapse deployment opens, and
/// small enough that `workers * max_connections` stays below a 65536 file limit.
pub const MAX_CONNECTIONS_LIMIT: usize = 16_384;

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            workers: default_workers(),
            request_timeout_ms: default_request_timeout_ms(),
            socket_mode: default_socket_mode(),
            max_connections: default_max_connections(),
            tls_certificate: None,
            tls_key: None,
            tls_certificate_credential: None,
            tls_key_credential: None,
            client_token_file: None,
            client_token_credential: None,
        }
    }
}

/// A listen address from `server.listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl ListenAddr {
    /// Parses `unix:/path`, `tcp:host:port` or `host:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("`{text}`: the unix socket path must be absolute"));
            }
            return Ok(Self::Unix(path.into()));
        }
        let addr = text.strip_prefix("tcp:").unwrap_or(text);
        match addr.to_socket_addrs() {
            Ok(_) => Ok(Self::Tcp(addr.to_owned())),
            Err(e) => Err(format!("`{text}` is not `unix:/path` or `host:port`: {e}")),
        }
    }
}

/// Where a file the daemon reads comes from: a path, or a systemd credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    Path(PathBuf),
    Credential(String),
}

impl FileSource {
    /// The file's bytes; the error names the file.
    pub fn read(&self) -> Result<Vec<u8>, keys::KeyError> {
        match self {
            Self::Path(path) => keys::read_file(path),
            Self::Credential(name) => keys::read_file(&keys::credential_path(name)?),
        }
    }
}

/// The bearer token clients must present, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTokenSource {
    /// The configuration key it was given as, for messages.
    pub key: &'static str,
    pub source: FileSource,
}

/// The daemon's whole configuration file: the policy and `[server]`, with the TLS certificate
/// and the client token read, so that a configuration that loads can be served.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub document: Document,
    /// `[oauth]`: the original module's `com.famedly.login.token.oauth`.
    pub oauth: Option<OAuth>,
    /// `[oidc]`: the original module's `com.famedly.login.token.oidc`.
    pub oidc: Option<Oidc>,
    pub server: ServerSettings,
    pub listen: Vec<ListenAddr>,
    pub socket_mode: u32,
    /// The TLS certificate and key, loaded and checked against each other.
    pub tls: Option<super::tls::LoadedCertificate>,
    /// The client token, loaded.
    pub client_token: Option<super::auth::ClientToken>,
}

impl DaemonConfig {
    /// Reads and validates the file; every problem names its key and the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let value = read_toml_file(path)?;
        let origin = Origin::File(path.to_owned());
        // Validate [server] and the policy together so one run reports everything.
        let server_value = value.get("server").cloned();
        let (server, mut problems) = parse_server(server_value);
        // The original module's other login types, in tables of their own.
        let mut oauth = None;
        let mut oidc = None;
        if let Some(section) = value.get("oauth") {
            match OAuth::parse(section, "oauth.") {
                Ok(parsed) => oauth = Some(parsed),
                Err(p) => problems.extend(p),
            }
        }
        if let Some(section) = value.get("oidc") {
            match Oidc::parse(section, "oidc.") {
                Ok(parsed) => oidc = Some(parsed),
                Err(p) => problems.extend(p),
            }
        }
        const HOST_SECTIONS: [&str; 3] = ["server", "oauth", "oidc"];
        // Only those types and no JWT key at all: JWT login is off.
        let no_jwt = (value.get("oauth").is_some() || value.get("oidc").is_some())
            && value
                .as_object()
                .is_some_and(|top| top.keys().all(|k| HOST_SECTIONS.contains(&k.as_str())));
        let document = if no_jwt {
            Some(Document {
                policy: crate::Config::no_jwt_login(),
                sections: serde_json::Map::new(),
            })
        } else {
            match Document::from_value(value, &HOST_SECTIONS, origin.clone()) {
                Ok(document) => Some(document),
                Err(ConfigError::Invalid { problems: p, .. }) => {
                    problems.splice(0..0, p);
                    None
                }
                Err(other) => return Err(other),
            }
        };
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.into(),
                message,
            });
        };
        let listen: Vec<ListenAddr> = server
            .listen
            .iter()
            .filter_map(|text| {
                ListenAddr::parse(text)
                    .map_err(|message| problem("server.listen", message))
                    .ok()
            })
            .collect();
        let socket_mode = u32::from_str_radix(&server.socket_mode, 8)
            .ok()
            .filter(|m| *m <= 0o777);
        if socket_mode.is_none() {
            problem(
                "server.socket_mode",
                format!(
                    "`{}` is not an octal mode such as \"0660\"",
                    server.socket_mode
                ),
            );
        }
        if server.workers == 0 || server.workers > 64 {
            problem("server.workers", "must be between 1 and 64".into());
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&server.max_connections) {
            problem(
                "server.max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
            );
        }
        // 0 would switch the timeout off in actix and leave slow clients holding connections.
        // actix reads the time from a clock that ticks every 500 ms: measured with 300 ms, new
        // connections got 408 at once after the first timeout; from 1000 ms on it behaves.
        if !(1_000..=60_000).contains(&server.request_timeout_ms) {
            problem(
                "server.request_timeout_ms",
                "must be between 1000 and 60000 milliseconds".into(),
            );
        }
        let tls = tls_source(&server, &mut problem)
            .and_then(|source| source.load().map_err(|p| problem(&p.key, p.message)).ok());
        let client_token = client_token_source(&server, &mut problem).and_then(|source| {
            super::auth::ClientToken::load(&source)
                .map_err(|message| problem(source.key_path(), message))
                .ok()
        });
        let secured = tls.is_some() && client_token.is_some();
        for addr in listen.iter().filter(|_| !secured) {
            let exposed = match addr {
                ListenAddr::Tcp(text) => non_loopback(text).map(|a| (text, a)),
                ListenAddr::Unix(_) => None,
            };
            if let Some((text, exposed)) = exposed {
                problem(
                    "server.listen",
                    plain_tcp_refused(&format!("`{text}`"), exposed),
                );
            }
        }
        match (document, socket_mode) {
            (Some(document), Some(socket_mode)) if problems.is_empty() => Ok(Self {
                document,
                oauth,
                oidc,
                server,
                listen,
                socket_mode,
                tls,
                client_token,
            }),
            _ => Err(ConfigError::Invalid { origin, problems }),
        }
    }

    /// Whether a TCP listener on any address may be served: TLS and a client token are set.
    #[must_use]
    pub fn secured(&self) -> bool {
        self.tls.is_some() && self.client_token.is_some()
    }
}

impl ClientTokenSource {
    fn key_path(&self) -> &'static str {
        match self.key {
            "client_token_file" => "server.client_token_file",
            _ => "server.client_token_credential",
        }
    }
}

/// Why a TCP listener on `exposed` is refused without TLS and a client token.
pub fn plain_tcp_refused(what: &str, exposed: SocketAddr) -> String {
    format!(
        "{what} listens on {exposed}, which is not a loopback address, without TLS and a \
         client token: anyone on the network could read login tokens or ask for verdicts; set \
         `server.tls_certificate`/`server.tls_key` (or their `_credential` forms) and \
         `server.client_token_file` (or `server.client_token_credential`), or listen on \
         127.0.0.1 or a unix socket"
    )
}

/// The first address `text` resolves to that is not loopback.
fn non_loopback(text: &str) -> Option<SocketAddr> {
    text.to_socket_addrs()
        .ok()?
        .find(|addr| !addr.ip().is_loopback())
}

fn exactly_one<T>(
    problem: &mut impl FnMut(&str, String),
    a: (&str, Option<T>),
    b: (&str, Option<T>),
) -> Option<T> {
    match (a.1, b.1) {
        (Some(_), Some(_)) => {
            problem(
                &format!("server.{}", b.0),
                format!("set either `server.{}` or `server.{}`, not both", a.0, b.0),
            );
            None
        }
        (one, other) => one.or(other),
    }
}

fn tls_source(
    server: &ServerSettings,
    problem: &mut impl FnMut(&str, String),
) -> Option<CertificateSource> {
    let certificate = exactly_one(
        problem,
        (
            "tls_certificate",
            server.tls_certificate.clone().map(FileSource::Path),
        ),
        (
            "tls_certificate_credential",
            server
                .tls_certificate_credential
                .clone()
                .map(FileSource::Credential),
        ),
    );
    let key = exactly_one(
        problem,
        ("tls_key", server.tls_key.clone().map(FileSource::Path)),
        (
            "tls_key_credential",
            server
                .tls_key_credential
                .clone()
                .map(FileSource::Credential),
        ),
    );
    let certificate_given =
        server.tls_certificate.is_some() || server.tls_certificate_credential.is_some();
    let key_given = server.tls_key.is_some() || server.tls_key_credential.is_some();
    if certificate_given && !key_given {
        problem(
            "server.tls_key",
            "a TLS certificate needs its key: set `server.tls_key` or `server.tls_key_credential`"
                .into(),
        );
    }
    if key_given && !certificate_given {
        problem(
            "server.tls_certificate",
            "a TLS key needs its certificate: set `server.tls_certificate` or \
             `server.tls_certificate_credential`"
                .into(),
        );
    }
    Some(CertificateSource {
        certificate: certificate?,
        key: key?,
    })
}

fn client_token_source(
    server: &ServerSettings,
    problem: &mut impl FnMut(&str, String),
) -> Option<ClientTokenSource> {
    let file = server
        .client_token_file
        .clone()
        .map(|path| ClientTokenSource {
            key: "client_token_file",
            source: FileSource::Path(path),
        });
    let credential = server
        .client_token_credential
        .clone()
        .map(|name| ClientTokenSource {
            key: "client_token_credential",
            source: FileSource::Credential(name),
        });
    exactly_one(
        problem,
        ("client_token_file", file),
        ("client_token_credential", credential),
    )
}

fn parse_server(value: Option<Value>) -> (ServerSettings, Vec<Problem>) {
    match value.map(serde_json::from_value::<ServerSettings>) {
        None => (ServerSettings::default(), Vec::new()),
        Some(Ok(settings)) => (settings, Vec::new()),
        Some(Err(err)) => (
            ServerSettings::default(),
            vec![Problem {
                key: "server".into(),
                message: err.to_string(),
            }],
        ),
    }
}

/// Binds the configured addresses (when systemd did not pass sockets). Each listener comes
/// with its description for logs.
pub fn bind(config: &DaemonConfig) -> io::Result<Vec<(String, Listener)>> {
    config
        .listen
        .iter()
        .map(|addr| match addr {
            ListenAddr::Unix(path) => bind_unix(path, config.socket_mode)
                .map(|l| (format!("unix:{}", path.display()), Listener::Unix(l))),
            ListenAddr::Tcp(addr) => {
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                let listener = Listener::Tcp(listener);
                Ok((listener.describe(), listener))
            }
        })
        .collect()
}

/// Binds under a temporary name, sets the mode, then renames over `path`: clients never see a
/// socket with the wrong permissions, and a stale socket from a crash is replaced.
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
