//! `OAuth` and `Oidc`: the core of the `oauth` and `oidc` login types, for the Python module.
//! The module carries out the requests they describe (key fetches, introspection, discovery, the
//! registration webhook) through Synapse's HTTP client and hands the answers back.

use pyo3::{
    exceptions::PyValueError,
    prelude::*,
    types::{PyDict, PyTuple},
};
use synapse_token_auth::{
    RejectReason, Rejection,
    oauth::{Checked, HttpAnswer, HttpRequest, OAuth, OAuthVerdict, Oidc},
    verify::Step,
};

use crate::{ORIGIN, PyFetchRequest, intern, report_fetch};

/// Reads a section of the module config (as JSON) with `parse`, or raises ValueError naming
/// every problem.
fn parse_section<T>(
    config_json: &str,
    prefix: &str,
    parse: impl FnOnce(&serde_json::Value, &str) -> Result<T, Vec<synapse_token_auth::config::Problem>>,
) -> PyResult<T> {
    let value: serde_json::Value = serde_json::from_str(config_json)
        .map_err(|e| PyValueError::new_err(format!("config is not JSON: {e}")))?;
    parse(&value, prefix).map_err(|problems| {
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        PyValueError::new_err(format!(
            "invalid configuration in {ORIGIN}: {}",
            shown.join("; ")
        ))
    })
}

/// An answer as the module saw it: a status and body, or an error.
fn answer(status: Option<u16>, body: Option<Vec<u8>>, error: Option<String>) -> HttpAnswer {
    match (status, body, error) {
        (Some(status), Some(body), None) => HttpAnswer::Response { status, body },
        (_, _, error) => HttpAnswer::Failed(error.unwrap_or_else(|| "no answer".into())),
    }
}

fn rejected<'py>(
    py: Python<'py>,
    reason: RejectReason,
    detail: &str,
    alg: Option<String>,
    kid: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("result", intern(py, "rejected"))?;
    out.set_item("reason", intern(py, reason.as_str()))?;
    out.set_item("detail", detail)?;
    out.set_item("alg", alg)?;
    out.set_item("kid", kid)?;
    Ok(out)
}

fn rejection<'py>(py: Python<'py>, r: Rejection) -> PyResult<Bound<'py, PyDict>> {
    rejected(py, r.reason, "", r.alg, r.kid)
}

/// A checked claim set (of a JWT or an introspection answer), kept in Rust for `decide`.
#[pyclass(frozen, name = "Claims", module = "synapse_token_auth._native")]
pub(crate) struct PyClaims {
    inner: Checked,
    alg: Option<String>,
    kid: Option<String>,
}

#[pymethods]
impl PyClaims {
    #[getter]
    fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    #[getter]
    fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// A request the module sends: `url`, `content_type`, `body`, `authorization` (a secret),
/// at most `max_bytes` of answer within `timeout_seconds`, no redirects followed.
#[pyclass(frozen, name = "HttpRequest", module = "synapse_token_auth._native")]
pub(crate) struct PyHttpRequest {
    inner: HttpRequest,
}

#[pymethods]
impl PyHttpRequest {
    #[getter]
    fn url(&self) -> &str {
        self.inner.url.as_str()
    }
    #[getter]
    fn content_type(&self) -> &str {
        self.inner.content_type
    }
    #[getter]
    fn body(&self) -> &[u8] {
        &self.inner.body
    }
    #[getter]
    fn authorization(&self) -> Option<&str> {
        self.inner.authorization.as_deref()
    }
    #[getter]
    fn timeout_seconds(&self) -> u64 {
        self.inner.timeout_seconds
    }
    #[getter]
    fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }
    fn __repr__(&self) -> String {
        format!("HttpRequest({})", self.inner.url)
    }
}

fn request(inner: Option<HttpRequest>) -> Option<PyHttpRequest> {
    inner.map(|inner| PyHttpRequest { inner })
}

/// The `oauth` section.
#[pyclass(frozen, name = "OAuth", module = "synapse_token_auth._native")]
pub(crate) struct PyOAuth {
    inner: OAuth,
}

