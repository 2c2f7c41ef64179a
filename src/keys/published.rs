//! Keys an identity provider publishes: a JWK Set at a URL, found directly (`jwks_url`) or
//! through OpenID Connect discovery (`oidc_issuer`), or read from a file (`jwks_file`).
//!
//! This module decides and parses; the adapters fetch. A fetch is a [`FetchRequest`] handed to
//! the adapter, whose [`FetchAnswer`] comes back through [`RemoteKeys::fetched`], which says what
//! to fetch next (discovery, then the key set) and what to log.

use std::{
    fmt,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use url::{Host, Url};

use super::{
    cache::{CachePolicy, Decision, FetchOutcome, FetchResult, KeySetCache},
    jwks::{IgnoredKey, KeySet},
};

/// Default and largest size of a fetched document.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// Path of the discovery document under the issuer (OpenID Connect Discovery 1.0 section 4).
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where published keys come from.
#[derive(Debug, Clone)]
pub enum PublishedSource {
    /// `jwks_file`: read when the configuration is loaded (and on reload).
    File { path: PathBuf, keys: Arc<KeySet> },
    /// `jwks_url` or `oidc_issuer`: fetched, cached and refreshed.
    Remote(Arc<RemoteKeys>),
}

/// The remote location and its cache. Shared by every clone of a verifier, so that all logins
/// of one process share one cache and one fetch at a time.
pub struct RemoteKeys {
    pub location: Location,
    pub algorithms: Vec<Algorithm>,
    pub policy: CachePolicy,
    /// Largest document read, in bytes.
    pub max_bytes: usize,
    /// CA certificates (PEM) to trust instead of the system's, for a private PKI.
    pub ca_file: Option<PathBuf>,
    state: Mutex<State>,
}

impl fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("location", &self.location)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A checked URL of a key set or an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `jwks_url`.
    KeySet(Url),
    /// `oidc_issuer`: the issuer exactly as configured, and its discovery URL.
    Discovery { issuer: String, discovery: Url },
}

#[derive(Debug, Default)]
struct State {
    cache: KeySetCache,
    /// The `jwks_uri` of the last good discovery document.
    jwks_uri: Option<Url>,
}

/// What the adapter fetches: a GET of `url`, HTTPS (or HTTP to a loopback address), no
/// redirects followed, at most `max_bytes` of body, within `timeout_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub url: Url,
    pub kind: FetchKind,
    pub max_bytes: usize,
    pub timeout_seconds: u64,
}

/// Which document a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    Discovery,
    KeySet,
}

/// How a fetch ended, as the adapter saw it.
#[derive(Debug, Clone)]
pub enum FetchAnswer {
    /// An HTTP answer (any status) with its `Cache-Control` header and body.
    Response {
        status: u16,
        cache_control: Option<String>,
        body: Vec<u8>,
    },
    /// No usable answer: timeout, connection error, redirect, body over `max_bytes`.
    Failed(String),
}

/// What a fetch changed, for the adapter's log line.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// Fetch this next, as part of the same attempt (the key set after discovery).
    pub next: Option<FetchRequest>,
    /// Whether the document was good.
    pub ok: bool,
    /// One line for the log: kids added and removed and the freshness, or the error and what
    /// the cache does about it.
    pub message: String,
    /// Keys of the set that are not used, and why (logged with the fetch).
    pub ignored: Vec<IgnoredKey>,
}

