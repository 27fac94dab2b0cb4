//! Credentials (Authorization, Proxy-Authorization) and challenges (WWW-Authenticate,
//! Proxy-Authenticate): Bearer per RFC 8898 / RFC 6750, Digest per RFC 3261 §22.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{is_token, quote, split_lws, trim, unquote, CommaSplit};
use crate::header_name::HeaderName;

/// Credentials from an Authorization or Proxy-Authorization header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// `Bearer <token68>` (RFC 8898): the access token.
    Bearer(String),
    /// `Digest k=v, ...`: the parameters in order, values unquoted.
    Digest(Vec<(String, String)>),
    /// Any other scheme: its name and the rest of the value verbatim.
    Other {
        /// Scheme name as written.
        scheme: String,
        /// Everything after the scheme.
        raw: String,
    },
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Parses `name=value, name="value", ...` into unquoted pairs.
fn auth_params(s: &str) -> Result<Vec<(String, String)>, ()> {
    let s = trim(s);
    if s.is_empty() {
        return Ok(Vec::new());
    }
    CommaSplit::new(s)
        .map(|item| {
            let (name, value) = item.split_once('=').ok_or(())?;
            let name = trim(name);
            let value = trim(value);
            if !is_token(name) || value.is_empty() {
                return Err(());
            }
            if value.starts_with('"') {
                if !value.ends_with('"') || value.len() < 2 {
                    return Err(());
                }
            } else if !is_token(value) {
                return Err(());
            }
            Ok((name.to_owned(), unquote(value)))
        })
        .collect()
}

/// Digest parameters whose values are tokens, written without quotes.
fn digest_unquoted(name: &str) -> bool {
    ["algorithm", "qop", "nc", "stale"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

impl Authorization {
    /// The Bearer token, if these are Bearer credentials.
    pub fn bearer_token(&self) -> Option<&str> {
        match self {
            Authorization::Bearer(token) => Some(token),
            _ => None,
        }
    }

    /// A Digest parameter by case-insensitive name.
    pub fn digest_param(&self, name: &str) -> Option<&str> {
        match self {
            Authorization::Digest(params) => params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    pub(crate) fn parse_as(s: &str, header: HeaderName) -> Result<Self, ParseError> {
        let err = || ParseError::invalid(header.clone());
        let (scheme, rest) = split_lws(trim(s));
        if !is_token(scheme) {
            return Err(err());
        }
        if scheme.eq_ignore_ascii_case("Bearer") {
            if !is_token68(rest) {
                return Err(err());
            }
            Ok(Authorization::Bearer(rest.to_owned()))
        } else if scheme.eq_ignore_ascii_case("Digest") {
            Ok(Authorization::Digest(auth_params(rest).map_err(|_| err())?))
        } else {
            Ok(Authorization::Other {
                scheme: scheme.to_owned(),
                raw: rest.to_owned(),
            })
        }
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorization::Bearer(token) => write!(f, "Bearer {token}"),
            Authorization::Digest(params) => {
                f.write_str("Digest ")?;
                for (i, (name, value)) in params.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if digest_unquoted(name) && is_token(value) {
                        write!(f, "{name}={value}")?;
                    } else {
                        write!(f, "{name}={}", quote(value))?;
                    }
                }
                Ok(())
            }
            Authorization::Other { scheme, raw } => write!(f, "{scheme} {raw}"),
        }
    }
}

impl FromStr for Authorization {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Authorization::parse_as(s, HeaderName::Authorization)
    }
}

/// A challenge for a WWW-Authenticate or Proxy-Authenticate header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=.., scope=.., authz_server=.., error=..` (RFC 8898 §2.3, RFC 6750 §3).
    Bearer {
        /// Protection realm.
        realm: String,
        /// Space-separated scopes the resource needs.
        scope: Option<String>,
        /// URL of the authorization server (RFC 8898).
        authz_server: Option<String>,
        /// Error code (`invalid_token`, `insufficient_scope`, ...).
        error: Option<String>,
        /// Human-readable error detail.
        error_description: Option<String>,
    },
    /// `Digest realm=.., nonce=.., ...` (RFC 3261 §22.4).
    Digest {
        /// Protection realm.
        realm: String,
        /// Server nonce.
        nonce: String,
        /// Opaque value to be echoed.
        opaque: Option<String>,
        /// Algorithm (`MD5`, `SHA-256`, ...).
        algorithm: Option<String>,
        /// Quality of protection options (`auth`).
        qop: Option<String>,
        /// Whether the previous nonce was merely stale.
        stale: bool,
    },
}

impl fmt::Display for Challenge {
    /// The header value, parameters quoted as the RFCs show them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Challenge::Bearer {
                realm,
                scope,
                authz_server,
                error,
                error_description,
            } => {
                write!(f, "Bearer realm={}", quote(realm))?;
                for (name, value) in [
                    ("scope", scope),
                    ("authz_server", authz_server),
                    ("error", error),
                    ("error_description", error_description),
                ] {
                    if let Some(v) = value {
                        write!(f, ", {name}={}", quote(v))?;
                    }
                }
                Ok(())
            }
            Challenge::Digest {
                realm,
                nonce,
                opaque,
                algorithm,
                qop,
                stale,
            } => {
                write!(f, "Digest realm={}, nonce={}", quote(realm), quote(nonce))?;
                if let Some(v) = opaque {
                    write!(f, ", opaque={}", quote(v))?;
                }
                if let Some(v) = algorithm {
                    write!(f, ", algorithm={v}")?;
                }
                if let Some(v) = qop {
                    write!(f, ", qop={}", quote(v))?;
                }
                if *stale {
                    f.write_str(", stale=TRUE")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Challenge {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::invalid(HeaderName::WwwAuthenticate);
        let (scheme, rest) = split_lws(trim(s));
        let params = auth_params(rest).map_err(|_| err())?;
        let take = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("Bearer") {
            Ok(Challenge::Bearer {
                realm: take("realm").unwrap_or_default(),
                scope: take("scope"),
                authz_server: take("authz_server"),
                error: take("error"),
                error_description: take("error_description"),
            })
        } else if scheme.eq_ignore_ascii_case("Digest") {
            Ok(Challenge::Digest {
                realm: take("realm").ok_or_else(err)?,
                nonce: take("nonce").ok_or_else(err)?,
                opaque: take("opaque"),
                algorithm: take("algorithm"),
                qop: take("qop"),
                stale: take("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            })
        } else {
            Err(err())
        }
    }
}
