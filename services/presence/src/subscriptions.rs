//! Subscription records (RFC 6665 §4.2): one per SUBSCRIBE dialog, in the
//! map of the presentity it watches — `presence` subscriptions of watchers
//! and the presentity's own `presence.winfo` subscriptions (RFC 3857).
//!
//! A new `presence` subscription is authorised by the presentity's rules
//! ([`crate::rules`]): refused (`block`), active, active but shown only a
//! neutral document (`polite-block`), or pending (`confirm`). A rule change
//! moves live subscriptions ([`Subscriptions::apply_rules`]) and tells the
//! edges holding them. Every change of the watcher set is announced as a
//! watcher list, which edges turn into watcherinfo NOTIFYs.
//!
//! The record is the dialog's source of truth. Edges cache it while they
//! hold the dialog; any edge can continue a dialog from its record. Expiry is
//! driven by the `Subscriptions` schedule; removing a record is a conditional
//! take, so of any number of sweepers exactly one announces the termination
//! and exactly one final NOTIFY is sent.

use bytes::Bytes;
use contract::codec::{self, CodecError, Writer};
use contract::{Announcement, DialogRecord, WatcherEntry};
use serde::{Deserialize, Serialize};
use store::{Key, Kind, Schedule, StoreError};

use crate::compositor::{PresenceView, PresentityRecord};
use crate::rules::{self, Action, RulesError};
use crate::{ownership, Compositor};

mod rule_change;
mod watching;

use watching::{watching_put, watching_remove};

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
    /// Polite blocking: active, but only ever shown a neutral document.
    #[serde(default)]
    pub masked: bool,
    /// Was pending and then approved (watcherinfo's `approved` event).
    #[serde(default)]
    pub approved: bool,
}

/// The version of the binary encoding of [`SubscriptionRecord`] written
/// now: the record without what its place in the map says (presentity,
/// dialog id), repeated fields as references ([`DialogRecord::encode_compact`])
/// and the status and flags in the dialog's first byte.
const RECORD_VERSION: u8 = 2;
/// The first binary version, with every field; still read.
const RECORD_VERSION_FULL: u8 = 1;

/// How the index entries of one subscription are written: the edge's
/// (which dialogs an edge owns) and the watcher's (its live
/// subscriptions). The form goes with the encoding of the record, so the
/// record tells where its entries are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryForm {
    /// As releases before the compact record wrote them, and as the
    /// upgrade mode (`--record-encoding json`) still does: field
    /// `presentity '\n' dialog-id` in `edge:{edge-id}:m` and in
    /// `watching:{watcher}:m`. Records in JSON or binary version 1.
    Legacy,
    /// The edge's entry in one shard of its index (`edges:{edge-id/n}:m`,
    /// same field), the watcher's under the dialog id alone. Records in
    /// binary version 2.
    Compact,
}

impl EntryForm {
    /// The form of the entries of a stored record.
    pub fn of_stored(raw: &[u8]) -> EntryForm {
        if codec::binary_version(raw) == Some(RECORD_VERSION) {
            EntryForm::Compact
        } else {
            EntryForm::Legacy
        }
    }
}

impl SubscriptionStatus {
    fn code(self) -> u8 {
        match self {
            SubscriptionStatus::Active => 0,
            SubscriptionStatus::Pending => 1,
            SubscriptionStatus::Terminated => 2,
        }
    }

    fn from_code(code: u8, at: usize) -> Result<Self, CodecError> {
        match code {
            0 => Ok(SubscriptionStatus::Active),
            1 => Ok(SubscriptionStatus::Pending),
            2 => Ok(SubscriptionStatus::Terminated),
            other => Err(CodecError::Invalid {
                what: "subscription status",
                value: u64::from(other),
                at,
            }),
        }
    }
}

