//! The original module's `oauth` login type (`com.famedly.login.token.oauth`) and its Zitadel
//! `oidc` type, without I/O.
//!
//! An `oauth` login is checked by one or both of two claim sources: the token as a JWT
//! (`jwt_validation`, verified by the same [`Verifier`] as JWT login, with keys from an inline
//! JWK Set, a PEM file or a JWKS endpoint) and the token's introspection answer
//! (`introspection_validation`, RFC 7662). Each source must pass its `required_scopes` and its
//! `validator`; then [`OAuth::decide`] names the user from them. The adapters carry out what
//! this module describes: the key fetches ([`Verifier::login_claims`]), the introspection
//! request ([`OAuth::introspection_request`]) and the registration webhook
//! ([`OAuth::registration_notice`]).
//!
//! Safer than the original, on purpose (README, "Behaviour"): the token must name the user;
//! `exp` is checked whenever present and `nbf` always; an introspection answer must say
//! `active: true`; only asymmetric algorithms that fit the key verify a JWT.

mod claims;
mod config;
mod http;
mod naming;
mod oidc;

use serde_json::{Map, Value};

use self::naming::Sources;
pub use self::{
    claims::ClaimSource,
    http::{Endpoint, HttpAnswer, HttpAuth, HttpRequest, MAX_ANSWER_BYTES, Secret},
    oidc::{Oidc, OidcVerdict},
};
use crate::verify::{RejectReason, SignedClaims, Verifier};

/// How the login's identifier names the user (`username_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameType {
    /// `localpart`: `alice`.
    Localpart,
    /// `fq_uid`: `@alice:example.org`.
    FqUid,
    /// `user_id`: either.
    UserId,
}

/// The `oauth` section.
#[derive(Debug, Clone)]
pub struct OAuth {
    jwt: Option<JwtValidation>,
    introspection: Option<Introspection>,
    username_type: Option<UsernameType>,
    notify: Option<Webhook>,
    /// `expose_metadata_resource`: served as JSON at `/_famedly/login/{name}`.
    pub metadata_resource: Option<Map<String, Value>>,
    /// `registration_enabled`.
    pub registration_enabled: bool,
    /// `check_external_id`: an existing user must have logged in with this `(iss, sub)` before,
    /// or have no external id at all.
    pub check_external_id: bool,
}

#[derive(Debug, Clone)]
struct JwtValidation {
    verifier: Verifier,
    claims: ClaimSource,
}

#[derive(Debug, Clone)]
struct Introspection {
    endpoint: Endpoint,
    claims: ClaimSource,
}

/// `notify_on_registration`.
#[derive(Debug, Clone)]
struct Webhook {
    endpoint: Endpoint,
    interrupt_on_error: bool,
}

/// An accepted `oauth` login: who, and what to apply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OAuthVerdict {
    /// `@localpart:server_name`, lowercase.
    pub user_id: String,
    pub localpart: String,
    pub displayname: Option<String>,
    /// `Some(true)` when the admin path finds a truthy value: applied at registration.
    pub admin: Option<bool>,
    /// Bound to a new account at registration.
    pub email: Option<String>,
    /// The external id: the token's `iss` …
    pub issuer: String,
    /// … and `sub`.
    pub subject: String,
    /// `registration_enabled`.
    pub may_register: bool,
    /// With `jwt_validation.single_use_tokens`: the JWT's replay key, for the store (see
    /// [`crate::Verdict::replay_key`]).
    #[serde(default)]
    pub replay_key: Option<String>,
    /// … and until when to remember it.
    #[serde(default)]
    pub replay_until: Option<u64>,
}

/// A checked claim set of one source, ready for [`OAuth::decide`]; a JWT's with its replay key
/// when single use is on.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked(Value, Option<(String, u64)>);

impl Checked {
    /// The claims, for logs and tests.
    #[must_use]
    pub fn claims(&self) -> &Value {
        &self.0
    }
}

impl OAuth {
    /// The JWT verifier of `jwt_validation`, whose [`Verifier::login_claims`] the adapter runs
    /// (fetching keys when it asks), then hands the result to [`Self::check_jwt`].
    #[must_use]
    pub fn jwt_verifier(&self) -> Option<&Verifier> {
        self.jwt.as_ref().map(|j| &j.verifier)
    }

    /// Whether logins are introspected.
    #[must_use]
    pub fn introspects(&self) -> bool {
        self.introspection.is_some()
    }

