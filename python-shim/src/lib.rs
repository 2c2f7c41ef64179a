//! `synapse_token_auth._native`: the Rust verification core, for the Synapse module.
//!
//! The config is validated once, at Synapse start-up, and each login is verified in-process.
//! Results come back as plain dicts in the same shape as the daemon's JSON, so the Python module
//! handles embedded and daemon mode with one code path.

use pyo3::{
    exceptions::PyValueError,
    prelude::*,
    types::{PyDict, PyString},
};
use synapse_token_auth::{Document, Origin, Verifier, keys::KeyType};

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
            .any(|k| k.key.key_type() != KeyType::Hmac);
        Ok(Self {
            inner: Verifier::new(document.policy),
            release_gil,
        })
    }

    /// Verifies `token` for a login as `user` on `server_name` at `now` (default: the clock).
    ///
    /// Returns `{"result": "accepted", "user_id", "localpart", "may_register", "admin",
    /// "displayname", "update_displayname_on_login", "alg", "kid", "key"}` or
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
        let run = || self.inner.verify(token, user, server_name, now);
        let outcome = if self.release_gil {
            py.detach(run)
        } else {
            run()
        };
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

    /// The effective policy as JSON, with the secret redacted (for the start-up log line).
    fn effective_config(&self) -> String {
        self.inner.config().redacted().to_string()
    }
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
    m.add_function(wrap_pyfunction!(reject_reasons, m)?)?;
    m.add_function(wrap_pyfunction!(localpart, m)?)?;
    m.add("MAX_TOKEN_BYTES", synapse_token_auth::MAX_TOKEN_BYTES)?;
    Ok(())
}
