//! The verifier daemon: `POST /v1/verify`, `GET /healthz` and `GET /metrics` over unix or TCP
//! sockets, and the routes of the `oauth` and `oidc` login types (`oauth.rs`).
//!
//! The policy lives behind an [`ArcSwap`] so that SIGHUP can replace it while requests are in
//! flight; a request sees either the old or the new policy, never a mix.

mod auth;
mod config;
mod conn;
mod listen;
mod metrics;
mod oauth;
mod tls;
mod unix;

use std::{
    borrow::Cow,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE},
    web,
};
use arc_swap::{ArcSwap, ArcSwapOption};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::{
    auth::ClientToken,
    config::{DaemonConfig, ListenAddr, ServerSettings, bind, plain_tcp_refused},
    metrics::Metrics,
    oauth::{OAuthAnswer, OtherLogins, OtherType, RegistrationAnswer, RegistrationRequest},
};
use self::{
    conn::{RequestClock, Transport},
    listen::{WorkerSettings, Workers},
    tls::CertificateResolver,
};
use crate::{
    Verifier,
    fetch::{Fetcher, FetcherError},
    systemd::{self, Listener},
};

/// Largest request body accepted by `/v1/verify`; a token is at most 8 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Default socket path; the packaged units and the NixOS module use the same.
pub const DEFAULT_SOCKET: &str = "/run/synapse-token-auth/verify.sock";
/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/synapse-token-auth/config.toml";

/// The request body of `POST /v1/verify`: a JSON object with exactly these members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub token: String,
    /// The login identifier's user: a localpart or a full user id.
    pub user: String,
    /// The homeserver's `server_name`.
    pub server_name: String,
}

impl VerifyRequest {
    /// Parses a request body. Only a JSON object is a request: serde would also take an array
    /// of the three values in field order, which no client means to send.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice::<Value>(body) {
            Ok(value @ Value::Object(_)) => {
                serde_json::from_value(value).map_err(|e| e.to_string())
            }
            Ok(other) => Err(format!(
                "expected a JSON object, found {}",
                crate::config::kind(&other)
            )),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// The 403 body of `POST /v1/verify`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RejectBody {
    pub reason: crate::RejectReason,
}

/// A policy and, when its keys are published at a URL, the fetcher that carries out its fetches;
/// and the other login types.
#[derive(Debug)]
pub struct Policy {
    verifier: Verifier,
    fetcher: Option<Fetcher>,
    others: OtherLogins,
}

impl Policy {
    /// The verifier for `config`, with an HTTPS client when its keys are fetched, which counts
    /// its fetches in `metrics`.
    pub fn new(config: crate::Config, metrics: &Arc<Metrics>) -> Result<Self, FetcherError> {
        Self::with_others(config, None, None, metrics)
    }

