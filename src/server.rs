//! The verifier daemon: `POST /v1/verify` and `GET /healthz` over unix or TCP sockets.
//!
//! The policy lives behind an [`ArcSwap`] so that SIGHUP can replace it while requests are in
//! flight; a request sees either the old or the new policy, never a mix.

use std::{
    borrow::Cow,
    fs, io,
    os::unix::{fs::PermissionsExt, net::UnixListener},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, web};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Verifier,
    config::{ConfigError, Document, Origin, Problem, read_toml_file},
    fetch::{Fetcher, FetcherError},
    systemd::{self, Listener},
};

/// Largest request body accepted by `/v1/verify`; a token is at most 8 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Default socket path; the packaged units and the NixOS module use the same.
pub const DEFAULT_SOCKET: &str = "/run/synapse-token-auth/verify.sock";
/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/synapse-token-auth/config.toml";

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
    /// How long a client may take to send its request, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Permissions of unix sockets the daemon binds itself, as an octal string.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
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

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            workers: default_workers(),
            request_timeout_ms: default_request_timeout_ms(),
            socket_mode: default_socket_mode(),
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
        match std::net::ToSocketAddrs::to_socket_addrs(addr) {
            Ok(_) => Ok(Self::Tcp(addr.to_owned())),
            Err(e) => Err(format!("`{text}` is not `unix:/path` or `host:port`: {e}")),
        }
    }
}

/// The daemon's whole configuration file: the policy and `[server]`.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub document: Document,
    pub server: ServerSettings,
    pub listen: Vec<ListenAddr>,
    pub socket_mode: u32,
}

impl DaemonConfig {
    /// Reads and validates the file; every problem names its key and the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let value = read_toml_file(path)?;
        let origin = Origin::File(path.to_owned());
        // Validate [server] and the policy together so one run reports everything.
        let server_value = value.get("server").cloned();
        let (server, mut problems) = parse_server(server_value);
        let document = match Document::from_value(value, &["server"], origin.clone()) {
            Ok(document) => Some(document),
            Err(ConfigError::Invalid { problems: p, .. }) => {
                problems.splice(0..0, p);
                None
            }
            Err(other) => return Err(other),
        };
        let listen: Vec<ListenAddr> = server
            .listen
            .iter()
            .filter_map(|text| {
                ListenAddr::parse(text)
                    .map_err(|message| {
                        problems.push(Problem {
                            key: "server.listen".into(),
                            message,
                        });
                    })
                    .ok()
            })
            .collect();
        let socket_mode = u32::from_str_radix(&server.socket_mode, 8)
            .ok()
            .filter(|m| *m <= 0o777);
        if socket_mode.is_none() {
            problems.push(Problem {
                key: "server.socket_mode".into(),
                message: format!(
                    "`{}` is not an octal mode such as \"0660\"",
                    server.socket_mode
                ),
            });
        }
        if server.workers == 0 || server.workers > 64 {
            problems.push(Problem {
                key: "server.workers".into(),
                message: "must be between 1 and 64".into(),
            });
        }
        // 0 would switch the timeout off in actix and leave slow clients holding connections.
        // actix reads the time from a clock that ticks every 500 ms: measured with 300 ms, new
        // connections got 408 at once after the first timeout; from 1000 ms on it behaves.
        if !(1_000..=60_000).contains(&server.request_timeout_ms) {
            problems.push(Problem {
                key: "server.request_timeout_ms".into(),
                message: "must be between 1000 and 60000 milliseconds".into(),
            });
        }
        match (document, socket_mode) {
            (Some(document), Some(socket_mode)) if problems.is_empty() => Ok(Self {
                document,
                server,
                listen,
                socket_mode,
            }),
            _ => Err(ConfigError::Invalid { origin, problems }),
        }
    }
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

/// The request body of `POST /v1/verify`.
#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    pub token: String,
    /// The login identifier's user: a localpart or a full user id.
    pub user: String,
    /// The homeserver's `server_name`.
    pub server_name: String,
}

