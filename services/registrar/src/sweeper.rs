//! Expiry of bindings without scanning: the sweeper asks the backend which
//! AORs are due and lets [`Registrar::expire`] remove what is really expired.
//! Several replicas may sweep at once; each removal is a compare-and-swap, so
//! every expiry happens exactly once.

use std::time::Duration;

use store::Schedule;

use crate::{now_ms, Registrar};

/// How many due AORs one pass handles before yielding.
const BATCH: usize = 256;

/// Runs forever, sweeping every `interval`. Backend errors are logged and
/// retried at the next pass.
pub async fn run(
    registrar: Registrar,
    backend: std::sync::Arc<dyn store::Backend>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&registrar, backend.as_ref()).await {
            tracing::warn!(error = %e, "binding sweep failed; retrying at next pass");
        }
    }
}

/// One pass: expires every AOR due now. Returns how many AORs lost a binding.
pub async fn sweep_once(
    registrar: &Registrar,
    backend: &dyn store::Backend,
) -> Result<usize, crate::RegisterError> {
    let now = now_ms();
    let due = backend.due(Schedule::Bindings, now, BATCH).await?;
    let mut expired = 0;
    for (aor, _) in due {
        if registrar.expire(&aor, now).await? {
            tracing::info!(%aor, "expired bindings removed");
            expired += 1;
        }
    }
    Ok(expired)
}
