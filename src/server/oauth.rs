//! The daemon's side of the `oauth` and `oidc` login types: it holds their secrets (the
//! introspection and webhook credentials, from files or systemd credentials) and makes their
//! requests, so that nothing secret stays in homeserver.yaml.
//!
//! - `POST /v1/oauth/verify` and `POST /v1/oidc/verify` (`{token, user, server_name}`): the
//!   verdict, or 403 with the reason;
//! - `POST /v1/oauth/registration` (`{localpart, user_id, displayname}`): calls the registration
//!   webhook, before the module registers the user;
//! - `GET /v1/login-metadata/{name}`: the metadata resources the module serves.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    RejectBody, Shared, VerifyRequest, error, printable, qualified, read_body, unauthorized,
};
use crate::{
    RejectReason,
    fetch::{self, Fetcher, FetcherError},
    oauth::{OAuth, OAuthVerdict, Oidc, OidcVerdict},
    server::Metrics,
};

/// The routes of the `oauth` and `oidc` login types.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/oauth/verify").route(web::post().to(oauth_verify)))
        .service(web::resource("/v1/oauth/registration").route(web::post().to(oauth_registration)))
        .service(web::resource("/v1/oidc/verify").route(web::post().to(oidc_verify)))
        .service(web::resource("/v1/login-metadata/{name}").route(web::get().to(login_metadata)));
}

/// A login type besides JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherType {
    OAuth,
    Oidc,
}

impl OtherType {
    /// For log lines, as the module writes them.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OAuth => "OAuth",
            Self::Oidc => "OIDC",
        }
    }

    /// The daemon's section.
    #[must_use]
    pub fn section(self) -> &'static str {
        match self {
            Self::OAuth => "oauth",
            Self::Oidc => "oidc",
        }
    }
}

/// An accepted login of another type: the user and the answer to send.
pub type OtherVerdict = (String, Value);

/// The login types besides JWT that the daemon serves, from its `[oauth]` and `[oidc]` tables.
#[derive(Debug)]
pub struct OtherLogins {
    oauth: Option<(OAuth, Option<Fetcher>)>,
    oidc: Option<Oidc>,
    client: Option<reqwest::Client>,
}

/// An accepted `oauth` login, with what the module needs to finish it.
#[derive(Debug, Serialize, Deserialize)]
pub struct OAuthAnswer {
    #[serde(flatten)]
    pub verdict: OAuthVerdict,
    pub check_external_id: bool,
    /// Whether a registration webhook is configured: the module then calls
    /// `/v1/oauth/registration` before registering a new user.
    pub notify_on_registration: bool,
}

/// `POST /v1/oauth/registration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    pub localpart: String,
    pub user_id: String,
    pub displayname: Option<String>,
}

/// The answer of `POST /v1/oauth/registration`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegistrationAnswer {
    /// The webhook answered 2xx (or none is configured).
    pub delivered: bool,
    /// With `delivered: false`: whether the module must refuse the login (`interrupt_on_error`).
    pub interrupt: bool,
    /// Why the call failed, for the module's log line.
    pub detail: String,
}

impl OtherLogins {
    /// `oauth` with a key fetcher when its JWTs' keys come from `jwks_endpoint`.
    pub fn new(
        oauth: Option<OAuth>,
        oidc: Option<Oidc>,
        metrics: &std::sync::Arc<Metrics>,
    ) -> Result<Self, FetcherError> {
        let oauth = oauth
            .map(|oauth| {
                let fetcher = oauth
                    .jwt_verifier()
                    .and_then(crate::Verifier::remote_keys)
                    .map(|r| {
                        Fetcher::new(r).map(|f| f.with_metrics(std::sync::Arc::clone(metrics)))
                    })
                    .transpose()?;
                Ok::<_, FetcherError>((oauth, fetcher))
            })
            .transpose()?;
        let client = if oauth.is_some() || oidc.is_some() {
            Some(fetch::http_client()?)
        } else {
            None
        };
        Ok(Self {
            oauth,
            oidc,
            client,
        })
    }

    /// Whether `[oauth]` is configured.
    #[must_use]
    pub fn serves_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    /// Whether `[oidc]` is configured.
    #[must_use]
    pub fn serves_oidc(&self) -> bool {
        self.oidc.is_some()
    }

    /// A login of `kind`; `None` when its section is not configured.
    pub async fn verify(
        &self,
        kind: OtherType,
        token: &str,
        user: &str,
        server_name: &str,
    ) -> Option<Result<OtherVerdict, (RejectReason, String)>> {
        let answer = |user_id: &str, answer: Result<Value, serde_json::Error>| {
            answer
                .map(|a| (user_id.to_owned(), a))
                .map_err(|e| (RejectReason::MalformedClaim, e.to_string()))
        };
        Some(match kind {
            OtherType::OAuth => self
                .oauth(token, user, server_name)
                .await?
                .and_then(|a| answer(&a.verdict.user_id, serde_json::to_value(&a))),
            OtherType::Oidc => self
                .oidc(token, user, server_name)
                .await?
                .and_then(|v| answer(&v.user_id, serde_json::to_value(&v))),
        })
    }

