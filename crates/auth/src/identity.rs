//! Authenticated identities and the mapping from token claims to SIP addresses of record.

use crate::error::AuthError;

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// An OAuth 2.0 bearer token (JWT or introspected).
    Bearer,
    /// HTTP Digest credentials.
    Digest,
    /// The request came from a trusted peer address.
    TrustedPeer,
    /// No authentication was performed (authentication disabled).
    None,
}

/// The authenticated party behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Canonical address of record, `user@domain`: the domain is lower-cased, the user part keeps its case
    /// (SIP user parts are case-sensitive) and any `sip:`/`sips:` scheme or URI parameters are removed.
    pub aor: String,
    /// The subject as the authority knows it (the `sub` claim, or the user name for Digest).
    pub subject: String,
    /// Granted OAuth scopes (empty for non-OAuth methods).
    pub scopes: Vec<String>,
    /// OAuth client the token was issued to (`client_id` or `azp`), if known.
    pub client_id: Option<String>,
    /// When the credentials expire, in Unix seconds, if known.
    pub expires_at: Option<u64>,
    /// How the identity was established.
    pub method: AuthMethod,
}

impl Identity {
    /// Whether the identity was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Maps an identity claim value to a canonical address of record.
///
/// Accepts `user@domain`, a SIP or SIPS URI (`sip:user@domain;transport=tcp`, optionally in angle
/// brackets) and, when `default_domain` is given, a bare user name. The domain is lower-cased; the user part
/// is kept as is. Values with whitespace, control characters or characters that cannot occur in an
/// address of record are refused, because the result ends up in SIP headers and storage keys.
pub fn canonical_aor(value: &str, default_domain: Option<&str>) -> Result<String, AuthError> {
    let mut rest = value.trim();
    if let Some(inner) = rest.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        rest = inner;
    }
    // `get` rather than indexing: the value may hold multi-byte characters where a scheme would end.
    if rest
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sip:"))
    {
        rest = &rest[4..];
    } else if rest
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
    {
        rest = &rest[5..];
    }
    // URI parameters and headers never belong to an address of record.
    if let Some(end) = rest.find([';', '?']) {
        rest = &rest[..end];
    }
    let (user, domain) = match rest.rfind('@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => match default_domain {
            Some(domain) => (rest, domain),
            None => {
                return Err(AuthError::InvalidToken(
                    "identity has no domain and no default domain is configured".to_owned(),
                ))
            }
        },
    };
    if user.is_empty() || !user.bytes().all(is_user_byte) {
        return Err(AuthError::InvalidToken(
            "identity has an empty or invalid user part".to_owned(),
        ));
    }
    if domain.is_empty() || !domain.bytes().all(is_domain_byte) {
        return Err(AuthError::InvalidToken(
            "identity has an empty or invalid domain".to_owned(),
        ));
    }
    let mut aor = String::with_capacity(user.len() + 1 + domain.len());
    aor.push_str(user);
    aor.push('@');
    aor.extend(domain.chars().map(|c| c.to_ascii_lowercase()));
    Ok(aor)
}

/// RFC 3261 user part: unreserved, escaped and user-unreserved characters.
fn is_user_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')'
                | b'%'
                | b'&'
                | b'='
                | b'+'
                | b'$'
                | b','
                | b'/'
        )
}

/// Host names, IPv4 and bracketed IPv6 literals, with an optional port.
fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_claim_shapes() -> Result<(), AuthError> {
        assert_eq!(
            canonical_aor("alice@Example.COM", None)?,
            "alice@example.com"
        );
        assert_eq!(
            canonical_aor("sip:Alice@EXAMPLE.com", None)?,
            "Alice@example.com"
        );
        assert_eq!(
            canonical_aor("SIPS:bob@b.org;transport=tls", None)?,
            "bob@b.org"
        );
        assert_eq!(canonical_aor("<sip:carol@c.net>", None)?, "carol@c.net");
        assert_eq!(canonical_aor("dave", Some("D.example"))?, "dave@d.example");
        Ok(())
    }

    #[test]
    fn refuses_unusable_values() {
        assert!(canonical_aor("dave", None).is_err());
        assert!(canonical_aor("@example.com", None).is_err());
        assert!(canonical_aor("a b@example.com", None).is_err());
        assert!(canonical_aor("a\"@example.com", None).is_err());
        assert!(canonical_aor("alice@", None).is_err());
        assert!(canonical_aor("alice@exa mple.com", None).is_err());
        assert!(canonical_aor("abc\u{e9}def@example.com", None).is_err());
        assert!(canonical_aor("sip\u{e9}", Some("example.com")).is_err());
        assert!(canonical_aor("sip:", None).is_err());
    }
}
