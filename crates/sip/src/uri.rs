//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), with other schemes kept opaque.
//!
//! A [`Uri`] owns its text once and records where each component lies in it, so accessors
//! borrow instead of allocating. Escapes (`%HH`) are kept in the text and decoded only for
//! [`Uri::user`] and [`Uri::aor`].

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::error::{ErrorKind, ParseError};
use crate::grammar::{class, find, find2, ByteClass};

/// The URI scheme.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme, lower-cased; its URI is kept opaque.
    Other(String),
}

impl Scheme {
    /// The scheme name as written in URIs (lower case).
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Span = (u32, u32);

/// A parsed URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uri {
    text: String,
    scheme: Scheme,
    user: Option<Span>,
    password: Option<Span>,
    host: Span,
    port: Option<u16>,
    params: Span,
    headers: Option<Span>,
    user_decoded: Option<Box<str>>,
}

// RFC 3261 §25.1 character classes.
static USER: ByteClass = class(true, b"-_.!~*'()&=+$,;?/");
static PASSWORD: ByteClass = class(true, b"-_.!~*'()&=+$,");
static PARAM: ByteClass = class(true, b"-_.!~*'()[]/:&+$");
static TEL_PARAM: ByteClass = class(true, b"-_.!~*'()[]/:&+$=");
static HEADER: ByteClass = class(true, b"-_.!~*'()[]/?:+$");
static SCHEME: ByteClass = class(true, b"+-.");
static HOST: ByteClass = class(true, b"-.");
static TEL_NUMBER: ByteClass = class(false, b"0123456789abcdefABCDEF+-.()*#pwPW");

