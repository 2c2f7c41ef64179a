//! Verifying one login token against the policy.
//!
//! The steps run in a fixed order and the first failure decides the reason code: size and
//! shape, header (algorithm allow-list, `crit`, `kid`), signature, then claims. Nothing of the
//! payload is trusted before the signature has been checked.

use std::{fmt, sync::Arc};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod jws;
mod reason;

use self::jws::{Failed, Header, Parts, StrictObject, rejection, split};
pub use self::reason::{RejectReason, Rejection};
use crate::{
    config::Config,
    keys::{
        jwks::KeySet,
        published::{FetchRequest, PublishedSource, RemoteDecision, RemoteKeys},
    },
    subject,
};

/// Longest accepted token, in bytes. Real login tokens are well under 2 KiB; the bound keeps
/// hostile input from costing base64 and JSON work.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest display name Synapse stores.
const MAX_DISPLAYNAME_CHARS: usize = 256;
/// Longest accepted `jti` with `single_use_tokens`, in bytes: it is stored as the replay key.
pub const MAX_TOKEN_ID_BYTES: usize = 256;
/// Latest `replay_until`: stores keep it in a signed 64-bit column.
pub const MAX_REPLAY_UNTIL: u64 = i64::MAX as u64;

/// An accepted token: who logs in and what the module should apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `@localpart:server_name`, with the localpart lowercased. Synapse's stored spelling may differ;
    /// the module asks Synapse for the canonical id.
    pub user_id: String,
    /// The lowercase localpart, used when registering.
    pub localpart: String,
    /// Whether the user may be created if missing (`allow_registration`).
    pub may_register: bool,
    /// Promote (`true`) or demote (`false`) the user; `None` leaves admin status alone.
    pub admin: Option<bool>,
    /// Display name from the token, if any.
    pub displayname: Option<String>,
    /// Whether to apply `displayname` on logins of existing users too.
    pub update_displayname_on_login: bool,
    /// The token's algorithm.
    pub alg: String,
    /// The token's `kid`, if any.
    pub kid: Option<String>,
    /// The configured key that verified the signature: `primary` or `additional_keys[N]`.
    #[serde(default)]
    pub key: Arc<str>,
    /// With `single_use_tokens`: what identifies this token among all tokens, `jti:<jti>` or,
    /// without `jti`, `sig:<hex SHA-256 of the signed part>`. Whether it was used before is
    /// for the store that records it to decide, not the verifier.
    #[serde(default)]
    pub replay_key: Option<String>,
    /// With `single_use_tokens`: until when (seconds since the Unix epoch) the replay key must
    /// be remembered, `exp` plus the leeway; after that the token is refused as expired anyway.
    #[serde(default)]
    pub replay_until: Option<u64>,
}

/// A token whose signature and validity times verified, before anything names a user: what the
/// `oauth` login type reads its user, scopes and rules from.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedClaims {
    /// The payload.
    pub claims: Map<String, Value>,
    /// The token's algorithm.
    pub alg: String,
    /// The token's `kid`, if any.
    pub kid: Option<String>,
    /// The configured key that verified the signature.
    pub key: Arc<str>,
    /// With `single_use_tokens`: the replay key and until when to keep it (see [`Verdict`]).
    pub replay: Option<(String, u64)>,
}

/// A token whose signature verified: its header and algorithm, the still-encoded payload, and the
/// name of the key that verified it.
struct Signed<'t> {
    header: Header,
    alg: Algorithm,
    payload_b64: &'t str,
    /// `header.payload` as sent: the bytes the signature covers.
    signing_input: &'t [u8],
    key: Arc<str>,
}

/// What a verified signature tells the claim checks.
struct Verified<'t> {
    alg: Algorithm,
    key: Arc<str>,
    signing_input: &'t [u8],
}

/// What a login needs next, when keys are fetched from an identity provider. `T` is what the
/// decision carries: a [`Verdict`] for JWT login, the token's [`SignedClaims`] for the `oauth`
/// login type, which names the user by its own rules.
#[derive(Debug)]
pub enum Step<T = Verdict> {
    /// The decision. With `refresh`, start that fetch in the background without waiting for it
    /// (the cached keys are stale but still in use); report it with [`RemoteKeys::fetched`].
    Done {
        result: Result<T, Rejection>,
        refresh: Option<FetchRequest>,
    },
    /// This login fetches for everyone: carry out the request, report it with
    /// [`RemoteKeys::fetched`] (and its `next` request, if any), then decide with
    /// [`Verifier::verify`], which never asks for another fetch: a login costs at most one
    /// fetch timeout.
    Fetch(FetchRequest),
    /// Another login's fetch is in flight: wait for it (at most its timeout and a second),
    /// then decide with [`Verifier::verify`].
    Wait,
}

