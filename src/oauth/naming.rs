//! Who logs in: the user the token names, checked against the login, and the attributes the
//! claim sources give.
//!
//! The token names the user, never the client alone: a JWT's or an introspection answer's
//! `localpart_path` / `fq_uid_path` must find a user, and every source that names one must name
//! the same. The login's identifier, read as `username_type` says, must then name that user too;
//! with `username_type` unset it is not compared (the token alone decides, as in the original).

use serde_json::Value;

use super::{OAuth, OAuthVerdict, UsernameType, claims::ClaimSource};
use crate::{claims::ClaimPath, claims::python_truthy, subject, verify::RejectReason};

/// Longest display name Synapse stores.
const MAX_DISPLAYNAME_CHARS: usize = 256;
/// Longest e-mail address (RFC 5321 section 4.5.3.1.3 bounds a path to 256 octets).
const MAX_EMAIL_BYTES: usize = 254;

/// The claim sets of one login, each with its configuration.
pub(super) struct Sources<'a> {
    pub(super) jwt: Option<(&'a ClaimSource, &'a Value)>,
    pub(super) introspection: Option<(&'a ClaimSource, &'a Value)>,
}

impl Sources<'_> {
    fn each(&self) -> impl Iterator<Item = (&ClaimSource, &Value)> {
        self.jwt.into_iter().chain(self.introspection)
    }

    /// The value every source that has one agrees on, or `ClaimsDisagree`.
    fn agreed<T: PartialEq>(
        &self,
        read: impl Fn(&ClaimSource, &Value) -> Result<Option<T>, RejectReason>,
    ) -> Result<Option<T>, RejectReason> {
        let mut agreed: Option<T> = None;
        for (source, claims) in self.each() {
            let Some(value) = read(source, claims)? else {
                continue;
            };
            match &agreed {
                Some(first) if *first != value => return Err(RejectReason::ClaimsDisagree),
                Some(_) => {}
                None => agreed = Some(value),
            }
        }
        Ok(agreed)
    }
}

impl OAuth {
    pub(super) fn name_user(
        &self,
        sources: &Sources<'_>,
        identifier_user: &str,
        server_name: &str,
    ) -> Result<OAuthVerdict, RejectReason> {
        if sources.each().any(|(s, _)| s.alternative_fq_uids.is_some()) {
            return self.name_listed_user(sources, identifier_user, server_name);
        }
        let localpart = sources
            .agreed(|source, claims| token_localpart(source, claims, server_name))?
            .ok_or(RejectReason::InvalidSubject)?;
        if let Some(kind) = self.username_type {
            let identified = identifier_localpart(kind, identifier_user, server_name)?;
            if identified != localpart {
                return Err(RejectReason::SubjectMismatch);
            }
        }

        self.attributes(sources, localpart, server_name, true)
    }

    /// `alternative_fq_uids_path`: the login names the user, and every source that carries the
    /// list must list it (one must). `username_type` does not apply, and the display name is
    /// not taken, as in the original (one person may log in as several users).
    fn name_listed_user(
        &self,
        sources: &Sources<'_>,
        identifier_user: &str,
        server_name: &str,
    ) -> Result<OAuthVerdict, RejectReason> {
        let localpart = identifier_localpart(UsernameType::UserId, identifier_user, server_name)?;
        let mut listed = false;
        for (source, claims) in sources.each() {
            let Some(list) = source
                .alternative_fq_uids
                .as_ref()
                .and_then(|p| p.lookup(claims))
            else {
                continue;
            };
            let Value::Array(ids) = list else {
                return Err(RejectReason::InvalidSubject);
            };
            let names = |id: &Value| {
                id.as_str()
                    .filter(|id| id.starts_with('@'))
                    .and_then(|id| subject::localpart(id, server_name).ok())
                    .is_some_and(|l| l == localpart)
            };
            if !ids.iter().any(names) {
                return Err(RejectReason::SubjectMismatch);
            }
            listed = true;
        }
        if !listed {
            return Err(RejectReason::InvalidSubject);
        }
        self.attributes(sources, localpart, server_name, false)
    }

