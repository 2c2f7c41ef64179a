//! What one claim source (the JWT's payload or the introspection answer) must satisfy and where
//! the user's attributes are read from it: the keys `jwt_validation` and
//! `introspection_validation` share.

use serde_json::Value;

use crate::{
    claims::{ClaimPath, PathList, Rule},
    config::{Problem, Reader},
    verify::RejectReason,
};

/// The keys every claim source takes.
pub(super) const SOURCE_KEYS: &[&str] = &[
    "validator",
    "localpart_path",
    "fq_uid_path",
    "displayname_path",
    "admin_path",
    "email_path",
    "required_scopes",
    "alternative_fq_uids_path",
];

/// Rules and paths of one claim source.
#[derive(Debug, Clone)]
pub struct ClaimSource {
    /// `validator`: checked against the whole claim set (default: `exist`, which always passes).
    pub validator: Rule,
    /// `required_scopes`: each must appear in the space-separated `scope` claim.
    pub required_scopes: Vec<String>,
    pub localpart: Option<ClaimPath>,
    pub fq_uid: Option<ClaimPath>,
    pub displayname: Option<ClaimPath>,
    pub admin: Option<PathList>,
    pub email: Option<ClaimPath>,
    /// `alternative_fq_uids_path`: a list of full user ids the token allows; the login's own
    /// user must be one of them.
    pub alternative_fq_uids: Option<ClaimPath>,
}

impl ClaimSource {
    pub(super) fn parse(r: &mut Reader<'_>) -> Option<Self> {
        let validator = match r.map.get("validator") {
            None | Some(Value::Null) => Some(Rule::Exist),
            Some(value) => collect(r, Rule::parse(value, &format!("{}validator", r.prefix))),
        };
        let required_scopes = match r.strings("required_scopes") {
            // A string is a space-separated list, as a `scope` claim is (RFC 6749 section 3.3).
            Some(given) => given
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        let path = |r: &mut Reader<'_>, key: &str| match r.map.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(value) => {
                collect(r, ClaimPath::parse(value, &format!("{}{key}", r.prefix))).map(Some)
            }
        };
        let localpart = path(r, "localpart_path");
        let fq_uid = path(r, "fq_uid_path");
        let displayname = path(r, "displayname_path");
        let email = path(r, "email_path");
        let admin = match r.map.get("admin_path") {
            None | Some(Value::Null) => Some(None),
            Some(value) => collect(
                r,
                PathList::parse(value, &format!("{}admin_path", r.prefix)),
            )
            .map(Some),
        };
        let alternative_fq_uids = path(r, "alternative_fq_uids_path");
        if matches!(alternative_fq_uids, Some(Some(_)))
            && (matches!(localpart, Some(Some(_))) || matches!(fq_uid, Some(Some(_))))
        {
            r.problem(
                "alternative_fq_uids_path",
                "cannot be used with `localpart_path` or `fq_uid_path`",
            );
        }
        Some(Self {
            validator: validator?,
            required_scopes,
            localpart: localpart?,
            fq_uid: fq_uid?,
            displayname: displayname?,
            admin: admin?,
            email: email?,
            alternative_fq_uids: alternative_fq_uids?,
        })
    }

    /// `required_scopes`, then `validator`.
    pub(super) fn check(&self, claims: &Value) -> Result<(), RejectReason> {
        if !self.required_scopes.is_empty() {
            let granted: Vec<&str> = match claims.get("scope") {
                Some(Value::String(scope)) => scope.split_whitespace().collect(),
                _ => return Err(RejectReason::InsufficientScope),
            };
            if !self
                .required_scopes
                .iter()
                .all(|s| granted.contains(&s.as_str()))
            {
                return Err(RejectReason::InsufficientScope);
            }
        }
        if self.validator.check(claims) {
            Ok(())
        } else {
            Err(RejectReason::ClaimsRejected)
        }
    }

    /// Whether this source names the user at all.
    pub(super) fn names_user(&self) -> bool {
        self.localpart.is_some() || self.fq_uid.is_some() || self.alternative_fq_uids.is_some()
    }
}

fn collect<T>(r: &mut Reader<'_>, parsed: Result<T, Vec<Problem>>) -> Option<T> {
    parsed.map_err(|problems| r.problems.extend(problems)).ok()
}
