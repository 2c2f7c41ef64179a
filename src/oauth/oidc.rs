//! The original's `oidc` login type (`com.famedly.login.token.oidc`): an access token of a
//! Zitadel instance, checked by introspection at the endpoint the issuer's discovery document
//! names, with the client's credentials.
//!
//! The answer must be active, come from the configured issuer, grant the `User` or `OrgAdmin`
//! role in the project (`urn:zitadel:iam:org:project:{project_id}:roles`), come from an allowed
//! client when `allowed_client_ids` is set, and carry a `localpart` claim naming the login's user.

use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use url::Url;

use super::{
    config::section,
    http::{self, Endpoint, HttpAnswer, HttpAuth, HttpRequest, MAX_ANSWER_BYTES},
};
use crate::{
    config::{Problem, Reader, kind},
    keys::published::check_url,
    subject,
    verify::RejectReason,
};

const OIDC_KEYS: &[&str] = &[
    "issuer",
    "client_id",
    "client_secret",
    "client_secret_file",
    "client_secret_credential",
    "project_id",
    "organization_id",
    "allowed_client_ids",
    "allow_registration",
    "timeout_seconds",
];
/// Roles that let a user in.
const ALLOWED_ROLES: &[&str] = &["User", "OrgAdmin"];
/// How long a discovered introspection endpoint is used before discovery runs again.
pub const DISCOVERY_TTL_SECONDS: u64 = 3600;

/// The `oidc` section.
#[derive(Debug)]
pub struct Oidc {
    /// `issuer`, as configured (the metadata resource shows it).
    pub issuer: String,
    discovery: Url,
    auth: HttpAuth,
    timeout_seconds: u64,
    /// `project_id` and `organization_id` as strings (the original accepts numbers too).
    pub project_id: String,
    pub organization_id: String,
    allowed_client_ids: Option<Vec<String>>,
    /// `allow_registration`.
    pub allow_registration: bool,
    /// The introspection endpoint of the last good discovery, and when it was read.
    discovered: Mutex<Option<(Url, u64)>>,
}

impl Clone for Oidc {
    fn clone(&self) -> Self {
        Self {
            issuer: self.issuer.clone(),
            discovery: self.discovery.clone(),
            auth: self.auth.clone(),
            timeout_seconds: self.timeout_seconds,
            project_id: self.project_id.clone(),
            organization_id: self.organization_id.clone(),
            allowed_client_ids: self.allowed_client_ids.clone(),
            allow_registration: self.allow_registration,
            discovered: Mutex::new(self.lock().clone()),
        }
    }
}

/// An accepted `oidc` login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OidcVerdict {
    pub user_id: String,
    pub localpart: String,
    pub may_register: bool,
}

impl Oidc {
    /// Reads the `oidc` section; `prefix` names it in problems (e.g. `oidc.`).
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    pub fn parse(value: &Value, prefix: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let parsed = section(value, prefix, &mut problems, OIDC_KEYS, parse_oidc).flatten();
        match parsed {
            Some(oidc) if problems.is_empty() => Ok(oidc),
            _ => Err(problems),
        }
    }

    /// The discovery request, when the introspection endpoint is unknown or older than
    /// [`DISCOVERY_TTL_SECONDS`]; `None` when the known one is fresh.
    #[must_use]
    pub fn discovery_request(&self, now: u64) -> Option<HttpRequest> {
        let known = self.lock();
        if known
            .as_ref()
            .is_some_and(|(_, at)| now < at + DISCOVERY_TTL_SECONDS)
        {
            return None;
        }
        Some(HttpRequest {
            url: self.discovery.clone(),
            content_type: "",
            body: Vec::new(),
            authorization: None,
            timeout_seconds: self.timeout_seconds,
            max_bytes: MAX_ANSWER_BYTES,
        })
    }

    /// Reads a discovery answer; keeps the previous endpoint when it is unusable.
    pub fn discovered(&self, answer: &HttpAnswer, now: u64) -> Result<(), String> {
        let document = http::json_object(answer)?;
        let endpoint = match document.get("introspection_endpoint") {
            Some(Value::String(url)) => check_url(url)?,
            _ => return Err("the discovery document names no `introspection_endpoint`".into()),
        };
        *self.lock() = Some((endpoint, now));
        Ok(())
    }

    /// The introspection request for `token`, once discovery has found the endpoint. Sent as
    /// the original sends it: `token`, `token_type_hint=access_token`, `scope=openid`, with the
    /// client's credentials.
    #[must_use]
    pub fn introspection_request(&self, token: &str) -> Option<HttpRequest> {
        let (url, _) = self.lock().clone()?;
        let endpoint = Endpoint {
            url,
            auth: self.auth.clone(),
            timeout_seconds: self.timeout_seconds,
        };
        Some(endpoint.post(
            "application/x-www-form-urlencoded",
            http::form(&[
                ("token", token),
                ("token_type_hint", "access_token"),
                ("scope", "openid"),
            ]),
        ))
    }

    /// Decides on the introspection answer. `Err((IntrospectionFailed, detail))` when the
    /// endpoint gave no usable answer.
    pub fn decide(
        &self,
        answer: &HttpAnswer,
        identifier_user: &str,
        server_name: &str,
    ) -> Result<OidcVerdict, (RejectReason, String)> {
        let claims = http::json_object(answer)
            .map_err(|detail| (RejectReason::IntrospectionFailed, detail))?;
        self.check(&claims, identifier_user, server_name)
            .map_err(|reason| (reason, String::new()))
    }

