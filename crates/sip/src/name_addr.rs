//! `name-addr` / `addr-spec` values (From, To, Contact, Route, P-Asserted-Identity, ...).

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{
    check_params, find, find2, find_param, is_lws, is_token_char, owned_params, parse_u32, quote,
    quoted_end, set_param, trim, unquote, write_params,
};
use crate::header_name::HeaderName;
use crate::uri::{self, Uri};

/// An address with optional display name and header parameters:
/// `"Display" <sip:user@host;uri-param>;header-param`.
#[derive(Clone, Debug, PartialEq)]
pub struct NameAddr {
    /// Display name, unquoted (escapes removed); `None` when absent.
    pub display_name: Option<String>,
    /// The address.
    pub uri: Uri,
    /// Header parameters (after the URI), in order. Quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

/// Where the parts of a name-addr lie in the text; found without allocating.
pub(crate) struct NameAddrRef<'a> {
    pub(crate) display: Option<&'a str>,
    pub(crate) uri: &'a str,
    pub(crate) uri_parts: uri::Parts,
    pub(crate) params: &'a str,
}

/// Splits and checks a name-addr or addr-spec (with parameters).
pub(crate) fn scan(s: &str) -> Result<NameAddrRef<'_>, ()> {
    let s = trim(s);
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(());
    }
    let (display, lt) = if bytes[0] == b'"' {
        let end = quoted_end(bytes, 0).ok_or(())?;
        let rest = &s[end..];
        let skip = rest.bytes().take_while(|&b| is_lws(b)).count();
        if bytes.get(end + skip) != Some(&b'<') {
            return Err(());
        }
        (Some(&s[..end]), Some(end + skip))
    } else {
        match find(bytes, b'<') {
            Some(lt) => {
                let name = trim(&s[..lt]);
                if !name.bytes().all(|b| is_token_char(b) || is_lws(b)) {
                    return Err(());
                }
                ((!name.is_empty()).then_some(name), Some(lt))
            }
            None => (None, None),
        }
    };
    let (uri_text, params) = match lt {
        Some(lt) => {
            let gt = lt + find(&bytes[lt..], b'>').ok_or(())?;
            (&s[lt + 1..gt], &s[gt + 1..])
        }
        None => {
            // addr-spec form: parameters after the URI belong to the header (RFC 3261 §20.10),
            // and a URI containing '?' or ',' must be enclosed in <> (RFC 4475 §3.1.2.13).
            let end = find(bytes, b';').unwrap_or(bytes.len());
            // SEMI may be preceded by whitespace (RFC 4475 §3.1.1.1 "To: sip:... ;tag=").
            let uri_text = trim(&s[..end]);
            if find2(uri_text.as_bytes(), b'?', b',').is_some() {
                return Err(());
            }
            (uri_text, &s[end..])
        }
    };
    // A URI containing linear whitespace is rejected by `uri::analyze`, whose character
    // classes (and IPv6 parsing) exclude SP, HT, CR and LF for every scheme
    // (`uri::tests::whitespace_is_never_part_of_a_uri`), so no separate pass looks for it.
    if uri_text.is_empty() {
        return Err(());
    }
    let uri_parts = uri::analyze(uri_text).map_err(|_| ())?;
    check_params(params)?;
    Ok(NameAddrRef {
        display,
        uri: uri_text,
        uri_parts,
        params,
    })
}

/// Collapses the LWS between display-name tokens to single spaces.
fn normalize_tokens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_ascii() && is_lws(c as u8)) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

impl NameAddr {
    /// Wraps a URI with no display name and no parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses a name-addr or addr-spec with header parameters.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        NameAddr::parse_as(s, HeaderName::To)
    }

    pub(crate) fn parse_as(s: &str, header: HeaderName) -> Result<Self, ParseError> {
        let r = scan(s).map_err(|_| ParseError::invalid(header.clone()))?;
        NameAddr::from_ref(&r).map_err(|_| ParseError::invalid(header))
    }

    pub(crate) fn from_ref(r: &NameAddrRef<'_>) -> Result<Self, ()> {
        let display_name = r.display.map(|d| {
            if d.starts_with('"') {
                unquote(d)
            } else {
                normalize_tokens(d)
            }
        });
        Ok(NameAddr {
            display_name,
            uri: Uri::from_parts(r.uri, r.uri_parts),
            params: owned_params(r.params)?,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Returns this address with its `tag` parameter set to `tag`.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        set_param(&mut self.params, "tag", Some(tag.into()));
        self
    }

    /// A header parameter by case-insensitive name: `None` if absent, `Some(None)` if it has
    /// no value. Quoted values keep their quotes.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// Sets (or replaces) a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param(&mut self.params, name, value);
    }
}

impl fmt::Display for NameAddr {
    /// Always writes the URI in angle brackets, so URI parameters cannot be mistaken for
    /// header parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            write!(f, "{} ", quote(name))?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

impl FromStr for NameAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        NameAddr::parse(s)
    }
}

/// One Contact value (RFC 3261 §20.10, RFC 5626 `+sip.instance` / `reg-id`).
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    /// The address and its contact parameters.
    pub name_addr: NameAddr,
}

impl Contact {
    /// Wraps an address as a contact.
    pub fn new(name_addr: NameAddr) -> Self {
        Contact { name_addr }
    }

    /// The `expires` parameter in seconds; `None` if absent or not a valid 32-bit number.
    pub fn expires(&self) -> Option<u32> {
        self.name_addr
            .param("expires")
            .flatten()
            .and_then(parse_u32)
    }

    /// The `q` preference (0.0 ..= 1.0); `None` if absent or malformed.
    pub fn q(&self) -> Option<f32> {
        let q: f32 = self.name_addr.param("q").flatten()?.parse().ok()?;
        (0.0..=1.0).contains(&q).then_some(q)
    }

    /// The `+sip.instance` value with its quotes removed (e.g. `<urn:uuid:...>`).
    pub fn instance(&self) -> Option<String> {
        self.name_addr.param("+sip.instance").flatten().map(unquote)
    }

    /// The `reg-id` parameter (RFC 5626).
    pub fn reg_id(&self) -> Option<u32> {
        self.name_addr.param("reg-id").flatten().and_then(parse_u32)
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name_addr.fmt(f)
    }
}

impl FromStr for Contact {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        NameAddr::parse_as(s, HeaderName::Contact).map(Contact::new)
    }
}

/// The Contact header field of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Contacts {
    /// `Contact: *` (remove all bindings, RFC 3261 §10.2.2).
    Star,
    /// The listed contacts; empty when there is no Contact header.
    List(Vec<Contact>),
}

impl Contacts {
    /// The contacts, or an empty slice for `*`.
    pub fn as_slice(&self) -> &[Contact] {
        match self {
            Contacts::Star => &[],
            Contacts::List(list) => list,
        }
    }
}

impl fmt::Display for Contacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contacts::Star => f.write_str("*"),
            Contacts::List(list) => {
                for (i, c) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    c.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}
