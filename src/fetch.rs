//! The daemon's side of published keys: it carries out the fetches the core asks for.
//!
//! The core decides when to fetch and what the answer means ([`crate::keys::published`]); this
//! module only does the HTTP GET (rustls on aws-lc, the system's trust store or `jwks_ca_file`,
//! `HTTPS_PROXY`/`NO_PROXY`, no redirects, bounded in time and size) and lets logins that wait
//! for another login's fetch sleep until it is done.

use std::{sync::Arc, time::Duration};

use reqwest::header::{CACHE_CONTROL, CONTENT_LENGTH};
use tokio::sync::Notify;

use crate::{
    Verdict, Verifier,
    keys::published::{FetchAnswer, FetchReport, FetchRequest, RemoteKeys},
    oauth::{HttpAnswer, HttpRequest},
    server::Metrics,
    verify::{Rejection, SignedClaims, Step},
};

/// Why the fetcher cannot be set up (a `jwks_ca_file` that holds no certificate, for example).
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    #[error("`jwks_ca_file` `{path}`: {detail}")]
    CaFile { path: String, detail: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Client(String),
}

/// Fetches for one remote key source; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    /// Woken when a fetch has been reported, for the logins waiting on it.
    done: Arc<Notify>,
    /// Where the daemon counts fetches; the CLI counts nothing.
    metrics: Option<Arc<Metrics>>,
}