    /// `required_scopes` and `validator` of `jwt_validation`, on a verified token.
    pub fn check_jwt(&self, signed: SignedClaims) -> Result<Checked, RejectReason> {
        let jwt = self.jwt.as_ref().ok_or(RejectReason::ClaimsRejected)?;
        let claims = Value::Object(signed.claims);
        jwt.claims.check(&claims)?;
        Ok(Checked(claims, signed.replay))
    }

    /// The introspection request for `token`: a form POST of `token` with the configured
    /// authentication (RFC 7662 section 2.1).
    #[must_use]
    pub fn introspection_request(&self, token: &str) -> Option<HttpRequest> {
        let introspection = self.introspection.as_ref()?;
        Some(introspection.endpoint.post(
            "application/x-www-form-urlencoded",
            http::form(&[("token", token)]),
        ))
    }

    /// Reads the introspection answer: status 200, a JSON object, `active: true`, then
    /// `required_scopes` and `validator`. `Err((IntrospectionFailed, detail))` when the
    /// endpoint gave no usable answer (an operator's problem, logged with the detail).
    pub fn introspected(&self, answer: &HttpAnswer) -> Result<Checked, (RejectReason, String)> {
        let Some(introspection) = &self.introspection else {
            return Err((RejectReason::IntrospectionFailed, "not configured".into()));
        };
        let claims = http::json_object(answer)
            .map_err(|detail| (RejectReason::IntrospectionFailed, detail))?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err((RejectReason::TokenInactive, String::new()));
        }
        let claims = Value::Object(claims);
        introspection
            .claims
            .check(&claims)
            .map_err(|reason| (reason, String::new()))?;
        Ok(Checked(claims, None))
    }

    /// Names the user from the checked claim sets (see `naming.rs`): `jwt` is given when
    /// `jwt_validation` is configured, `introspection` when `introspection_validation` is.
    pub fn decide(
        &self,
        jwt: Option<&Checked>,
        introspection: Option<&Checked>,
        identifier_user: &str,
        server_name: &str,
    ) -> Result<OAuthVerdict, RejectReason> {
        let sources = Sources {
            jwt: pair(self.jwt.as_ref().map(|j| &j.claims), jwt)?,
            introspection: pair(
                self.introspection.as_ref().map(|i| &i.claims),
                introspection,
            )?,
        };
        let (replay_key, replay_until) = jwt
            .and_then(|j| j.1.clone())
            .map_or((None, None), |(key, until)| (Some(key), Some(until)));
        Ok(OAuthVerdict {
            replay_key,
            replay_until,
            ..self.name_user(&sources, identifier_user, server_name)?
        })
    }

    /// The webhook call before registering `user_id` (`notify_on_registration`): a JSON POST
    /// of `{localpart, fully_qualified_uid, displayname}`, as the original sends it.
    #[must_use]
    pub fn registration_notice(
        &self,
        localpart: &str,
        user_id: &str,
        displayname: Option<&str>,
    ) -> Option<HttpRequest> {
        let webhook = self.notify.as_ref()?;
        let body = serde_json::json!({
            "localpart": localpart,
            "fully_qualified_uid": user_id,
            "displayname": displayname,
        });
        Some(
            webhook
                .endpoint
                .post("application/json", body.to_string().into_bytes()),
        )
    }

    /// Whether a registration webhook is configured.
    #[must_use]
    pub fn notifies_on_registration(&self) -> bool {
        self.notify.is_some()
    }

    /// Whether a failed webhook call refuses the login (`interrupt_on_error`, default true).
    #[must_use]
    pub fn webhook_interrupts(&self) -> bool {
        self.notify.as_ref().is_some_and(|w| w.interrupt_on_error)
    }

    /// Whether a webhook answer counts as delivered: any 2xx status.
    pub fn webhook_delivered(answer: &HttpAnswer) -> Result<(), String> {
        match answer {
            HttpAnswer::Response { status, .. } if (200..300).contains(status) => Ok(()),
            HttpAnswer::Response { status, .. } => Err(format!("HTTP {status}")),
            HttpAnswer::Failed(why) => Err(why.clone()),
        }
    }
}

/// A configured source with its checked claims. A configured source that was not checked (or
/// the reverse) is an adapter's bug: refuse rather than decide on less than the configuration
/// asks for.
fn pair<'a>(
    config: Option<&'a ClaimSource>,
    checked: Option<&'a Checked>,
) -> Result<Option<(&'a ClaimSource, &'a Value)>, RejectReason> {
    match (config, checked) {
        (Some(config), Some(checked)) => Ok(Some((config, &checked.0))),
        (None, None) => Ok(None),
        _ => Err(RejectReason::ClaimsRejected),
    }
}