    /// [`Self::new`] with the `oauth` and `oidc` login types.
    pub fn with_others(
        config: crate::Config,
        oauth: Option<crate::oauth::OAuth>,
        oidc: Option<crate::oauth::Oidc>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, FetcherError> {
        let verifier = Verifier::new(config);
        let fetcher = verifier
            .remote_keys()
            .map(|r| Fetcher::new(r).map(|f| f.with_metrics(Arc::clone(metrics))))
            .transpose()?;
        let others = OtherLogins::new(oauth, oidc, metrics)?;
        Ok(Self {
            verifier,
            fetcher,
            others,
        })
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

/// State shared by all workers: what SIGHUP may replace, the request deadline, and the
/// metrics, which outlive every reload.
#[derive(Debug)]
pub struct Shared {
    policy: ArcSwap<Policy>,
    client_token: ArcSwapOption<ClientToken>,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Shared {
    #[must_use]
    pub fn new(
        policy: Policy,
        client_token: Option<ClientToken>,
        request_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            policy: ArcSwap::from_pointee(policy),
            client_token: ArcSwapOption::from(client_token.map(Arc::new)),
            request_timeout,
            metrics,
        })
    }

    /// Whether a request carries the client token, or none is configured.
    fn authorized(&self, request: &HttpRequest) -> bool {
        let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        self.client_token
            .load()
            .as_deref()
            .is_none_or(|token| token.accepts(authorization))
    }

    /// Replaces the policy and the client token for all subsequent requests.
    pub fn replace(&self, policy: Policy, client_token: Option<ClientToken>) {
        self.policy.store(Arc::new(policy));
        self.client_token.store(client_token.map(Arc::new));
    }
}

/// The routes, for the server and for tests.
pub fn configure(shared: Arc<Shared>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(shared))
            .service(web::resource("/v1/verify").route(web::post().to(verify)))
            .configure(oauth::routes)
            .service(web::resource("/healthz").route(web::get().to(healthz)))
            .service(web::resource("/metrics").route(web::get().to(metrics)));
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Counts only, so open on unix sockets like `/healthz` (the socket's mode decides who may
/// connect); on TCP it takes the client token when one is configured, as `/v1/verify` does.
async fn metrics(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let over_tcp = request.conn_data::<Transport>() != Some(&Transport::Unix);
    if over_tcp && !shared.authorized(&request) {
        return unauthorized(&shared);
    }
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(shared.metrics.render())
}

/// An error answer, counted as a request refused before a decision.
fn error(
    shared: &Shared,
    mut response: actix_web::HttpResponseBuilder,
    message: &str,
) -> HttpResponse {
    let response = response.json(serde_json::json!({ "error": message }));
    shared.metrics.refused(response.status().as_u16());
    response
}

fn unauthorized(shared: &Shared) -> HttpResponse {
    let mut response = HttpResponse::Unauthorized();
    response.insert_header((WWW_AUTHENTICATE, "Bearer"));
    error(shared, response, "missing or wrong client token")
}

/// Reads the body within what is left of the request deadline, which started with the first
/// byte of the request: a client that sends its body slowly gets 408 like one that sends its
/// head slowly, and the connection closes.
async fn read_body(
    request: &HttpRequest,
    shared: &Shared,
    payload: web::Payload,
) -> Result<web::Bytes, HttpResponse> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(error(
            shared,
            HttpResponse::PayloadTooLarge(),
            "request body too large",
        ));
    }
    let started = request
        .conn_data::<RequestClock>()
        .and_then(RequestClock::started)
        .unwrap_or_else(Instant::now);
    let deadline = tokio::time::Instant::from_std(started + shared.request_timeout);
    match tokio::time::timeout_at(deadline, payload.to_bytes_limited(MAX_BODY_BYTES)).await {
        Ok(Ok(Ok(body))) => Ok(body),
        Ok(Ok(Err(err))) => Err(error(
            shared,
            HttpResponse::BadRequest(),
            &format!("cannot read the request body: {err}"),
        )),
        Ok(Err(_)) => Err(error(
            shared,
            HttpResponse::PayloadTooLarge(),
            "request body too large",
        )),
        Err(_) => {
            tracing::info!(
                timeout_ms = shared.request_timeout.as_millis(),
                "request body not received in time; closing the connection"
            );
            let mut response = HttpResponse::RequestTimeout();
            response.force_close();
            Err(error(shared, response, "request not received in time"))
        }
    }
}

async fn verify(
    request: HttpRequest,
    shared: web::Data<Shared>,
    payload: web::Payload,
) -> HttpResponse {
    let received = Instant::now();
    if !shared.authorized(&request) {
        tracing::warn!(
            target: "synapse_token_auth::audit",
            result = "unauthorized",
            "verify request without the client token refused"
        );
        return unauthorized(&shared);
    }
    let body = match read_body(&request, &shared, payload).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = match VerifyRequest::parse(&body) {
        Ok(request) => request,
        Err(err) => {
            tracing::info!(error = %err, "malformed verify request");
            return error(
                &shared,
                HttpResponse::BadRequest(),
                &format!("invalid request body: {err}"),
            );
        }
    };
    let policy = shared.policy.load_full();
    let decision = policy
        .verify(&request.token, &request.user, &request.server_name)
        .await;
    let rejected = decision.as_ref().err().map(|r| r.reason);
    shared.metrics.decided(rejected, received.elapsed());
    match decision {
        Ok(verdict) => {
            let response = HttpResponse::Ok().json(&verdict);
            after_answer(move || {
                tracing::info!(
                    target: "synapse_token_auth::audit",
                    user_id = %verdict.user_id,
                    result = "accepted",
                    alg = %verdict.alg,
                    kid = %printable(verdict.kid.as_deref().unwrap_or("")),
                    key = %verdict.key,
                    "JWT login accepted"
                );
            });
            response
        }
        Err(rejection) => {
            let response = HttpResponse::Forbidden().json(RejectBody {
                reason: rejection.reason,
            });
            after_answer(move || {
                tracing::info!(
                    target: "synapse_token_auth::audit",
                    user_id = %qualified(&request.user, &request.server_name),
                    result = "rejected",
                    reason = rejection.reason.as_str(),
                    alg = %printable(rejection.alg.as_deref().unwrap_or("")),
                    kid = %printable(rejection.kid.as_deref().unwrap_or("")),
                    "JWT login rejected"
                );
            });
            response
        }
    }
}

/// Runs `log` after the answer being built has been written: a login waits for the answer, not
/// for its log line (a write to a file, or a datagram to journald, on the worker's thread). The
/// worker runs the task once the connection's task yields, which is right after the write; lines
/// keep their order.
fn after_answer(log: impl FnOnce() + 'static) {
    actix_web::rt::spawn(async move { log() });
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

/// Refuses socket-activated TCP listeners that the network could reach while TLS or the client
/// token is missing, as `DaemonConfig::load` does for `server.listen`.
pub fn check_activated(
    config: &DaemonConfig,
    listeners: &[(String, Listener)],
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    if config.secured() {
        return Ok(());
    }
    for (name, listener) in listeners {
        if let Listener::Tcp(tcp) = listener {
            let addr = tcp.local_addr().map_err(|e| {
                format!(
                    "cannot read the address of socket-activated fd {}: {e}",
                    tcp.as_raw_fd()
                )
            })?;
            if !addr.ip().is_loopback() {
                return Err(plain_tcp_refused(
                    &format!("socket-activated fd {} ({name})", tcp.as_raw_fd()),
                    addr,
                ));
            }
        }
    }
    Ok(())
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

/// Runs the daemon on `listeners` until SIGTERM or SIGINT; SIGHUP reloads `config_path`.
///
/// The control signals must be blocked when this is called (see
/// [`systemd::block_control_signals`]): they are unblocked once their handlers exist, so that a
/// signal sent during start-up waits for them instead of killing the process.
pub async fn run(
    config_path: PathBuf,
    config: DaemonConfig,
    listeners: Vec<(String, Listener)>,
) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut hup, mut term, mut int) = (
        signal(SignalKind::hangup())?,
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    systemd::unblock_control_signals();

    let request_timeout = Duration::from_millis(config.server.request_timeout_ms);
    let metrics = Arc::new(Metrics::new());
    let policy = Policy::with_others(config.document.policy, config.oauth, config.oidc, &metrics)
        .map_err(io::Error::other)?;
    let shared = Shared::new(policy, config.client_token, request_timeout, metrics);
    let resolver = config.tls.as_ref().map(CertificateResolver::new);
    let tls = match &resolver {
        Some(resolver) => Some(tls::server_config(resolver.clone()).map_err(io::Error::other)?),
        None => None,
    };
    let described: Vec<String> = listeners
        .iter()
        .map(|(d, l)| match (l, &tls) {
            (Listener::Tcp(_), Some(_)) => format!("{d} (TLS)"),
            _ => d.clone(),
        })
        .collect();
    let settings = WorkerSettings {
        request_timeout,
        max_connections: config.server.max_connections,
        tls,
    };
    listen::fit_file_limit(config.server.workers * config.server.max_connections);
    let workers = Workers::start(config.server.workers, &listeners, &shared, &settings).await?;
    // The workers hold their own copies; closing these never removes a socket path.
    drop(listeners);

    let status = format!("verifying on {}", described.join(", "));
    tracing::info!(listen = %described.join(", "), workers = config.server.workers, "ready");
    systemd::notify_ready(&status);
    // Dropped with the runtime when the server has stopped.
    actix_web::rt::spawn(systemd::feed_watchdog());

    loop {
        tokio::select! {
            _ = hup.recv() => reload(&shared, resolver.as_deref(), &config_path, &status),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // A verification takes microseconds, so a stop only ever waits for idle kept-alive
    // connections, for at most two seconds. Closing them is safe: the Synapse module retries a
    // request whose connection died, and new connections queue in the systemd socket.
    tracing::info!("stopping: finishing requests in flight");
    systemd::notify_stopping();
    workers.stop().await;
    Ok(())
}

fn reload(shared: &Shared, resolver: Option<&CertificateResolver>, path: &Path, status: &str) {
    systemd::notify_reloading();
    let ok = try_reload(shared, resolver, path);
    shared.metrics.reloaded(ok);
    systemd::notify_ready(status);
}

/// Loads the configuration at `path` and puts it in effect; false when the old one stays.
fn try_reload(shared: &Shared, resolver: Option<&CertificateResolver>, path: &Path) -> bool {
    match DaemonConfig::load(path) {
        Ok(config)
            if config.tls.is_some() != resolver.is_some()
                || config.client_token.is_some() != shared.client_token.load().is_some() =>
        {
            tracing::error!(
                config = %path.display(),
                "reload failed: turning TLS or the client token on or off takes a restart; \
                 still serving with the previous configuration"
            );
            false
        }
        Ok(config) => match Policy::with_others(
            config.document.policy,
            config.oauth,
            config.oidc,
            &shared.metrics,
        ) {
            Ok(policy) => {
                if let (Some(resolver), Some(certificate)) = (resolver, &config.tls) {
                    resolver.replace(certificate);
                }
                shared.replace(policy, config.client_token);
                tracing::info!(config = %path.display(), "configuration reloaded (listen, workers and connection limits change on restart)");
                true
            }
            Err(err) => {
                tracing::error!(
                    error = &err as &dyn std::error::Error,
                    "reload failed; still serving with the previous configuration"
                );
                false
            }
        },
        Err(err) => {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "reload failed; still serving with the previous configuration"
            );
            false
        }
    }
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