impl SubscriptionRecord {
    /// The stored form: the compact binary encoding of [`contract::codec`]
    /// (format tag, version 2, then the dialog with
    /// [`DialogRecord::encode_compact`], whose first byte also holds the
    /// status and flags, then the expiry).
    ///
    /// Binary rather than JSON because, with REGISTER and PUBLISH at
    /// 12,000/s, `serde_json` serialisation of stored records was ~12 % of
    /// all CPU, and every field name repeated in every record made a
    /// subscription ~1.4 KB in Redis (the target is at most 1 KB).
    /// Version 2 also leaves out the presentity and the dialog id (the map
    /// and the field it is stored under) and what repeats other fields:
    /// ~107 bytes for a typical dialog instead of ~260, which Redis holds
    /// in a 112-byte allocation instead of a 320-byte one.
    /// [`SubscriptionRecord::decode`] still reads version 1 and the JSON
    /// that earlier releases wrote.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(codec::writes_json())
    }

    /// [`Self::encode`], as JSON when `json` (see `contract::codec::set_write_json`).
    pub(crate) fn encode_with(&self, json: bool) -> Vec<u8> {
        codec::encode_record(self, json, || {
            let mut w = Writer::record(RECORD_VERSION, 128);
            let bits =
                self.status.code() | u8::from(self.masked) << 2 | u8::from(self.approved) << 3;
            self.dialog.encode_compact(&mut w, &self.presentity, bits);
            w.varint(self.expires_at_ms);
            w.into_vec()
        })
    }

    /// Reads the record stored for `dialog_id` in the map of `presentity`:
    /// the binary encoding of [`SubscriptionRecord::encode`] (which needs
    /// both to be whole), the first binary version, or the JSON of earlier
    /// releases.
    pub fn decode(presentity: &str, dialog_id: &str, bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_record_versions(bytes, |version, r| match version {
            RECORD_VERSION => {
                let at = r.offset();
                let (dialog, bits) = DialogRecord::decode_compact(r, dialog_id, presentity)?;
                Ok(SubscriptionRecord {
                    presentity: presentity.to_owned(),
                    dialog,
                    expires_at_ms: r.varint()?,
                    status: SubscriptionStatus::from_code(bits & 3, at)?,
                    masked: bits & 4 != 0,
                    approved: bits & 8 != 0,
                })
            }
            RECORD_VERSION_FULL => {
                let presentity = r.string()?;
                let dialog = DialogRecord::decode_from(r)?;
                let expires_at_ms = r.varint()?;
                let at = r.offset();
                Ok(SubscriptionRecord {
                    presentity,
                    dialog,
                    expires_at_ms,
                    status: SubscriptionStatus::from_code(r.u8()?, at)?,
                    masked: r.bool()?,
                    approved: r.bool()?,
                })
            }
            other => Err(CodecError::UnknownVersion(other)),
        })
    }

    /// The record as a watcher-info entry (`presence` subscriptions only).
    pub fn watcher_entry(&self) -> WatcherEntry {
        let (status, event) = match self.status {
            SubscriptionStatus::Pending => ("pending", "subscribe"),
            SubscriptionStatus::Terminated => ("terminated", "deactivated"),
            SubscriptionStatus::Active if self.approved => ("active", "approved"),
            SubscriptionStatus::Active => ("active", "subscribe"),
        };
        WatcherEntry {
            id: self.dialog.id.clone(),
            watcher: self.dialog.watcher.clone(),
            status: status.into(),
            event: event.into(),
            expires_at_ms: self.expires_at_ms,
        }
    }

    fn ended(&self, event: &str) -> WatcherEntry {
        WatcherEntry {
            status: "terminated".into(),
            event: event.into(),
            ..self.watcher_entry()
        }
    }
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
    /// Polite blocking: `view` is the neutral document, and so is every
    /// NOTIFY of this dialog.
    pub masked: bool,
    pub view: PresenceView,
    /// For a `presence.winfo` subscription: the presentity's watchers.
    pub watchers: Vec<WatcherEntry>,
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
    /// 403: the presentity's rules block the watcher, or a watcher-info
    /// subscription to somebody else's watchers.
    #[error("{0}")]
    Forbidden(String),
    /// 503.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 503: concurrent changes did not settle.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// 503 with Retry-After: the watcher has as many live subscriptions as
    /// allowed ([`crate::PresenceConfig::max_subscriptions_per_watcher`]).
    #[error("Too Many Subscriptions (at most {limit} per watcher)")]
    TooMany { limit: usize },
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
    ///
    /// A new `presence` subscription is authorised by the presentity's
    /// rules; a refresh keeps the status it has (rule changes move live
    /// subscriptions through [`Subscriptions::apply_rules`]). A
    /// `presence.winfo` subscription is only for the presentity itself.
    pub async fn subscribe(
        &self,
        command: &SubscribeCommand,
        now_ms: u64,
    ) -> Result<SubscribeOutcome, SubscriptionError> {
        let expires = self.granted_expires(command.expires)?;
        if !command.refresh && expires > 0 {
            self.check_watcher_limit(&command.dialog.watcher, now_ms)
                .await?;
        }
        let backend = self.compositor.backend();
        let key = map_key(&command.presentity);
        let dialog_id = &command.dialog.id;
        let member = schedule_member(&command.presentity, dialog_id);
        let id = (command.presentity.as_str(), dialog_id.as_str());
        let mut dialog = command.dialog.clone();
        let mut previous_owner = None;
        let mut stored_status = None;
        if command.refresh {
            let Some(raw) = backend.map_get(&key, dialog_id).await? else {
                return Err(SubscriptionError::NotFound(dialog_id.clone()));
            };
            // The stored record knows what the refresh cannot carry (route
            // set, last NOTIFY CSeq, authorisation); the refresh brings the
            // new owner and where the watcher is now.
            if let Ok(stored) = SubscriptionRecord::decode(id.0, id.1, &raw) {
                previous_owner = Some((stored.dialog.edge_id.clone(), EntryForm::of_stored(&raw)));
                stored_status = Some((stored.status, stored.masked, stored.approved));
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
        let winfo = dialog.is_winfo();
        let (status, masked, approved) = match stored_status {
            Some(stored) => stored,
            None if winfo => {
                if rules::normalise(&dialog.watcher) != rules::normalise(&command.presentity) {
                    return Err(SubscriptionError::Forbidden(
                        "watcher information is only for the presentity itself".into(),
                    ));
                }
                (SubscriptionStatus::Active, false, false)
            }
            None => {
                let rules = rules::load(backend.as_ref(), &command.presentity).await?;
                match rules.decide(self.policy(), &command.presentity, &dialog.watcher) {
                    Action::Block => {
                        tracing::info!(presentity = %command.presentity, watcher = %dialog.watcher, "subscription blocked by rule");
                        return Err(SubscriptionError::Forbidden(
                            "the presentity does not share presence with this watcher".into(),
                        ));
                    }
                    Action::Allow => (SubscriptionStatus::Active, false, false),
                    Action::PoliteBlock => (SubscriptionStatus::Active, true, false),
                    Action::Confirm => (SubscriptionStatus::Pending, false, false),
                }
            }
        };
        let record = SubscriptionRecord {
            presentity: command.presentity.clone(),
            dialog: dialog.clone(),
            expires_at_ms: now_ms + u64::from(expires) * 1000,
            status,
            masked,
            approved,
        };
        let status = if expires == 0 {
            // An unsubscribe, or a one-time fetch when there was no dialog.
            let mut removed = false;
            if let Some(raw) = backend.map_take(&key, dialog_id, None).await? {
                ownership::unindex_record(backend.as_ref(), &raw, id).await?;
                let form = EntryForm::of_stored(&raw);
                watching_remove(backend.as_ref(), form, &dialog.watcher, id).await?;
                removed = true;
            }
            backend.unschedule(Schedule::Subscriptions, &member).await?;
            if removed && !winfo {
                self.announce_watchers(&command.presentity, vec![record.ended("timeout")])
                    .await?;
            }
            SubscriptionStatus::Terminated
        } else {
            // Schedule before storing: a crash in between leaves a schedule
            // entry that finds nothing, never a record nobody expires.
            backend
                .schedule(Schedule::Subscriptions, &member, record.expires_at_ms)
                .await?;
            let encoded = record.encode();
            let form = EntryForm::of_stored(&encoded);
            backend
                .map_put(&key, dialog_id, Bytes::from(encoded))
                .await?;
            ownership::index(backend.as_ref(), form, &dialog.edge_id, id).await?;
            watching_put(
                backend.as_ref(),
                form,
                &dialog.watcher,
                id,
                record.expires_at_ms,
            )
            .await?;
            if let Some((previous, previous_form)) = previous_owner {
                // Another owner, or the record's entries in the other form
                // (the upgrade mode switched on or off since it was written).
                if previous != dialog.edge_id || previous_form != form {
                    ownership::unindex(backend.as_ref(), previous_form, &previous, id).await?;
                }
                if previous_form != form {
                    watching_remove(backend.as_ref(), previous_form, &dialog.watcher, id).await?;
                }
            }
            if !command.refresh && !winfo {
                self.announce_watchers(&command.presentity, vec![record.watcher_entry()])
                    .await?;
            }
            record.status
        };
        let view = self.view_for(&command.presentity, status, masked).await?;
        let watchers = if winfo {
            self.watchers(&command.presentity).await?
        } else {
            Vec::new()
        };
        Ok(SubscribeOutcome {
            expires,
            status,
            masked,
            view,
            watchers,
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
        let dialog_id = dialog.id.clone();
        let id = (presentity, dialog_id.as_str());
        // The rules decide again (they may have been lost with the rest):
        // a watcher they no longer simply allow is told to subscribe again
        // (`deactivated`, RFC 6665 §4.1.3) and meets them as a new
        // subscription; a polite-blocked one is masked.
        let masked = if dialog.is_winfo() {
            false
        } else {
            let rules = rules::load(backend.as_ref(), presentity).await?;
            match rules.decide(self.policy(), presentity, &dialog.watcher) {
                Action::Allow => false,
                Action::PoliteBlock => true,
                Action::Block | Action::Confirm => {
                    backend
                        .publish(
                            Announcement::Terminated {
                                dialog_id: dialog.id.clone(),
                                reason: "deactivated".into(),
                            }
                            .to_message(presentity),
                        )
                        .await?;
                    return Ok(false);
                }
            }
        };
        let record = SubscriptionRecord {
            presentity: presentity.to_string(),
            expires_at_ms: now_ms + expires_in_ms,
            status: SubscriptionStatus::Active,
            masked,
            approved: false,
            dialog,
        };
        // Schedule first, as in `subscribe`.
        backend
            .schedule(Schedule::Subscriptions, &member, record.expires_at_ms)
            .await?;
        let encoded = record.encode();
        let form = EntryForm::of_stored(&encoded);
        backend
            .map_put(&key, &record.dialog.id, Bytes::from(encoded))
            .await?;
        ownership::index(backend.as_ref(), form, &record.dialog.edge_id, id).await?;
        watching_put(
            backend.as_ref(),
            form,
            &record.dialog.watcher,
            id,
            record.expires_at_ms,
        )
        .await?;
        if shows_neutral(record.status, record.masked) {
            let view = neutral_view(presentity);
            backend
                .publish(
                    Announcement::Authorized {
                        dialog_id: record.dialog.id.clone(),
                        masked: true,
                        version: view.version,
                        pidf: view.pidf,
                    }
                    .to_message(presentity),
                )
                .await?;
        }
        Ok(true)
    }

    fn policy(&self) -> rules::DefaultPolicy {
        self.compositor.config().default_policy
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
            let id = (presentity, dialog_id);
            ownership::unindex_record(backend.as_ref(), raw, id).await?;
            if let Ok(record) = SubscriptionRecord::decode(presentity, dialog_id, raw) {
                let form = EntryForm::of_stored(raw);
                watching_remove(backend.as_ref(), form, &record.dialog.watcher, id).await?;
                if !record.dialog.is_winfo() {
                    self.announce_watchers(presentity, vec![record.ended("deactivated")])
                        .await?;
                }
            }
        }
        Ok(taken.is_some())
    }

    /// The watchers of `presentity` (its `presence` subscriptions), for
    /// watcher information and `ListWatchers`.
    pub async fn watchers(&self, presentity: &str) -> Result<Vec<WatcherEntry>, StoreError> {
        let mut entries: Vec<WatcherEntry> = self
            .list(presentity)
            .await?
            .iter()
            .filter(|r| !r.dialog.is_winfo())
            .map(SubscriptionRecord::watcher_entry)
            .collect();
        entries.sort_by(|a, b| a.watcher.cmp(&b.watcher).then(a.id.cmp(&b.id)));
        Ok(entries)
    }

    /// Tells the presentity's `presence.winfo` dialogs (through their
    /// edges) which watchers changed: one small message per change of the
    /// watcher set, whatever the number of watchers, and no read of the
    /// subscription map on this path. Edges holding no winfo dialog of the
    /// presentity ignore it; those that do apply it to the list they got
    /// when the dialog started.
    async fn announce_watchers(
        &self,
        presentity: &str,
        changed: Vec<WatcherEntry>,
    ) -> Result<(), StoreError> {
        if changed.is_empty() {
            return Ok(());
        }
        self.compositor
            .backend()
            .publish(
                Announcement::Watchers {
                    at_ms: contract::now_ms(),
                    changed,
                }
                .to_message(presentity),
            )
            .await
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
            .filter_map(|(field, value)| match SubscriptionRecord::decode(presentity, &field, &value) {
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
        let record = match SubscriptionRecord::decode(presentity, dialog_id, &raw) {
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
        if taken.is_none() {
            // Not unscheduled here: the refresh that won re-armed the entry,
            // and the sweeper's release keeps a re-armed entry.
            return Ok(false);
        }
        backend.unschedule(Schedule::Subscriptions, member).await?;
        let (form, id) = (EntryForm::of_stored(&raw), (presentity, dialog_id));
        ownership::unindex(backend.as_ref(), form, &record.dialog.edge_id, id).await?;
        watching_remove(backend.as_ref(), form, &record.dialog.watcher, id).await?;
        backend
            .publish(
                Announcement::Terminated {
                    dialog_id: dialog_id.to_string(),
                    reason: "timeout".into(),
                }
                .to_message(presentity),
            )
            .await?;
        if !record.dialog.is_winfo() {
            self.announce_watchers(presentity, vec![record.ended("timeout")])
                .await?;
        }
        Ok(true)
    }
}

/// What a masked (polite-blocked) or pending watcher is shown: the neutral
/// `closed` document of a presentity nothing is known about.
pub fn neutral_view(presentity: &str) -> PresenceView {
    PresenceView::from_record(presentity, &PresentityRecord::default())
}

/// Whether a watcher is shown only the neutral document: polite blocking,
/// or a subscription pending authorisation (RFC 3856 §6.6: no state before
/// it). The one place that decides it.
pub fn shows_neutral(status: SubscriptionStatus, masked: bool) -> bool {
    masked || status == SubscriptionStatus::Pending
}

impl Subscriptions {
    /// The view a watcher with this authorisation is shown.
    async fn view_for(
        &self,
        presentity: &str,
        status: SubscriptionStatus,
        masked: bool,
    ) -> Result<PresenceView, StoreError> {
        if shows_neutral(status, masked) {
            Ok(neutral_view(presentity))
        } else {
            self.compositor.view(presentity).await
        }
    }
}

/// Moves a subscription's entry in its watcher's index from the `from`
/// form to the `to` form, when its record was rewritten in the other
/// encoding (see [`EntryForm`]). The edge's entry moves with its owner.
pub(crate) async fn move_watching(
    backend: &dyn store::Backend,
    from: EntryForm,
    to: EntryForm,
    record: &SubscriptionRecord,
) -> Result<(), StoreError> {
    let id = (record.presentity.as_str(), record.dialog.id.as_str());
    watching_put(
        backend,
        to,
        &record.dialog.watcher,
        id,
        record.expires_at_ms,
    )
    .await?;
    watching_remove(backend, from, &record.dialog.watcher, id).await
}

#[cfg(test)]
mod tests;
