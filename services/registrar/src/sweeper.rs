//! Expiry of bindings without scanning: the sweeper claims the AORs the
//! backend has due (`store::sweep`) and lets [`Registrar::expire`] remove
//! what is really expired. Several replicas may sweep at once: each claims
//! its own batches, and each removal is a compare-and-swap, so every
//! expiry happens exactly once.
//!
//! A pass drains everything due, in bounded batches, however much that is;
//! between passes the sweeper sleeps until the next AOR falls due (at most
//! the sweep interval). How far behind it is, and how much it removed, is
//! in [`stats`]. AORs are personal data: they are logged per item at debug
//! only; info gets counts, at most once a minute.

use std::time::Duration;

use contract::now_ms;
use store::sweep::{self, Drained, Handled, Report, SweepSnapshot, SweepStats};
use store::Schedule;

use crate::Registrar;

static BINDINGS: SweepStats = SweepStats::new();

/// The sweep statistics of this process's registrar sweeper: how overdue
/// the oldest due AOR was at the latest claim, AORs that lost a binding,
/// passes run.
pub fn stats() -> SweepSnapshot {
    BINDINGS.snapshot()
}

/// Runs forever: a pass, then a pause until the next AOR falls due (at most
/// `interval`). Backend errors are logged and retried at the next pass.
pub async fn run(
    registrar: Registrar,
    backend: std::sync::Arc<dyn store::Backend>,
    interval: Duration,
) {
    let mut report: Report<Drained> = Report::default();
    loop {
        match sweep_pass(&registrar, backend.as_ref()).await {
            Ok(drained) => report.window.add(drained),
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "binding sweep failed; retrying at next pass");
            }
        }
        if let Some((window, errors)) = report.due() {
            tracing::info!(
                aors_expired = window.removed,
                failed = window.failed,
                failed_passes = errors,
                max_backlog_ms = window.oldest_due_age_ms,
                "binding expiry in the last minute"
            );
        }
        let pause = sweep::pause(backend.as_ref(), &[Schedule::Bindings], now_ms(), interval).await;
        tokio::time::sleep(pause).await;
    }
}

/// One pass: expires every AOR due now, however many. Returns how many AORs
/// lost a binding.
pub async fn sweep_once(
    registrar: &Registrar,
    backend: &dyn store::Backend,
) -> Result<usize, crate::RegisterError> {
    Ok(sweep_pass(registrar, backend).await?.removed)
}

async fn sweep_pass(
    registrar: &Registrar,
    backend: &dyn store::Backend,
) -> Result<Drained, crate::RegisterError> {
    let drained = sweep::drain(
        backend,
        Schedule::Bindings,
        &BINDINGS,
        now_ms,
        |aor, now| async move {
            match registrar.expire(&aor, now).await {
                Ok(true) => {
                    tracing::debug!(%aor, "expired bindings removed");
                    Handled::Removed
                }
                Ok(false) => Handled::Nothing,
                Err(e) => {
                    tracing::debug!(%aor, error = %e, "binding expiry failed; retrying");
                    Handled::Failed
                }
            }
        },
    )
    .await?;
    Ok(drained)
}
