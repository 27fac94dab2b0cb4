//! Which OAuth scope each SIP method requires.

use std::collections::BTreeMap;

use crate::error::AuthError;
use crate::identity::Identity;

/// Scope required per SIP method.
///
/// The default requires `sip:register` for REGISTER and `sip:presence` for PUBLISH and SUBSCRIBE; other
/// methods need no particular scope (a valid token suffices) unless [`ScopePolicy::default_scope`] says
/// otherwise. [`ScopePolicy::disabled`] turns scope checks off entirely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    /// When false, [`ScopePolicy::check`] accepts every identity for every method.
    pub enabled: bool,
    /// Required scope keyed by upper-case SIP method name.
    pub required: BTreeMap<String, String>,
    /// Scope required by methods absent from `required`; `None` means no scope is needed for them.
    pub default_scope: Option<String>,
}

impl Default for ScopePolicy {
    fn default() -> Self {
        ScopePolicy::empty()
            .with("REGISTER", "sip:register")
            .with("PUBLISH", "sip:presence")
            .with("SUBSCRIBE", "sip:presence")
    }
}

impl ScopePolicy {
    /// A policy that checks nothing.
    pub fn disabled() -> Self {
        ScopePolicy {
            enabled: false,
            required: BTreeMap::new(),
            default_scope: None,
        }
    }

    /// An enabled policy with no method requiring any scope yet; add rules with [`ScopePolicy::with`].
    pub fn empty() -> Self {
        ScopePolicy {
            enabled: true,
            required: BTreeMap::new(),
            default_scope: None,
        }
    }

    /// Requires `scope` for `method` (case-insensitive method name).
    pub fn with(mut self, method: &str, scope: &str) -> Self {
        self.required
            .insert(method.to_ascii_uppercase(), scope.to_owned());
        self
    }

    /// The scope `method` requires, if any.
    pub fn required_scope(&self, method: &str) -> Option<&str> {
        if !self.enabled {
            return None;
        }
        let found = if method.bytes().any(|b| b.is_ascii_lowercase()) {
            self.required.get(&method.to_ascii_uppercase())
        } else {
            self.required.get(method)
        };
        found.or(self.default_scope.as_ref()).map(String::as_str)
    }

    /// Accepts the identity for `method` when the policy is disabled, the method needs no scope, or the
    /// identity holds the required scope. Identities established without OAuth (Digest, trusted peers)
    /// carry no scopes and are not subject to scope checks.
    pub fn check(&self, identity: &Identity, method: &str) -> Result<(), AuthError> {
        if identity.method != crate::identity::AuthMethod::Bearer {
            return Ok(());
        }
        match self.required_scope(method) {
            None => Ok(()),
            Some(required) if identity.has_scope(required) => Ok(()),
            Some(required) => Err(AuthError::InsufficientScope {
                required: required.to_owned(),
            }),
        }
    }
}
