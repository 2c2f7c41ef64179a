//! `synapse_token_auth._native`: the Rust verification core, for the Synapse module.
//!
//! The config is validated once, at Synapse start-up, and each login is verified in-process.
//! Results come back as plain dicts in the same shape as the daemon's JSON, so the Python module
//! handles embedded and daemon mode with one code path.

use pyo3::{
    exceptions::PyValueError,
    prelude::*,
    types::{PyDict, PyString, PyTuple},
};
use synapse_token_auth::{
    Document, Origin, Rejection, Verdict, Verifier,
    keys::{
        KeyType,
        published::{FetchAnswer, FetchRequest},
    },
    verify::Step,
};

mod oauth;

/// Where config errors say the config came from.
const ORIGIN: &str = "the `config` of the synapse_token_auth module in homeserver.yaml";

/// A validated policy with its key loaded.
#[pyclass(frozen, name = "Verifier", module = "synapse_token_auth._native")]
struct PyVerifier {
    inner: Verifier,
    /// Asymmetric verification takes tens of microseconds: let other Python threads run.
    /// HMAC takes about two, less than releasing and re-taking the GIL is worth.
    release_gil: bool,
}

impl PyVerifier {
    /// Runs a verification, letting other Python threads run meanwhile when it is slow enough
    /// to be worth releasing the GIL.
    fn run<T: Send>(&self, py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
        if self.release_gil {
            py.detach(work)
        } else {
            work()
        }
    }
}

#[pymethods]
impl PyVerifier {
    /// Validates `config_json` (the module config as JSON) and loads the key.
    /// Raises ValueError listing every problem, each with its key.
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let value: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|e| PyValueError::new_err(format!("config is not JSON: {e}")))?;
        let document = Document::from_value(value, &[], Origin::Other(ORIGIN.to_owned()))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let release_gil = document
            .policy
            .keys
            .iter()
            .any(|k| k.key.key_type() != KeyType::Hmac)
            || document.policy.published.is_some();
        Ok(Self {
            inner: Verifier::new(document.policy),
            release_gil,
        })
    }

    /// Verifies `token` for a login as `user` on `server_name` at `now` (default: the clock).
    ///
    /// Returns `{"result": "accepted", "user_id", "localpart", "may_register", "admin",
    /// "displayname", "update_displayname_on_login", "alg", "kid", "key", "replay_key",
    /// "replay_until"}` or
    /// `{"result": "rejected", "reason", "alg", "kid"}`. Never raises for a bad token.
    #[pyo3(signature = (token, user, server_name, now = None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        user: &str,
        server_name: &str,
        now: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let now = now.unwrap_or_else(synapse_token_auth::unix_now);
        let outcome = self.run(py, || self.inner.verify(token, user, server_name, now));
        verdict_dict(py, outcome)
    }

    /// Starts or continues a login whose keys may have to be fetched first (`jwks_url`,
    /// `oidc_issuer`). Returns `("done", verdict, refresh)` with `refresh` a `FetchRequest` to
    /// carry out in the background or None; `("fetch", request)`: carry it out, report it with
    /// `fetched`, then decide with `verify`; or `("wait", None)`: another login fetches, wait
    /// for it (at most its timeout and a second), then decide with `verify`.
    #[pyo3(signature = (token, user, server_name, now = None))]
    fn login<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        user: &str,
        server_name: &str,
        now: Option<u64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let now = now.unwrap_or_else(synapse_token_auth::unix_now);
        match self.run(py, || self.inner.login(token, user, server_name, now)) {
            Step::Done { result, refresh } => {
                let refresh = refresh.map(|inner| PyFetchRequest { inner });
                (intern(py, "done"), verdict_dict(py, result)?, refresh).into_pyobject(py)
            }
            Step::Fetch(inner) => {
                (intern(py, "fetch"), PyFetchRequest { inner }, py.None()).into_pyobject(py)
            }
            Step::Wait => (intern(py, "wait"), py.None(), py.None()).into_pyobject(py),
        }
    }

    /// Reports how the fetch of `request` ended: an HTTP `status` with its `cache_control`
    /// header and `body`, or `error` (timeout, connection, redirect, too large). Returns
    /// `{"ok", "message", "ignored": [(kid, why)], "next": FetchRequest or None}`.
    #[pyo3(signature = (request, status = None, cache_control = None, body = None, error = None))]
    fn fetched<'py>(
        &self,
        py: Python<'py>,
        request: &PyFetchRequest,
        status: Option<u16>,
        cache_control: Option<String>,
        body: Option<Vec<u8>>,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        report_fetch(py, &self.inner, request, status, cache_control, body, error)
    }

    /// Whether accepted verdicts carry a replay key that the module must record
    /// (`single_use_tokens`).
    #[getter]
    fn single_use_tokens(&self) -> bool {
        self.inner.config().single_use_tokens
    }

    /// Whether logins may need fetches (`jwks_url` or `oidc_issuer`).
    #[getter]
    fn fetches_keys(&self) -> bool {
        self.inner.remote_keys().is_some()
    }

    /// The effective policy as JSON, with the secret redacted (for the start-up log line).
    fn effective_config(&self) -> String {
        self.inner.config().redacted().to_string()
    }
}

