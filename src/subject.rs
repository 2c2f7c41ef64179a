//! Matrix user ids: turning `alice`, `Alice` or `@alice:example.org` into one comparable localpart.

/// Longest user id Synapse accepts, in bytes (the Matrix spec's limit).
const MAX_USER_ID_LEN: usize = 255;

/// Why a user string cannot name a local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserError {
    /// Not a valid localpart or user id.
    Invalid,
    /// A full user id of another homeserver.
    ForeignServer,
}

/// Returns the lowercase localpart that `user` names on `server_name`.
///
/// Lowercase because Synapse registers only lowercase localparts and finds users
/// case-insensitively; the canonical spelling comes from Synapse itself. Public so that the
/// Synapse module checks a daemon's verdict against the login with this same rule.
pub fn localpart(user: &str, server_name: &str) -> Result<String, UserError> {
    let local = match user.strip_prefix('@') {
        Some(rest) => {
            let (local, server) = rest.split_once(':').ok_or(UserError::Invalid)?;
            if !server.eq_ignore_ascii_case(server_name) {
                return Err(UserError::ForeignServer);
            }
            local
        }
        None => user,
    };
    let local = local.to_ascii_lowercase();
    let valid_chars = local
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
    // "@" + localpart + ":" + server_name
    let too_long = local.len() + server_name.len() + 2 > MAX_USER_ID_LEN;
    if local.is_empty() || !valid_chars || too_long {
        return Err(UserError::Invalid);
    }
    Ok(local)
}

/// The original module's "chatbox" rule: the localpart must end in a UUID
/// (`[0-9a-f]{8}-[0-9a-f]{4}-[0-5][0-9a-f]{3}-[089ab][0-9a-f]{3}-[0-9a-f]{12}`).
pub(crate) fn ends_with_uuid(localpart: &str) -> bool {
    let bytes = localpart.as_bytes();
    let Some(tail) = bytes.len().checked_sub(36).map(|start| &bytes[start..]) else {
        return false;
    };
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    tail.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        14 => (b'0'..=b'5').contains(b),
        19 => matches!(b, b'0' | b'8' | b'9' | b'a' | b'b'),
        _ => hex(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_accepts_bare_full_and_mixed_case() {
        assert_eq!(localpart("alice", "example.org"), Ok("alice".into()));
        assert_eq!(localpart("Alice", "example.org"), Ok("alice".into()));
        assert_eq!(
            localpart("@Alice:example.org", "example.org"),
            Ok("alice".into())
        );
        assert_eq!(
            localpart("@bob:EXAMPLE.org", "example.org"),
            Ok("bob".into())
        );
    }

    #[test]
    fn localpart_rejects_foreign_and_invalid() {
        assert_eq!(
            localpart("@a:other.org", "example.org"),
            Err(UserError::ForeignServer)
        );
        assert_eq!(localpart("@a", "example.org"), Err(UserError::Invalid));
        assert_eq!(localpart("", "example.org"), Err(UserError::Invalid));
        assert_eq!(localpart("al ice", "example.org"), Err(UserError::Invalid));
        assert_eq!(
            localpart("@:example.org", "example.org"),
            Err(UserError::Invalid)
        );
        assert_eq!(localpart("ä", "example.org"), Err(UserError::Invalid));
        assert_eq!(
            localpart(&"a".repeat(250), "example.org"),
            Err(UserError::Invalid)
        );
    }

    #[test]
    fn chatbox_rule_matches_the_original_pattern() {
        assert!(ends_with_uuid("guest-123e4567-e89b-42d3-a456-426614174000"));
        assert!(ends_with_uuid("123e4567-e89b-42d3-a456-426614174000"));
        assert!(!ends_with_uuid("guest"));
        // version nibble 6 and variant nibble c are outside the original pattern
        assert!(!ends_with_uuid("123e4567-e89b-62d3-a456-426614174000"));
        assert!(!ends_with_uuid("123e4567-e89b-42d3-c456-426614174000"));
        assert!(!ends_with_uuid("123e4567-e89b-42d3-a456-42661417400g"));
    }
}
