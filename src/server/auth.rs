//! The client token: a shared bearer token that `POST /v1/verify` requires when configured.

use aws_lc_rs::{constant_time, digest};

use super::config::ClientTokenSource;
use crate::keys;

/// The SHA-256 of the configured token. Comparing digests takes the same time whatever the
/// presented token's length or content, and the token itself is not kept in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken([u8; 32]);

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientToken([redacted])")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

impl ClientToken {
    /// Reads the token (one trailing newline stripped). The error says what is wrong, without
    /// the token.
    pub fn load(source: &ClientTokenSource) -> Result<Self, String> {
        let bytes = source.source.read().map_err(|e| e.to_string())?;
        let token = keys::strip_newline(bytes);
        if token.is_empty() {
            return Err("the client token is empty".into());
        }
        // It travels in an HTTP header: visible ASCII only, as in RFC 6750's b64token.
        if !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the client token must be printable ASCII without spaces (e.g. from \
                 `openssl rand -hex 32`)"
                    .into(),
            );
        }
        Ok(Self(sha256(&token)))
    }

    /// Whether an `Authorization` header value carries this token as `Bearer <token>`.
    #[must_use]
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, presented)) = value.split_at_checked(7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ")
            && constant_time::verify_slices_are_equal(&sha256(presented), &self.0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_accepts_only_the_bearer_token() {
        let token = ClientToken(sha256(b"s3cret-token"));
        assert!(token.accepts(Some(b"Bearer s3cret-token")));
        assert!(token.accepts(Some(b"bearer s3cret-token")));
        assert!(!token.accepts(Some(b"Bearer s3cret-tokens")));
        assert!(!token.accepts(Some(b"Bearer s3cret")));
        assert!(!token.accepts(Some(b"Basic s3cret-token")));
        assert!(!token.accepts(Some(b"s3cret-token")));
        assert!(!token.accepts(Some(b"")));
        assert!(!token.accepts(None));
    }
}