    /// An `oauth` login: the JWT (keys fetched when the cache asks for it), the introspection
    /// request, then who logs in. `None` when `[oauth]` is not configured.
    pub async fn oauth(
        &self,
        token: &str,
        user: &str,
        server_name: &str,
    ) -> Option<Result<OAuthAnswer, (RejectReason, String)>> {
        let (oauth, fetcher) = self.oauth.as_ref()?;
        let client = self.client.as_ref()?;
        let jwt = match oauth.jwt_verifier() {
            None => None,
            Some(verifier) => {
                let signed = match fetcher {
                    Some(fetcher) => fetcher.login_claims(verifier, token).await,
                    None => verifier.verify_claims(token, crate::unix_now()),
                };
                let checked = signed
                    .map_err(|r| r.reason)
                    .and_then(|signed| oauth.check_jwt(signed));
                match checked {
                    Ok(checked) => Some(checked),
                    Err(reason) => return Some(Err((reason, String::new()))),
                }
            }
        };
        let introspected = match oauth.introspection_request(token) {
            None => None,
            Some(request) => {
                let answer = fetch::send(client, &request).await;
                match oauth.introspected(&answer) {
                    Ok(checked) => Some(checked),
                    Err(failed) => return Some(Err(failed)),
                }
            }
        };
        Some(
            oauth
                .decide(jwt.as_ref(), introspected.as_ref(), user, server_name)
                .map(|verdict| OAuthAnswer {
                    verdict,
                    check_external_id: oauth.check_external_id,
                    notify_on_registration: oauth.notifies_on_registration(),
                })
                .map_err(|reason| (reason, String::new())),
        )
    }

    /// Calls the registration webhook; `None` when `[oauth]` is not configured.
    pub async fn registration(&self, request: RegistrationRequest) -> Option<RegistrationAnswer> {
        let (oauth, _) = self.oauth.as_ref()?;
        let client = self.client.as_ref()?;
        let Some(call) = oauth.registration_notice(
            &request.localpart,
            &request.user_id,
            request.displayname.as_deref(),
        ) else {
            return Some(RegistrationAnswer {
                delivered: true,
                interrupt: false,
                detail: String::new(),
            });
        };
        let answer = fetch::send(client, &call).await;
        Some(match OAuth::webhook_delivered(&answer) {
            Ok(()) => RegistrationAnswer {
                delivered: true,
                interrupt: false,
                detail: String::new(),
            },
            Err(detail) => RegistrationAnswer {
                delivered: false,
                interrupt: oauth.webhook_interrupts(),
                detail,
            },
        })
    }

    /// An `oidc` login: discovery when the endpoint is unknown or stale, then introspection.
    pub async fn oidc(
        &self,
        token: &str,
        user: &str,
        server_name: &str,
    ) -> Option<Result<OidcVerdict, (RejectReason, String)>> {
        let oidc = self.oidc.as_ref()?;
        let client = self.client.as_ref()?;
        if let Some(discovery) = oidc.discovery_request(crate::unix_now()) {
            let answer = fetch::send(client, &discovery).await;
            if let Err(why) = oidc.discovered(&answer, crate::unix_now()) {
                tracing::warn!(target: "synapse_token_auth::keys", url = %discovery.url, "OIDC discovery failed: {why}");
            }
        }
        let Some(request) = oidc.introspection_request(token) else {
            return Some(Err((
                RejectReason::IntrospectionFailed,
                "the introspection endpoint is not known".into(),
            )));
        };
        let answer = fetch::send(client, &request).await;
        Some(oidc.decide(&answer, user, server_name))
    }

    /// The metadata resource called `name`, if one is configured.
    #[must_use]
    pub fn metadata(&self, name: &str) -> Option<Value> {
        if let Some((oauth, _)) = &self.oauth
            && let Some(resource) = &oauth.metadata_resource
            && resource.get("name").and_then(Value::as_str) == Some(name)
        {
            return Some(Value::Object(resource.clone()));
        }
        match &self.oidc {
            Some(oidc) if name == "com.famedly.login.token.oidc" => Some(oidc.metadata()),
            _ => None,
        }
    }
}

/// Reads an authorized request's JSON body, or the error answer.
async fn authorized_body<T: serde::de::DeserializeOwned>(
    request: &HttpRequest,
    shared: &Shared,
    payload: web::Payload,
) -> Result<T, HttpResponse> {
    if !shared.authorized(request) {
        tracing::warn!(target: "synapse_token_auth::audit", result = "unauthorized", "request without the client token refused");
        return Err(unauthorized(shared));
    }
    let body = read_body(request, shared, payload).await?;
    let parsed = match serde_json::from_slice::<Value>(&body) {
        Ok(value @ Value::Object(_)) => serde_json::from_value(value).map_err(|e| e.to_string()),
        Ok(other) => Err(format!(
            "expected a JSON object, found {}",
            crate::config::kind(&other)
        )),
        Err(err) => Err(err.to_string()),
    };
    parsed.map_err(|err| {
        error(
            shared,
            HttpResponse::BadRequest(),
            &format!("invalid request body: {err}"),
        )
    })
}

