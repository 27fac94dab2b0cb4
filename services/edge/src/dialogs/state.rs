//! The dialog index and each dialog's state: what SUBSCRIBE handling, the
//! channel and a draining edge change, signalled to the dialog's sender;
//! and the dialogs held per source address, capped for new SUBSCRIBEs
//! (`--max-subscriptions-per-source`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::WatcherEntry;
use store::FeedControl;
use tokio::time::Instant;

use super::compact::CompactRecord;
use super::sender::{Acknowledged, Sender};
use super::slot::{Overdue, Parked, Slot};
use super::{
    Change, DialogIds, Dialogs, Entry, GivenUp, HeldDialog, Index, Mode, NewDialog, Signal, Watched,
};
use crate::packages::{self, WatcherSnapshot};
use crate::transport::{Protocol, SourceKey};
use crate::Edge;

#[cfg(test)]
mod tests;

/// How many ended watchers a winfo dialog remembers, to report why a
/// watcher left when several changes were coalesced into one NOTIFY.
const ENDED_MEMORY: usize = 64;

/// Dialogs held per source (an IPv4 address or an IPv6 /64, keyed as the
/// connection cap keys them), counting new SUBSCRIBEs still being set up:
/// a flood of SUBSCRIBEs from one address cannot pass the cap by the many
/// in flight. Keys leave the table at zero, so it is no larger than the
/// number of dialogs.
#[derive(Default)]
pub(in crate::dialogs) struct SourceCounts {
    table: Mutex<HashMap<SourceKey, usize>>,
}

impl SourceCounts {
    /// One more for `key`, unless it holds `cap` already (0: no cap).
    fn take(self: &Arc<Self>, key: SourceKey, cap: usize) -> Option<SourceSlot> {
        let mut table = locks::lock(&self.table);
        let count = table.entry(key).or_insert(0);
        if cap > 0 && *count >= cap {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            counts: self.clone(),
            key,
        })
    }

    /// One more for `key`, past any cap.
    fn force(self: &Arc<Self>, key: SourceKey) -> SourceSlot {
        *locks::lock(&self.table).entry(key).or_insert(0) += 1;
        SourceSlot {
            counts: self.clone(),
            key,
        }
    }

    fn held(&self, key: SourceKey) -> usize {
        locks::lock(&self.table).get(&key).copied().unwrap_or(0)
    }
}

/// One dialog's place in its source's count, given back when dropped: when
/// its entry leaves the index (ended, handed over), or when a SUBSCRIBE
/// that reserved it creates no dialog (refused, a fetch, a failure).
pub struct SourceSlot {
    counts: Arc<SourceCounts>,
    key: SourceKey,
}

impl std::fmt::Debug for SourceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSlot")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut table = locks::lock(&self.counts.table);
        if let Some(count) = table.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.key);
            }
        }
    }
}

/// The empty watcher list, shared by every dialog that has none (all but
/// `presence.winfo` dialogs): copied on the first change.
fn no_watchers() -> Arc<WatcherSnapshot> {
    static EMPTY: std::sync::OnceLock<Arc<WatcherSnapshot>> = std::sync::OnceLock::new();
    EMPTY
        .get_or_init(|| {
            Arc::new(WatcherSnapshot {
                revision: 0,
                watchers: Vec::new(),
            })
        })
        .clone()
}

/// No ended watchers, shared the same way.
fn no_ended_watchers() -> Arc<Vec<WatcherEntry>> {
    static EMPTY: std::sync::OnceLock<Arc<Vec<WatcherEntry>>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(Vec::new())).clone()
}

impl Signal {
    /// A new dialog's signal: its state, its watchers (winfo), its expiry
    /// and one refresh, so that its first NOTIFY is due.
    pub(super) fn first(
        mode: Mode,
        watchers: Vec<WatcherEntry>,
        version: u64,
        pidf: Arc<str>,
        expires_at: Instant,
    ) -> Signal {
        Signal {
            mode,
            watchers: if watchers.is_empty() {
                no_watchers()
            } else {
                Arc::new(WatcherSnapshot {
                    revision: 0,
                    watchers,
                })
            },
            ended: no_ended_watchers(),
            version,
            pidf,
            trace: None,
            changed_at_ms: 0,
            offers: 0,
            expires_at,
            refreshes: 1,
            end: None,
            route: None,
            resets: 0,
            handed_over: false,
        }
    }
}

