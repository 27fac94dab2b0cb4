//! A change of a presentity's rules applied to its live subscriptions.

use bytes::Bytes;
use contract::Announcement;
use store::Schedule;

use super::{
    map_key, move_watching, schedule_member, watching_remove, EntryForm, SubscriptionError,
    SubscriptionRecord, SubscriptionStatus, Subscriptions,
};
use crate::ownership;
use crate::rules::{self, Action};

impl Subscriptions {
    /// Moves the live `presence` subscriptions of `presentity` to what its
    /// rules now say: pending or masked ones that are now allowed become
    /// active (and get the state at once), newly blocked ones end with
    /// `terminated;reason=rejected`, newly polite-blocked ones see the
    /// neutral document from now on. Returns how many changed.
    ///
    /// Each move is a conditional replace of the record, so a concurrent
    /// refresh or expiry wins and is simply re-examined by the next change.
    pub async fn apply_rules(&self, presentity: &str) -> Result<usize, SubscriptionError> {
        let backend = self.compositor.backend();
        let rules = rules::load(backend.as_ref(), presentity).await?;
        let key = map_key(presentity);
        let mut moved = Vec::new();
        for (dialog_id, raw) in backend.map_list(&key).await? {
            let Ok(record) = SubscriptionRecord::decode(presentity, &dialog_id, &raw) else {
                continue;
            };
            let id = (presentity, dialog_id.as_str());
            let form = EntryForm::of_stored(&raw);
            if record.dialog.is_winfo() {
                continue;
            }
            let action = rules.decide(self.policy(), presentity, &record.dialog.watcher);
            let member = schedule_member(presentity, &dialog_id);
            let pending = record.status == SubscriptionStatus::Pending;
            let next = match action {
                Action::Block => {
                    if backend
                        .map_take(&key, &dialog_id, Some(&raw))
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    backend.unschedule(Schedule::Subscriptions, &member).await?;
                    ownership::unindex(backend.as_ref(), form, &record.dialog.edge_id, id).await?;
                    watching_remove(backend.as_ref(), form, &record.dialog.watcher, id).await?;
                    backend
                        .publish(
                            Announcement::Terminated {
                                dialog_id: dialog_id.clone(),
                                reason: "rejected".into(),
                            }
                            .to_message(presentity),
                        )
                        .await?;
                    tracing::info!(%presentity, watcher = %record.dialog.watcher, "subscription rejected by a rule change");
                    moved.push(record.ended("rejected"));
                    continue;
                }
                Action::Allow if pending || record.masked => SubscriptionRecord {
                    status: SubscriptionStatus::Active,
                    masked: false,
                    approved: record.approved || pending,
                    ..record.clone()
                },
                Action::PoliteBlock if pending || !record.masked => SubscriptionRecord {
                    status: SubscriptionStatus::Active,
                    masked: true,
                    ..record.clone()
                },
                // Confirm keeps what was already decided: an approved
                // watcher is not sent back to pending.
                _ => continue,
            };
            let encoded = next.encode();
            let next_form = EntryForm::of_stored(&encoded);
            if !backend
                .map_replace(&key, &dialog_id, &raw, Bytes::from(encoded))
                .await?
            {
                continue;
            }
            if next_form != form {
                // Rewritten in the other encoding: its entries move along.
                let edge = &next.dialog.edge_id;
                ownership::index(backend.as_ref(), next_form, edge, id).await?;
                ownership::unindex(backend.as_ref(), form, edge, id).await?;
                move_watching(backend.as_ref(), form, next_form, &next).await?;
            }
            let view = self.view_for(presentity, next.status, next.masked).await?;
            backend
                .publish(
                    Announcement::Authorized {
                        dialog_id: dialog_id.clone(),
                        masked: next.masked,
                        version: view.version,
                        pidf: view.pidf,
                    }
                    .to_message(presentity),
                )
                .await?;
            tracing::info!(%presentity, watcher = %next.dialog.watcher, masked = next.masked, "subscription activated by a rule change");
            moved.push(next.watcher_entry());
        }
        let count = moved.len();
        self.announce_watchers(presentity, moved).await?;
        Ok(count)
    }
}
