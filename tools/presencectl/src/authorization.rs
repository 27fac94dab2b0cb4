//! Who may watch whom: `watchers`, `rules`, `approve` and `reject`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::table::Table;
use crate::{call_error, presence, print_json, Clients};

/// Edits `rules` asks for; none means "show the rules".
#[derive(Debug, Default)]
pub struct RuleEdits {
    /// Start from no rules at all.
    pub clear: bool,
    /// New default action (`none` removes it).
    pub default: Option<String>,
    /// `AOR=ACTION` rules for watchers.
    pub watchers: Vec<String>,
    /// `DOMAIN=ACTION` rules for domains.
    pub domains: Vec<String>,
    /// Watchers or domains whose rule goes.
    pub remove: Vec<String>,
}

impl RuleEdits {
    fn is_empty(&self) -> bool {
        !self.clear
            && self.default.is_none()
            && self.watchers.is_empty()
            && self.domains.is_empty()
            && self.remove.is_empty()
    }

    fn apply(&self, rules: &mut presence::Rules) -> anyhow::Result<()> {
        if self.clear {
            *rules = presence::Rules::default();
        }
        if let Some(action) = &self.default {
            rules.default_action = if action == "none" {
                String::new()
            } else {
                action.clone()
            };
        }
        for name in &self.remove {
            rules.watchers.remove(name);
            rules.domains.remove(name);
        }
        for (pairs, map) in [
            (&self.watchers, &mut rules.watchers),
            (&self.domains, &mut rules.domains),
        ] {
            for pair in pairs {
                let Some((who, action)) = pair.split_once('=') else {
                    anyhow::bail!("{pair:?}: expected NAME=ACTION");
                };
                map.insert(who.trim().to_string(), action.trim().to_string());
            }
        }
        Ok(())
    }
}

fn watcher_json(w: &presence::Watcher) -> Value {
    json!({
        "id": w.id,
        "watcher": w.watcher,
        "status": w.status,
        "event": w.event,
        "expires_at_ms": w.expires_at_ms,
    })
}

/// `watchers PRESENTITY`: every live subscription and its status.
pub async fn watchers(clients: &Clients, presentity: String, json: bool) -> anyhow::Result<()> {
    let request = presence::ListWatchersRequest {
        presentity: presentity.clone(),
    };
    let watchers = clients
        .presence()?
        .list_watchers(clients.request(request))
        .await
        .map_err(|s| call_error("ListWatchers", s))?
        .into_inner()
        .watchers;
    if json {
        print_json(&Value::Array(watchers.iter().map(watcher_json).collect()));
        return Ok(());
    }
    let now_ms = contract::now_ms();
    let mut table = Table::new(&["WATCHER", "STATUS", "EVENT", "EXPIRES", "ID"]);
    for w in &watchers {
        table.row(vec![
            w.watcher.clone(),
            w.status.clone(),
            w.event.clone(),
            format!("{}s", w.expires_at_ms.saturating_sub(now_ms) / 1000),
            w.id.clone(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn rules_json(presentity: &str, rules: &presence::Rules, changed: u32) -> Value {
    json!({
        "presentity": presentity,
        "default": rules.default_action,
        "watchers": rules.watchers,
        "domains": rules.domains,
        "subscriptions_changed": changed,
    })
}

fn print_rules(presentity: &str, response: presence::RulesResponse, json: bool) {
    let rules = response.rules.unwrap_or_default();
    if json {
        print_json(&rules_json(
            presentity,
            &rules,
            response.subscriptions_changed,
        ));
        return;
    }
    let mut table = Table::new(&["MATCH", "WHO", "ACTION"]);
    let default = if rules.default_action.is_empty() {
        "(service policy)".to_string()
    } else {
        rules.default_action.clone()
    };
    table.row(vec!["default".into(), "*".into(), default]);
    let sorted = |map: &HashMap<String, String>| {
        let mut entries: Vec<(String, String)> =
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        entries.sort();
        entries
    };
    for (who, action) in sorted(&rules.domains) {
        table.row(vec!["domain".into(), who, action]);
    }
    for (who, action) in sorted(&rules.watchers) {
        table.row(vec!["watcher".into(), who, action]);
    }
    print!("{}", table.render());
    if response.subscriptions_changed > 0 {
        println!(
            "{} live subscription(s) moved",
            response.subscriptions_changed
        );
    }
}

/// `rules PRESENTITY [edits]`: shows the rules, or changes them (read,
/// edit, write back) and shows the result.
pub async fn rules(
    clients: &Clients,
    presentity: String,
    edits: RuleEdits,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = clients.presence()?;
    let request = presence::GetRulesRequest {
        presentity: presentity.clone(),
    };
    let current = client
        .get_rules(clients.request(request))
        .await
        .map_err(|s| call_error("GetRules", s))?
        .into_inner();
    if edits.is_empty() {
        print_rules(&presentity, current, json);
        return Ok(());
    }
    let mut rules = current.rules.unwrap_or_default();
    edits.apply(&mut rules)?;
    let request = presence::SetRulesRequest {
        presentity: presentity.clone(),
        rules: Some(rules),
    };
    let response = client
        .set_rules(clients.request(request))
        .await
        .map_err(|s| call_error("SetRules", s))?
        .into_inner();
    print_rules(&presentity, response, json);
    Ok(())
}

/// `approve` / `reject`: a rule for one watcher, applied at once.
pub async fn decide(
    clients: &Clients,
    presentity: String,
    watcher: String,
    approve: bool,
    polite: bool,
    json: bool,
) -> anyhow::Result<()> {
    let request = presence::DecideWatcherRequest {
        presentity: presentity.clone(),
        watcher,
        polite,
    };
    let mut client = clients.presence()?;
    let response = if approve {
        client
            .approve_watcher(clients.request(request))
            .await
            .map_err(|s| call_error("ApproveWatcher", s))?
    } else {
        client
            .reject_watcher(clients.request(request))
            .await
            .map_err(|s| call_error("RejectWatcher", s))?
    };
    print_rules(&presentity, response.into_inner(), json);
    Ok(())
}