    /// The verdict for `localpart`, with the attributes the sources agree on.
    fn attributes(
        &self,
        sources: &Sources<'_>,
        localpart: String,
        server_name: &str,
        with_displayname: bool,
    ) -> Result<OAuthVerdict, RejectReason> {
        let displayname = sources.agreed(|source, claims| {
            if !with_displayname {
                return Ok(None);
            }
            match source.displayname.as_ref().and_then(|p| p.lookup(claims)) {
                None => Ok(None),
                Some(Value::String(s)) if s.chars().count() <= MAX_DISPLAYNAME_CHARS => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(RejectReason::InvalidDisplayname),
            }
        })?;
        // Truthy as the original reads it (`bool(admin)`); a false claim demotes nobody.
        let admin = sources.agreed(|source, claims| {
            Ok(source
                .admin
                .as_ref()
                .and_then(|p| p.lookup(claims))
                .map(python_truthy))
        })?;
        let email = sources.agreed(|source, claims| {
            match source.email.as_ref().and_then(|p| p.lookup(claims)) {
                None => Ok(None),
                Some(Value::String(s)) if plausible_email(s) => Ok(Some(s.clone())),
                Some(_) => Err(RejectReason::InvalidEmail),
            }
        })?;
        // The external id `(iss, sub)`: who the identity provider says this is.
        let top_level = |name: &'static str, missing: RejectReason| {
            sources
                .agreed(|_, claims| match claims.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                    Some(_) => Err(missing),
                })?
                .ok_or(missing)
        };
        let subject = top_level("sub", RejectReason::InvalidSubject)?;
        let issuer = top_level("iss", RejectReason::WrongIssuer)?;

        Ok(OAuthVerdict {
            user_id: format!("@{localpart}:{server_name}"),
            localpart,
            displayname,
            admin: admin.filter(|a| *a),
            email,
            issuer,
            subject,
            may_register: self.registration_enabled,
            replay_key: None,
            replay_until: None,
        })
    }
}

/// The lowercase localpart a source names, if its paths find one.
fn token_localpart(
    source: &ClaimSource,
    claims: &Value,
    server_name: &str,
) -> Result<Option<String>, RejectReason> {
    // A localpart path must find a localpart, an fq_uid path a full user id.
    let read = |path: Option<&ClaimPath>, full: bool| match path.and_then(|p| p.lookup(claims)) {
        None => Ok(None),
        Some(Value::String(s)) if s.starts_with('@') == full => subject::localpart(s, server_name)
            .map(Some)
            .map_err(RejectReason::of_token_user),
        Some(_) => Err(RejectReason::InvalidSubject),
    };
    let from_localpart = read(source.localpart.as_ref(), false)?;
    let from_fq_uid = read(source.fq_uid.as_ref(), true)?;
    match (from_localpart, from_fq_uid) {
        (Some(a), Some(b)) if a != b => Err(RejectReason::ClaimsDisagree),
        (a, b) => Ok(a.or(b)),
    }
}

/// The lowercase localpart the login's identifier names, read as `username_type` says.
fn identifier_localpart(
    kind: UsernameType,
    user: &str,
    server_name: &str,
) -> Result<String, RejectReason> {
    let full = user.starts_with('@');
    let fits = match kind {
        UsernameType::Localpart => !full,
        UsernameType::FqUid => full,
        UsernameType::UserId => true,
    };
    if !fits {
        return Err(RejectReason::InvalidUser);
    }
    subject::localpart(user, server_name).map_err(RejectReason::of_login_user)
}

/// One `@`, something on each side, no spaces or control characters, bounded.
fn plausible_email(s: &str) -> bool {
    s.len() <= MAX_EMAIL_BYTES
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}
