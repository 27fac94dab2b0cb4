//! Protobuf forms of the presence service's own types. Those the edges
//! share (dialogs, watchers) convert in the contract crate.

use bytes::Bytes;
use pidf::Basic;
use rpc::presence::v1 as pb;
use tonic::Status;

use crate::compositor::{status_name, PresenceView};
use crate::rules::{self, Action, RuleSet};
use crate::subscriptions::SubscriptionStatus;

/// Converts a composed view to its protobuf form.
pub fn state_to_pb(view: PresenceView) -> pb::PresenceState {
    pb::PresenceState {
        presentity: view.presentity,
        version: view.version,
        pidf: Bytes::from(view.pidf).to_vec(),
        basic: match view.basic {
            Basic::Open => pb::Basic::Open as i32,
            Basic::Closed => pb::Basic::Closed as i32,
        },
        status: status_name(&view.status),
        note: view.note.unwrap_or_default(),
    }
}

pub(super) fn status_to_pb(status: SubscriptionStatus) -> i32 {
    let status = match status {
        SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
        SubscriptionStatus::Pending => pb::SubscriptionStatus::Pending,
        SubscriptionStatus::Terminated => pb::SubscriptionStatus::Terminated,
    };
    status as i32
}

/// Converts a rule set to its protobuf form.
pub fn rules_to_pb(rules: RuleSet) -> pb::Rules {
    pb::Rules {
        default_action: rules
            .default
            .map(|a| a.as_str().to_string())
            .unwrap_or_default(),
        watchers: rules
            .watchers
            .into_iter()
            .map(|(k, a)| (k, a.as_str().to_string()))
            .collect(),
        domains: rules
            .domains
            .into_iter()
            .map(|(k, a)| (k, a.as_str().to_string()))
            .collect(),
    }
}

fn action(name: &str) -> Result<Action, Status> {
    Action::parse(name).ok_or_else(|| {
        Status::invalid_argument(format!(
            "unknown action {name:?}: use allow, block, polite-block or confirm"
        ))
    })
}

/// Converts protobuf rules to the plain form, refusing unknown actions.
pub fn rules_from_pb(rules: pb::Rules) -> Result<RuleSet, Status> {
    let default = match rules.default_action.trim() {
        "" => None,
        name => Some(action(name)?),
    };
    let mut set = RuleSet {
        default,
        ..RuleSet::default()
    };
    for (watcher, name) in rules.watchers {
        set.watchers
            .insert(rules::normalise(&watcher), action(&name)?);
    }
    for (domain, name) in rules.domains {
        set.domains
            .insert(domain.trim().to_ascii_lowercase(), action(&name)?);
    }
    Ok(set)
}