impl Fetcher {
    /// A fetcher for `remote`, trusting its `jwks_ca_file` when set, else the system's roots.
    pub fn new(remote: &RemoteKeys) -> Result<Self, FetcherError> {
        let mut builder = reqwest::Client::builder()
            // A redirect is a failed fetch: keys come only from the configured origin.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(remote.policy.fetch_timeout))
            .user_agent(concat!("synapse-token-auth/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &remote.ca_file {
            let ca_error = |detail: String| FetcherError::CaFile {
                path: path.display().to_string(),
                detail,
            };
            let pem = crate::keys::read_file(path).map_err(|e| ca_error(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in the file".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| FetcherError::Client(e.to_string()))?;
        Ok(Self {
            client,
            done: Arc::new(Notify::new()),
            metrics: None,
        })
    }

    /// Counts each fetch's outcome in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A login: verifies with the cached keys, fetching first when the core asks for it.
    pub async fn login(
        &self,
        verifier: &Verifier,
        token: &str,
        user: &str,
        server_name: &str,
    ) -> Result<Verdict, Rejection> {
        self.decide(
            verifier,
            |now| verifier.login(token, user, server_name, now),
            |now| verifier.verify(token, user, server_name, now),
        )
        .await
    }

    /// [`Self::login`] for the `oauth` type's JWTs: the verified claims, no user yet.
    pub async fn login_claims(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Result<SignedClaims, Rejection> {
        self.decide(
            verifier,
            |now| verifier.login_claims(token, now),
            |now| verifier.verify_claims(token, now),
        )
        .await
    }

    async fn decide<T>(
        &self,
        verifier: &Verifier,
        login: impl FnOnce(u64) -> Step<T>,
        verify: impl FnOnce(u64) -> Result<T, Rejection>,
    ) -> Result<T, Rejection> {
        let Some(remote) = verifier.remote_keys() else {
            return verify(crate::unix_now());
        };
        // Registered before asking, so that a fetch that ends in between still wakes us.
        let done = self.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        match login(crate::unix_now()) {
            Step::Done { result, refresh } => {
                if let Some(request) = refresh {
                    // In the background: this login has its answer already.
                    drop(self.spawn(Arc::clone(remote), request));
                }
                return result;
            }
            Step::Fetch(request) => {
                // In a task of its own, so that a client that hangs up does not abandon a
                // fetch that other logins wait for.
                let _ = self.spawn(Arc::clone(remote), request).await;
            }
            Step::Wait => {
                let limit = Duration::from_secs(remote.policy.fetch_timeout + 1);
                let _ = tokio::time::timeout(limit, done).await;
            }
        }
        // With what the fetch brought: never a second fetch, so a login waits at most one
        // fetch timeout.
        verify(crate::unix_now())
    }

    fn spawn(&self, remote: Arc<RemoteKeys>, request: FetchRequest) -> tokio::task::JoinHandle<()> {
        let fetcher = self.clone();
        tokio::task::spawn_local(async move { fetcher.run(&remote, request).await })
    }

    /// Carries out `request` and what follows it (the key set after discovery), reports each
    /// answer to the core, logs it, and wakes the waiting logins.
    pub async fn run(&self, remote: &RemoteKeys, request: FetchRequest) {
        self.run_reporting(remote, request, log_report).await;
    }

    /// [`Self::run`], handing each answer's report to `report` instead of the log (for
    /// `check-config`, which prints them).
    pub async fn run_reporting(
        &self,
        remote: &RemoteKeys,
        mut request: FetchRequest,
        mut report: impl FnMut(&FetchRequest, &FetchReport),
    ) {
        loop {
            let answer = self.fetch(&request).await;
            let mut outcome = remote.fetched(&request, crate::unix_now(), answer);
            if let Some(metrics) = &self.metrics {
                metrics.key_fetched(outcome.ok);
            }
            report(&request, &outcome);
            match outcome.next.take() {
                Some(next) => request = next,
                None => break,
            }
        }
        self.done.notify_waiters();
    }

    /// One GET, bounded in time and size; redirects are not followed.
    pub async fn fetch(&self, request: &FetchRequest) -> FetchAnswer {
        let limit = request.max_bytes;
        let work = async {
            let mut response = self
                .client
                .get(request.url.clone())
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(format!(
                    "redirected (HTTP {status}); redirects are not followed"
                ));
            }
            let too_large = || format!("the answer is larger than {limit} bytes");
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            if declared.is_some_and(|len| len > limit) {
                return Err(too_large());
            }
            let cache_control = response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FetchAnswer::Response {
                status: status.as_u16(),
                cache_control,
                body,
            })
        };
        let timeout = Duration::from_secs(request.timeout_seconds);
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => FetchAnswer::Failed(why),
            Err(_) => {
                FetchAnswer::Failed(format!("no answer within {} s", request.timeout_seconds))
            }
        }
    }
}

/// An HTTPS client for the requests of the `oauth` and `oidc` login types: the system's trust
/// store, `HTTPS_PROXY`/`NO_PROXY`, no redirects.
pub fn http_client() -> Result<reqwest::Client, FetcherError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("synapse-token-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetcherError::Client(e.to_string()))
}

/// Sends a request the core describes (introspection, discovery, the registration webhook):
/// bounded in time and size, no redirects followed.
pub async fn send(client: &reqwest::Client, request: &HttpRequest) -> HttpAnswer {
    let limit = request.max_bytes;
    let work = async {
        let mut builder = if request.content_type.is_empty() {
            client.get(request.url.clone())
        } else {
            client
                .post(request.url.clone())
                .header(reqwest::header::CONTENT_TYPE, request.content_type)
                .body(request.body.clone())
        };
        builder = builder.header(reqwest::header::ACCEPT, "application/json");
        if let Some(authorization) = &request.authorization {
            builder = builder.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let mut response = builder.send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(format!(
                "redirected (HTTP {status}); redirects are not followed"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(format!("the answer is larger than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpAnswer::Response {
            status: status.as_u16(),
            body,
        })
    };
    match tokio::time::timeout(Duration::from_secs(request.timeout_seconds), work).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => HttpAnswer::Failed(why),
        Err(_) => HttpAnswer::Failed(format!("no answer within {} s", request.timeout_seconds)),
    }
}

/// A reqwest error with its causes (the TLS or connection error is in the chain).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One log line per fetch outcome, and one per key set aside.
fn log_report(request: &FetchRequest, report: &FetchReport) {
    if report.ok {
        tracing::info!(target: "synapse_token_auth::keys", url = %request.url, result = "ok", "{}", report.message);
    } else {
        tracing::warn!(target: "synapse_token_auth::keys", url = %request.url, result = "failed", "{}", report.message);
    }
    for ignored in &report.ignored {
        tracing::warn!(
            target: "synapse_token_auth::keys",
            url = %request.url,
            kid = ignored.kid.as_deref().unwrap_or(""),
            "key not used: {}", ignored.why
        );
    }
}
