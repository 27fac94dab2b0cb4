//! The `WWW-Authenticate: Bearer` challenge of a 401/403, and the quoted-string syntax it shares with
//! Digest challenges.

use super::BearerValidator;
use crate::error::AuthError;

/// Parameters of a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3, RFC 8898 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The protection realm.
    pub realm: String,
    /// Scope the request needs, when known.
    pub scope: Option<String>,
    /// Authorization server the client should obtain a token from (RFC 8898).
    pub authz_server: Option<String>,
    /// RFC 6750 error code: `invalid_request`, `invalid_token` or `insufficient_scope`.
    pub error: Option<&'static str>,
    /// Human-readable error text; fixed per error kind, never echoing request data.
    pub error_description: Option<String>,
}

impl BearerChallenge {
    /// The challenge as a `WWW-Authenticate` header value, e.g.
    /// `Bearer realm="sip", error="invalid_token", error_description="the access token expired"`.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str("Bearer realm=");
        push_quoted(&mut out, &self.realm);
        let optional = [
            ("scope", self.scope.as_deref()),
            ("authz_server", self.authz_server.as_deref()),
            ("error", self.error),
            ("error_description", self.error_description.as_deref()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                out.push_str(", ");
                out.push_str(name);
                out.push('=');
                push_quoted(&mut out, value);
            }
        }
        out
    }
}

/// Appends `value` as a quoted-string: quotes and backslashes escaped, control characters dropped.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

impl BearerValidator {
    /// The challenge to send with a 401/403 response. With an error, it carries the RFC 6750 error code and
    /// description, and for insufficient scope the scope required.
    pub fn challenge(&self, error: Option<&AuthError>) -> BearerChallenge {
        let config = &self.inner.config;
        let code = error.and_then(AuthError::oauth_error_code);
        BearerChallenge {
            realm: config.realm.clone(),
            scope: match error {
                Some(AuthError::InsufficientScope { required }) => Some(required.clone()),
                _ => None,
            },
            authz_server: config.authz_server.clone(),
            error: code,
            error_description: error
                .filter(|_| code.is_some())
                .map(|e| e.public_description().to_owned()),
        }
    }

    /// Like [`BearerValidator::challenge`], but also names the scope `method` requires, so the client can
    /// ask for a suitable token straight away.
    pub fn challenge_for_method(&self, method: &str, error: Option<&AuthError>) -> BearerChallenge {
        let mut challenge = self.challenge(error);
        if challenge.scope.is_none() {
            challenge.scope = self
                .inner
                .config
                .scopes
                .required_scope(method)
                .map(str::to_owned);
        }
        challenge
    }
}
