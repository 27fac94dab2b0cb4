//! The Subscription-State header field (RFC 6665 §8.2.3).

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{is_token, owned_params, parse_u32, trim, unquote, write_params};
use crate::header_name::HeaderName;

/// The subscription state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubState {
    /// `active`
    Active,
    /// `pending`
    Pending,
    /// `terminated`
    Terminated,
    /// An extension state, as written.
    Other(String),
}

impl SubState {
    /// The state token.
    pub fn as_str(&self) -> &str {
        match self {
            SubState::Active => "active",
            SubState::Pending => "pending",
            SubState::Terminated => "terminated",
            SubState::Other(s) => s,
        }
    }
}

/// `Subscription-State: <state>;expires=..;reason=..;retry-after=..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    /// The state.
    pub state: SubState,
    /// Remaining subscription duration in seconds.
    pub expires: Option<u32>,
    /// Why the subscription ended (`deactivated`, `timeout`, `noresource`, ...).
    pub reason: Option<String>,
    /// Seconds before the subscriber may retry.
    pub retry_after: Option<u32>,
    /// Any other parameters in order.
    pub params: Vec<(String, Option<String>)>,
}

impl SubscriptionState {
    /// A state with no parameters.
    pub fn new(state: SubState) -> Self {
        SubscriptionState {
            state,
            expires: None,
            reason: None,
            retry_after: None,
            params: Vec::new(),
        }
    }

    /// `active;expires=<secs>`.
    pub fn active(expires: u32) -> Self {
        SubscriptionState {
            expires: Some(expires),
            ..SubscriptionState::new(SubState::Active)
        }
    }

    /// `pending;expires=<secs>`.
    pub fn pending(expires: u32) -> Self {
        SubscriptionState {
            expires: Some(expires),
            ..SubscriptionState::new(SubState::Pending)
        }
    }

    /// `terminated;reason=<reason>`.
    pub fn terminated(reason: &str) -> Self {
        SubscriptionState {
            reason: Some(reason.to_owned()),
            ..SubscriptionState::new(SubState::Terminated)
        }
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.as_str())?;
        if let Some(reason) = &self.reason {
            write!(f, ";reason={reason}")?;
        }
        if let Some(expires) = self.expires {
            write!(f, ";expires={expires}")?;
        }
        if let Some(retry) = self.retry_after {
            write!(f, ";retry-after={retry}")?;
        }
        write_params(f, &self.params)
    }
}

impl FromStr for SubscriptionState {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::invalid(HeaderName::SubscriptionState);
        let s = trim(s);
        let end = s.find([';', ' ', '\t']).unwrap_or(s.len());
        let token = &s[..end];
        if !is_token(token) {
            return Err(err());
        }
        let state = if token.eq_ignore_ascii_case("active") {
            SubState::Active
        } else if token.eq_ignore_ascii_case("pending") {
            SubState::Pending
        } else if token.eq_ignore_ascii_case("terminated") {
            SubState::Terminated
        } else {
            SubState::Other(token.to_owned())
        };
        let mut out = SubscriptionState::new(state);
        for (name, value) in owned_params(&s[end..]).map_err(|_| err())? {
            if name.eq_ignore_ascii_case("expires") {
                out.expires = Some(value.as_deref().and_then(parse_u32).ok_or_else(err)?);
            } else if name.eq_ignore_ascii_case("retry-after") {
                out.retry_after = Some(value.as_deref().and_then(parse_u32).ok_or_else(err)?);
            } else if name.eq_ignore_ascii_case("reason") {
                out.reason = Some(unquote(value.as_deref().ok_or_else(err)?));
            } else {
                out.params.push((name, value));
            }
        }
        Ok(out)
    }
}
