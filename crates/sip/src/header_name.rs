//! Header field names: the well-known ones as enum variants, compact forms, and the
//! allocation-free lookup the scanner uses for every header line.

use std::fmt;
use std::hash::{Hash, Hasher};

macro_rules! known_headers {
    ($( $(#[$doc:meta])* $variant:ident = $canon:literal, $compact:expr, $list:expr; )*) => {
        /// A header field name. Well-known names are variants (their `Display` is the canonical
        /// spelling used on output, compact forms are expanded); anything else is `Other`,
        /// compared case-insensitively.
        #[derive(Clone, Debug)]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other header field, spelled as received or given.
            Other(String),
        }

        /// Index of a well-known header name; what the scanner stores per header line.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum Known { $( $variant, )* }

        impl Known {
            /// Every well-known name, in discriminant order.
            pub(crate) const ALL: &'static [Known] = &[ $( Known::$variant, )* ];

            /// Canonical spellings, in discriminant order.
            pub(crate) const NAMES: &'static [&'static str] = &[ $( $canon, )* ];

            /// Canonical spelling.
            pub(crate) const fn canonical(self) -> &'static str {
                match self { $( Known::$variant => $canon, )* }
            }

            /// Single-letter compact form (RFC 3261 §7.3.3 and later registrations).
            pub(crate) const fn compact(self) -> Option<u8> {
                match self { $( Known::$variant => $compact, )* }
            }

            /// Whether the grammar is a comma-separated list, so that several values may share
            /// one header line.
            pub(crate) const fn is_list(self) -> bool {
                match self { $( Known::$variant => $list, )* }
            }

            pub(crate) fn name(self) -> HeaderName {
                match self { $( Known::$variant => HeaderName::$variant, )* }
            }
        }

        impl HeaderName {
            pub(crate) fn known(&self) -> Option<Known> {
                match self {
                    $( HeaderName::$variant => Some(Known::$variant), )*
                    HeaderName::Other(_) => None,
                }
            }
        }
    };
}

known_headers! {
    /// `Via` (`v`).
    Via = "Via", Some(b'v'), true;
    /// `From` (`f`).
    From = "From", Some(b'f'), false;
    /// `To` (`t`).
    To = "To", Some(b't'), false;
    /// `Call-ID` (`i`).
    CallId = "Call-ID", Some(b'i'), false;
    /// `CSeq`.
    CSeq = "CSeq", None, false;
    /// `Contact` (`m`).
    Contact = "Contact", Some(b'm'), true;
    /// `Expires`.
    Expires = "Expires", None, false;
    /// `Min-Expires`.
    MinExpires = "Min-Expires", None, false;
    /// `Max-Forwards`.
    MaxForwards = "Max-Forwards", None, false;
    /// `Event` (`o`, RFC 6665).
    Event = "Event", Some(b'o'), false;
    /// `Allow-Events` (`u`, RFC 6665).
    AllowEvents = "Allow-Events", Some(b'u'), true;
    /// `Allow`.
    Allow = "Allow", None, true;
    /// `Accept`.
    Accept = "Accept", None, true;
    /// `Accept-Encoding`.
    AcceptEncoding = "Accept-Encoding", None, true;
    /// `Accept-Language`.
    AcceptLanguage = "Accept-Language", None, true;
    /// `Content-Type` (`c`).
    ContentType = "Content-Type", Some(b'c'), false;
    /// `Content-Length` (`l`).
    ContentLength = "Content-Length", Some(b'l'), false;
    /// `Content-Encoding` (`e`).
    ContentEncoding = "Content-Encoding", Some(b'e'), true;
    /// `Content-Disposition`.
    ContentDisposition = "Content-Disposition", None, false;
    /// `Content-Language`.
    ContentLanguage = "Content-Language", None, true;
    /// `Subscription-State` (RFC 6665).
    SubscriptionState = "Subscription-State", None, false;
    /// `SIP-ETag` (RFC 3903).
    SipETag = "SIP-ETag", None, false;
    /// `SIP-If-Match` (RFC 3903).
    SipIfMatch = "SIP-If-Match", None, false;
    /// `Authorization`.
    Authorization = "Authorization", None, false;
    /// `WWW-Authenticate`.
    WwwAuthenticate = "WWW-Authenticate", None, false;
    /// `Proxy-Authenticate`.
    ProxyAuthenticate = "Proxy-Authenticate", None, false;
    /// `Proxy-Authorization`.
    ProxyAuthorization = "Proxy-Authorization", None, false;
    /// `Authentication-Info`.
    AuthenticationInfo = "Authentication-Info", None, false;
    /// `Route`.
    Route = "Route", None, true;
    /// `Record-Route`.
    RecordRoute = "Record-Route", None, true;
    /// `Path` (RFC 3327).
    Path = "Path", None, true;
    /// `Service-Route` (RFC 3608).
    ServiceRoute = "Service-Route", None, true;
    /// `Supported` (`k`).
    Supported = "Supported", Some(b'k'), true;
    /// `Require`.
    Require = "Require", None, true;
    /// `Proxy-Require`.
    ProxyRequire = "Proxy-Require", None, true;
    /// `Unsupported`.
    Unsupported = "Unsupported", None, true;
    /// `User-Agent`.
    UserAgent = "User-Agent", None, false;
    /// `Server`.
    Server = "Server", None, false;
    /// `Retry-After`.
    RetryAfter = "Retry-After", None, false;
    /// `Warning`.
    Warning = "Warning", None, true;
    /// `P-Asserted-Identity` (RFC 3325).
    PAssertedIdentity = "P-Asserted-Identity", None, true;
    /// `P-Preferred-Identity` (RFC 3325).
    PPreferredIdentity = "P-Preferred-Identity", None, true;
    /// `Date`.
    Date = "Date", None, false;
    /// `Subject` (`s`).
    Subject = "Subject", Some(b's'), false;
    /// `Refer-To` (`r`, RFC 3515).
    ReferTo = "Refer-To", Some(b'r'), false;
    /// `Referred-By` (`b`, RFC 3892).
    ReferredBy = "Referred-By", Some(b'b'), false;
    /// `Session-Expires` (`x`, RFC 4028).
    SessionExpires = "Session-Expires", Some(b'x'), false;
    /// `Identity` (`y`, RFC 8224).
    Identity = "Identity", Some(b'y'), false;
    /// `Identity-Info` (`n`, RFC 4474).
    IdentityInfo = "Identity-Info", Some(b'n'), false;
    /// `Request-Disposition` (`d`, RFC 3841).
    RequestDisposition = "Request-Disposition", Some(b'd'), true;
    /// `Accept-Contact` (`a`, RFC 3841).
    AcceptContact = "Accept-Contact", Some(b'a'), true;
    /// `Reject-Contact` (`j`, RFC 3841).
    RejectContact = "Reject-Contact", Some(b'j'), true;
    /// `Timestamp`.
    Timestamp = "Timestamp", None, false;
    /// `Organization`.
    Organization = "Organization", None, false;
    /// `Priority`.
    Priority = "Priority", None, false;
    /// `Call-Info`.
    CallInfo = "Call-Info", None, true;
    /// `Alert-Info`.
    AlertInfo = "Alert-Info", None, true;
    /// `Error-Info`.
    ErrorInfo = "Error-Info", None, true;
    /// `In-Reply-To`.
    InReplyTo = "In-Reply-To", None, true;
    /// `Reply-To`.
    ReplyTo = "Reply-To", None, false;
    /// `MIME-Version`.
    MimeVersion = "MIME-Version", None, false;
    /// `Reason` (RFC 3326).
    Reason = "Reason", None, true;
    /// `Privacy` (RFC 3323).
    Privacy = "Privacy", None, false;
}

