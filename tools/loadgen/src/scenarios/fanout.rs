//! `fanout`: one publisher, N watchers of it.
//!
//! 1. The publisher PUBLISHes its initial document (sequence 0).
//! 2. Each watcher SUBSCRIBEs in its own dialog (at most `max_inflight` at once),
//!    and every dialog must show sequence 0.
//! 3. The publisher modifies its publication (SIP-If-Match) `changes` times,
//!    paced or back to back, each document carrying its sequence number and
//!    send time.
//! 4. The watchers settle on the last change, unsubscribe, and get their
//!    terminating NOTIFYs; the publication is removed.
//!
//! Per change it measures the time until every watcher had it (or a later
//! change); per NOTIFY the PUBLISH → NOTIFY latency.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{bounded, describe, succeeded, Bed, Common, ScenarioError};
use crate::clock::Clock;
use crate::marker::{self, Marker};
use crate::report::{DeliveryReport, Report};
use crate::stats::median_and_max;
use crate::users::User;

/// Settings of the fan-out scenario.
#[derive(Clone, Debug)]
pub struct Fanout {
    /// Shared settings.
    pub common: Common,
    /// Watchers (dialogs).
    pub watchers: usize,
    /// Changes published after the initial document.
    pub changes: u64,
    /// Time between two changes; `None` publishes each as soon as the previous is
    /// answered (burst).
    pub pace: Option<Duration>,
    /// Expires of the publication.
    pub publish_expires: u32,
    /// Where the publisher sends (another edge of the same cluster, say); the target
    /// when `None`.
    pub publisher_target: Option<std::net::SocketAddr>,
}

/// Runs the scenario: `users[0]` publishes, the others watch (cycled when there are
/// fewer users than watchers; with a single user it watches itself).
pub async fn run(config: &Fanout, users: Vec<User>, clock: Clock) -> Result<Report, ScenarioError> {
    let Some(publisher_user) = users.first().cloned() else {
        return Err(ScenarioError::Config("no users".into()));
    };
    if config.watchers == 0 {
        return Err(ScenarioError::Config(
            "--watchers must be at least 1".into(),
        ));
    }
    let bed = Bed::new(&config.common, clock, 1)?;
    let sockets = config.common.sockets;
    // The publisher has a socket of its own, so its answers never queue behind NOTIFYs.
    let publisher = bed.agent_to(
        publisher_user.clone(),
        sockets,
        config.publisher_target.unwrap_or(config.common.target),
    )?;
    let watcher_pool: &[User] = if users.len() > 1 { &users[1..] } else { &users };
    let mut agents = Vec::with_capacity(config.watchers);
    let mut names = Vec::with_capacity(config.watchers);
    for i in 0..config.watchers {
        let user = watcher_pool[i % watcher_pool.len()].clone();
        names.push(user.aor());
        agents.push(Arc::new(bed.agent(user, i % sockets)?));
    }

    let setup_start = Instant::now();
    let mut publication = publisher.publication();
    let aor = publisher_user.aor();
    let document = |seq: u64| {
        let marker = Marker {
            run: bed.run.clone(),
            seq,
            sent_ns: clock.now_ns(),
        };
        bed.record_send(&aor, seq, marker.sent_ns);
        (marker.sent_ns, marker::document(&aor, "loadgen", &marker))
    };
    let (_, initial) = document(0);
    let outcome = publisher
        .publish(&mut publication, Some(initial), config.publish_expires)
        .await;
    if !succeeded(&outcome) {
        return Err(ScenarioError::Setup(format!(
            "the initial PUBLISH of {aor} failed: {}",
            describe(&outcome)
        )));
    }
    eprintln!("  {} watchers subscribing to {aor}", config.watchers);
    let expires = config.common.subscribe_expires;
    let jobs = agents.iter().enumerate().map(|(i, agent)| {
        let agent = agent.clone();
        let table = bed.table.clone();
        let presentity = publisher_user.clone();
        async move {
            let Ok(mut subscription) = agent.subscription(&presentity, i) else {
                return;
            };
            let request = agent.subscribe_request(&mut subscription, expires);
            let call_id = subscription.call_id.clone();
            table.insert(subscription);
            let outcome = agent.send(&request).await;
            table.subscribed(&call_id, &outcome);
        }
    });
    bounded(&bed, jobs).await;
    let accepted = bed.table.count(|s| s.accepted);
    let ready = bed
        .wait_until(config.common.settle, |t| {
            t.count(|s| s.accepted && s.check.current() == Some(0)) == accepted
        })
        .await;
    eprintln!(
        "  {accepted} of {} subscriptions accepted{}",
        config.watchers,
        if ready {
            ", all showing the initial state"
        } else {
            ", not all showing the initial state"
        }
    );
    let setup = setup_start.elapsed();

    let load_start = Instant::now();
    let mut sends = vec![0u64; config.changes as usize + 1];
    let mut confirmed = 0u64;
    let mut next = Instant::now();
    for seq in 1..=config.changes {
        if let Some(pace) = config.pace {
            tokio::time::sleep_until(next).await;
            next += pace;
        }
        let (sent_ns, body) = document(seq);
        sends[seq as usize] = sent_ns;
        let outcome = publisher
            .publish(&mut publication, Some(body), config.publish_expires)
            .await;
        if succeeded(&outcome) {
            confirmed = seq;
        } else {
            eprintln!("  change {seq}: PUBLISH failed: {}", describe(&outcome));
        }
    }
    let load = load_start.elapsed();
    eprintln!(
        "  {} changes published in {:.2} s",
        config.changes,
        load.as_secs_f64()
    );

    let teardown_start = Instant::now();
    let final_range = confirmed..=config.changes;
    bed.finish(&agents, |_| Some(final_range.clone())).await;
    let delivery = delivery(&bed, &sends);
    let _ = publisher.publish(&mut publication, None, 0).await;
    let teardown = teardown_start.elapsed();

    let settings = json!({
        "watchers": config.watchers,
        "changes": config.changes,
        "pace_ms": config.pace.map(|p| p.as_millis() as u64),
        "burst": config.pace.is_none(),
        "sockets": sockets,
        "subscribe_expires": expires,
        "publish_expires": config.publish_expires,
        "max_inflight": config.common.max_inflight,
        "publisher": aor,
        "publisher_target": config.publisher_target.map(|t| t.to_string()),
    });
    let mut report = bed.report("fanout", settings, [setup, load, teardown], &names);
    report.delivery = Some(delivery);
    Ok(report)
}

/// Per change, the time from its PUBLISH until every accepted dialog had it or a later
/// change.
fn delivery(bed: &Bed, sends: &[u64]) -> DeliveryReport {
    let changes = sends.len().saturating_sub(1);
    let mut worst: Vec<Option<u64>> = vec![Some(0); changes];
    bed.table.for_each(|s| {
        if !s.accepted {
            return;
        }
        for (i, slot) in worst.iter_mut().enumerate() {
            let seq = i as u64 + 1;
            *slot = match (*slot, s.first_arrival_from(seq)) {
                (Some(w), Some(at)) => Some(w.max(at.saturating_sub(sends[i + 1]))),
                _ => None,
            };
        }
    });
    let complete: Vec<u64> = worst.iter().flatten().copied().collect();
    let (median, max) = median_and_max(&complete).unwrap_or((0.0, 0.0));
    DeliveryReport {
        changes: changes as u64,
        complete: complete.len() as u64,
        all_watchers_median_ms: median,
        all_watchers_max_ms: max,
        per_change_ms: worst.iter().map(|w| w.map(|ns| ns as f64 / 1e6)).collect(),
    }
}