#[pymethods]
impl PyOAuth {
    /// Validates the `oauth` section (as JSON); raises ValueError naming every problem.
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        parse_section(config_json, "oauth.", OAuth::parse).map(|inner| Self { inner })
    }

    /// `jwt_validation` is configured.
    #[getter]
    fn checks_jwt(&self) -> bool {
        self.inner.jwt_verifier().is_some()
    }

    /// `jwt_validation` takes its keys from `jwks_endpoint`.
    #[getter]
    fn fetches_keys(&self) -> bool {
        self.inner
            .jwt_verifier()
            .is_some_and(|v| v.remote_keys().is_some())
    }

    /// `jwt_validation.single_use_tokens`.
    #[getter]
    fn single_use_tokens(&self) -> bool {
        self.inner
            .jwt_verifier()
            .is_some_and(|v| v.config().single_use_tokens)
    }

    #[getter]
    fn introspects(&self) -> bool {
        self.inner.introspects()
    }

    #[getter]
    fn registration_enabled(&self) -> bool {
        self.inner.registration_enabled
    }

    #[getter]
    fn check_external_id(&self) -> bool {
        self.inner.check_external_id
    }

    #[getter]
    fn notifies_on_registration(&self) -> bool {
        self.inner.notifies_on_registration()
    }

    #[getter]
    fn webhook_interrupts(&self) -> bool {
        self.inner.webhook_interrupts()
    }

    /// `expose_metadata_resource` as JSON text, or None.
    #[getter]
    fn metadata_resource(&self) -> Option<String> {
        self.inner
            .metadata_resource
            .as_ref()
            .map(|m| serde_json::Value::Object(m.clone()).to_string())
    }

    /// Like `Verifier.login`, for `jwt_validation`: `("done", Claims or rejection, refresh)`,
    /// `("fetch", FetchRequest, None)` or `("wait", None, None)`.
    #[pyo3(signature = (token, now = None))]
    fn jwt_login<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        now: Option<u64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let verifier = self.jwt_verifier()?;
        let now = now.unwrap_or_else(synapse_token_auth::unix_now);
        match py.detach(|| verifier.login_claims(token, now)) {
            Step::Done { result, refresh } => {
                let refresh = refresh.map(|inner| PyFetchRequest { inner });
                let decided = self.checked(py, result)?;
                (intern(py, "done"), decided, refresh).into_pyobject(py)
            }
            Step::Fetch(inner) => {
                (intern(py, "fetch"), PyFetchRequest { inner }, py.None()).into_pyobject(py)
            }
            Step::Wait => (intern(py, "wait"), py.None(), py.None()).into_pyobject(py),
        }
    }

    /// Like `Verifier.verify`, for `jwt_validation`: Claims, or a rejection dict.
    #[pyo3(signature = (token, now = None))]
    fn jwt_verify<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        now: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let verifier = self.jwt_verifier()?;
        let now = now.unwrap_or_else(synapse_token_auth::unix_now);
        let result = py.detach(|| verifier.verify_claims(token, now));
        self.checked(py, result)
    }

    /// Reports a key fetch of `jwks_endpoint` (see `Verifier.fetched`).
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
        let verifier = self.jwt_verifier()?;
        report_fetch(py, verifier, request, status, cache_control, body, error)
    }

    /// The introspection request for `token`, or None without `introspection_validation`.
    fn introspection_request(&self, token: &str) -> Option<PyHttpRequest> {
        request(self.inner.introspection_request(token))
    }

    /// Reads the introspection answer: Claims, or a rejection dict (`introspection_failed`
    /// with a `detail` when the endpoint gave no usable answer).
    #[pyo3(signature = (status = None, body = None, error = None))]
    fn introspected<'py>(
        &self,
        py: Python<'py>,
        status: Option<u16>,
        body: Option<Vec<u8>>,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.introspected(&answer(status, body, error)) {
            Ok(inner) => Ok(Bound::new(
                py,
                PyClaims {
                    inner,
                    alg: None,
                    kid: None,
                },
            )?
            .into_any()),
            Err((reason, detail)) => Ok(rejected(py, reason, &detail, None, None)?.into_any()),
        }
    }

    /// Names the user: `{"result": "accepted", "user_id", "localpart", "displayname", "admin",
    /// "email", "issuer", "subject", "may_register"}` or a rejection dict.
    fn decide<'py>(
        &self,
        py: Python<'py>,
        jwt: Option<&PyClaims>,
        introspection: Option<&PyClaims>,
        user: &str,
        server_name: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (alg, kid) = jwt.map_or((None, None), |c| (c.alg.clone(), c.kid.clone()));
        match self.inner.decide(
            jwt.map(|c| &c.inner),
            introspection.map(|c| &c.inner),
            user,
            server_name,
        ) {
            Ok(v) => verdict(py, &v),
            Err(reason) => rejected(py, reason, "", alg, kid),
        }
    }

    /// The webhook request before registering the user of an accepted verdict, or None.
    #[pyo3(signature = (localpart, user_id, displayname))]
    fn registration_notice(
        &self,
        localpart: &str,
        user_id: &str,
        displayname: Option<&str>,
    ) -> Option<PyHttpRequest> {
        request(
            self.inner
                .registration_notice(localpart, user_id, displayname),
        )
    }

    /// Whether a webhook answer counts as delivered: `(True, "")` or `(False, why)`.
    #[staticmethod]
    #[pyo3(signature = (status = None, body = None, error = None))]
    fn webhook_delivered(
        status: Option<u16>,
        body: Option<Vec<u8>>,
        error: Option<String>,
    ) -> (bool, String) {
        match OAuth::webhook_delivered(&answer(status, body, error)) {
            Ok(()) => (true, String::new()),
            Err(why) => (false, why),
        }
    }

    /// The effective configuration as JSON, without secrets (for the start-up log line).
    fn effective_config(&self) -> String {
        self.inner.redacted().to_string()
    }
}