/// A URL that keys may be fetched from: `https://`, or `http://` to a loopback address, with no
/// user name or password.
pub fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}`: credentials in the URL are not allowed"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "`{text}`: keys are fetched over https (http only from a loopback address)"
        )),
        other => Err(format!("`{text}`: the scheme `{other}` is not https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl Location {
    /// `oidc_issuer`: the discovery URL is the issuer with the well-known path appended.
    pub fn discovery(issuer: &str) -> Result<Self, String> {
        check_url(issuer)?;
        if issuer.contains(['?', '#']) {
            return Err(format!(
                "`{issuer}`: an issuer has no query or fragment (OpenID Connect Discovery section 2)"
            ));
        }
        let discovery = check_url(&format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))?;
        Ok(Self::Discovery {
            issuer: issuer.to_owned(),
            discovery,
        })
    }

    /// For logs and `check-config`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::KeySet(url) => url.to_string(),
            Self::Discovery { issuer, .. } => format!("{issuer} (discovery)"),
        }
    }
}

impl RemoteKeys {
    #[must_use]
    pub fn new(
        location: Location,
        algorithms: Vec<Algorithm>,
        policy: CachePolicy,
        max_bytes: usize,
        ca_file: Option<PathBuf>,
    ) -> Self {
        Self {
            location,
            algorithms,
            policy,
            max_bytes,
            ca_file,
            state: Mutex::new(State {
                cache: KeySetCache::new(policy),
                jwks_uri: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the cache half-updated in a way that
        // matters more than refusing every later login would.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache's decision for a token with this `kid`; a fetch it asks for comes as a request.
    pub(crate) fn decide(&self, now: u64, kid: Option<&str>) -> RemoteDecision {
        let mut state = self.state();
        match state.cache.decide(now, kid) {
            Decision::Verify { keys, refresh } => RemoteDecision::Verify {
                keys,
                refresh: refresh.then(|| self.first_request(&state)),
            },
            Decision::Fetch => RemoteDecision::Fetch(self.first_request(&state)),
            Decision::Wait => RemoteDecision::Wait,
            Decision::Reject(reason) => RemoteDecision::Reject(reason),
        }
    }

    /// The set a login may use now, without fetching or changing anything: for `verify` on the
    /// command line and for callers that cannot fetch.
    #[must_use]
    pub fn cached(&self, now: u64) -> Option<Arc<KeySet>> {
        self.state().cache.peek(now)
    }

    /// A fetch started now, if the cooldown allows: for `check-config` and other tools.
    pub fn begin_fetch(&self, now: u64) -> Option<FetchRequest> {
        let mut state = self.state();
        state
            .cache
            .begin_fetch(now)
            .then(|| self.first_request(&state))
    }

    fn first_request(&self, state: &State) -> FetchRequest {
        match (&self.location, &state.jwks_uri) {
            (Location::KeySet(url), _) | (Location::Discovery { .. }, Some(url)) => {
                self.request(url.clone(), FetchKind::KeySet)
            }
            (Location::Discovery { discovery, .. }, None) => {
                self.request(discovery.clone(), FetchKind::Discovery)
            }
        }
    }

    fn request(&self, url: Url, kind: FetchKind) -> FetchRequest {
        FetchRequest {
            url,
            kind,
            max_bytes: self.max_bytes,
            timeout_seconds: self.policy.fetch_timeout,
        }
    }

    /// Takes the answer to `request`, at `now`.
    pub fn fetched(&self, request: &FetchRequest, now: u64, answer: FetchAnswer) -> FetchReport {
        let mut state = self.state();
        let url = &request.url;
        let body = match answer {
            FetchAnswer::Response {
                status: 200,
                cache_control,
                body,
            } if body.len() <= self.max_bytes => Ok((cache_control, body)),
            FetchAnswer::Response { status: 200, .. } => Err(format!(
                "the answer is larger than {} bytes",
                self.max_bytes
            )),
            FetchAnswer::Response { status, .. } => Err(format!("HTTP status {status}")),
            FetchAnswer::Failed(why) => Err(why),
        };
        let parsed = body.and_then(|(cache_control, body)| match request.kind {
            FetchKind::Discovery => self.discovered(&body).map(Parsed::Discovery),
            FetchKind::KeySet => KeySet::parse(&body, &self.algorithms)
                .map(|(keys, ignored)| Parsed::Keys(keys, ignored, cache_control))
                .map_err(|e| e.to_string()),
        });
        match parsed {
            Ok(Parsed::Discovery(jwks_uri)) => {
                let message = format!("discovery at {url}: key set at {jwks_uri}");
                state.jwks_uri = Some(jwks_uri.clone());
                FetchReport {
                    next: Some(self.request(jwks_uri, FetchKind::KeySet)),
                    ok: true,
                    message,
                    ignored: Vec::new(),
                }
            }
            Ok(Parsed::Keys(keys, ignored, cache_control)) => {
                let count = keys.keys().len();
                let outcome = state.cache.fetched(
                    now,
                    FetchResult::Fetched {
                        keys,
                        cache_control,
                    },
                );
                FetchReport {
                    next: None,
                    ok: true,
                    message: format!(
                        "key set fetched from {url}: {count} usable keys; {}",
                        describe(&outcome)
                    ),
                    ignored,
                }
            }
            Err(why) => {
                // The provider may have moved its key set: discover again next time.
                state.jwks_uri = None;
                let outcome = state.cache.fetched(now, FetchResult::Failed);
                FetchReport {
                    next: None,
                    ok: false,
                    message: format!("fetching {url} failed: {why}; {}", describe(&outcome)),
                    ignored: Vec::new(),
                }
            }
        }
    }

    /// The `jwks_uri` of a discovery document whose `issuer` is exactly the configured one.
    fn discovered(&self, body: &[u8]) -> Result<Url, String> {
        let Location::Discovery { issuer, .. } = &self.location else {
            return Err("not a discovery request".into());
        };
        let document: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
        match document.get("issuer").and_then(Value::as_str) {
            Some(found) if found == issuer => {}
            found => {
                return Err(format!(
                    "the discovery document names the issuer {found:?}, not `{issuer}`"
                ));
            }
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no `jwks_uri`")?;
        check_url(jwks_uri).map_err(|e| format!("`jwks_uri`: {e}"))
    }
}

enum Parsed {
    Discovery(Url),
    Keys(KeySet, Vec<IgnoredKey>, Option<String>),
}

/// The cache's part of a fetch's log line.
fn describe(outcome: &FetchOutcome) -> String {
    let list = |kids: &[String]| {
        if kids.is_empty() {
            "none".to_owned()
        } else {
            kids.join(", ")
        }
    };
    match outcome {
        FetchOutcome::Replaced {
            added,
            removed,
            fresh_for,
        } => format!(
            "kids added: {}; removed: {}; fresh for {fresh_for} s",
            list(added),
            list(removed)
        ),
        FetchOutcome::KeptStale { until } => {
            format!("the last good keys stay in use until {until} (unix time)")
        }
        FetchOutcome::Unavailable => "no usable keys: logins with these keys fail closed".into(),
    }
}

/// The cache's decision, with the fetches spelled out.
#[derive(Debug)]
pub(crate) enum RemoteDecision {
    Verify {
        keys: Arc<KeySet>,
        refresh: Option<FetchRequest>,
    },
    Fetch(FetchRequest),
    Wait,
    Reject(crate::RejectReason),
}