impl<T> Step<T> {
    fn done(result: Result<T, Rejection>) -> Self {
        Self::Done {
            result,
            refresh: None,
        }
    }
}

/// Verifies tokens against one policy. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: Config,
    /// The name accepted logins give for a published key: it is the primary key source.
    published_name: Arc<str>,
}

impl Verifier {
    /// Makes a verifier for a validated policy.
    #[must_use]
    pub fn new(config: Config) -> Self {
        crate::install_crypto_provider();
        Self {
            config,
            published_name: Arc::from("primary"),
        }
    }

    /// The policy this verifier enforces.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The remote key source, whose fetches an adapter carries out.
    #[must_use]
    pub fn remote_keys(&self) -> Option<&Arc<RemoteKeys>> {
        match self.config.published.as_ref().map(|p| &p.source) {
            Some(PublishedSource::Remote(remote)) => Some(remote),
            _ => None,
        }
    }

    /// Verifies `token` for a login as `identifier_user` (a localpart or a full user id) on the
    /// homeserver `server_name`, at `now` seconds since the Unix epoch, with the keys at hand:
    /// it never asks for a fetch, so remote keys that were never fetched give `keys_unavailable`.
    /// Logins with a remote key source go through [`Self::login`].
    pub fn verify(
        &self,
        token: &str,
        identifier_user: &str,
        server_name: &str,
        now: u64,
    ) -> Result<Verdict, Rejection> {
        self.verify_with(token, now, |parts, published| {
            self.finish(parts, published, identifier_user, server_name, now)
        })
    }

    /// Like [`Self::verify`], but stops before naming a user: signature, `exp`/`nbf`/`iat`,
    /// `iss` and `aud` (only when `audiences` are configured), and the replay key.
    pub fn verify_claims(&self, token: &str, now: u64) -> Result<SignedClaims, Rejection> {
        self.verify_with(token, now, |parts, published| {
            self.finish_claims(parts, published, now)
        })
    }

    /// Like [`Self::login`], for [`Self::verify_claims`].
    pub fn login_claims(&self, token: &str, now: u64) -> Step<SignedClaims> {
        self.login_with(token, now, |parts, published| {
            self.finish_claims(parts, published, now)
        })
    }

