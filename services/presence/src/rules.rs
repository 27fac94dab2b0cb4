//! Who may watch a presentity (RFC 5025's semantics, kept as plain data):
//! per-presentity rules by watcher identity and by domain, over a
//! service-wide default policy.
//!
//! A decision is one of four actions:
//!
//! * `allow` — the subscription is active and gets the presentity's state;
//! * `block` — the SUBSCRIBE is refused (`403`);
//! * `polite-block` — the subscription is active but only ever sees a
//!   neutral `closed` document, so the watcher cannot tell it was blocked;
//! * `confirm` — the subscription is `pending` until the presentity (its own
//!   client through `presence.winfo`, or an application over gRPC) approves
//!   or rejects the watcher.
//!
//! Precedence, most specific first: the watcher's own rule, then a rule for
//! the watcher's domain, then the presentity's default, then the service's
//! policy. A presentity always sees itself.
//!
//! The rules of a presentity are one record (`Kind::Rules`), changed only by
//! compare-and-swap, so two administrators editing at once never lose an
//! edit. Applying a change to live subscriptions is [`crate::Subscriptions`]'s
//! job.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use store::{Backend, Key, Kind, StoreError};

/// What to do with one watcher's subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Allow,
    Block,
    PoliteBlock,
    Confirm,
}

impl Action {
    /// The configuration and API name: `allow`, `block`, `polite-block`, `confirm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::PoliteBlock => "polite-block",
            Action::Confirm => "confirm",
        }
    }

    /// Parses an API or configuration name (`polite_block` is accepted too).
    pub fn parse(name: &str) -> Option<Action> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "allow" => Some(Action::Allow),
            "block" => Some(Action::Block),
            "polite-block" => Some(Action::PoliteBlock),
            "confirm" => Some(Action::Confirm),
            _ => None,
        }
    }
}

/// The service-wide default, used where a presentity has no rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Every watcher is allowed.
    Allow,
    /// Watchers of the presentity's own domain are allowed, others must be
    /// confirmed (the usual enterprise setting, and the default).
    SameDomain,
    /// Every watcher must be confirmed.
    Confirm,
}

impl DefaultPolicy {
    pub fn parse(name: &str) -> Option<DefaultPolicy> {
        match name.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(DefaultPolicy::Allow),
            "same-domain" | "same_domain" => Some(DefaultPolicy::SameDomain),
            "confirm" => Some(DefaultPolicy::Confirm),
            _ => None,
        }
    }
}

/// The rules of one presentity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// What applies to watchers no other rule names; `None` leaves it to the
    /// service's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Action>,
    /// By watcher address-of-record (`bob@example.com`).
    #[serde(default)]
    pub watchers: BTreeMap<String, Action>,
    /// By watcher domain (`example.com`).
    #[serde(default)]
    pub domains: BTreeMap<String, Action>,
}

fn domain_of(aor: &str) -> &str {
    aor.rsplit_once('@').map_or(aor, |(_, domain)| domain)
}

/// Normalises an address-of-record as rules compare them: without scheme,
/// lower-case domain.
pub fn normalise(aor: &str) -> String {
    let bare = aor
        .trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("pres:");
    match bare.rsplit_once('@') {
        Some((user, domain)) => format!("{user}@{}", domain.to_ascii_lowercase()),
        None => bare.to_ascii_lowercase(),
    }
}

impl RuleSet {
    /// The action for `watcher` watching `presentity`.
    pub fn decide(&self, policy: DefaultPolicy, presentity: &str, watcher: &str) -> Action {
        let watcher = normalise(watcher);
        let presentity = normalise(presentity);
        if watcher == presentity {
            return Action::Allow;
        }
        if let Some(action) = self.watchers.get(&watcher) {
            return *action;
        }
        let domain = domain_of(&watcher);
        if let Some(action) = self.domains.get(domain) {
            return *action;
        }
        if let Some(action) = self.default {
            return action;
        }
        match policy {
            DefaultPolicy::Allow => Action::Allow,
            DefaultPolicy::Confirm => Action::Confirm,
            DefaultPolicy::SameDomain if domain == domain_of(&presentity) => Action::Allow,
            DefaultPolicy::SameDomain => Action::Confirm,
        }
    }
}

/// Why rules could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("concurrent rule changes to {0} did not settle")]
    Contended(String),
}

const CAS_ATTEMPTS: usize = 16;

fn key(presentity: &str) -> Key {
    Key::new(Kind::Rules, presentity)
}

/// Reads the rules of a presentity (empty when none were ever set).
pub async fn load(backend: &dyn Backend, presentity: &str) -> Result<RuleSet, StoreError> {
    Ok(load_with_rev(backend, presentity).await?.1)
}

async fn load_with_rev(
    backend: &dyn Backend,
    presentity: &str,
) -> Result<(u64, RuleSet), StoreError> {
    match backend.get_record(&key(presentity)).await? {
        None => Ok((0, RuleSet::default())),
        Some(record) => match serde_json::from_slice(&record.value) {
            Ok(rules) => Ok((record.rev, rules)),
            Err(e) => {
                // An unreadable rule set must not open the presentity to
                // everyone: it reads as "no rules", i.e. the service policy,
                // and the next change overwrites it.
                tracing::warn!(%presentity, error = %e, "unreadable rules; using the service policy");
                Ok((record.rev, RuleSet::default()))
            }
        },
    }
}

/// Changes the rules of a presentity with `change`, atomically; returns the
/// rules as stored.
pub async fn update(
    backend: &dyn Backend,
    presentity: &str,
    change: impl Fn(&mut RuleSet),
) -> Result<RuleSet, RulesError> {
    for _ in 0..CAS_ATTEMPTS {
        let (rev, mut rules) = load_with_rev(backend, presentity).await?;
        change(&mut rules);
        let value = serde_json::to_vec(&rules)
            .map(Bytes::from)
            .map_err(|e| StoreError::Protocol(e.to_string()))?;
        if backend
            .cas_record(&key(presentity), rev, Some(value), None, None)
            .await?
            .is_some()
        {
            return Ok(rules);
        }
    }
    Err(RulesError::Contended(presentity.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_rule_wins() {
        let mut rules = RuleSet::default();
        rules.domains.insert("other.org".into(), Action::Block);
        rules
            .watchers
            .insert("friend@other.org".into(), Action::Allow);
        let p = "alice@example.com";
        let policy = DefaultPolicy::SameDomain;
        assert_eq!(rules.decide(policy, p, "friend@other.org"), Action::Allow);
        assert_eq!(
            rules.decide(policy, p, "sip:enemy@OTHER.org"),
            Action::Block
        );
        assert_eq!(rules.decide(policy, p, "bob@example.com"), Action::Allow);
        assert_eq!(rules.decide(policy, p, "carol@third.net"), Action::Confirm);
        assert_eq!(
            rules.decide(DefaultPolicy::Allow, p, "carol@third.net"),
            Action::Allow
        );
        rules.default = Some(Action::PoliteBlock);
        assert_eq!(
            rules.decide(policy, p, "bob@example.com"),
            Action::PoliteBlock
        );
        assert_eq!(rules.decide(policy, p, "alice@example.com"), Action::Allow);
    }

    #[test]
    fn action_names_round_trip() {
        for action in [
            Action::Allow,
            Action::Block,
            Action::PoliteBlock,
            Action::Confirm,
        ] {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("polite_block"), Some(Action::PoliteBlock));
        assert_eq!(Action::parse("maybe"), None);
    }
}
