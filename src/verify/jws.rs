//! A compact JWS split into its parts and its header read, bounded in size before any work and
//! not yet trusted: what the verifier checks the signature of.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{MAX_TOKEN_BYTES, RejectReason, Rejection};

/// A compact JWS split into its parts, with its header read but not yet trusted.
pub(super) struct Parts<'t> {
    pub(super) header: Header,
    pub(super) header_b64: &'t str,
    pub(super) payload_b64: &'t str,
    pub(super) signature_b64: &'t str,
    pub(super) token: &'t str,
}

/// Why a token failed, with its header when that could be read (for the audit log).
pub(super) type Failed = (RejectReason, Option<Header>);

/// The JOSE header members the verifier acts on.
pub(super) struct Header {
    pub(super) alg: String,
    pub(super) kid: Option<String>,
    /// `crit`, `b64` or `cty: "JWT"`: something this verifier does not implement and so must
    /// not accept (RFC 7515 section 4.1.11, RFC 7797 section 6, RFC 7519 section 7.2).
    pub(super) unsupported: bool,
}

impl Header {
    /// Reads a header: a JSON object of valid UTF-8 with unique member names (RFC 7515
    /// section 5.2), whose `alg` is a string and whose `kid`, when present, is a string.
    fn parse(json: &[u8]) -> Option<Self> {
        let StrictObject(mut members) = serde_json::from_slice(json).ok()?;
        let Some(Value::String(alg)) = members.remove("alg") else {
            return None;
        };
        let kid = match members.remove("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid),
            Some(_) => return None,
        };
        // Present at all counts, whatever the value: `crit: null` is not "no crit".
        let unsupported = members.contains_key("crit")
            || members.contains_key("b64")
            || members
                .get("cty")
                .and_then(Value::as_str)
                .is_some_and(|cty| cty.eq_ignore_ascii_case("JWT"));
        Some(Self {
            alg,
            kid,
            unsupported,
        })
    }
}

/// A JSON object with unique member names. serde_json's own map keeps the last of duplicate
/// names and its derived structs also take a JSON array; JOSE parsers must reject both
/// (RFC 7515 section 5.2, RFC 7519 section 4), so that two parsers can never read one token
/// differently. Member values are fully parsed, so invalid UTF-8 anywhere is an error.
pub(super) struct StrictObject(pub(super) Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<StrictObject, A::Error> {
                let mut members = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    let value = access.next_value::<Value>()?;
                    if members.insert(name, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                }
                Ok(StrictObject(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Splits a compact JWS and reads its header, bounded in size before any work.
pub(super) fn split(token: &str) -> Result<Parts<'_>, Failed> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err((RejectReason::TokenTooLarge, None));
    }
    let malformed = || (RejectReason::MalformedToken, None);
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed());
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| malformed())?;
    let header = Header::parse(&header_json).ok_or_else(malformed)?;
    Ok(Parts {
        header,
        header_b64,
        payload_b64,
        signature_b64,
        token,
    })
}

pub(super) fn rejection((reason, header): Failed) -> Rejection {
    let (alg, kid) = header.map_or((None, None), |h| (Some(h.alg), h.kid));
    Rejection { reason, alg, kid }
}
