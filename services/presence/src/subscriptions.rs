//! Subscription records (RFC 6665 §4.2): one per SUBSCRIBE dialog, in the
//! map of the presentity it watches.
//!
//! The record is the dialog's source of truth. Edges cache it while they
//! hold the dialog; any edge can continue a dialog from its record. Expiry is
//! driven by the `Subscriptions` schedule; removing a record is a conditional
//! take, so of any number of sweepers exactly one announces the termination
//! and exactly one final NOTIFY is sent.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use store::{Key, Kind, Schedule, StoreError};

use crate::{compositor::PresenceView, ownership, Announcement, Compositor};

/// The dialog state an edge needs to send NOTIFYs (RFC 3261 §12).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DialogRecord {
    pub id: String,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub remote_uri: String,
    pub local_uri: String,
    pub remote_target: String,
    #[serde(default)]
    pub route_set: Vec<String>,
    pub transport: String,
    pub remote_addr: String,
    pub edge_id: String,
    pub notify_cseq: u32,
    #[serde(default)]
    pub event_id: String,
    pub watcher: String,
}

/// Whether the watcher receives state (RFC 6665 §4.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Pending,
    Terminated,
}

/// One stored subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub presentity: String,
    pub dialog: DialogRecord,
    pub expires_at_ms: u64,
    pub status: SubscriptionStatus,
}

/// A SUBSCRIBE as the presence service sees it.
#[derive(Clone, Debug)]
pub struct SubscribeCommand {
    pub presentity: String,
    pub dialog: DialogRecord,
    pub expires: Option<u32>,
    /// In-dialog refresh (the dialog must exist).
    pub refresh: bool,
}

/// Result of an accepted SUBSCRIBE.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscribeOutcome {
    pub expires: u32,
    pub status: SubscriptionStatus,
    pub view: PresenceView,
    /// The dialog as stored (for a refresh: the stored record, taken over
    /// by the calling edge).
    pub dialog: DialogRecord,
}

/// Why a SUBSCRIBE was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// 481: refresh of a subscription that does not exist (any more).
    #[error("no subscription {0}")]
    NotFound(String),
    /// 423 Interval Too Brief.
    #[error("interval too brief; minimum is {min_expires}s")]
    IntervalTooBrief { min_expires: u32 },
    /// 503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Subscription records of every presentity.
#[derive(Clone)]
pub struct Subscriptions {
    compositor: Compositor,
}

fn map_key(presentity: &str) -> Key {
    Key::new(Kind::Subscriptions, presentity)
}

/// The schedule member of one subscription.
pub fn schedule_member(presentity: &str, dialog_id: &str) -> String {
    format!("{presentity}\n{dialog_id}")
}

impl Subscriptions {
    pub fn new(compositor: Compositor) -> Self {
        Subscriptions { compositor }
    }

    fn granted_expires(&self, requested: Option<u32>) -> Result<u32, SubscriptionError> {
        let c = self.compositor.config();
        let e = requested.unwrap_or(c.default_subscribe_expires);
        if e != 0 && e < c.min_subscribe_expires {
            return Err(SubscriptionError::IntervalTooBrief {
                min_expires: c.min_subscribe_expires,
            });
        }
        Ok(e.min(c.max_subscribe_expires))
    }

    /// Creates, refreshes or (with expiry 0) ends a subscription, and returns
    /// the state its next NOTIFY must carry.
    pub async fn subscribe(
        &self,
        command: &SubscribeCommand,
        now_ms: u64,
    ) -> Result<SubscribeOutcome, SubscriptionError> {
        let expires = self.granted_expires(command.expires)?;
        let backend = self.compositor.backend();
        let key = map_key(&command.presentity);
        let dialog_id = &command.dialog.id;
        let member = schedule_member(&command.presentity, dialog_id);
        let mut dialog = command.dialog.clone();
        let mut previous_owner = None;
        if command.refresh {
            let Some(raw) = backend.map_get(&key, dialog_id).await? else {
                return Err(SubscriptionError::NotFound(dialog_id.clone()));
            };
            // The stored record knows what the refresh cannot carry (route
            // set, last NOTIFY CSeq); the refresh brings the new owner and
            // where the watcher is now.
            if let Ok(stored) = serde_json::from_slice::<SubscriptionRecord>(&raw) {
                previous_owner = Some(stored.dialog.edge_id.clone());
                let mut merged = stored.dialog;
                merged.edge_id = dialog.edge_id;
                merged.transport = dialog.transport;
                merged.remote_addr = dialog.remote_addr;
                if !dialog.remote_target.is_empty() {
                    merged.remote_target = dialog.remote_target;
                }
                merged.notify_cseq = merged.notify_cseq.max(dialog.notify_cseq);
                dialog = merged;
            }
        }
        let status = if expires == 0 {
            // An unsubscribe, or a one-time fetch when there was no dialog.
            if let Some(raw) = backend.map_take(&key, dialog_id, None).await? {
                ownership::unindex_record(backend.as_ref(), &raw, &member).await?;
            }
            backend.unschedule(Schedule::Subscriptions, &member).await?;
            SubscriptionStatus::Terminated
        } else {
            let record = SubscriptionRecord {
                presentity: command.presentity.clone(),
                dialog: dialog.clone(),
                expires_at_ms: now_ms + u64::from(expires) * 1000,
                status: SubscriptionStatus::Active,
            };
            // Schedule before storing: a crash in between leaves a schedule
            // entry that finds nothing, never a record nobody expires.
            backend
                .schedule(Schedule::Subscriptions, &member, record.expires_at_ms)
                .await?;
            backend.map_put(&key, dialog_id, encode(&record)?).await?;
            ownership::index(backend.as_ref(), &dialog.edge_id, &member).await?;
            if let Some(previous) = previous_owner.filter(|p| *p != dialog.edge_id) {
                ownership::unindex(backend.as_ref(), &previous, &member).await?;
            }
            record.status
        };
        let view = self.compositor.view(&command.presentity).await?;
        Ok(SubscribeOutcome {
            expires,
            status,
            view,
            dialog,
        })
    }