fn not_configured(shared: &Shared, what: &str) -> HttpResponse {
    error(
        shared,
        HttpResponse::NotFound(),
        &format!("the `{what}` login type is not configured"),
    )
}

/// A refused `oauth`/`oidc` login: 403 with the reason; an endpoint that failed is logged at
/// WARN with its detail (an operator's problem), a client's token at INFO.
fn refused(
    shared: &Shared,
    login_type: &str,
    request: &VerifyRequest,
    (reason, detail): (crate::RejectReason, String),
    received: Instant,
) -> HttpResponse {
    shared.metrics.decided(Some(reason), received.elapsed());
    let user_id = qualified(&request.user, &request.server_name);
    if reason == crate::RejectReason::IntrospectionFailed {
        tracing::warn!(target: "synapse_token_auth::audit", user_id = %user_id, result = "rejected",
            reason = reason.as_str(), detail = %printable(&detail), "{login_type} login refused");
    } else {
        tracing::info!(target: "synapse_token_auth::audit", user_id = %user_id, result = "rejected",
            reason = reason.as_str(), "{login_type} login rejected");
    }
    HttpResponse::Forbidden().json(RejectBody { reason })
}

async fn oauth_verify(
    request: HttpRequest,
    shared: web::Data<Shared>,
    payload: web::Payload,
) -> HttpResponse {
    other_login(OtherType::OAuth, request, shared, payload).await
}

async fn oidc_verify(
    request: HttpRequest,
    shared: web::Data<Shared>,
    payload: web::Payload,
) -> HttpResponse {
    other_login(OtherType::Oidc, request, shared, payload).await
}

async fn other_login(
    kind: OtherType,
    request: HttpRequest,
    shared: web::Data<Shared>,
    payload: web::Payload,
) -> HttpResponse {
    let received = Instant::now();
    let login: VerifyRequest = match authorized_body(&request, &shared, payload).await {
        Ok(login) => login,
        Err(response) => return response,
    };
    let policy = shared.policy.load_full();
    match policy
        .others
        .verify(kind, &login.token, &login.user, &login.server_name)
        .await
    {
        None => not_configured(&shared, kind.section()),
        Some(Ok((user_id, answer))) => {
            shared.metrics.decided(None, received.elapsed());
            tracing::info!(target: "synapse_token_auth::audit", user_id = %user_id,
                result = "accepted", "{} login accepted", kind.name());
            HttpResponse::Ok().json(answer)
        }
        Some(Err(failed)) => refused(&shared, kind.name(), &login, failed, received),
    }
}

async fn oauth_registration(
    request: HttpRequest,
    shared: web::Data<Shared>,
    payload: web::Payload,
) -> HttpResponse {
    let call: RegistrationRequest = match authorized_body(&request, &shared, payload).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    if !names_localpart(&call.user_id, &call.localpart) {
        // The module builds both from one verdict, so a mismatch never comes from a login; the
        // webhook must never be told of a user that is not the one registered.
        tracing::warn!(target: "synapse_token_auth::audit", user_id = %printable(&call.user_id),
            localpart = %printable(&call.localpart), "registration request refused: user_id does not name localpart");
        return error(
            &shared,
            HttpResponse::BadRequest(),
            "user_id is not @localpart:server_name",
        );
    }
    let user_id = printable(&call.user_id).into_owned();
    let policy = shared.policy.load_full();
    match policy.others.registration(call).await {
        None => not_configured(&shared, "oauth"),
        Some(answer) => {
            if !answer.delivered {
                tracing::warn!(target: "synapse_token_auth::audit", user_id = %user_id,
                    detail = %printable(&answer.detail), "registration webhook failed");
            }
            HttpResponse::Ok().json(answer)
        }
    }
}

/// Whether `user_id` is `@localpart:server_name`, with neither part empty.
fn names_localpart(user_id: &str, localpart: &str) -> bool {
    !localpart.is_empty()
        && user_id
            .strip_prefix('@')
            .and_then(|rest| rest.strip_prefix(localpart))
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|server_name| !server_name.is_empty())
}

/// The metadata resources are public (the module serves them to anyone), so no client token.
async fn login_metadata(name: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    match shared.policy.load().others.metadata(&name) {
        Some(document) => HttpResponse::Ok().json(document),
        None => error(
            &shared,
            HttpResponse::NotFound(),
            "no such metadata resource",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::names_localpart;

    #[test]
    fn a_registration_names_the_user_of_its_localpart() {
        assert!(names_localpart("@alice:test.local", "alice"));
        assert!(names_localpart("@alice:example.org:8448", "alice"));
        for (user_id, localpart) in [
            ("@admin:test.local", "alice"),
            ("@alicex:test.local", "alice"),
            ("@alice:", "alice"),
            ("@alice", "alice"),
            ("alice:test.local", "alice"),
            ("@:test.local", ""),
        ] {
            assert!(
                !names_localpart(user_id, localpart),
                "{user_id} / {localpart}"
            );
        }
    }
}
