//! Claim paths and the claim-rule language of the original module's `oauth` and `oidc` login
//! types, without I/O: the callers hand in the claim set (a verified JWT payload or an
//! introspection answer) and read the verdict.
//!
//! - [`ClaimPath`] / [`PathList`]: `localpart_path`, `fq_uid_path`, `displayname_path`,
//!   `email_path` (a path) and `admin_path` (a path list).
//! - [`Rule`]: the `validator` of `jwt_validation` and `introspection_validation`.
//!
//! `docs/claim-rules.md` describes the language and where it is stricter than the original.

mod kind;
mod parse;
mod path;
mod pattern;
mod rules;

pub use path::{ClaimPath, PathList};
pub use pattern::{Pattern, REGEX_SIZE_LIMIT};
pub use rules::{Rule, json_equal, python_truthy};

/// How deeply rules may nest (and how deeply an `equal` constant may): a configuration cannot
/// make parsing or checking recurse further, whatever claims arrive.
pub const MAX_DEPTH: usize = 32;