const EMPTY: u8 = u8::MAX;
const BUCKETS: usize = 32 * 32;

const fn bucket(len: usize, first: u8) -> usize {
    (len & 31) * 32 + (((first | 0x20) & 31) as usize)
}

/// Well-known names bucketed by (length, first letter): a lookup costs one table read and, in
/// practice, one case-insensitive comparison.
static TABLE: [[u8; 4]; BUCKETS] = build_table();

const fn build_table() -> [[u8; 4]; BUCKETS] {
    let mut table = [[EMPTY; 4]; BUCKETS];
    let mut i = 0;
    while i < Known::ALL.len() {
        let name = Known::ALL[i].canonical().as_bytes();
        let b = bucket(name.len(), name[0]);
        let mut j = 0;
        // A bucket overflow stops compilation (index out of bounds in a const context).
        while table[b][j] != EMPTY {
            j += 1;
        }
        table[b][j] = i as u8;
        i += 1;
    }
    table
}

static COMPACT: [u8; 32] = build_compact();

const fn build_compact() -> [u8; 32] {
    let mut table = [EMPTY; 32];
    let mut i = 0;
    while i < Known::ALL.len() {
        if let Some(c) = Known::ALL[i].compact() {
            table[(c & 31) as usize] = i as u8;
        }
        i += 1;
    }
    table
}

/// Resolves a header name as received (any case, compact forms included) to a well-known name.
pub(crate) fn lookup(name: &[u8]) -> Option<Known> {
    match name.len() {
        0 => None,
        1 => {
            let c = name[0];
            if !c.is_ascii_alphabetic() {
                return None;
            }
            let idx = COMPACT[((c | 0x20) & 31) as usize];
            Known::ALL.get(idx as usize).copied()
        }
        len => {
            for &idx in &TABLE[bucket(len, name[0])] {
                let (Some(&known), Some(canon)) =
                    (Known::ALL.get(idx as usize), Known::NAMES.get(idx as usize))
                else {
                    break;
                };
                let canon = canon.as_bytes();
                // Most senders use the canonical spelling: try the exact comparison first.
                if canon.len() == len && (canon == name || canon.eq_ignore_ascii_case(name)) {
                    return Some(known);
                }
            }
            None
        }
    }
}