    fn check(
        &self,
        claims: &Map<String, Value>,
        identifier_user: &str,
        server_name: &str,
    ) -> Result<OidcVerdict, RejectReason> {
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(RejectReason::TokenInactive);
        }
        let roles_claim = format!("urn:zitadel:iam:org:project:{}:roles", self.project_id);
        // Zitadel writes roles as a mapping from role name to the granting organisations; a
        // list of role names is read the same way.
        let granted = match claims.get(&roles_claim) {
            Some(Value::Object(roles)) => roles.keys().any(|r| ALLOWED_ROLES.contains(&r.as_str())),
            Some(Value::Array(roles)) => roles
                .iter()
                .filter_map(Value::as_str)
                .any(|r| ALLOWED_ROLES.contains(&r)),
            _ => false,
        };
        if !granted {
            return Err(RejectReason::MissingRole);
        }
        // The original's README asks for the issuer with a trailing slash; Zitadel's `iss` has
        // none. Either spelling names the same issuer.
        let issuer = self.issuer.trim_end_matches('/');
        if claims
            .get("iss")
            .and_then(Value::as_str)
            .is_none_or(|iss| iss.trim_end_matches('/') != issuer)
        {
            return Err(RejectReason::WrongIssuer);
        }
        if let Some(allowed) = &self.allowed_client_ids {
            let client = claims.get("client_id").and_then(Value::as_str);
            if !client.is_some_and(|c| allowed.iter().any(|a| a == c)) {
                return Err(RejectReason::ClientNotAllowed);
            }
        }
        let Some(Value::String(claimed)) = claims.get("localpart") else {
            return Err(RejectReason::InvalidSubject);
        };
        let localpart = subject::localpart(claimed, server_name)
            .ok()
            .filter(|_| !claimed.starts_with('@'))
            .ok_or(RejectReason::InvalidSubject)?;
        let identified = subject::localpart(identifier_user, server_name)
            .map_err(RejectReason::of_login_user)?;
        if identified != localpart {
            return Err(RejectReason::SubjectMismatch);
        }
        Ok(OidcVerdict {
            user_id: format!("@{localpart}:{server_name}"),
            localpart,
            may_register: self.allow_registration,
        })
    }

    /// The effective configuration, without the client secret.
    #[must_use]
    pub fn redacted(&self) -> Value {
        let mut out = self.metadata();
        out["auth"] = self.auth.redacted();
        out["allowed_client_ids"] = serde_json::json!(self.allowed_client_ids);
        out["allow_registration"] = self.allow_registration.into();
        out
    }

    /// The metadata resource at `/_famedly/login/com.famedly.login.token.oidc`, as the original
    /// serves it.
    #[must_use]
    pub fn metadata(&self) -> Value {
        let base = self.issuer.trim_end_matches('/');
        serde_json::json!({
            "issuer": self.issuer,
            "issuer-metadata": format!("{base}/.well-known/openid-configuration"),
            "organization-id": self.organization_id,
            "project-id": self.project_id,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Url, u64)>> {
        self.discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn parse_oidc(r: &mut Reader<'_>) -> Option<Oidc> {
    let required = |r: &mut Reader<'_>, key: &str| {
        let value = r.non_empty_string(key);
        if !r.map.contains_key(key) {
            r.problem(key, "required");
        }
        value
    };
    let issuer = required(r, "issuer");
    let discovery = issuer.as_deref().and_then(|issuer| {
        crate::keys::published::Location::discovery(issuer)
            .map_err(|m| r.problem("issuer", m))
            .ok()
    });
    let client_id = required(r, "client_id");
    // Inline as in the original, or from a file or a systemd credential.
    let secret = http::read_secret(r, "client_secret");
    let id_value = |r: &mut Reader<'_>, key: &str| match r.map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        None => {
            r.problem(key, "required");
            None
        }
        Some(other) => {
            r.problem(
                key,
                format!("expected an id (a string or number), found {}", kind(other)),
            );
            None
        }
    };
    let project_id = id_value(r, "project_id");
    let organization_id = id_value(r, "organization_id");
    // A list, or one space-separated string, as the original reads it.
    let allowed_client_ids = r.strings("allowed_client_ids").map(|ids| {
        ids.iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    let allow_registration = r.bool("allow_registration").unwrap_or(false);
    let timeout_seconds = r
        .u64("timeout_seconds")
        .unwrap_or(http::DEFAULT_TIMEOUT_SECONDS);
    if !(1..=http::MAX_TIMEOUT_SECONDS).contains(&timeout_seconds) {
        r.problem(
            "timeout_seconds",
            format!("must be between 1 and {}", http::MAX_TIMEOUT_SECONDS),
        );
    }
    let discovery = match discovery? {
        crate::keys::published::Location::Discovery { discovery, .. } => discovery,
        crate::keys::published::Location::KeySet(url) => url,
    };
    Some(Oidc {
        issuer: issuer?,
        discovery,
        auth: HttpAuth::Basic {
            username: client_id?,
            password: secret?,
        },
        timeout_seconds,
        project_id: project_id?,
        organization_id: organization_id?,
        allowed_client_ids,
        allow_registration,
        discovered: Mutex::new(None),
    })
}
