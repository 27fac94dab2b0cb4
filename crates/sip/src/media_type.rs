//! Media types (Content-Type, Accept; RFC 3261 §20.1, §20.15).

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{find_param, is_token, owned_params, trim, write_params};
use crate::header_name::HeaderName;

/// `type/subtype;params`, e.g. `application/pidf+xml`. In Accept values `*` wildcards appear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// Top-level type, as written (`application`, `*`).
    pub kind: String,
    /// Subtype, as written (`pidf+xml`, `*`).
    pub subtype: String,
    /// Parameters in order (`charset`, `boundary`, `q`, ...).
    pub params: Vec<(String, Option<String>)>,
}

impl MediaType {
    /// A media type without parameters.
    pub fn new(kind: &str, subtype: &str) -> Self {
        MediaType {
            kind: kind.to_owned(),
            subtype: subtype.to_owned(),
            params: Vec::new(),
        }
    }

    /// `type/subtype` lower-cased, without parameters.
    pub fn essence(&self) -> String {
        let mut s = String::with_capacity(self.kind.len() + self.subtype.len() + 1);
        s.push_str(&self.kind.to_ascii_lowercase());
        s.push('/');
        s.push_str(&self.subtype.to_ascii_lowercase());
        s
    }

    /// Whether this media range matches `essence` (`type/subtype`, case-insensitive);
    /// `*/*` and `type/*` match as wildcards.
    pub fn matches(&self, essence: &str) -> bool {
        let Some((kind, subtype)) = essence.split_once('/') else {
            return false;
        };
        let kind_ok = self.kind == "*" || self.kind.eq_ignore_ascii_case(trim(kind));
        let sub_ok = self.subtype == "*" || self.subtype.eq_ignore_ascii_case(trim(subtype));
        kind_ok && sub_ok
    }

    /// A parameter by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.subtype)?;
        write_params(f, &self.params)
    }
}

impl FromStr for MediaType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        MediaType::parse_as(s, HeaderName::ContentType)
    }
}

impl MediaType {
    pub(crate) fn parse_as(s: &str, header: HeaderName) -> Result<Self, ParseError> {
        let err = || ParseError::invalid(header.clone());
        let s = trim(s);
        let slash = s.find('/').ok_or_else(err)?;
        let kind = trim(&s[..slash]);
        let rest = trim(&s[slash + 1..]);
        let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
        let subtype = &rest[..end];
        if !is_token(kind) || !is_token(subtype) {
            return Err(err());
        }
        Ok(MediaType {
            kind: kind.to_owned(),
            subtype: subtype.to_owned(),
            params: owned_params(&rest[end..]).map_err(|_| err())?,
        })
    }
}
