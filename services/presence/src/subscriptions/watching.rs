//! The index of each watcher's live subscriptions, cluster-wide, and the per-watcher limit it enforces.

use bytes::Bytes;
use store::{Key, Kind, StoreError};

use super::{SubscriptionError, Subscriptions};
use crate::rules;

/// The index of one watcher identity's live subscriptions, cluster-wide:
/// field the subscription's schedule member, value its expiry (ms, decimal)
/// — so the per-watcher limit is one read, and entries a crash left behind
/// stop counting when their expiry passes.
pub(super) fn watching_key(watcher: &str) -> Key {
    Key::new(Kind::Watching, rules::normalise(watcher))
}

pub(super) async fn watching_put(
    backend: &dyn store::Backend,
    watcher: &str,
    member: &str,
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    backend
        .map_put(
            &watching_key(watcher),
            member,
            Bytes::from(expires_at_ms.to_string()),
        )
        .await
}

pub(super) async fn watching_remove(
    backend: &dyn store::Backend,
    watcher: &str,
    member: &str,
) -> Result<(), StoreError> {
    backend
        .map_take(&watching_key(watcher), member, None)
        .await
        .map(drop)
}

impl Subscriptions {
    /// Refuses a new subscription of a watcher that has as many live ones
    /// as allowed, before anything is read or written for it. Entries
    /// already expired are dropped on the way. Concurrent SUBSCRIBEs of
    /// one watcher may pass the limit by the few in flight: the limit
    /// bounds abuse, it is not an exact quota.
    pub(super) async fn check_watcher_limit(
        &self,
        watcher: &str,
        now_ms: u64,
    ) -> Result<(), SubscriptionError> {
        let limit = self.compositor.config().max_subscriptions_per_watcher;
        let backend = self.compositor.backend();
        let key = watching_key(watcher);
        let mut live = 0;
        for (member, value) in backend.map_list(&key).await? {
            let expires_at_ms = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if expires_at_ms > now_ms {
                live += 1;
            } else {
                backend.map_take(&key, &member, Some(&value)).await?;
            }
        }
        if live >= limit {
            crate::compositor::count_limit_refusal("subscriptions_per_watcher");
            tracing::info!(%watcher, live, limit, "subscription refused: too many subscriptions");
            return Err(SubscriptionError::TooMany { limit });
        }
        Ok(())
    }
}
