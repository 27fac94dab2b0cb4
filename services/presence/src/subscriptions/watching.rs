//! The index of each watcher's live subscriptions, cluster-wide, and the per-watcher limit it enforces.

use bytes::Bytes;
use store::{Key, Kind, StoreError};

use super::{schedule_member, EntryForm, SubscriptionError, Subscriptions};
use crate::rules;

/// The index of one watcher identity's live subscriptions, cluster-wide:
/// field the subscription's dialog id ([`EntryForm::Compact`]; its schedule
/// member `presentity '\n' dialog-id` in the [`EntryForm::Legacy`] form),
/// value its expiry (ms, decimal) — so the per-watcher limit is one read,
/// and entries a crash left behind stop counting when their expiry passes.
/// Dialog ids are random 64-bit tags, so one watcher's are distinct
/// whichever presentities they watch.
pub(super) fn watching_key(watcher: &str) -> Key {
    Key::new(Kind::Watching, rules::normalise(watcher))
}

/// The field of a subscription in its watcher's index.
pub(super) fn watching_field(form: EntryForm, presentity: &str, dialog_id: &str) -> String {
    match form {
        EntryForm::Legacy => schedule_member(presentity, dialog_id),
        EntryForm::Compact => dialog_id.to_owned(),
    }
}

pub(super) async fn watching_put(
    backend: &dyn store::Backend,
    form: EntryForm,
    watcher: &str,
    (presentity, dialog_id): (&str, &str),
    expires_at_ms: u64,
) -> Result<(), StoreError> {
    backend
        .map_put(
            &watching_key(watcher),
            &watching_field(form, presentity, dialog_id),
            Bytes::from(expires_at_ms.to_string()),
        )
        .await
}

pub(super) async fn watching_remove(
    backend: &dyn store::Backend,
    form: EntryForm,
    watcher: &str,
    (presentity, dialog_id): (&str, &str),
) -> Result<(), StoreError> {
    backend
        .map_take(
            &watching_key(watcher),
            &watching_field(form, presentity, dialog_id),
            None,
        )
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
        // Entries of both forms count, each dialog once (a crash while a
        // rewritten record's entries moved from one form to the other can
        // leave both).
        let mut live_dialogs = std::collections::HashSet::new();
        for (field, value) in backend.map_list(&key).await? {
            let expires_at_ms = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if expires_at_ms > now_ms {
                let dialog_id = field.rsplit('\n').next().unwrap_or_default().to_owned();
                live_dialogs.insert(dialog_id);
            } else {
                backend.map_take(&key, &field, Some(&value)).await?;
            }
        }
        let live = live_dialogs.len();
        if live >= limit {
            crate::compositor::count_limit_refusal("subscriptions_per_watcher");
            tracing::info!(%watcher, live, limit, "subscription refused: too many subscriptions");
            return Err(SubscriptionError::TooMany { limit });
        }
        Ok(())
    }
}
