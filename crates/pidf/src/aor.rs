//! Address-of-record comparison for checking a publication's `entity`.

/// The comparable parts of an address-of-record: `(user, host)`.
#[derive(Debug, PartialEq, Eq)]
struct AorKey {
    /// The user part, percent-decoded; compared exactly (RFC 3261 section 19.1.4).
    user: Option<Vec<u8>>,
    /// The host (and port, if any), lowercased.
    host: String,
}

/// Whether `a` and `b` name the same address-of-record, ignoring the URI scheme
/// (`pres:`, `sip:`, `sips:`, `im:`, `tel:`), any display name and angle brackets, URI parameters
/// and headers. Hosts compare case-insensitively, users after percent-decoding.
pub(crate) fn same_aor(a: &str, b: &str) -> bool {
    match (aor_key(a), aor_key(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn aor_key(value: &str) -> Option<AorKey> {
    let mut rest = value.trim();
    // `"Alice" <sip:alice@example.com>;tag=x`: keep what is inside the brackets.
    if let Some(open) = rest.find('<') {
        let inner = &rest[open + 1..];
        rest = inner.split('>').next().unwrap_or(inner);
    }
    for scheme in ["pres:", "sips:", "sip:", "im:", "tel:"] {
        if rest.len() >= scheme.len()
            && rest.is_char_boundary(scheme.len())
            && rest[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            rest = &rest[scheme.len()..];
            break;
        }
    }
    // Parameters and headers do not take part in AOR identity.
    let rest = rest.split([';', '?']).next().unwrap_or(rest).trim();
    let (user, host) = match rest.rfind('@') {
        Some(at) => (Some(percent_decode(&rest[..at])?), &rest[at + 1..]),
        None => (None, rest),
    };
    if host.is_empty() {
        return None;
    }
    Some(AorKey {
        user,
        host: host.to_ascii_lowercase(),
    })
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let high = hex_value(*bytes.get(index + 1)?)?;
            let low = hex_value(*bytes.get(index + 2)?)?;
            out.push(high << 4 | low);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    Some(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::same_aor;

    #[test]
    fn schemes_and_host_case_are_ignored() {
        for entity in [
            "pres:alice@example.com",
            "sip:alice@example.com",
            "sips:alice@EXAMPLE.com",
            "SIP:alice@example.com;transport=tcp",
            "\"Alice\" <sip:alice@example.com>",
            "im:alice@Example.Com",
            "sip:%61lice@example.com",
        ] {
            assert!(same_aor(entity, "alice@example.com"), "{entity}");
            assert!(same_aor("sip:alice@example.com", entity), "{entity}");
        }
    }

    #[test]
    fn telephone_numbers_compare_without_scheme() {
        assert!(same_aor("tel:+15551234", "+15551234"));
        assert!(!same_aor("tel:+15551234", "+15551235"));
    }

    #[test]
    fn different_users_hosts_and_garbage_do_not_match() {
        assert!(!same_aor("sip:bob@example.com", "alice@example.com"));
        assert!(!same_aor("sip:Alice@example.com", "alice@example.com"));
        assert!(!same_aor("sip:alice@example.org", "alice@example.com"));
        assert!(!same_aor("", "alice@example.com"));
        assert!(!same_aor("sip:alice@", "alice@"));
        assert!(!same_aor("sip:a%zzb@example.com", "a%zzb@example.com"));
    }
}