/// The 403 body of `POST /v1/verify`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RejectBody {
    pub reason: crate::RejectReason,
}

/// A policy and, when its keys are published at a URL, the fetcher that carries out its fetches.
#[derive(Debug)]
pub struct Policy {
    verifier: Verifier,
    fetcher: Option<Fetcher>,
}

impl Policy {
    /// The verifier for `config`, with an HTTPS client when its keys are fetched.
    pub fn new(config: crate::Config) -> Result<Self, FetcherError> {
        let verifier = Verifier::new(config);
        let fetcher = verifier
            .remote_keys()
            .map(|r| Fetcher::new(r))
            .transpose()?;
        Ok(Self { verifier, fetcher })
    }

    /// Verifies a login, fetching published keys first when the cache asks for it.
    pub async fn verify(
        &self,
        token: &str,
        user: &str,
        server_name: &str,
    ) -> Result<crate::Verdict, crate::verify::Rejection> {
        match &self.fetcher {
            Some(fetcher) => {
                fetcher
                    .login(&self.verifier, token, user, server_name)
                    .await
            }
            None => self
                .verifier
                .verify(token, user, server_name, crate::unix_now()),
        }
    }
}

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    policy: ArcSwap<Policy>,
}

impl Shared {
    #[must_use]
    pub fn new(policy: Policy) -> Arc<Self> {
        Arc::new(Self {
            policy: ArcSwap::from_pointee(policy),
        })
    }

    /// Replaces the policy for all subsequent requests.
    pub fn replace(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }
}

/// The routes, for the server and for tests.
pub fn configure(shared: Arc<Shared>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(shared))
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .service(web::resource("/v1/verify").route(web::post().to(verify)))
            .service(web::resource("/healthz").route(web::get().to(healthz)));
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn verify(shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let request: VerifyRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            tracing::info!(error = %err, "malformed verify request");
            return HttpResponse::BadRequest()
                .json(serde_json::json!({ "error": format!("invalid request body: {err}") }));
        }
    };
    let policy = shared.policy.load_full();
    match policy
        .verify(&request.token, &request.user, &request.server_name)
        .await
    {
        Ok(verdict) => {
            tracing::info!(
                target: "synapse_token_auth::audit",
                user_id = %verdict.user_id,
                result = "accepted",
                alg = %verdict.alg,
                kid = %printable(verdict.kid.as_deref().unwrap_or("")),
                key = %verdict.key,
                "JWT login accepted"
            );
            HttpResponse::Ok().json(verdict)
        }
        Err(rejection) => {
            tracing::info!(
                target: "synapse_token_auth::audit",
                user_id = %qualified(&request.user, &request.server_name),
                result = "rejected",
                reason = rejection.reason.as_str(),
                alg = %printable(rejection.alg.as_deref().unwrap_or("")),
                kid = %printable(rejection.kid.as_deref().unwrap_or("")),
                "JWT login rejected"
            );
            HttpResponse::Forbidden().json(RejectBody {
                reason: rejection.reason,
            })
        }
    }
}

fn qualified<'a>(user: &'a str, server_name: &str) -> Cow<'a, str> {
    if user.starts_with('@') {
        printable(user)
    } else {
        Cow::Owned(format!("@{}:{}", printable(user), printable(server_name)))
    }
}

/// Client-supplied text in log lines: bounded, and escaped unless every character is printable,
/// so that a crafted user name can neither forge log lines (control characters) nor reorder what
/// `journalctl` shows (format characters such as U+202E). The module's Python side uses the same
/// rule (`str.isprintable`).
fn printable(text: &str) -> Cow<'_, str> {
    const MAX: usize = 255;
    if text.len() <= MAX && text.chars().all(is_printable) {
        return Cow::Borrowed(text);
    }
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    Cow::Owned(out)
}

