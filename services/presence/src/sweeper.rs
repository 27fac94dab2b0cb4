//! Expiry of publications and subscriptions, driven by the backend's
//! schedules (never a scan). Any number of replicas may sweep at once: every
//! removal is a compare-and-swap or a conditional take, so each expiry is
//! acted on — re-composed, announced, NOTIFYed — exactly once.

use std::time::Duration;

use store::Schedule;

use crate::{now_ms, Compositor, Subscriptions};

const BATCH: usize = 256;

/// Runs forever, sweeping every `interval`; errors are logged and retried.
pub async fn run(compositor: Compositor, subscriptions: Subscriptions, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&compositor, &subscriptions).await {
            tracing::warn!(error = %e, "presence sweep failed; retrying at next pass");
        }
    }
}

/// One pass over both schedules. Returns (publications expired, subscriptions ended).
pub async fn sweep_once(
    compositor: &Compositor,
    subscriptions: &Subscriptions,
) -> Result<(usize, usize), crate::PublishError> {
    let now = now_ms();
    let backend = compositor.backend();
    let mut publications = 0;
    for (presentity, _) in backend.due(Schedule::Publications, now, BATCH).await? {
        if let Some(version) = compositor.expire(&presentity, now).await? {
            tracing::info!(%presentity, version, "expired publication removed");
            publications += 1;
        }
    }
    let mut ended = 0;
    for (member, _) in backend.due(Schedule::Subscriptions, now, BATCH).await? {
        if subscriptions.expire(&member, now).await? {
            tracing::info!(subscription = %member.replace('\n', " "), "subscription expired");
            ended += 1;
        }
    }
    Ok((publications, ended))
}