/// Case-insensitive equality of two equally long names made of token characters (`a`) and of
/// letters and '-' (`b`, a canonical name), eight bytes at a time. Setting bit 5 of every byte
/// folds ASCII case; among token characters it maps nothing else onto a letter or '-', so for
/// such inputs this is exactly `eq_ignore_ascii_case`.
#[inline]
fn eq_folded(a: &[u8], b: &[u8]) -> bool {
    const FOLD8: u64 = 0x2020_2020_2020_2020;
    const FOLD4: u32 = 0x2020_2020;
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let load8 = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(w) | FOLD8
    };
    let load4 = |s: &[u8], i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[i..i + 4]);
        u32::from_le_bytes(w) | FOLD4
    };
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if load8(a, i) != load8(b, i) {
                return false;
            }
            i += 8;
        }
        load8(a, n - 8) == load8(b, n - 8)
    } else if n >= 4 {
        load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x | 0x20 == y | 0x20)
    }
}

/// [`lookup`] for a name the scanner has already checked to be a non-empty token.
#[inline]
pub(crate) fn lookup_token(name: &[u8]) -> Option<Known> {
    debug_assert!(!name.is_empty() && name.iter().all(|&b| crate::grammar::is_token_char(b)));
    let len = name.len();
    if len == 1 {
        return lookup(name);
    }
    for &idx in &TABLE[bucket(len, name[0])] {
        let (Some(&known), Some(canon)) =
            (Known::ALL.get(idx as usize), Known::NAMES.get(idx as usize))
        else {
            break;
        };
        if eq_folded(name, canon.as_bytes()) {
            return Some(known);
        }
    }
    None
}

impl HeaderName {
    /// The canonical spelling written on output (`Other` names as given).
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Other(name) => name,
            known => known.known().map(Known::canonical).unwrap_or_default(),
        }
    }

    /// Whether the header's grammar is a comma-separated list (so `get_all` splits it).
    /// Unknown headers are never split, since their grammar is unknown.
    pub fn is_list(&self) -> bool {
        self.known().is_some_and(Known::is_list)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(name: &str) -> Self {
        match lookup(name.as_bytes()) {
            Some(known) => known.name(),
            None => HeaderName::Other(name.to_owned()),
        }
    }
}

impl std::str::FromStr for HeaderName {
    type Err = std::convert::Infallible;

    /// Recognises well-known names in any case and their compact forms; never fails.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(HeaderName::from(name))
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self.known(), other.known()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.as_str().eq_ignore_ascii_case(other.as_str()),
            _ => false,
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.known() {
            Some(known) => (known as u8).hash(state),
            None => {
                u8::MAX.hash(state);
                for b in self.as_str().bytes() {
                    b.to_ascii_lowercase().hash(state);
                }
            }
        }
    }
}

/// A header name lookup key: [`HeaderName`] values and plain strings (any case, compact forms
/// included) both work with [`Headers::get`](crate::Headers::get).
pub trait AsHeaderName {
    #[doc(hidden)]
    fn key(&self) -> Key<'_>;
}

#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    Known(KnownId),
    Other(&'a str),
}

/// Opaque index of a well-known header name.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownId(pub(crate) Known);

impl AsHeaderName for HeaderName {
    fn key(&self) -> Key<'_> {
        match self {
            HeaderName::Other(name) => str_key(name),
            known => known
                .known()
                .map(|k| Key::Known(KnownId(k)))
                .unwrap_or(Key::Other("")),
        }
    }
}

impl AsHeaderName for &HeaderName {
    fn key(&self) -> Key<'_> {
        (*self).key()
    }
}

impl AsHeaderName for &str {
    fn key(&self) -> Key<'_> {
        str_key(self)
    }
}

impl AsHeaderName for String {
    fn key(&self) -> Key<'_> {
        str_key(self)
    }
}

impl AsHeaderName for &String {
    fn key(&self) -> Key<'_> {
        str_key(self)
    }
}

fn str_key(name: &str) -> Key<'_> {
    match lookup(name.as_bytes()) {
        Some(known) => Key::Known(KnownId(known)),
        None => Key::Other(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lookup_agrees_with_lookup() {
        let mut names: Vec<String> = Known::NAMES.iter().map(|n| n.to_string()).collect();
        for n in Known::NAMES {
            names.push(n.to_ascii_lowercase());
            names.push(n.to_ascii_uppercase());
            names.push(format!("{n}x"));
            names.push(n[..n.len() - 1].to_string());
            names.push(n.replace('-', "_"));
            names.push(n.replace('-', "."));
            names.push(n.replace('e', "E").replace('a', "_"));
        }
        for extra in [
            "v", "V", "x", "q", "Q", "Call_ID", "Call-Id", "CSEQ", "c-seq", "Tu", "Viaa",
        ] {
            names.push(extra.to_string());
        }
        for name in names {
            let bytes = name.as_bytes();
            if bytes.is_empty() || !bytes.iter().all(|&b| crate::grammar::is_token_char(b)) {
                continue;
            }
            assert_eq!(lookup_token(bytes), lookup(bytes), "{name}");
        }
    }
}
