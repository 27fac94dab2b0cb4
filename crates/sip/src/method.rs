//! Request methods.

use std::fmt;
use std::str::FromStr;

use crate::error::{ErrorKind, ParseError};
use crate::grammar::is_token;

/// A SIP request method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an extension
/// method, not INVITE.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// REGISTER (RFC 3261)
    Register,
    /// PUBLISH (RFC 3903)
    Publish,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// OPTIONS (RFC 3261)
    Options,
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// CANCEL (RFC 3261)
    Cancel,
    /// BYE (RFC 3261)
    Bye,
    /// MESSAGE (RFC 3428)
    Message,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// REFER (RFC 3515)
    Refer,
    /// Any other method token, as written.
    Extension(String),
}

impl Method {
    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Register => "REGISTER",
            Method::Publish => "PUBLISH",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Options => "OPTIONS",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Extension(m) => m,
        }
    }

    /// Whether `s` names this method (exact, case-sensitive match).
    pub(crate) fn matches(&self, s: &str) -> bool {
        self.as_str() == s
    }

    /// Whether the method is one of the standard methods above rather than an extension.
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Extension(_))
    }
}

impl FromStr for Method {
    type Err = ParseError;

    /// Any `token` is a method; unknown ones become [`Method::Extension`].
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match s {
            "REGISTER" => Method::Register,
            "PUBLISH" => Method::Publish,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "OPTIONS" => Method::Options,
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "CANCEL" => Method::Cancel,
            "BYE" => Method::Bye,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "REFER" => Method::Refer,
            other if is_token(other) => Method::Extension(other.to_owned()),
            _ => return Err(ParseError::new(ErrorKind::BadMethod)),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