    fn verify_with<T>(
        &self,
        token: &str,
        now: u64,
        finish: impl FnOnce(Parts<'_>, Option<&KeySet>) -> Result<T, Rejection>,
    ) -> Result<T, Rejection> {
        let parts = split(token).map_err(rejection)?;
        let cached;
        let published = match self.config.published.as_ref().map(|p| &p.source) {
            None => None,
            Some(PublishedSource::File { keys, .. }) => Some(&**keys),
            Some(PublishedSource::Remote(remote)) => {
                cached = remote.cached(now);
                match &cached {
                    Some(keys) => Some(&**keys),
                    None if self.needs_published(&parts.header) => {
                        return Err(rejection((
                            RejectReason::KeysUnavailable,
                            Some(parts.header),
                        )));
                    }
                    None => None,
                }
            }
        };
        finish(parts, published)
    }

    /// Starts or continues a login: like [`Self::verify`], but a remote key source may ask for
    /// a fetch first (the first login, an unknown `kid`) or in the background (stale keys).
    pub fn login(&self, token: &str, identifier_user: &str, server_name: &str, now: u64) -> Step {
        self.login_with(token, now, |parts, published| {
            self.finish(parts, published, identifier_user, server_name, now)
        })
    }

    fn login_with<T>(
        &self,
        token: &str,
        now: u64,
        finish: impl FnOnce(Parts<'_>, Option<&KeySet>) -> Result<T, Rejection>,
    ) -> Step<T> {
        let Some(remote) = self.remote_keys() else {
            return Step::done(self.verify_with(token, now, finish));
        };
        let parts = match split(token) {
            Ok(parts) => parts,
            Err(failed) => return Step::done(Err(rejection(failed))),
        };
        if !self.needs_published(&parts.header) {
            return Step::done(finish(parts, None));
        }
        match remote.decide(now, parts.header.kid.as_deref()) {
            RemoteDecision::Verify { keys, refresh } => Step::Done {
                result: finish(parts, Some(&keys)),
                refresh,
            },
            RemoteDecision::Fetch(request) => Step::Fetch(request),
            RemoteDecision::Wait => Step::Wait,
            RemoteDecision::Reject(reason) => {
                Step::done(Err(rejection((reason, Some(parts.header)))))
            }
        }
    }

    /// Whether a token with this header may need the published keys: its algorithm is one of
    /// theirs and its `kid` names no static key.
    fn needs_published(&self, header: &Header) -> bool {
        let Some(published) = &self.config.published else {
            return false;
        };
        let fits = header
            .alg
            .parse::<Algorithm>()
            .is_ok_and(|alg| published.algorithms.contains(&alg));
        fits && !self.names_static_key(header.kid.as_deref())
    }

    /// Whether `kid` equals the `key_id` of a static key, which then alone verifies the token.
    fn names_static_key(&self, kid: Option<&str>) -> bool {
        kid.is_some() && self.config.keys.iter().any(|k| k.key_id.as_deref() == kid)
    }

    /// Signature, claims and the verdict, with `published` keys beside the static ones.
    fn finish(
        &self,
        parts: Parts<'_>,
        published: Option<&KeySet>,
        identifier_user: &str,
        server_name: &str,
        now: u64,
    ) -> Result<Verdict, Rejection> {
        self.decide_signed(parts, published, |signed, kid, claims| {
            let verdict = self
                .check_claims(
                    signed.alg,
                    signed.key,
                    &claims,
                    identifier_user,
                    server_name,
                    now,
                )
                .and_then(|verdict| self.with_replay_key(verdict, &claims, signed.signing_input))?;
            Ok(Verdict {
                kid: kid.take(),
                ..verdict
            })
        })
    }

    /// Signature and validity, without naming a user.
    fn finish_claims(
        &self,
        parts: Parts<'_>,
        published: Option<&KeySet>,
        now: u64,
    ) -> Result<SignedClaims, Rejection> {
        self.decide_signed(parts, published, |signed, kid, claims| {
            self.check_validity(&claims, now, false)?;
            let replay = self.replay(&claims, signed.signing_input)?;
            Ok(SignedClaims {
                claims,
                alg: format!("{:?}", signed.alg),
                kid: kid.take(),
                key: signed.key,
                replay,
            })
        })
    }

    /// The signature, then `decide` on the claims; a refusal carries the header's `alg` and
    /// `kid` for the audit log. `decide` takes the `kid` out only when it accepts, so that no
    /// login copies it.
    fn decide_signed<'t, T>(
        &self,
        parts: Parts<'t>,
        published: Option<&KeySet>,
        decide: impl FnOnce(
            Verified<'t>,
            &mut Option<String>,
            Map<String, Value>,
        ) -> Result<T, RejectReason>,
    ) -> Result<T, Rejection> {
        let (signed, claims) = self.check_token(parts, published).map_err(rejection)?;
        let Signed {
            header,
            alg,
            key,
            signing_input,
            ..
        } = signed;
        let verified = Verified {
            alg,
            key,
            signing_input,
        };
        let mut kid = header.kid;
        decide(verified, &mut kid, claims).map_err(|reason| Rejection {
            reason,
            alg: Some(header.alg),
            kid,
        })
    }

    /// Header and signature, then the payload as a JSON object of claims.
    fn check_token<'t>(
        &self,
        parts: Parts<'t>,
        published: Option<&KeySet>,
    ) -> Result<(Signed<'t>, Map<String, Value>), Failed> {
        let signed = self.check_signature(parts, published)?;
        let claims = URL_SAFE_NO_PAD
            .decode(signed.payload_b64)
            .ok()
            .and_then(|payload| serde_json::from_slice::<StrictObject>(&payload).ok());
        match claims {
            Some(StrictObject(claims)) => Ok((signed, claims)),
            None => Err((RejectReason::MalformedToken, Some(signed.header))),
        }
    }