/// A GET the core asks for: `url`, at most `max_bytes` of body within `timeout_seconds`, no
/// redirects followed.
#[pyclass(frozen, name = "FetchRequest", module = "synapse_token_auth._native")]
struct PyFetchRequest {
    inner: FetchRequest,
}

#[pymethods]
impl PyFetchRequest {
    #[getter]
    fn url(&self) -> &str {
        self.inner.url.as_str()
    }

    /// The URL's origin (`scheme://host:port`): a redirect elsewhere is never followed.
    #[getter]
    fn origin(&self) -> String {
        self.inner.url.origin().ascii_serialization()
    }

    #[getter]
    fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    #[getter]
    fn timeout_seconds(&self) -> u64 {
        self.inner.timeout_seconds
    }

    fn __repr__(&self) -> String {
        format!("FetchRequest({})", self.inner.url)
    }
}

/// Reports a key fetch to `verifier`'s remote key source; the dict `Verifier.fetched` returns.
fn report_fetch<'py>(
    py: Python<'py>,
    verifier: &Verifier,
    request: &PyFetchRequest,
    status: Option<u16>,
    cache_control: Option<String>,
    body: Option<Vec<u8>>,
    error: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let Some(remote) = verifier.remote_keys() else {
        return Err(PyValueError::new_err("this policy fetches no keys"));
    };
    let answer = match (status, body, error) {
        (Some(status), Some(body), None) => FetchAnswer::Response {
            status,
            cache_control,
            body,
        },
        (_, _, error) => FetchAnswer::Failed(error.unwrap_or_else(|| "no answer".into())),
    };
    let report = remote.fetched(&request.inner, synapse_token_auth::unix_now(), answer);
    let out = PyDict::new(py);
    out.set_item("ok", report.ok)?;
    out.set_item("message", report.message)?;
    let ignored: Vec<(Option<String>, String)> = report
        .ignored
        .into_iter()
        .map(|i| (i.kid, i.why.to_string()))
        .collect();
    out.set_item("ignored", ignored)?;
    out.set_item("next", report.next.map(|inner| PyFetchRequest { inner }))?;
    Ok(out)
}

/// A verdict or a rejection as the dict the module and the daemon client share.
fn verdict_dict(
    py: Python<'_>,
    outcome: Result<Verdict, Rejection>,
) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    match outcome {
        Ok(v) => {
            out.set_item("result", intern(py, "accepted"))?;
            out.set_item("user_id", v.user_id)?;
            out.set_item("localpart", v.localpart)?;
            out.set_item("may_register", v.may_register)?;
            out.set_item("admin", v.admin)?;
            out.set_item("displayname", v.displayname)?;
            out.set_item("update_displayname_on_login", v.update_displayname_on_login)?;
            out.set_item("alg", v.alg)?;
            out.set_item("kid", v.kid)?;
            out.set_item("key", &*v.key)?;
            out.set_item("replay_key", v.replay_key)?;
            out.set_item("replay_until", v.replay_until)?;
        }
        Err(r) => {
            out.set_item("result", intern(py, "rejected"))?;
            out.set_item("reason", intern(py, r.reason.as_str()))?;
            out.set_item("alg", r.alg)?;
            out.set_item("kid", r.kid)?;
        }
    }
    Ok(out)
}

fn intern<'py>(py: Python<'py>, text: &'static str) -> Bound<'py, PyString> {
    PyString::intern(py, text)
}

/// The stable reason codes a rejection can carry.
#[pyfunction]
fn reject_reasons() -> Vec<&'static str> {
    synapse_token_auth::RejectReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect()
}

/// The lowercase localpart that `user` (a localpart or a full user id) names on `server_name`,
/// or None when it names no valid local user: the core's own rule, so that the module checks a
/// daemon's verdict against the login exactly as the verifier matched the token to it.
#[pyfunction]
fn localpart(user: &str, server_name: &str) -> Option<String> {
    synapse_token_auth::localpart(user, server_name).ok()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    synapse_token_auth::install_crypto_provider();
    m.add_class::<PyVerifier>()?;
    m.add_class::<PyFetchRequest>()?;
    m.add_class::<oauth::PyOAuth>()?;
    m.add_class::<oauth::PyOidc>()?;
    m.add_class::<oauth::PyClaims>()?;
    m.add_class::<oauth::PyHttpRequest>()?;
    m.add_function(wrap_pyfunction!(reject_reasons, m)?)?;
    m.add_function(wrap_pyfunction!(localpart, m)?)?;
    m.add("MAX_TOKEN_BYTES", synapse_token_auth::MAX_TOKEN_BYTES)?;
    Ok(())
}
