//! The Via header field (RFC 3261 §20.42, RFC 3581 `rport`, RFC 5118 IPv6 `received`).

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{
    check_params, find, find_param, is_lws, is_token_char, owned_params, set_param, write_params,
};
use crate::header_name::HeaderName;
use crate::uri::{is_host_char, is_valid_host};

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/<transport> <host>[:<port>];params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`, ...).
    pub transport: String,
    /// The sent-by host; IPv6 references keep their brackets.
    pub host: String,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// Via parameters in order (branch, received, rport, ...). Quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

/// Where the parts of a Via value lie; found without allocating.
pub(crate) struct ViaRef<'a> {
    pub(crate) transport: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    pub(crate) params: &'a str,
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_lws(&mut self) {
        while self.i < self.s.len() && is_lws(self.s.as_bytes()[self.i]) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<&'a str, ()> {
        let start = self.i;
        while self.i < self.s.len() && is_token_char(self.s.as_bytes()[self.i]) {
            self.i += 1;
        }
        if self.i == start {
            return Err(());
        }
        Ok(&self.s[start..self.i])
    }

    fn consume(&mut self, b: u8) -> Result<(), ()> {
        self.skip_lws();
        if self.s.as_bytes().get(self.i) != Some(&b) {
            return Err(());
        }
        self.i += 1;
        self.skip_lws();
        Ok(())
    }
}

/// Splits and checks one Via value.
pub(crate) fn scan(s: &str) -> Result<ViaRef<'_>, ()> {
    let mut c = Cursor { s, i: 0 };
    c.skip_lws();
    let protocol = c.token()?;
    c.consume(b'/')?;
    let version = c.token()?;
    c.consume(b'/')?;
    let transport = c.token()?;
    if !protocol.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return Err(());
    }
    let before = c.i;
    c.skip_lws();
    if c.i == before {
        return Err(());
    }
    let bytes = s.as_bytes();
    let host_start = c.i;
    if bytes.get(c.i) == Some(&b'[') {
        let close = find(&bytes[c.i..], b']').ok_or(())?;
        c.i += close + 1;
        if !is_valid_host(&s[host_start..c.i]) {
            return Err(());
        }
    } else {
        // The host runs to ':', ';', ',' or whitespace (none of them host characters) and must
        // be non-empty host characters throughout: one pass checks both.
        while c.i < bytes.len() && is_host_char(bytes[c.i]) {
            c.i += 1;
        }
        let ends_well = match bytes.get(c.i) {
            None => true,
            Some(&b) => matches!(b, b':' | b';' | b',') || is_lws(b),
        };
        if c.i == host_start || !ends_well {
            return Err(());
        }
    }
    let host = &s[host_start..c.i];
    c.skip_lws();
    let mut port = None;
    if bytes.get(c.i) == Some(&b':') {
        c.i += 1;
        c.skip_lws();
        let start = c.i;
        while c.i < bytes.len() && bytes[c.i].is_ascii_digit() {
            c.i += 1;
        }
        let digits = &s[start..c.i];
        if digits.is_empty() || digits.len() > 5 {
            return Err(());
        }
        port = Some(digits.parse::<u16>().map_err(|_| ())?);
    }
    let params = &s[c.i..];
    check_params(params)?;
    Ok(ViaRef {
        transport,
        host,
        port,
        params,
    })
}

impl Via {
    /// Creates a Via with the given transport and sent-by and a `branch` parameter.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Self {
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            params: vec![("branch".to_owned(), Some(branch.to_owned()))],
        }
    }

    pub(crate) fn from_ref(r: &ViaRef<'_>) -> Result<Self, ()> {
        Ok(Via {
            transport: r.transport.to_ascii_uppercase(),
            host: r.host.to_owned(),
            port: r.port,
            params: owned_params(r.params)?,
        })
    }

    /// A parameter by case-insensitive name: `None` if absent, `Some(None)` if valueless.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The `branch` parameter (transaction identifier), if present.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The branch when it is an RFC 3261 transaction identifier: it starts with the magic
    /// cookie and has something after it (RFC 4475 §3.2.1 shows a bare cookie, which is not).
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.branch()
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter, if present.
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// The `rport` parameter (RFC 3581): `None` if absent, `Some(None)` when the client asked
    /// for it without a value, `Some(Some(port))` once filled in. A malformed value reads as
    /// `Some(None)`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// Sets the `received` parameter to the packet's source address (IPv6 is written in
    /// brackets, RFC 5118 §4.5).
    pub fn set_received(&mut self, addr: impl fmt::Display) {
        let text = addr.to_string();
        let value = if text.contains(':') && !text.starts_with('[') {
            format!("[{text}]")
        } else {
            text
        };
        set_param(&mut self.params, "received", Some(value));
    }

    /// Sets the `rport` parameter to the packet's source port.
    pub fn set_rport(&mut self, port: u16) {
        set_param(&mut self.params, "rport", Some(port.to_string()));
    }

    /// The sent-by as `host[:port]`.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

impl FromStr for Via {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let r = scan(s).map_err(|_| ParseError::invalid(HeaderName::Via))?;
        Via::from_ref(&r).map_err(|_| ParseError::invalid(HeaderName::Via))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The Via check as it was before the host was checked in the same pass (pins equivalence).
    fn reference_scan(s: &str) -> Result<ViaRef<'_>, ()> {
        let mut c = Cursor { s, i: 0 };
        c.skip_lws();
        let protocol = c.token()?;
        c.consume(b'/')?;
        let version = c.token()?;
        c.consume(b'/')?;
        let transport = c.token()?;
        if !protocol.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(());
        }
        let before = c.i;
        c.skip_lws();
        if c.i == before {
            return Err(());
        }
        let bytes = s.as_bytes();
        let host_start = c.i;
        if bytes.get(c.i) == Some(&b'[') {
            let close = memchr::memchr(b']', &bytes[c.i..]).ok_or(())?;
            c.i += close + 1;
        } else {
            while c.i < bytes.len()
                && !matches!(bytes[c.i], b':' | b';' | b',')
                && !is_lws(bytes[c.i])
            {
                c.i += 1;
            }
        }
        let host = &s[host_start..c.i];
        if !is_valid_host(host) {
            return Err(());
        }
        c.skip_lws();
        let mut port = None;
        if bytes.get(c.i) == Some(&b':') {
            c.i += 1;
            c.skip_lws();
            let start = c.i;
            while c.i < bytes.len() && bytes[c.i].is_ascii_digit() {
                c.i += 1;
            }
            let digits = &s[start..c.i];
            if digits.is_empty() || digits.len() > 5 {
                return Err(());
            }
            port = Some(digits.parse::<u16>().map_err(|_| ())?);
        }
        let params = &s[c.i..];
        check_params(params)?;
        Ok(ViaRef {
            transport,
            host,
            port,
            params,
        })
    }

    fn outcome(r: Result<ViaRef<'_>, ()>) -> Option<(&str, &str, Option<u16>, &str)> {
        r.ok().map(|v| (v.transport, v.host, v.port, v.params))
    }

    proptest! {
        #[test]
        fn via_check_matches_the_reference(rest in "[a1.:;,= \t\\[\\]_@-]{0,14}") {
            let value = format!("SIP/2.0/UDP {rest}");
            prop_assert_eq!(outcome(scan(&value)), outcome(reference_scan(&value)));
            prop_assert_eq!(outcome(scan(&rest)), outcome(reference_scan(&rest)));
        }
    }
}