    /// Checks only shape, header and signature, as a JWS: the payload need not be JWT claims.
    /// Conformance tests (Wycheproof JWS vectors) use this; logins use [`Self::verify`].
    pub fn verify_signature(&self, token: &str) -> Result<(), RejectReason> {
        let parts = split(token).map_err(|(reason, _)| reason)?;
        let published = match self.config.published.as_ref().map(|p| &p.source) {
            Some(PublishedSource::File { keys, .. }) => Some(&**keys),
            _ => None,
        };
        let signed = self
            .check_signature(parts, published)
            .map_err(|(reason, _)| reason)?;
        URL_SAFE_NO_PAD
            .decode(signed.payload_b64)
            .map(drop)
            .map_err(|_| RejectReason::MalformedToken)
    }

    fn check_signature<'t>(
        &self,
        parts: Parts<'t>,
        published: Option<&KeySet>,
    ) -> Result<Signed<'t>, Failed> {
        let Parts {
            header,
            header_b64,
            payload_b64,
            signature_b64,
            token,
        } = parts;
        // Exactly the configured algorithms; `none` and unknown names never parse into one.
        let keys = &self.config.keys;
        let published_algorithms = self
            .config
            .published
            .as_ref()
            .map_or(&[][..], |p| &p.algorithms[..]);
        let Some(alg) = header.alg.parse::<Algorithm>().ok().filter(|alg| {
            keys.iter().any(|k| k.algorithms.contains(alg)) || published_algorithms.contains(alg)
        }) else {
            return Err((RejectReason::AlgorithmNotAllowed, Some(header)));
        };
        if header.unsupported {
            return Err((RejectReason::UnsupportedHeader, Some(header)));
        }

        let message_len = header_b64.len() + 1 + payload_b64.len();
        let signed = &token.as_bytes()[..message_len];
        match self.find_key(&header, alg, published, signed, signature_b64) {
            Ok(key) => Ok(Signed {
                header,
                alg,
                payload_b64,
                signing_input: signed,
                key,
            }),
            Err(reason) => Err((reason, Some(header))),
        }
    }

    /// The name of the key that verifies `signature_b64` over `signed`.
    fn find_key(
        &self,
        header: &Header,
        alg: Algorithm,
        published: Option<&KeySet>,
        signed: &[u8],
        signature_b64: &str,
    ) -> Result<Arc<str>, RejectReason> {
        // The keys this token may be signed with: bound to its algorithm, and to its `kid` when
        // a key carries one. A `kid` naming a static key selects that key alone; published keys
        // are selected by the set's own rules.
        let keys = &self.config.keys;
        let kid = header.kid.as_deref();
        let named = self.names_static_key(kid);
        let static_keys = keys
            .iter()
            .filter(|k| {
                k.algorithms.contains(&alg)
                    && match k.key_id.as_deref() {
                        Some(key_id) => Some(key_id) == kid,
                        None => !named,
                    }
            })
            .map(|k| (&k.key.decoding, &k.name));
        let published_keys = published
            .filter(|_| !named)
            .into_iter()
            .flat_map(|set| set.candidates(alg, kid))
            .map(|k| (&k.key.decoding, &self.published_name));
        let mut candidates = static_keys.chain(published_keys).peekable();
        if candidates.peek().is_none() {
            return Err(RejectReason::UnknownKeyId);
        }
        // HMACs are compared by aws-lc's hmac::verify, in constant time.
        candidates
            .find(|(decoding, _)| {
                matches!(
                    jsonwebtoken::crypto::verify(signature_b64, signed, decoding, alg),
                    Ok(true)
                )
            })
            .map(|(_, name)| Arc::clone(name))
            .ok_or(RejectReason::BadSignature)
    }

    /// With `single_use_tokens`, adds what a store needs to refuse a second use: the replay key
    /// and until when to keep it. `exp` is there: the policy requires it with single use.
    fn with_replay_key(
        &self,
        verdict: Verdict,
        claims: &Map<String, Value>,
        signing_input: &[u8],
    ) -> Result<Verdict, RejectReason> {
        let (replay_key, replay_until) = match self.replay(claims, signing_input)? {
            Some((key, until)) => (Some(key), Some(until)),
            None => (None, None),
        };
        Ok(Verdict {
            replay_key,
            replay_until,
            ..verdict
        })
    }

    /// With `single_use_tokens`, the replay key and until when to keep it.
    fn replay(
        &self,
        claims: &Map<String, Value>,
        signing_input: &[u8],
    ) -> Result<Option<(String, u64)>, RejectReason> {
        if !self.config.single_use_tokens {
            return Ok(None);
        }
        let replay_key = match claims.get("jti") {
            Some(Value::String(jti))
                if !jti.is_empty()
                    && jti.len() <= MAX_TOKEN_ID_BYTES
                    && !jti.chars().any(char::is_control) =>
            {
                format!("jti:{jti}")
            }
            Some(_) => return Err(RejectReason::InvalidTokenId),
            // The signed part, not the signature: an ECDSA signature (r, s) has a twin (r, n - s)
            // that verifies as well, so anyone holding an ES256 token could mint a second
            // signature for it; header and payload cannot change without breaking the signature.
            None => format!(
                "sig:{}",
                hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signing_input).as_ref())
            ),
        };
        let exp = numeric_date(claims, "exp")?.ok_or(RejectReason::MissingExpiry)?;
        let until = (exp + self.config.leeway_seconds as f64).ceil();
        // `as` saturates: a negative or huge `exp` cannot wrap around.
        let replay_until = (until as u64).min(MAX_REPLAY_UNTIL);
        Ok(Some((replay_key, replay_until)))
    }

    /// `exp`, `nbf`, `iat`, `iss` and `aud`. With `strict_audience` a present `aud` must name a
    /// configured audience even when none are configured (RFC 7519 section 4.1.3); the `oauth`
    /// type checks `aud` only when its `audiences` are set, as the original checks none.
    fn check_validity(
        &self,
        claims: &Map<String, Value>,
        now: u64,
        strict_audience: bool,
    ) -> Result<(), RejectReason> {
        let c = &self.config;
        let now = now as f64;
        let leeway = c.leeway_seconds as f64;

        match numeric_date(claims, "exp")? {
            None if c.require_expiry => return Err(RejectReason::MissingExpiry),
            Some(exp) if now >= exp + leeway => return Err(RejectReason::Expired),
            _ => {}
        }
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now + leeway) {
            return Err(RejectReason::NotYetValid);
        }
        if numeric_date(claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
            return Err(RejectReason::IssuedInFuture);
        }
        if let Some(issuer) = &c.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(RejectReason::WrongIssuer);
        }
        // A present `aud` that does not name this recipient must be refused (RFC 7519 section
        // 4.1.3): without `audiences` nothing names it, so any `aud` is refused.
        let aud = claims.get("aud");
        let must_match = !c.audiences.is_empty() || (strict_audience && aud.is_some());
        if must_match && !audience_matches(aud, &c.audiences) {
            return Err(RejectReason::WrongAudience);
        }
        Ok(())
    }

    fn check_claims(
        &self,
        alg: Algorithm,
        key: Arc<str>,
        claims: &Map<String, Value>,
        identifier_user: &str,
        server_name: &str,
        now: u64,
    ) -> Result<Verdict, RejectReason> {
        let c = &self.config;
        self.check_validity(claims, now, true)?;
        let subject = claims
            .get(&c.subject_claim)
            .and_then(Value::as_str)
            .ok_or(RejectReason::InvalidSubject)?;
        let localpart =
            subject::localpart(subject, server_name).map_err(RejectReason::of_token_user)?;
        let identified = subject::localpart(identifier_user, server_name)
            .map_err(RejectReason::of_login_user)?;
        if identified != localpart {
            return Err(RejectReason::SubjectMismatch);
        }
        if claims.get("type").and_then(Value::as_str) == Some("chatbox")
            && !subject::ends_with_uuid(&localpart)
        {
            return Err(RejectReason::ChatboxLocalpart);
        }

        let admin = match claims.get(&c.admin_claim) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(RejectReason::InvalidAdminClaim),
        };
        let displayname = match claims.get(&c.displayname_claim) {
            None => None,
            Some(Value::String(s)) if s.chars().count() <= MAX_DISPLAYNAME_CHARS => Some(s.clone()),
            Some(_) => return Err(RejectReason::InvalidDisplayname),
        };

        Ok(Verdict {
            user_id: format!("@{localpart}:{server_name}"),
            localpart,
            may_register: c.allow_registration,
            admin,
            displayname,
            update_displayname_on_login: c.update_displayname_on_login,
            alg: format!("{alg:?}"),
            kid: None,
            key,
            replay_key: None,
            replay_until: None,
        })
    }
}

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// A NumericDate claim (RFC 7519 section 2): a JSON number, possibly non-integer.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, RejectReason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(RejectReason::MalformedClaim),
        Some(_) => Err(RejectReason::MalformedClaim),
    }
}

fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(a)) => accepted.iter().any(|x| x == a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| accepted.iter().any(|x| x == a)),
        _ => false,
    }
}