impl PyOAuth {
    fn jwt_verifier(&self) -> PyResult<&synapse_token_auth::Verifier> {
        self.inner
            .jwt_verifier()
            .ok_or_else(|| PyValueError::new_err("no jwt_validation"))
    }

    fn checked<'py>(
        &self,
        py: Python<'py>,
        result: Result<synapse_token_auth::verify::SignedClaims, Rejection>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let signed = match result {
            Ok(signed) => signed,
            Err(r) => return Ok(rejection(py, r)?.into_any()),
        };
        let (alg, kid) = (signed.alg.clone(), signed.kid.clone());
        match self.inner.check_jwt(signed) {
            Ok(inner) => Ok(Bound::new(
                py,
                PyClaims {
                    inner,
                    alg: Some(alg),
                    kid,
                },
            )?
            .into_any()),
            Err(reason) => Ok(rejected(py, reason, "", Some(alg), kid)?.into_any()),
        }
    }
}

fn verdict<'py>(py: Python<'py>, v: &OAuthVerdict) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("result", intern(py, "accepted"))?;
    out.set_item("user_id", &v.user_id)?;
    out.set_item("localpart", &v.localpart)?;
    out.set_item("displayname", &v.displayname)?;
    out.set_item("admin", v.admin)?;
    out.set_item("email", &v.email)?;
    out.set_item("issuer", &v.issuer)?;
    out.set_item("subject", &v.subject)?;
    out.set_item("may_register", v.may_register)?;
    out.set_item("replay_key", &v.replay_key)?;
    out.set_item("replay_until", v.replay_until)?;
    Ok(out)
}

/// The `oidc` section.
#[pyclass(frozen, name = "Oidc", module = "synapse_token_auth._native")]
pub(crate) struct PyOidc {
    inner: Oidc,
}

#[pymethods]
impl PyOidc {
    /// Validates the `oidc` section (as JSON); raises ValueError naming every problem.
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        parse_section(config_json, "oidc.", Oidc::parse).map(|inner| Self { inner })
    }

    #[getter]
    fn allow_registration(&self) -> bool {
        self.inner.allow_registration
    }

    /// The metadata resource's JSON text.
    fn metadata(&self) -> String {
        self.inner.metadata().to_string()
    }

    /// The discovery GET when the introspection endpoint is unknown or stale, else None.
    #[pyo3(signature = (now = None))]
    fn discovery_request(&self, now: Option<u64>) -> Option<PyHttpRequest> {
        request(
            self.inner
                .discovery_request(now.unwrap_or_else(synapse_token_auth::unix_now)),
        )
    }

    /// Reads a discovery answer: `(True, "")` or `(False, why)`.
    #[pyo3(signature = (status = None, body = None, error = None))]
    fn discovered(
        &self,
        status: Option<u16>,
        body: Option<Vec<u8>>,
        error: Option<String>,
    ) -> (bool, String) {
        match self
            .inner
            .discovered(&answer(status, body, error), synapse_token_auth::unix_now())
        {
            Ok(()) => (true, String::new()),
            Err(why) => (false, why),
        }
    }

    /// The introspection request, once discovery found the endpoint; else None.
    fn introspection_request(&self, token: &str) -> Option<PyHttpRequest> {
        request(self.inner.introspection_request(token))
    }

    /// Decides on the introspection answer: `{"result": "accepted", "user_id", "localpart",
    /// "may_register"}` or a rejection dict.
    #[pyo3(signature = (user, server_name, status = None, body = None, error = None))]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        user: &str,
        server_name: &str,
        status: Option<u16>,
        body: Option<Vec<u8>>,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        match self
            .inner
            .decide(&answer(status, body, error), user, server_name)
        {
            Ok(v) => {
                let out = PyDict::new(py);
                out.set_item("result", intern(py, "accepted"))?;
                out.set_item("user_id", v.user_id)?;
                out.set_item("localpart", v.localpart)?;
                out.set_item("may_register", v.may_register)?;
                Ok(out)
            }
            Err((reason, detail)) => rejected(py, reason, &detail, None, None),
        }
    }
}
