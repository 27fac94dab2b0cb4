//! The Event header field (RFC 6665 §8.2.1).

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{find_param, is_token, owned_params, trim, unquote, write_params};
use crate::header_name::HeaderName;

/// `Event: <package>[.<template>]...;id=<id>;params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event package (with any template suffixes), e.g. `presence` or `presence.winfo`.
    /// Compared case-insensitively by [`Event::is`].
    pub package: String,
    /// The `id` parameter, unquoted.
    pub id: Option<String>,
    /// The other parameters in order.
    pub params: Vec<(String, Option<String>)>,
}

impl Event {
    /// An event of the given package with no parameters.
    pub fn new(package: impl Into<String>) -> Self {
        Event {
            package: package.into(),
            id: None,
            params: Vec::new(),
        }
    }

    /// Whether the package is `package` (case-insensitive, RFC 6665 §8.2.1).
    pub fn is(&self, package: &str) -> bool {
        self.package.eq_ignore_ascii_case(package)
    }

    /// A parameter other than `id`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.package)?;
        if let Some(id) = &self.id {
            write!(f, ";id={id}")?;
        }
        write_params(f, &self.params)
    }
}

impl FromStr for Event {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::invalid(HeaderName::Event);
        let s = trim(s);
        let end = s.find([';', ' ', '\t']).unwrap_or(s.len());
        let package = &s[..end];
        if !is_token(package) {
            return Err(err());
        }
        let mut params = owned_params(&s[end..]).map_err(|_| err())?;
        let id = match params
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("id"))
        {
            Some(i) => params.remove(i).1.map(|v| unquote(&v)),
            None => None,
        };
        Ok(Event {
            package: package.to_owned(),
            id,
            params,
        })
    }
}