impl Watched {
    /// `pidf` as a string shared by every dialog of the presentity that
    /// starts with the same text: the latest state heard, or the document
    /// the previous dialog started with. A buddy list's 200 watchers of one
    /// presentity hold one copy of its document instead of 200 until its
    /// next change (which they share anyway).
    fn share(&mut self, pidf: &str) -> Arc<str> {
        if let Some((_, latest)) = self.latest.as_ref().filter(|(_, p)| **p == *pidf) {
            return latest.clone();
        }
        if let Some(started) = self.started_with.as_ref().filter(|p| ***p == *pidf) {
            return started.clone();
        }
        let fresh: Arc<str> = Arc::from(pidf);
        self.started_with = Some(fresh.clone());
        fresh
    }
}

impl Index {
    /// The dialogs watching `presentity`.
    fn dialogs_of<'a>(&'a self, presentity: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.presentities
            .get(presentity)
            .into_iter()
            .flat_map(|w| w.dialogs.iter())
            .filter_map(|id| self.dialogs.get(id))
    }
}

impl Dialogs {
    pub fn new(feed: Box<dyn FeedControl>) -> Self {
        Dialogs {
            feed,
            index: Mutex::new(Index::default()),
            sources: Arc::new(SourceCounts::default()),
            overdue: Overdue::new(),
        }
    }

    /// A slot for a new dialog from `ip`, or `None` when the edge holds
    /// `cap` dialogs from its source already (`cap` 0: no cap). The slot
    /// goes into the dialog's [`NewDialog::source_slot`]; dropped, it is
    /// given back.
    pub fn reserve_source(&self, ip: IpAddr, cap: usize) -> Option<SourceSlot> {
        self.sources.take(SourceKey::of(ip), cap)
    }

    /// Dialogs held (and being set up) from `ip`'s source.
    pub fn held_from(&self, ip: IpAddr) -> usize {
        self.sources.held(SourceKey::of(ip))
    }

    /// Starts a held dialog's NOTIFY sender; its first NOTIFY goes out at once.
    pub fn activate(&self, edge: &Arc<Edge>, dialog: NewDialog) {
        self.start(edge, dialog, false);
    }

    /// Starts the sender of a dialog another edge handed over after its
    /// watcher acknowledged `dialog.version`'s state: the first NOTIFY waits
    /// for something newer.
    pub fn continue_handed_over(&self, edge: &Arc<Edge>, dialog: NewDialog) {
        self.start(edge, dialog, true);
    }

    fn start(&self, edge: &Arc<Edge>, mut dialog: NewDialog, acknowledged: bool) {
        // A dialog continued from another edge counts against its source
        // but is never refused: the service granted it, and ending it here
        // would not free the watcher's client of it.
        let source_slot = dialog
            .source_slot
            .take()
            .unwrap_or_else(|| Arc::new(self.sources.force(SourceKey::of(dialog.remote.ip()))));
        let expires_at = Instant::now() + Duration::from_secs(u64::from(dialog.expires));
        let mut index = locks::lock(&self.index);
        // Something newer may have been heard while the subscription was
        // being set up.
        let latest = index
            .presentities
            .get(dialog.presentity.as_str())
            .and_then(|w| w.latest.clone());
        let (version, pidf) = match latest {
            Some((v, p)) if v > dialog.version && dialog.mode == Mode::Presence => (v, p),
            _ => match index.presentities.get_mut(dialog.presentity.as_str()) {
                Some(watched) => (dialog.version, watched.share(&dialog.pidf)),
                None => (dialog.version, Arc::from(dialog.pidf.as_str())),
            },
        };
        let signal = Signal::first(dialog.mode, dialog.watchers, version, pidf, expires_at);
        let id = dialog.record.id.clone();
        let acknowledged = acknowledged && dialog.mode != Mode::Winfo;
        let acknowledged_word = if acknowledged {
            Acknowledged::pack(dialog.mode, dialog.version)
        } else {
            0
        };
        let mut record = dialog.record;
        record.transport = dialog.protocol.as_str().to_string();
        record.remote_addr = dialog.remote.to_string();
        let package = packages::of(&record);
        let plain = Box::new(record);
        let record = Arc::new(CompactRecord::new(&plain, &dialog.presentity));
        // One copy of the dialog id and of the presentity, shared by the
        // index, the presentity's dialog set and the sender.
        let id: Arc<str> = Arc::from(id);
        let presentity: Arc<str> =
            match index.presentities.get_key_value(dialog.presentity.as_str()) {
                Some((known, _)) => known.clone(),
                None => Arc::from(dialog.presentity),
            };
        index
            .presentities
            .entry(presentity.clone())
            .or_default()
            .dialogs
            .insert(id.clone());
        let sender = Sender {
            record: record.clone(),
            id: id.clone(),
            presentity: presentity.clone(),
            // A handed-over dialog's watcher has this state already; only
            // something newer is due.
            last_version: if acknowledged { dialog.version } else { 0 },
            offers_seen: 0,
            refreshes_seen: u32::from(acknowledged),
            package,
            notifier: package.notifier(),
            resets_seen: 0,
        };
        // Started under the index lock: the sender cannot look the dialog
        // up before it is inserted.
        let slot = Slot::start(
            signal,
            Parked {
                edge: edge.clone(),
                sender,
            },
            dialog.first_cseq,
            acknowledged_word,
            plain,
        );
        self.overdue.file(&slot, expires_at);
        let replaced = index.dialogs.insert(
            id,
            Entry {
                presentity,
                slot,
                record,
                _source: source_slot,
            },
        );
        if let Some(old) = replaced {
            self.overdue.unfile(&old.slot);
        }
    }

