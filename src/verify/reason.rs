//! The stable reason codes of a refused token.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::subject::UserError;

/// Why a token was refused. The codes are stable: logs, the daemon API and the Python shim use
/// them, and admins grep for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    /// Not three base64url segments with a JSON header and payload.
    MalformedToken,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TokenTooLarge,
    /// The header names an algorithm that is not configured (including `none`).
    AlgorithmNotAllowed,
    /// The header has a `crit` or `b64` parameter (no JWS extension is understood), or
    /// `cty: "JWT"` (a nested JWT).
    UnsupportedHeader,
    /// `kid` names no configured or published key that accepts the token's algorithm.
    UnknownKeyId,
    /// The key source publishes no usable key: never fetched successfully, or the last good set
    /// is older than the maximum staleness.
    KeysUnavailable,
    /// The signature does not verify with the configured key.
    BadSignature,
    /// `exp`, `nbf` or `iat` is not a number.
    MalformedClaim,
    /// No `exp` while `require_expiry` is on.
    MissingExpiry,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `iss` is missing or not the configured issuer.
    WrongIssuer,
    /// `aud` names none of the configured audiences, is missing while `audiences` is configured,
    /// or is present while no `audiences` are configured (RFC 7519 section 4.1.3).
    WrongAudience,
    /// The subject claim is missing, not a string, or not a valid user.
    InvalidSubject,
    /// The login identifier is not a valid user.
    InvalidUser,
    /// A full user id of another homeserver, in the subject or the identifier.
    ForeignServer,
    /// The subject and the login identifier name different users.
    SubjectMismatch,
    /// `type: chatbox` but the localpart does not end in a UUID.
    ChatboxLocalpart,
    /// The admin claim is present but not a JSON boolean.
    InvalidAdminClaim,
    /// The display name claim is present but not a string of at most 256 characters.
    InvalidDisplayname,
    /// With `single_use_tokens`: `jti` is present but not a non-empty string of at most
    /// [`MAX_TOKEN_ID_BYTES`] bytes without control characters.
    InvalidTokenId,
    /// `oauth`: the `scope` claim lacks one of the `required_scopes`.
    InsufficientScope,
    /// `oauth`: the claims fail the configured `validator`.
    ClaimsRejected,
    /// `oauth`: the JWT and the introspection answer (or two paths) disagree on a value.
    ClaimsDisagree,
    /// `oauth`: the e-mail claim is present but not a plausible address.
    InvalidEmail,
    /// `oauth`, `oidc`: the introspection answer does not say `active: true` (revoked,
    /// expired or unknown token).
    TokenInactive,
    /// `oauth`, `oidc`: the introspection endpoint gave no usable answer (down, slow, an
    /// error status, not a JSON object). Not the client's doing: logged at ERROR.
    IntrospectionFailed,
    /// `oidc`: the token grants neither the `User` nor the `OrgAdmin` role in the project.
    MissingRole,
    /// `oidc`: the token was issued to a client not in `allowed_client_ids`.
    ClientNotAllowed,
}

impl RejectReason {
    /// The stable machine-readable code, e.g. `expired`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedToken => "malformed_token",
            Self::TokenTooLarge => "token_too_large",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnsupportedHeader => "unsupported_header",
            Self::UnknownKeyId => "unknown_key_id",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::MalformedClaim => "malformed_claim",
            Self::MissingExpiry => "missing_expiry",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::InvalidSubject => "invalid_subject",
            Self::InvalidUser => "invalid_user",
            Self::ForeignServer => "foreign_server",
            Self::SubjectMismatch => "subject_mismatch",
            Self::ChatboxLocalpart => "chatbox_localpart",
            Self::InvalidAdminClaim => "invalid_admin_claim",
            Self::InvalidDisplayname => "invalid_displayname",
            Self::InvalidTokenId => "invalid_token_id",
            Self::InsufficientScope => "insufficient_scope",
            Self::ClaimsRejected => "claims_rejected",
            Self::ClaimsDisagree => "claims_disagree",
            Self::InvalidEmail => "invalid_email",
            Self::TokenInactive => "token_inactive",
            Self::IntrospectionFailed => "introspection_failed",
            Self::MissingRole => "missing_role",
            Self::ClientNotAllowed => "client_not_allowed",
        }
    }

    /// Every reason, for documentation and tests.
    pub const ALL: [Self; 30] = [
        Self::MalformedToken,
        Self::TokenTooLarge,
        Self::AlgorithmNotAllowed,
        Self::UnsupportedHeader,
        Self::UnknownKeyId,
        Self::KeysUnavailable,
        Self::BadSignature,
        Self::MalformedClaim,
        Self::MissingExpiry,
        Self::Expired,
        Self::NotYetValid,
        Self::IssuedInFuture,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::InvalidSubject,
        Self::InvalidUser,
        Self::ForeignServer,
        Self::SubjectMismatch,
        Self::ChatboxLocalpart,
        Self::InvalidAdminClaim,
        Self::InvalidDisplayname,
        Self::InvalidTokenId,
        Self::InsufficientScope,
        Self::ClaimsRejected,
        Self::ClaimsDisagree,
        Self::InvalidEmail,
        Self::TokenInactive,
        Self::IntrospectionFailed,
        Self::MissingRole,
        Self::ClientNotAllowed,
    ];
}

impl RejectReason {
    /// Why the user a token names cannot log in here.
    pub(crate) fn of_token_user(error: UserError) -> Self {
        match error {
            UserError::Invalid => Self::InvalidSubject,
            UserError::ForeignServer => Self::ForeignServer,
        }
    }

    /// Why the login's own identifier names no user here.
    pub(crate) fn of_login_user(error: UserError) -> Self {
        match error {
            UserError::Invalid => Self::InvalidUser,
            UserError::ForeignServer => Self::ForeignServer,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: the reason, and what the header said (for the audit log) when it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token rejected: {reason}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub alg: Option<String>,
    pub kid: Option<String>,
}