/// Python's `str.isprintable` for one character: not in the Unicode categories Cc, Cf, Cs, Co, Cn,
/// Zl, Zp or Zs other than the space. `char::escape_debug` leaves exactly those characters alone
/// (its table is generated from the same categories) apart from quotes and the backslash, and
/// apart from combining marks at the start of a string, hence the leading `a`.
fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    let mut buf = [0_u8; 8];
    buf[0] = b'a';
    let len = 1 + c.encode_utf8(&mut buf[1..]).len();
    std::str::from_utf8(&buf[..len]).is_ok_and(|s| s.escape_debug().eq(['a', c]))
}

/// Runs the HTTP server on `listeners` until SIGTERM or SIGINT; SIGHUP reloads `config_path`.
pub async fn run(
    config_path: PathBuf,
    config: DaemonConfig,
    listeners: Vec<(String, Listener)>,
) -> io::Result<()> {
    let policy =
        Policy::new(config.document.policy).map_err(|e| io::Error::other(e.to_string()))?;
    let shared = Shared::new(policy);
    let described: Vec<String> = listeners.iter().map(|(d, _)| d.clone()).collect();
    let app_shared = shared.clone();
    let mut server = HttpServer::new(move || App::new().configure(configure(app_shared.clone())))
        .workers(config.server.workers)
        .client_request_timeout(Duration::from_millis(config.server.request_timeout_ms))
        .client_disconnect_timeout(Duration::from_secs(1))
        .keep_alive(Duration::from_secs(30))
        // A verification takes microseconds, so a stop only ever waits for idle kept-alive
        // connections, which would hold it for the whole timeout. Closing them is safe: the
        // Synapse module retries a request whose connection died, and new connections queue in
        // the systemd socket for the next process.
        .shutdown_timeout(2)
        .disable_signals();
    for (_, listener) in listeners {
        server = match listener {
            Listener::Unix(l) => server.listen_uds(l)?,
            Listener::Tcp(l) => server.listen(l)?,
        };
    }
    let server = server.run();
    let handle = server.handle();

    let status = format!("verifying on {}", described.join(", "));
    tracing::info!(listen = %described.join(", "), workers = config.server.workers, "ready");
    systemd::notify_ready(&status);
    // Dropped with the runtime when the server has stopped.
    actix_web::rt::spawn(systemd::feed_watchdog());

    let signals = async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            handle.stop(true).await;
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => reload(&shared, &config_path, &status),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("stopping: finishing requests in flight");
        systemd::notify_stopping();
        handle.stop(true).await;
    };
    let (result, ()) = tokio::join!(server, signals);
    result
}

fn reload(shared: &Shared, path: &Path, status: &str) {
    systemd::notify_reloading();
    let policy = DaemonConfig::load(path)
        .map_err(|e| e.to_string())
        .and_then(|config| Policy::new(config.document.policy).map_err(|e| e.to_string()));
    match policy {
        Ok(policy) => {
            shared.replace(policy);
            tracing::info!(config = %path.display(), "configuration reloaded (listen and workers changes take effect on restart)");
        }
        Err(err) => {
            tracing::error!(
                error = %err,
                "reload failed; still serving with the previous configuration"
            );
        }
    }
    systemd::notify_ready(status);
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_what_python_isprintable_refuses() {
        for plain in [
            "@alice:example.org",
            "Zoë",
            "e\u{301}",
            "日本",
            "a b",
            "key\"'\\",
        ] {
            assert_eq!(printable(plain), plain, "{plain:?}");
        }
        // control, bidi override, zero-width space, no-break space, line separator, private use
        for (hostile, escaped) in [
            ("a\nb", "a\\nb"),
            ("a\u{202e}b", "a\\u{202e}b"),
            ("a\u{200b}b", "a\\u{200b}b"),
            ("a\u{a0}b", "a\\u{a0}b"),
            ("a\u{2028}b", "a\\u{2028}b"),
            ("a\u{e000}b", "a\\u{e000}b"),
        ] {
            assert_eq!(printable(hostile), escaped, "{hostile:?}");
        }
        let long = "a".repeat(300);
        assert_eq!(printable(&long), format!("{}…", "a".repeat(255)));
    }
}