    /// Re-creates the record of a dialog its edge still holds after the
    /// backend lost it (a new state epoch): the dialog as the edge knows it,
    /// expiring `expires_in_ms` from `now_ms`. A stored record is left
    /// alone — it is newer than the edge's copy or was restored already.
    /// True when this call re-created it.
    pub async fn restore(
        &self,
        presentity: &str,
        dialog: DialogRecord,
        expires_in_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let backend = self.compositor.backend();
        let key = map_key(presentity);
        if backend.map_get(&key, &dialog.id).await?.is_some() {
            return Ok(false);
        }
        let member = schedule_member(presentity, &dialog.id);
        let record = SubscriptionRecord {
            presentity: presentity.to_string(),
            expires_at_ms: now_ms + expires_in_ms,
            status: SubscriptionStatus::Active,
            dialog,
        };
        // Schedule first, as in `subscribe`.
        backend
            .schedule(Schedule::Subscriptions, &member, record.expires_at_ms)
            .await?;
        backend
            .map_put(&key, &record.dialog.id, encode(&record)?)
            .await?;
        ownership::index(backend.as_ref(), &record.dialog.edge_id, &member).await?;
        Ok(true)
    }

    /// Removes a subscription; true when this call removed it.
    pub async fn unsubscribe(&self, presentity: &str, dialog_id: &str) -> Result<bool, StoreError> {
        let backend = self.compositor.backend();
        let taken = backend
            .map_take(&map_key(presentity), dialog_id, None)
            .await?;
        let member = schedule_member(presentity, dialog_id);
        backend.unschedule(Schedule::Subscriptions, &member).await?;
        if let Some(raw) = &taken {
            ownership::unindex_record(backend.as_ref(), raw, &member).await?;
        }
        Ok(taken.is_some())
    }

    /// The subscription records watching `presentity`.
    pub async fn list(&self, presentity: &str) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let entries = self
            .compositor
            .backend()
            .map_list(&map_key(presentity))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(field, value)| match serde_json::from_slice(&value) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!(%presentity, dialog = %field, error = %e, "unreadable subscription record skipped");
                    None
                }
            })
            .collect())
    }

    /// Ends the subscription named by a due schedule member if it really
    /// expired, announcing `terminated;reason=timeout` for its edge. Returns
    /// true when this call ended it.
    pub async fn expire(&self, member: &str, now_ms: u64) -> Result<bool, StoreError> {
        let backend = self.compositor.backend();
        let Some((presentity, dialog_id)) = member.split_once('\n') else {
            backend.unschedule(Schedule::Subscriptions, member).await?;
            return Ok(false);
        };
        let key = map_key(presentity);
        let Some(raw) = backend.map_get(&key, dialog_id).await? else {
            backend.unschedule(Schedule::Subscriptions, member).await?;
            return Ok(false);
        };
        let record: SubscriptionRecord = match serde_json::from_slice(&raw) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%presentity, %dialog_id, error = %e, "dropping unreadable subscription record");
                backend.map_take(&key, dialog_id, Some(&raw)).await?;
                backend.unschedule(Schedule::Subscriptions, member).await?;
                return Ok(false);
            }
        };
        if record.expires_at_ms > now_ms {
            // Refreshed since it was scheduled.
            backend
                .schedule(Schedule::Subscriptions, member, record.expires_at_ms)
                .await?;
            return Ok(false);
        }
        // Only the caller whose take succeeds announces; a refresh that
        // rewrote the record in between makes the take fail.
        let taken = backend.map_take(&key, dialog_id, Some(&raw)).await?;
        backend.unschedule(Schedule::Subscriptions, member).await?;
        if taken.is_none() {
            return Ok(false);
        }
        ownership::unindex(backend.as_ref(), &record.dialog.edge_id, member).await?;
        backend
            .publish(
                Announcement::Terminated {
                    dialog_id: dialog_id.to_string(),
                    reason: "timeout".into(),
                }
                .to_message(presentity),
            )
            .await?;
        Ok(true)
    }
}

fn encode(record: &SubscriptionRecord) -> Result<Bytes, StoreError> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| StoreError::Protocol(e.to_string()))
}