    /// Gives every dialog up (a draining edge): each sender stops, after
    /// the NOTIFY it has in flight if that ends within `wait` (else it is
    /// stopped there, its outcome unknown), without a final NOTIFY. Returns
    /// what each watcher last acknowledged, for the edge that continues
    /// the dialog; dialogs that were ending are left out.
    pub async fn hand_over(&self, wait: Duration) -> Vec<GivenUp> {
        let entries: Vec<(Arc<str>, Entry)> = {
            let mut index = locks::lock(&self.index);
            for watched in index.presentities.values_mut() {
                watched.dialogs = DialogIds::None;
            }
            index.dialogs.drain().collect()
        };
        for (_, entry) in &entries {
            self.overdue.unfile(&entry.slot);
            // A parked sender is started, and stops at once.
            entry.slot.send_modify(|s| s.handed_over = true);
        }
        let deadline = Instant::now() + wait;
        let mut given_up = Vec::with_capacity(entries.len());
        for (dialog_id, entry) in entries {
            if let Some(mut task) = entry.slot.take_running() {
                if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                    task.abort();
                }
            }
            if entry.slot.read(|s| s.end.is_some()) {
                continue;
            }
            given_up.push(GivenUp {
                presentity: entry.presentity.to_string(),
                dialog_id: dialog_id.to_string(),
                acknowledged: Acknowledged::unpack(entry.slot.acknowledged.load(Ordering::SeqCst)),
            });
        }
        given_up
    }

    /// The presentity a dialog of this edge watches.
    pub fn presentity_of(&self, dialog_id: &str) -> Option<String> {
        let index = locks::lock(&self.index);
        index
            .dialogs
            .get(dialog_id)
            .map(|e| e.presentity.to_string())
    }

    /// A refresh was accepted: new expiry, and a NOTIFY with `version`'s
    /// state (or newer). False when the dialog is not held here.
    pub fn refresh(&self, dialog_id: &str, expires: u32, version: u64, pidf: &str) -> bool {
        let mut index = locks::lock(&self.index);
        let Some(presentity) = index.dialogs.get(dialog_id).map(|e| e.presentity.clone()) else {
            return false;
        };
        // A state read now counts as heard now (see `reset`).
        let heard = index.heard + 1;
        if let Some(w) = index.presentities.get_mut(&*presentity) {
            w.heard_at = heard;
            index.heard = heard;
        }
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        let expires_at = Instant::now() + Duration::from_secs(u64::from(expires));
        self.overdue.file(&entry.slot, expires_at);
        entry.slot.send_modify(|s| {
            s.expires_at = expires_at;
            s.refreshes = s.refreshes.wrapping_add(1);
            if version > s.version && s.mode == Mode::Presence {
                s.version = version;
                s.pidf = Arc::from(pidf);
            }
        });
        true
    }

    /// A rule change authorised the dialog (or changed its masking): from
    /// now on it carries `pidf` (the neutral document when `masked`), and a
    /// NOTIFY goes out at once. False when the dialog is not held here.
    pub fn authorize(&self, dialog_id: &str, masked: bool, version: u64, pidf: &str) -> bool {
        let index = locks::lock(&self.index);
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        let latest = index
            .presentities
            .get(&*entry.presentity)
            .and_then(|w| w.latest.clone());
        entry.slot.send_modify(|s| {
            if s.mode == Mode::Winfo {
                return;
            }
            s.mode = if masked { Mode::Masked } else { Mode::Presence };
            match latest {
                Some((v, p)) if !masked && v > version => {
                    s.version = v;
                    s.pidf = p;
                }
                _ => {
                    s.version = version;
                    s.pidf = Arc::from(pidf);
                }
            }
            s.refreshes = s.refreshes.wrapping_add(1);
        });
        true
    }

    /// Watchers of `presentity` changed: applied to the list of each of its
    /// `presence.winfo` dialogs (entries replaced or added; `terminated`
    /// ones removed and remembered, for the partial document's event).
    pub fn offer_watchers(&self, presentity: &str, changed: &[WatcherEntry]) {
        let index = locks::lock(&self.index);
        for entry in index.dialogs_of(presentity) {
            entry.slot.send_if_modified(|s| {
                if s.mode != Mode::Winfo || changed.is_empty() {
                    return false;
                }
                let snapshot = Arc::make_mut(&mut s.watchers);
                let mut ended = Vec::new();
                for w in changed {
                    let at = snapshot.watchers.iter().position(|x| x.id == w.id);
                    match (w.status == "terminated", at) {
                        (true, Some(i)) => {
                            snapshot.watchers.remove(i);
                            ended.push(w.clone());
                        }
                        (true, None) => ended.push(w.clone()),
                        (false, Some(i)) => snapshot.watchers[i] = w.clone(),
                        (false, None) => snapshot.watchers.push(w.clone()),
                    }
                }
                snapshot.revision += 1;
                if !ended.is_empty() {
                    ended.extend(s.ended.iter().cloned());
                    ended.truncate(ENDED_MEMORY);
                    s.ended = Arc::new(ended);
                }
                true
            });
        }
    }

    /// Sends the dialog's NOTIFYs to where its latest refresh came from
    /// (RFC 3261 §18: a stream connection is only reused while open, and a
    /// reconnected client refreshes over its new one). False when the
    /// dialog is not held here.
    pub fn reroute(&self, dialog_id: &str, protocol: Protocol, remote: SocketAddr) -> bool {
        let index = locks::lock(&self.index);
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        entry.slot.send_if_modified(|s| {
            let changed = s.route != Some((protocol, remote));
            s.route = Some((protocol, remote));
            changed
        });
        true
    }

    /// Ends a dialog with a final NOTIFY (`terminated;reason=...`). False when
    /// the dialog is not held here.
    pub fn terminate(&self, dialog_id: &str, reason: &str) -> bool {
        let index = locks::lock(&self.index);
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        entry.slot.send_modify(|s| {
            if s.end.is_none() {
                s.end = Some(Arc::from(reason));
            }
        });
        true
    }

    /// A new state of `presentity` was heard: offered to every dialog of it.
    pub fn offer(&self, presentity: &str, version: u64, pidf: &str, change: Change<'_>) {
        let mut index = locks::lock(&self.index);
        let pidf: Arc<str> = Arc::from(pidf);
        let trace: Option<Arc<str>> = change.trace.map(Arc::from);
        let heard = index.heard + 1;
        let Some(w) = index.presentities.get_mut(presentity) else {
            return;
        };
        if w.latest.as_ref().is_some_and(|(v, _)| *v >= version) {
            return;
        }
        w.latest = Some((version, pidf.clone()));
        w.heard_at = heard;
        index.heard = heard;
        let mut signalled = 0u32;
        for entry in index.dialogs_of(presentity) {
            let changed = entry.slot.send_if_modified(|s| {
                if version > s.version && s.mode == Mode::Presence {
                    s.version = version;
                    s.pidf = pidf.clone();
                    s.trace = trace.clone();
                    s.changed_at_ms = change.at_ms;
                    s.offers = s.offers.wrapping_add(1);
                    true
                } else {
                    false
                }
            });
            signalled += u32::from(changed);
        }
        crate::metrics::metrics()
            .fanout_size
            .observe(f64::from(signalled));
    }

    /// Every live dialog as it stands now: destination, last CSeq and
    /// remaining time.
    pub fn held(&self) -> Vec<HeldDialog> {
        let index = locks::lock(&self.index);
        let now = Instant::now();
        index
            .dialogs
            .iter()
            .filter_map(|(id, entry)| {
                let (ended, route, expires_at) = entry
                    .slot
                    .read(|s| (s.end.is_some(), s.route, s.expires_at));
                if ended {
                    return None;
                }
                let mut record = match entry.record.decode(id, &entry.presentity) {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::error!(presentity = %entry.presentity, error = %e, "held dialog record unreadable; not restored");
                        return None;
                    }
                };
                if let Some((protocol, remote)) = route {
                    record.transport = protocol.as_str().to_string();
                    record.remote_addr = remote.to_string();
                }
                record.notify_cseq = entry.slot.cseq.load(Ordering::SeqCst);
                Some(HeldDialog {
                    presentity: entry.presentity.to_string(),
                    record,
                    expires_in: expires_at.saturating_duration_since(now),
                })
            })
            .collect()
    }

    /// The state backend lost its data and the presence service's state of
    /// the dialog's presentity was read as `version` after `mark` was
    /// taken: the watcher is sent it, even when older than what it has (the
    /// state it has is gone) — unless a state of the presentity was heard
    /// since the mark: that one was published after the loss and is only
    /// replaced by a newer one. True when a NOTIFY is due; false when the
    /// dialog already has that state, has ended, or is not held here.
    pub fn reset(&self, dialog_id: &str, version: u64, pidf: &str, mark: u64) -> bool {
        let mut index = locks::lock(&self.index);
        let Some(presentity) = index.dialogs.get(dialog_id).map(|e| e.presentity.clone()) else {
            return false;
        };
        let pidf: Arc<str> = Arc::from(pidf);
        let mut heard_since_mark = false;
        if let Some(w) = index.presentities.get_mut(&*presentity) {
            heard_since_mark = w.heard_at > mark;
            // Later announcements are compared with the state as it is now.
            if !heard_since_mark && w.latest.as_ref().is_some_and(|(v, _)| *v > version) {
                w.latest = Some((version, pidf.clone()));
            }
        }
        index.dialogs.get(dialog_id).is_some_and(|entry| {
            entry.slot.send_if_modified(|s| {
                let replace = if heard_since_mark {
                    version > s.version
                } else {
                    version != s.version
                };
                // Masked, pending and winfo dialogs never carry the
                // presentity's state.
                if s.end.is_some() || !replace || s.mode != Mode::Presence {
                    return false;
                }
                s.version = version;
                s.pidf = pidf.clone();
                s.resets = s.resets.wrapping_add(1);
                true
            })
        })
    }

    /// Starts the parked senders of dialogs past their expiry and grace,
    /// which end them (their termination was never heard). Returns how many.
    pub fn wake_overdue(&self) -> usize {
        let now = Instant::now();
        self.overdue
            .take_due(now)
            .iter()
            .filter(|slot| slot.wake_if_overdue(now))
            .count()
    }

    /// Number of dialogs held.
    pub fn len(&self) -> usize {
        locks::lock(&self.index).dialogs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) async fn remove(&self, dialog_id: &str) {
        let presentity = {
            let mut index = locks::lock(&self.index);
            let presentity = index.dialogs.remove(dialog_id).map(|e| {
                self.overdue.unfile(&e.slot);
                e.presentity
            });
            if let Some(p) = &presentity {
                if let Some(w) = index.presentities.get_mut(p) {
                    w.dialogs.remove(dialog_id);
                    // The channel's last holder normally goes after its
                    // dialogs (see `release`); this is the other order.
                    if w.dialogs.is_empty() && w.holders == 0 {
                        index.presentities.remove(p);
                    }
                }
            }
            presentity
        };
        if let Some(p) = presentity {
            self.release(&p).await;
        }
    }
}