/// Checks that every byte is in `allowed` or is part of a `%HH` escape.
fn check_escaped(s: &str, allowed: &ByteClass) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if allowed[usize::from(b[i])] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Decodes `%HH` escapes; `None` when there are none or the result is not UTF-8 (the escaped
/// form is then used as is).
fn unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(hex_val(b[i + 1]) * 16 + hex_val(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Case-insensitive comparison of possibly escaped `raw` with plain `name`.
fn eq_unescaped(raw: &str, name: &str) -> bool {
    if !raw.contains('%') {
        return raw.eq_ignore_ascii_case(name);
    }
    let b = raw.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            decoded.push(hex_val(b[i + 1]) * 16 + hex_val(b[i + 2]));
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    decoded.eq_ignore_ascii_case(name.as_bytes())
}

/// Escapes every byte of `s` not allowed by `allowed`.
pub(crate) fn escape(s: &str, allowed: &ByteClass) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if allowed[usize::from(b)] {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Whether `b` may appear in a domain name or IPv4 address.
#[inline]
pub(crate) fn is_host_char(b: u8) -> bool {
    HOST[usize::from(b)]
}

/// Validates a host: a domain name, an IPv4 address, or a bracketed IPv6 reference.
pub(crate) fn is_valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return is_ipv6(inner);
    }
    !host.is_empty() && host.bytes().all(|b| HOST[usize::from(b)])
}

/// An IPv6 address; the three-colon form produced by the RFC 3261 ABNF bug (RFC 5118 §4.10) is
/// accepted too, as receivers are asked to be lenient about it.
pub(crate) fn is_ipv6(s: &str) -> bool {
    if Ipv6Addr::from_str(s).is_ok() {
        return true;
    }
    s.contains(":::") && Ipv6Addr::from_str(&s.replacen(":::", "::", 1)).is_ok()
}

fn span(start: usize, end: usize) -> Span {
    (start as u32, end as u32)
}

/// Component positions found by [`analyze`]; building a [`Uri`] from them is the only step
/// that allocates.
#[derive(Clone, Copy)]
pub(crate) struct Parts {
    kind: Kind,
    user: Option<Span>,
    password: Option<Span>,
    host: Span,
    port: Option<u16>,
    params: Span,
    headers: Option<Span>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sip,
    Sips,
    Tel,
    Other,
}

impl Parts {
    /// Whether the URI is `sip:` or `sips:`.
    pub(crate) fn is_sip(&self) -> bool {
        matches!(self.kind, Kind::Sip | Kind::Sips)
    }

    /// Whether the URI has a `?headers` component.
    pub(crate) fn has_headers(&self) -> bool {
        self.headers.is_some()
    }
}

/// Checks a URI and locates its components without allocating.
pub(crate) fn analyze(s: &str) -> Result<Parts, ParseError> {
    let err = || ParseError::new(ErrorKind::InvalidUri);
    if s.len() > u32::MAX as usize / 2 {
        return Err(err());
    }
    let bytes = s.as_bytes();
    // Fast path for the common "sip:" (any case): a valid scheme, so the checks below agree.
    if bytes.len() >= 4 && bytes[3] == b':' && bytes[..3].eq_ignore_ascii_case(b"sip") {
        let mut parts = Parts {
            kind: Kind::Sip,
            user: None,
            password: None,
            host: span(4, 4),
            port: None,
            params: span(s.len(), s.len()),
            headers: None,
        };
        analyze_sip(&mut parts, &s[4..], 4)?;
        return Ok(parts);
    }
    let colon = find(bytes, b':').ok_or_else(err)?;
    let scheme_text = &s[..colon];
    let sb = scheme_text.as_bytes();
    if sb.is_empty() || !sb[0].is_ascii_alphabetic() || !sb.iter().all(|&b| SCHEME[usize::from(b)])
    {
        return Err(err());
    }
    let kind = if scheme_text.eq_ignore_ascii_case("sip") {
        Kind::Sip
    } else if scheme_text.eq_ignore_ascii_case("sips") {
        Kind::Sips
    } else if scheme_text.eq_ignore_ascii_case("tel") {
        Kind::Tel
    } else {
        Kind::Other
    };
    let rest_start = colon + 1;
    let rest = &s[rest_start..];
    let mut parts = Parts {
        kind,
        user: None,
        password: None,
        host: span(rest_start, rest_start),
        port: None,
        params: span(s.len(), s.len()),
        headers: None,
    };
    match kind {
        Kind::Sip | Kind::Sips => analyze_sip(&mut parts, rest, rest_start)?,
        Kind::Tel => analyze_tel(&mut parts, rest, rest_start)?,
        Kind::Other => {
            if rest.is_empty()
                || !rest.bytes().all(|b| {
                    (b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"')) || b >= 0x80
                })
            {
                return Err(err());
            }
        }
    }
    Ok(parts)
}

/// Length of the run of `allowed` bytes and `%HH` escapes in `b[start..end]`, from `start`; an
/// error for a `%` without two hex digits before `end`. The byte at the returned position (if
/// any) is the first one that is neither.
fn escaped_run(b: &[u8], start: usize, end: usize, allowed: &ByteClass) -> Result<usize, ()> {
    let mut i = start;
    while i < end {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= end || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(());
            }
            i += 3;
        } else if allowed[usize::from(c)] {
            i += 1;
        } else {
            break;
        }
    }
    Ok(i)
}

fn analyze_sip(parts: &mut Parts, rest: &str, base: usize) -> Result<(), ParseError> {
    let err = || ParseError::new(ErrorKind::InvalidUri);
    let b = rest.as_bytes();
    // '@' only appears raw as the userinfo delimiter: nothing after the host start accepts it
    // (host, port, parameters and headers all reject a raw '@'), so the userinfo is found
    // scanning forward: `user [":" password] "@"`, each escaped. When no '@' ends such a run
    // there is no userinfo, and whatever the run covered is checked again as host and
    // parameters, which reject every byte and bad escape the run stopped at or failed on.
    let len = b.len();
    let mut userinfo = None;
    let user_end = escaped_run(b, 0, len, &USER).map_err(|_| err())?;
    match b.get(user_end) {
        Some(b'@') => userinfo = Some((user_end, None)),
        Some(b':') => {
            let pw_end = escaped_run(b, user_end + 1, len, &PASSWORD).map_err(|_| err())?;
            if b.get(pw_end) == Some(&b'@') {
                userinfo = Some((user_end, Some(pw_end)));
            }
        }
        _ => {}
    }
    let host_start = match userinfo {
        Some((user_end, password_end)) => {
            if user_end == 0 {
                return Err(err());
            }
            parts.user = Some(span(base, base + user_end));
            match password_end {
                Some(pw_end) => {
                    parts.password = Some(span(base + user_end + 1, base + pw_end));
                    pw_end + 1
                }
                None => user_end + 1,
            }
        }
        None => 0,
    };
    let hp = &rest[host_start..];
    let hp_base = base + host_start;
    let hpb = hp.as_bytes();
    let host_len = if hp.starts_with('[') {
        let len = find(hpb, b']').map(|i| i + 1).ok_or_else(err)?;
        if !is_valid_host(&hp[..len]) {
            return Err(err());
        }
        len
    } else {
        // The host runs to the first ':', ';' or '?' (none of them host characters) and must
        // be non-empty host characters throughout.
        let len = hpb.iter().take_while(|&&c| HOST[usize::from(c)]).count();
        if len == 0 || (len < hpb.len() && !matches!(hpb[len], b':' | b';' | b'?')) {
            return Err(err());
        }
        len
    };
    parts.host = span(hp_base, hp_base + host_len);
    let mut i = host_len;
    if let Some(port_text) = hp[i..].strip_prefix(':') {
        let end = find2(port_text.as_bytes(), b';', b'?').unwrap_or(port_text.len());
        let digits = &port_text[..end];
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        parts.port = Some(digits.parse::<u16>().map_err(|_| err())?);
        i += 1 + end;
    }
    let tail = &hp[i..];
    let (params, headers) = match find(tail.as_bytes(), b'?') {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    if !params.is_empty() {
        // ";name[=value]" repeated; '=', ';' and '?' are neither parameter characters nor hex
        // digits, so each run stops exactly at the next delimiter.
        let pb = params.as_bytes();
        let end = pb.len();
        if pb[0] != b';' {
            return Err(err());
        }
        let mut at = 1;
        loop {
            let name_end = escaped_run(pb, at, end, &PARAM).map_err(|_| err())?;
            if name_end == at {
                return Err(err());
            }
            let mut next = name_end;
            if next < end && pb[next] == b'=' {
                let value_end = escaped_run(pb, next + 1, end, &PARAM).map_err(|_| err())?;
                if value_end == next + 1 {
                    return Err(err());
                }
                next = value_end;
            }
            if next == end {
                break;
            }
            if pb[next] != b';' {
                return Err(err());
            }
            at = next + 1;
        }
    }
    let pstart = hp_base + i;
    parts.params = span(pstart, pstart + params.len());
    if let Some(h) = headers {
        for pair in h.split('&') {
            let (name, value) = pair.split_once('=').ok_or_else(err)?;
            if name.is_empty() || !check_escaped(name, &HEADER) || !check_escaped(value, &HEADER) {
                return Err(err());
            }
        }
        let hstart = pstart + params.len() + 1;
        parts.headers = Some(span(hstart, hstart + h.len()));
    }
    Ok(())
}

fn analyze_tel(parts: &mut Parts, rest: &str, base: usize) -> Result<(), ParseError> {
    let err = || ParseError::new(ErrorKind::InvalidUri);
    let end = rest.find(';').unwrap_or(rest.len());
    let number = &rest[..end];
    if number.is_empty() || !number.bytes().all(|b| TEL_NUMBER[usize::from(b)]) {
        return Err(err());
    }
    parts.user = Some(span(base, base + end));
    if let Some(body) = rest[end..].strip_prefix(';') {
        for p in body.split(';') {
            let name = p.split('=').next().unwrap_or_default();
            if name.is_empty() || !check_escaped(p, &TEL_PARAM) {
                return Err(err());
            }
        }
    }
    parts.params = span(base + end, base + rest.len());
    Ok(())
}

impl Uri {
    /// Parses a URI. `sip:`/`sips:` follow RFC 3261 §25 (escapes, IPv6 references, parameters,
    /// headers); `tel:` keeps the number and parameters; other schemes are opaque.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let parts = analyze(s)?;
        Ok(Uri::from_parts(s, parts))
    }

    /// Builds the owned URI from text already checked by [`analyze`].
    pub(crate) fn from_parts(s: &str, parts: Parts) -> Uri {
        let colon = s.find(':').unwrap_or_default();
        let mut text = String::with_capacity(s.len());
        text.push_str(s);
        // The scheme is ASCII (checked by `analyze`), so lower-casing keeps every offset.
        text[..colon].make_ascii_lowercase();
        let scheme = match parts.kind {
            Kind::Sip => Scheme::Sip,
            Kind::Sips => Scheme::Sips,
            Kind::Tel => Scheme::Tel,
            Kind::Other => Scheme::Other(text[..colon].to_owned()),
        };
        let user_decoded = match parts.kind {
            Kind::Sip | Kind::Sips => parts
                .user
                .and_then(|(a, b)| s.get(a as usize..b as usize))
                .and_then(unescape)
                .map(String::into_boxed_str),
            _ => None,
        };
        Uri {
            text,
            scheme,
            user: parts.user,
            password: parts.password,
            host: parts.host,
            port: parts.port,
            params: parts.params,
            headers: parts.headers,
            user_decoded,
        }
    }

    /// Builds a `sip:` URI. The user part is escaped as needed; an IPv6 host is bracketed when
    /// given bare.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Result<Uri, ParseError> {
        Uri::build(Scheme::Sip, user, host, port)
    }

    /// Builds a `sips:` URI, like [`Uri::sip`].
    pub fn sips(user: Option<&str>, host: &str, port: Option<u16>) -> Result<Uri, ParseError> {
        Uri::build(Scheme::Sips, user, host, port)
    }

    fn build(
        scheme: Scheme,
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
    ) -> Result<Uri, ParseError> {
        let mut text = String::with_capacity(host.len() + 32);
        text.push_str(scheme.as_str());
        text.push(':');
        if let Some(user) = user {
            text.push_str(&escape(user, &USER));
            text.push('@');
        }
        if host.contains(':') && !host.starts_with('[') {
            text.push('[');
            text.push_str(host);
            text.push(']');
        } else {
            text.push_str(host);
        }
        if let Some(port) = port {
            text.push(':');
            text.push_str(&port.to_string());
        }
        Uri::parse(&text)
    }

    /// Returns this URI with the parameter set (replacing any parameter of the same name).
    /// The value is escaped as needed.
    pub fn with_param(self, name: &str, value: Option<&str>) -> Result<Uri, ParseError> {
        if !matches!(self.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
            return Err(ParseError::new(ErrorKind::InvalidUri));
        }
        let mut text = String::with_capacity(self.text.len() + name.len() + 16);
        text.push_str(self.slice((0, self.params.0)));
        for (n, v) in self.params() {
            if n.eq_ignore_ascii_case(name) {
                continue;
            }
            text.push(';');
            text.push_str(n);
            if let Some(v) = v {
                text.push('=');
                text.push_str(v);
            }
        }
        text.push(';');
        text.push_str(&escape(name, &PARAM));
        if let Some(v) = value {
            text.push('=');
            text.push_str(&escape(v, &PARAM));
        }
        if let Some(h) = self.headers {
            text.push('?');
            text.push_str(self.slice(h));
        }
        Uri::parse(&text)
    }

    fn slice(&self, (start, end): Span) -> &str {
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The user part with escapes decoded (for `tel:` the number); `None` when absent.
    /// If the decoded bytes are not UTF-8 the escaped form is returned.
    pub fn user(&self) -> Option<&str> {
        match &self.user_decoded {
            Some(decoded) => Some(decoded),
            None => self.user.map(|s| self.slice(s)),
        }
    }

    /// The user part exactly as written (escapes kept).
    pub fn user_raw(&self) -> Option<&str> {
        self.user.map(|s| self.slice(s))
    }

    /// The password part, if any (deprecated by RFC 3261 but still parsed).
    pub fn password(&self) -> Option<&str> {
        self.password.map(|s| self.slice(s))
    }

    /// The host as written; IPv6 references keep their brackets (`"[::1]"`). Empty for `tel:`
    /// and opaque schemes.
    pub fn host(&self) -> &str {
        self.slice(self.host)
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// A URI parameter by case-insensitive name: `None` if absent, `Some(None)` if present
    /// without a value, `Some(Some(v))` with its (still escaped) value.
    ///
    /// Names are compared after decoding escapes, so `%6C%72` finds `lr` (RFC 3261 §19.1.4).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params()
            .find(|(n, _)| eq_unescaped(n, name))
            .map(|(_, v)| v)
    }

    /// The URI parameters in order, as (name, value) with escapes kept.
    pub fn params(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        self.slice(self.params)
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            })
    }

    /// The `?name=value&...` headers component in order (escapes kept); empty when absent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .map(|h| self.slice(h))
            .unwrap_or_default()
            .split('&')
            .filter_map(|p| p.split_once('='))
    }

    /// Whether the URI carries a headers component.
    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }

    /// The address-of-record key: `user@host` with the host lower-cased and no port,
    /// parameters or headers (just the host when there is no user); for `tel:` the number;
    /// for opaque schemes the whole URI.
    pub fn aor(&self) -> String {
        match self.scheme {
            Scheme::Sip | Scheme::Sips => {
                let host = self.host().to_ascii_lowercase();
                match self.user() {
                    Some(user) => {
                        let mut key = String::with_capacity(user.len() + host.len() + 1);
                        key.push_str(user);
                        key.push('@');
                        key.push_str(&host);
                        key
                    }
                    None => host,
                }
            }
            Scheme::Tel => self.user().unwrap_or_default().to_owned(),
            Scheme::Other(_) => self.text.clone(),
        }
    }

    /// The URI text (scheme lower-cased, everything else as written).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Uri, ParseError> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The SIP URI check as it was before the single forward pass (kept to pin equivalence).
    fn reference_sip(parts: &mut Parts, rest: &str, base: usize) -> Result<(), ParseError> {
        let err = || ParseError::new(ErrorKind::InvalidUri);
        // '@' only appears raw as the userinfo delimiter: parameters and headers must escape it.
        let (host_start, userinfo) = match memchr::memrchr(b'@', rest.as_bytes()) {
            Some(at) => (at + 1, Some(&rest[..at])),
            None => (0, None),
        };
        if let Some(userinfo) = userinfo {
            let (user, password) = match memchr::memchr(b':', userinfo.as_bytes()) {
                Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                None => (userinfo, None),
            };
            if user.is_empty() || !check_escaped(user, &USER) {
                return Err(err());
            }
            parts.user = Some(span(base, base + user.len()));
            if let Some(password) = password {
                if !check_escaped(password, &PASSWORD) {
                    return Err(err());
                }
                let start = base + user.len() + 1;
                parts.password = Some(span(start, start + password.len()));
            }
        }
        let hp = &rest[host_start..];
        let hp_base = base + host_start;
        let hpb = hp.as_bytes();
        let host_len = if hp.starts_with('[') {
            memchr::memchr(b']', hpb).map(|i| i + 1).ok_or_else(err)?
        } else {
            memchr::memchr3(b':', b';', b'?', hpb).unwrap_or(hp.len())
        };
        if !is_valid_host(&hp[..host_len]) {
            return Err(err());
        }
        parts.host = span(hp_base, hp_base + host_len);
        let mut i = host_len;
        if let Some(port_text) = hp[i..].strip_prefix(':') {
            let end = memchr::memchr2(b';', b'?', port_text.as_bytes()).unwrap_or(port_text.len());
            let digits = &port_text[..end];
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(err());
            }
            parts.port = Some(digits.parse::<u16>().map_err(|_| err())?);
            i += 1 + end;
        }
        let tail = &hp[i..];
        let (params, headers) = match memchr::memchr(b'?', tail.as_bytes()) {
            Some(q) => (&tail[..q], Some(&tail[q + 1..])),
            None => (tail, None),
        };
        if !params.is_empty() {
            let body = params.strip_prefix(';').ok_or_else(err)?;
            for p in body.split(';') {
                let (name, value) = match memchr::memchr(b'=', p.as_bytes()) {
                    Some(e) => (&p[..e], Some(&p[e + 1..])),
                    None => (p, None),
                };
                if name.is_empty() || !check_escaped(name, &PARAM) {
                    return Err(err());
                }
                if let Some(v) = value {
                    if v.is_empty() || !check_escaped(v, &PARAM) {
                        return Err(err());
                    }
                }
            }
        }
        let pstart = hp_base + i;
        parts.params = span(pstart, pstart + params.len());
        if let Some(h) = headers {
            for pair in h.split('&') {
                let (name, value) = pair.split_once('=').ok_or_else(err)?;
                if name.is_empty()
                    || !check_escaped(name, &HEADER)
                    || !check_escaped(value, &HEADER)
                {
                    return Err(err());
                }
            }
            let hstart = pstart + params.len() + 1;
            parts.headers = Some(span(hstart, hstart + h.len()));
        }
        Ok(())
    }

    fn outcome(rest: &str, f: fn(&mut Parts, &str, usize) -> Result<(), ParseError>) -> String {
        let mut parts = Parts {
            kind: Kind::Sip,
            user: None,
            password: None,
            host: span(4, 4),
            port: None,
            params: span(4 + rest.len(), 4 + rest.len()),
            headers: None,
        };
        match f(&mut parts, rest, 4) {
            Ok(()) => format!(
                "{:?} {:?} {:?} {:?} {:?} {:?}",
                parts.user, parts.password, parts.host, parts.port, parts.params, parts.headers
            ),
            Err(e) => format!("error {e:?}"),
        }
    }

    proptest! {
        #[test]
        fn sip_uri_check_matches_the_reference(rest in "[@:;?=%&a1F\\[\\]#. ]{0,14}") {
            prop_assert_eq!(outcome(&rest, analyze_sip), outcome(&rest, reference_sip));
        }
    }

    #[test]
    fn userinfo_is_split_at_the_only_raw_at_sign() {
        let ok = [
            ("sip:u:p@h", Some("u"), Some("p")),
            ("sip:u@h", Some("u"), None),
            ("sip:u:@h", Some("u"), Some("")),
            ("sip:h:5060", None, None),
            ("sip:h:50@60", Some("h"), Some("50")),
            ("sip:h?a=b@c", Some("h?a=b"), None),
            ("sip:h;a=b:c", None, None),
            ("sip:%61;x@h", Some("%61;x"), None),
            ("sip:h?x=%40", None, None),
            ("sip:u@h:5060;transport=tcp?subject=x", Some("u"), None),
            ("sip:u:p%40q@[2001:db8::1]:5061", Some("u"), Some("p%40q")),
        ];
        for (uri, user, password) in ok {
            let parsed = super::Uri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(parsed.user_raw(), user, "{uri}");
            assert_eq!(parsed.password(), password, "{uri}");
        }
        let bad = [
            "sip:a@b@c",
            "sip:@h",
            "sip::p@h",
            "sip:h;x=@",
            "sip:u@h;x=%zz",
            "sip:a#b@c",
            "sip:[::1]@x",
            "sip:a:b#c@d",
            "sip:a:b:c@d",
            "sip:u%4@h",
            "sip:u:p%4@h",
            "sip:u@",
            "sip:u@h@",
            "sip:%zz",
        ];
        for uri in bad {
            assert!(analyze(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn whitespace_is_never_part_of_a_uri() {
        let uris = [
            "sip:alice@example.com",
            "SIP:alice:pw@example.com:5060;transport=tcp;lr?subject=x&b=c",
            "sips:[2001:db8::1]:5061;maddr=[2001:db8::2]",
            "sip:[2001:db8:::192.0.2.1]",
            "tel:+1-201-555-0123;phone-context=example.com",
            "urn:service:sos",
            "http://example.com/a?b=c",
            "sip:%61lice@example.com;x=%20",
        ];
        for uri in uris {
            assert!(analyze(uri).is_ok(), "{uri}");
            for at in 0..=uri.len() {
                for ws in [" ", "\t", "\r", "\n", "\r\n "] {
                    let mut bad = uri.to_owned();
                    bad.insert_str(at, ws);
                    assert!(analyze(&bad).is_err(), "{bad:?}");
                }
            }
        }
    }
}
