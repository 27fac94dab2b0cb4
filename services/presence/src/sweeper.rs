//! Expiry of publications and subscriptions, driven by the backend's
//! schedules (never a scan). Any number of replicas may sweep at once: each
//! claims its own batches of due members (`store::sweep`), and every removal
//! is still a compare-and-swap or a conditional take, so each expiry is
//! acted on — re-composed, announced, NOTIFYed — exactly once.
//!
//! A pass drains everything due, in bounded batches, however much that is;
//! between passes the sweeper sleeps until the next member falls due (at
//! most the sweep interval). How far behind it is, and how much it removed,
//! is in [`stats`]. Presentities and dialogs are personal data: they are
//! logged per item at debug only; info gets counts, at most once a minute.

use std::time::Duration;

use contract::now_ms;
use store::sweep::{self, Drained, Handled, Report, SweepSnapshot, SweepStats};
use store::Schedule;

use crate::{Compositor, Subscriptions};

static PUBLICATIONS: SweepStats = SweepStats::new();
static SUBSCRIPTIONS: SweepStats = SweepStats::new();

/// The sweep statistics of this process's presence sweeper, both schedules
/// together: the larger backlog age, the sums of the counters. A
/// subscription that ends counts as removed.
pub fn stats() -> SweepSnapshot {
    PUBLICATIONS.snapshot().combine(SUBSCRIPTIONS.snapshot())
}

/// The statistics of publication expiry alone.
pub fn publication_stats() -> SweepSnapshot {
    PUBLICATIONS.snapshot()
}

/// The statistics of subscription expiry alone.
pub fn subscription_stats() -> SweepSnapshot {
    SUBSCRIPTIONS.snapshot()
}

/// Runs forever: a pass, then a pause until the next member falls due (at
/// most `interval`); errors are logged and retried.
pub async fn run(compositor: Compositor, subscriptions: Subscriptions, interval: Duration) {
    let mut report: Report<(Drained, Drained)> = Report::default();
    loop {
        match sweep_passes(&compositor, &subscriptions).await {
            Ok((p, s)) => {
                report.window.0.add(p);
                report.window.1.add(s);
            }
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "presence sweep failed; retrying at next pass");
            }
        }
        if let Some(((p, s), errors)) = report.due() {
            tracing::info!(
                publications_expired = p.removed,
                subscriptions_ended = s.removed,
                failed = p.failed + s.failed,
                failed_passes = errors,
                max_backlog_ms = p.oldest_due_age_ms.max(s.oldest_due_age_ms),
                "presence expiry in the last minute"
            );
        }
        let pause = sweep::pause(
            compositor.backend().as_ref(),
            &[Schedule::Publications, Schedule::Subscriptions],
            now_ms(),
            interval,
        )
        .await;
        tokio::time::sleep(pause).await;
    }
}

/// One pass over both schedules, draining each. Returns (publications
/// expired, subscriptions ended).
pub async fn sweep_once(
    compositor: &Compositor,
    subscriptions: &Subscriptions,
) -> Result<(usize, usize), crate::PublishError> {
    let (p, s) = sweep_passes(compositor, subscriptions).await?;
    Ok((p.removed, s.removed))
}

async fn sweep_passes(
    compositor: &Compositor,
    subscriptions: &Subscriptions,
) -> Result<(Drained, Drained), crate::PublishError> {
    let backend = compositor.backend();
    // Both schedules at once: a burst of one does not hold up the other.
    let publications = sweep::drain(
        backend.as_ref(),
        Schedule::Publications,
        &PUBLICATIONS,
        now_ms,
        |presentity, now| async move {
            match compositor.expire(&presentity, now).await {
                Ok(Some(version)) => {
                    tracing::debug!(%presentity, version, "expired publication removed");
                    Handled::Removed
                }
                Ok(None) => Handled::Nothing,
                Err(e) => {
                    tracing::debug!(%presentity, error = %e, "publication expiry failed; retrying");
                    Handled::Failed
                }
            }
        },
    );
    let ended = sweep::drain(
        backend.as_ref(),
        Schedule::Subscriptions,
        &SUBSCRIPTIONS,
        now_ms,
        |member, now| async move {
            match subscriptions.expire(&member, now).await {
                Ok(true) => {
                    tracing::debug!(subscription = %member.replace('\n', " "), "subscription expired");
                    Handled::Removed
                }
                Ok(false) => Handled::Nothing,
                Err(e) => {
                    tracing::debug!(subscription = %member.replace('\n', " "), error = %e, "subscription expiry failed; retrying");
                    Handled::Failed
                }
            }
        },
    );
    let (publications, ended) = tokio::join!(publications, ended);
    let (publications, ended) = (publications?, ended?);
    Ok((publications, ended))
}
