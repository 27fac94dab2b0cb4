//! The SUBSCRIBE dialogs this edge holds, and one NOTIFY sender per dialog.
//!
//! The dialog records live in the presence service; this is a cache of the
//! ones this edge owns, with what only the owner needs: the next CSeq and the
//! last version sent. Each dialog has a small task that sends its NOTIFYs
//! strictly one after another (a NOTIFY waits for the previous one's final
//! response). State changes that arrive while a NOTIFY is in flight are
//! coalesced — the latest version wins, a termination is never dropped, and
//! a version older than one already sent is never sent (ARCHITECTURE.md,
//! invariant "versions only go forward").
//!
//! A dialog is in one of four modes, set by the presence service's
//! authorisation (and changed by `Authorized` announcements): `Presence`
//! (the presentity's state), `Masked` (polite blocking: only ever the
//! neutral document), `Pending` (`Subscription-State: pending`, no body) or
//! `Winfo` (a `presence.winfo` dialog: watcherinfo documents, full first and
//! after every refresh, partial for each change in between).
//!
//! Channel watches: an edge hears a presentity's channel while it holds at
//! least one dialog watching it. The watch starts *before* the subscription
//! reads the state, and the latest state heard on the channel is kept per
//! presentity, so a PUBLISH racing a SUBSCRIBE is never missed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{DialogRecord, WatcherEntry};
use pidf::watcherinfo::{DocState, Watcher, WatcherEvent, WatcherInfo, WatcherList, WatcherStatus};
use store::FeedControl;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::methods::notify::{forget_subscription, send, Delivery, NotifyBody, NotifyState};
use crate::methods::ACCEPT;
use crate::transport::Protocol;
use crate::Edge;

/// When a dialog outlives its expiry by this much without the presence
/// service ending it (its announcement lost), the edge ends it itself.
const EXPIRY_GRACE: Duration = Duration::from_secs(10);
/// A dialog continued by a new owner skips this many CSeq numbers, above
/// anything the previous owner can have used since its last stored value.
pub const TAKEOVER_CSEQ_GAP: u32 = 10_000;

/// What a dialog's NOTIFYs carry (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Presence,
    Masked,
    Pending,
    Winfo,
}

/// The watcher list a `presence.winfo` dialog reports.
#[derive(Clone, Debug, Default)]
pub struct WatcherSnapshot {
    /// Bumped by every change applied to the list.
    pub revision: u64,
    pub watchers: Vec<WatcherEntry>,
}

/// How many ended watchers a winfo dialog remembers, to report why a
/// watcher left when several changes were coalesced into one NOTIFY.
const ENDED_MEMORY: usize = 64;

/// The media type of watcher information documents (RFC 3858).
pub const WATCHERINFO: &str = "application/watcherinfo+xml";

/// The latest a dialog's sender should act on.
#[derive(Clone, Debug)]
struct Signal {
    mode: Mode,
    /// Winfo dialogs: the latest watcher list, and recently ended watchers.
    watchers: Arc<WatcherSnapshot>,
    ended: Arc<Vec<WatcherEntry>>,
    version: u64,
    pidf: Arc<str>,
    /// `traceparent` of the change behind `version`, when traces are
    /// exported: the NOTIFY's span links to it.
    trace: Option<Arc<str>>,
    /// When the change behind `version` was accepted (ms since the epoch;
    /// 0 when unknown).
    changed_at_ms: u64,
    /// Changes offered so far: the sender, comparing with what it last
    /// saw, counts those a newer one replaced before they were sent.
    offers: u64,
    expires_at: Instant,
    /// Bumped by a refresh: RFC 6665 §4.2.1.2 wants a NOTIFY after every
    /// accepted SUBSCRIBE, even if the state did not change.
    refreshes: u64,
    /// Set once: the reason of the final NOTIFY.
    end: Option<Arc<str>>,
    /// Where NOTIFYs go from now on: set when a refresh arrived over
    /// another connection (a client that reconnected).
    route: Option<(Protocol, SocketAddr)>,
    /// Bumped when the state backend lost its data and the dialog's state
    /// was reset to what the presence service has now, which may be older
    /// than what was sent (a NOTIFY is due although the version is not
    /// newer).
    resets: u64,
}

struct Entry {
    presentity: String,
    signal: watch::Sender<Signal>,
    /// The dialog as activated (its route is in the signal).
    record: DialogRecord,
    /// Last CSeq used for a NOTIFY, shared with the sender.
    cseq: Arc<AtomicU32>,
}

/// A dialog this edge holds, as it stands now (to restore its record after
/// the state backend lost it).
#[derive(Clone, Debug)]
pub struct HeldDialog {
    pub presentity: String,
    /// With the current destination and last NOTIFY CSeq.
    pub record: DialogRecord,
    pub expires_in: Duration,
}

#[derive(Default)]
struct Index {
    dialogs: HashMap<String, Entry>,
    /// The ids of `dialogs` by presentity: a change is offered to its own
    /// dialogs without a scan of every dialog the edge holds (at 100,000
    /// dialogs and thousands of changes a second, the scan was the edge's
    /// bottleneck).
    by_presentity: HashMap<String, HashSet<String>>,
    /// Per watched presentity: how many holders (dialogs and subscriptions
    /// being set up) and the latest state heard on its channel.
    watched: HashMap<String, Watched>,
    /// Counts the states heard on channels; see [`Dialogs::mark`].
    heard: u64,
}

impl Index {
    /// The dialogs watching `presentity`.
    fn dialogs_of<'a>(&'a self, presentity: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.by_presentity
            .get(presentity)
            .into_iter()
            .flatten()
            .filter_map(|id| self.dialogs.get(id))
    }
}

#[derive(Default)]
struct Watched {
    holders: usize,
    latest: Option<(u64, Arc<str>)>,
    /// The value of `Index::heard` when `latest` was heard.
    heard_at: u64,
}

/// A dialog ready to start: what the SUBSCRIBE handler learned.
#[derive(Clone, Debug)]
pub struct NewDialog {
    pub record: DialogRecord,
    pub presentity: String,
    pub version: u64,
    pub pidf: String,
    pub expires: u32,
    /// First CSeq to use for NOTIFY.
    pub first_cseq: u32,
    /// Where NOTIFYs go.
    pub protocol: Protocol,
    pub remote: SocketAddr,
    pub mode: Mode,
    /// Winfo dialogs: the watchers at subscription time.
    pub watchers: Vec<WatcherEntry>,
}

/// The dialogs of this edge.
pub struct Dialogs {
    feed: Box<dyn FeedControl>,
    index: Mutex<Index>,
}

impl Dialogs {
    pub fn new(feed: Box<dyn FeedControl>) -> Self {
        Dialogs {
            feed,
            index: Mutex::new(Index::default()),
        }
    }

    /// Starts hearing `presentity`'s channel (if not already) on behalf of
    /// one more holder. Every successful `hold` is matched by one `release`,
    /// directly or through the dialog it becomes.
    pub async fn hold(&self, presentity: &str) -> Result<(), store::StoreError> {
        let first = {
            let Ok(mut index) = self.index.lock() else {
                return Err(store::StoreError::Protocol("dialog index poisoned".into()));
            };
            let w = index.watched.entry(presentity.to_string()).or_default();
            w.holders += 1;
            w.holders == 1
        };
        if first {
            if let Err(e) = self.feed.watch(presentity).await {
                self.release(presentity).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Drops one holder of `presentity`; the channel is left with the last.
    pub async fn release(&self, presentity: &str) {
        let last = {
            let Ok(mut index) = self.index.lock() else {
                return;
            };
            match index.watched.get_mut(presentity) {
                Some(w) if w.holders > 1 => {
                    w.holders -= 1;
                    false
                }
                Some(_) => {
                    index.watched.remove(presentity);
                    true
                }
                None => false,
            }
        };
        if last {
            if let Err(e) = self.feed.unwatch(presentity).await {
                tracing::warn!(%presentity, error = %e, "unwatching presentity failed");
            }
        }
    }

    /// Starts a held dialog's NOTIFY sender; its first NOTIFY goes out at once.
    pub fn activate(&self, edge: &Arc<Edge>, dialog: NewDialog) {
        let expires_at = Instant::now() + Duration::from_secs(u64::from(dialog.expires));
        let Ok(mut index) = self.index.lock() else {
            return;
        };
        // Something newer may have been heard while the subscription was
        // being set up.
        let latest = index
            .watched
            .get(&dialog.presentity)
            .and_then(|w| w.latest.clone());
        let (version, pidf) = match latest {
            Some((v, p)) if v > dialog.version && dialog.mode == Mode::Presence => (v, p),
            _ => (dialog.version, Arc::from(dialog.pidf.as_str())),
        };
        let (tx, rx) = watch::channel(Signal {
            mode: dialog.mode,
            watchers: Arc::new(WatcherSnapshot {
                revision: 0,
                watchers: dialog.watchers,
            }),
            ended: Arc::new(Vec::new()),
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
        });
        let id = dialog.record.id.clone();
        let cseq = Arc::new(AtomicU32::new(dialog.first_cseq));
        let mut record = dialog.record;
        record.transport = dialog.protocol.as_str().to_string();
        record.remote_addr = dialog.remote.to_string();
        index
            .by_presentity
            .entry(dialog.presentity.clone())
            .or_default()
            .insert(id.clone());
        index.dialogs.insert(
            id.clone(),
            Entry {
                presentity: dialog.presentity.clone(),
                signal: tx,
                record: record.clone(),
                cseq: cseq.clone(),
            },
        );
        let sender = Sender {
            record,
            presentity: dialog.presentity,
            protocol: dialog.protocol,
            remote: dialog.remote,
            cseq,
            last_version: 0,
            offers_seen: 0,
            refreshes_seen: 0,
            winfo: WinfoState::default(),
            resets_seen: 0,
        };
        tokio::spawn(run_sender(edge.clone(), sender, rx));
    }

    /// The presentity a dialog of this edge watches.
    pub fn presentity_of(&self, dialog_id: &str) -> Option<String> {
        let index = self.index.lock().ok()?;
        index.dialogs.get(dialog_id).map(|e| e.presentity.clone())
    }

    /// A refresh was accepted: new expiry, and a NOTIFY with `version`'s
    /// state (or newer). False when the dialog is not held here.
    pub fn refresh(&self, dialog_id: &str, expires: u32, version: u64, pidf: &str) -> bool {
        let Ok(mut index) = self.index.lock() else {
            return false;
        };
        let Some(presentity) = index.dialogs.get(dialog_id).map(|e| e.presentity.clone()) else {
            return false;
        };
        // A state read now counts as heard now (see `reset`).
        let heard = index.heard + 1;
        if let Some(w) = index.watched.get_mut(&presentity) {
            w.heard_at = heard;
            index.heard = heard;
        }
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        entry.signal.send_modify(|s| {
            s.expires_at = Instant::now() + Duration::from_secs(u64::from(expires));
            s.refreshes += 1;
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
        let Ok(index) = self.index.lock() else {
            return false;
        };
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        let latest = index
            .watched
            .get(&entry.presentity)
            .and_then(|w| w.latest.clone());
        entry.signal.send_modify(|s| {
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
            s.refreshes += 1;
        });
        true
    }

    /// Watchers of `presentity` changed: applied to the list of each of its
    /// `presence.winfo` dialogs (entries replaced or added; `terminated`
    /// ones removed and remembered, for the partial document's event).
    pub fn offer_watchers(&self, presentity: &str, changed: &[WatcherEntry]) {
        let Ok(index) = self.index.lock() else {
            return;
        };
        for entry in index.dialogs_of(presentity) {
            entry.signal.send_if_modified(|s| {
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
        let Ok(index) = self.index.lock() else {
            return false;
        };
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        entry.signal.send_if_modified(|s| {
            let changed = s.route != Some((protocol, remote));
            s.route = Some((protocol, remote));
            changed
        });
        true
    }

    /// Ends a dialog with a final NOTIFY (`terminated;reason=...`). False when
    /// the dialog is not held here.
    pub fn terminate(&self, dialog_id: &str, reason: &str) -> bool {
        let Ok(index) = self.index.lock() else {
            return false;
        };
        let Some(entry) = index.dialogs.get(dialog_id) else {
            return false;
        };
        entry.signal.send_modify(|s| {
            if s.end.is_none() {
                s.end = Some(Arc::from(reason));
            }
        });
        true
    }

    /// A new state of `presentity` was heard: offered to every dialog of it.
    pub fn offer(&self, presentity: &str, version: u64, pidf: &str, change: Change<'_>) {
        let Ok(mut index) = self.index.lock() else {
            return;
        };
        let pidf: Arc<str> = Arc::from(pidf);
        let trace: Option<Arc<str>> = change.trace.map(Arc::from);
        let heard = index.heard + 1;
        let Some(w) = index.watched.get_mut(presentity) else {
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
            let changed = entry.signal.send_if_modified(|s| {
                if version > s.version && s.mode == Mode::Presence {
                    s.version = version;
                    s.pidf = pidf.clone();
                    s.trace = trace.clone();
                    s.changed_at_ms = change.at_ms;
                    s.offers += 1;
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
        let Ok(index) = self.index.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        index
            .dialogs
            .values()
            .filter_map(|entry| {
                let signal = entry.signal.borrow();
                if signal.end.is_some() {
                    return None;
                }
                let mut record = entry.record.clone();
                if let Some((protocol, remote)) = signal.route {
                    record.transport = protocol.as_str().to_string();
                    record.remote_addr = remote.to_string();
                }
                record.notify_cseq = entry.cseq.load(Ordering::SeqCst);
                Some(HeldDialog {
                    presentity: entry.presentity.clone(),
                    record,
                    expires_in: signal.expires_at.saturating_duration_since(now),
                })
            })
            .collect()
    }

    /// A mark in the sequence of states heard on channels: what is heard
    /// after it was published after the mark was taken.
    pub fn mark(&self) -> u64 {
        self.index.lock().map(|i| i.heard).unwrap_or(u64::MAX)
    }

    /// The state backend lost its data and the presence service's state of
    /// the dialog's presentity was read as `version` after `mark` was
    /// taken: the watcher is sent it, even when older than what it has (the
    /// state it has is gone) — unless a state of the presentity was heard
    /// since the mark: that one was published after the loss and is only
    /// replaced by a newer one. True when a NOTIFY is due; false when the
    /// dialog already has that state, has ended, or is not held here.
    pub fn reset(&self, dialog_id: &str, version: u64, pidf: &str, mark: u64) -> bool {
        let Ok(mut index) = self.index.lock() else {
            return false;
        };
        let Some(presentity) = index.dialogs.get(dialog_id).map(|e| e.presentity.clone()) else {
            return false;
        };
        let pidf: Arc<str> = Arc::from(pidf);
        let mut heard_since_mark = false;
        if let Some(w) = index.watched.get_mut(&presentity) {
            heard_since_mark = w.heard_at > mark;
            // Later announcements are compared with the state as it is now.
            if !heard_since_mark && w.latest.as_ref().is_some_and(|(v, _)| *v > version) {
                w.latest = Some((version, pidf.clone()));
            }
        }
        index.dialogs.get(dialog_id).is_some_and(|entry| {
            entry.signal.send_if_modified(|s| {
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
                s.resets += 1;
                true
            })
        })
    }

    /// Presentities this edge hears (for resynchronisation after a gap).
    pub fn watched(&self) -> Vec<String> {
        self.index
            .lock()
            .map(|i| i.watched.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of dialogs held.
    pub fn len(&self) -> usize {
        self.index.lock().map(|i| i.dialogs.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn remove(&self, dialog_id: &str) {
        let presentity = {
            let Ok(mut index) = self.index.lock() else {
                return;
            };
            let presentity = index.dialogs.remove(dialog_id).map(|e| e.presentity);
            if let Some(p) = &presentity {
                if let Some(ids) = index.by_presentity.get_mut(p) {
                    ids.remove(dialog_id);
                    if ids.is_empty() {
                        index.by_presentity.remove(p);
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

/// What one dialog's NOTIFY sender owns.
struct Sender {
    record: DialogRecord,
    presentity: String,
    protocol: Protocol,
    remote: SocketAddr,
    /// Last CSeq used; shared with the index (see [`Dialogs::held`]).
    cseq: Arc<AtomicU32>,
    last_version: u64,
    /// `Signal::offers` when last looked at.
    offers_seen: u64,
    refreshes_seen: u64,
    winfo: WinfoState,
    resets_seen: u64,
}

impl Sender {
    fn next_cseq(&self) -> u32 {
        self.cseq.fetch_add(1, Ordering::SeqCst).wrapping_add(1)
    }
}

/// What a winfo dialog has reported so far.
#[derive(Default)]
struct WinfoState {
    /// The `version` of the last document sent (RFC 3858 §4.4: one more per
    /// document of the subscription).
    version: u64,
    /// The list as of the last document, by subscription id.
    reported: HashMap<String, WatcherEntry>,
    /// `revision` of the list last reported.
    revision: u64,
}

fn watcher_element(entry: &WatcherEntry) -> Watcher {
    let uri = if entry.watcher.contains(':') {
        entry.watcher.clone()
    } else {
        format!("sip:{}", entry.watcher)
    };
    Watcher {
        id: entry.id.clone(),
        uri,
        display_name: None,
        status: WatcherStatus::from_name(&entry.status).unwrap_or(WatcherStatus::Terminated),
        event: WatcherEvent::from_name(&entry.event).unwrap_or(WatcherEvent::Deactivated),
        duration_subscribed: None,
        expiration: None,
    }
}

impl WinfoState {
    /// The next watcherinfo document, or `None` when a partial document
    /// would report nothing.
    fn next_document(
        &mut self,
        presentity: &str,
        snapshot: &WatcherSnapshot,
        ended: &[WatcherEntry],
        full: bool,
    ) -> Option<String> {
        let current: HashMap<String, WatcherEntry> = snapshot
            .watchers
            .iter()
            .map(|w| (w.id.clone(), w.clone()))
            .collect();
        let watchers: Vec<Watcher> = if full {
            snapshot.watchers.iter().map(watcher_element).collect()
        } else {
            let mut changed: Vec<Watcher> = snapshot
                .watchers
                .iter()
                .filter(|w| {
                    self.reported
                        .get(&w.id)
                        .is_none_or(|old| old.status != w.status || old.event != w.event)
                })
                .map(watcher_element)
                .collect();
            let mut gone: Vec<&WatcherEntry> = self
                .reported
                .values()
                .filter(|w| !current.contains_key(&w.id))
                .collect();
            gone.sort_by(|a, b| a.id.cmp(&b.id));
            for old in gone {
                let why = ended.iter().find(|e| e.id == old.id);
                changed.push(watcher_element(&WatcherEntry {
                    status: "terminated".into(),
                    event: why.map_or_else(|| "deactivated".into(), |e| e.event.clone()),
                    ..old.clone()
                }));
            }
            changed
        };
        self.reported = current;
        self.revision = snapshot.revision;
        if !full && watchers.is_empty() {
            return None;
        }
        self.version += 1;
        let document = WatcherInfo {
            version: self.version,
            state: if full {
                DocState::Full
            } else {
                DocState::Partial
            },
            lists: vec![WatcherList {
                resource: format!("sip:{presentity}"),
                package: "presence".into(),
                watchers,
            }],
        };
        Some(document.to_xml())
    }
}

/// The body of a final NOTIFY: the state for an active presence dialog,
/// nothing where no state may be shown (pending, rejected) or for winfo.
fn final_body<'a>(mode: Mode, reason: &str, pidf: &'a str) -> NotifyBody<'a> {
    match mode {
        Mode::Presence | Mode::Masked if reason != "rejected" => Some((ACCEPT, pidf)),
        _ => None,
    }
}

/// A dialog's sender: sends a NOTIFY whenever its signal says there is
/// something to tell, and the final one when the dialog ends.
///
/// The task lives as long as the dialog and is sized for its largest state,
/// so the NOTIFY sends and the clean-up are boxed: an idle dialog's task is
/// about 1.5 KB instead of 3.2 KB (see `bench/memory.sh`).
async fn run_sender(edge: Arc<Edge>, mut d: Sender, mut rx: watch::Receiver<Signal>) {
    loop {
        let signal = rx.borrow_and_update().clone();
        if let Some((protocol, remote)) = signal.route {
            d.protocol = protocol;
            d.remote = remote;
            d.record.transport = protocol.as_str().to_string();
            d.record.remote_addr = remote.to_string();
        }
        if let Some(reason) = &signal.end {
            let cseq = d.next_cseq();
            let body = final_body(signal.mode, reason, &signal.pidf);
            let _ = Box::pin(send(
                &edge,
                &d.record,
                d.protocol,
                d.remote,
                cseq,
                NotifyState::Terminated(reason),
                body,
            ))
            .await;
            break;
        }
        let refreshed = signal.refreshes != d.refreshes_seen;
        let reset = signal.resets != d.resets_seen;
        let due = match signal.mode {
            Mode::Winfo => refreshed || signal.watchers.revision > d.winfo.revision,
            _ => refreshed || reset || signal.version > d.last_version,
        };
        if due {
            d.refreshes_seen = signal.refreshes;
            d.resets_seen = signal.resets;
            // Changes offered since the last look, all but the newest never
            // sent on their own (rate limiting, a NOTIFY still in flight).
            let coalesced = signal
                .offers
                .saturating_sub(d.offers_seen)
                .saturating_sub(1);
            if coalesced > 0 {
                crate::metrics::metrics().coalesced.inc_by(coalesced);
            }
            d.offers_seen = signal.offers;
            let remaining = signal
                .expires_at
                .saturating_duration_since(Instant::now())
                .as_secs() as u32;
            let document;
            let (state, body) = match signal.mode {
                Mode::Pending => (NotifyState::Pending(remaining), None),
                Mode::Presence | Mode::Masked => (
                    NotifyState::Active(remaining),
                    Some((ACCEPT, &*signal.pidf)),
                ),
                Mode::Winfo => {
                    document = d.winfo.next_document(
                        &d.presentity,
                        &signal.watchers,
                        &signal.ended,
                        refreshed,
                    );
                    match &document {
                        Some(xml) => (
                            NotifyState::Active(remaining),
                            Some((WATCHERINFO, xml.as_str())),
                        ),
                        // A change that changed nothing a watcher sees.
                        None => continue,
                    }
                }
            };
            let cseq = d.next_cseq();
            let span = notify_span(signal.trace.as_deref());
            let outcome = tracing::Instrument::instrument(
                Box::pin(send(
                    &edge, &d.record, d.protocol, d.remote, cseq, state, body,
                )),
                span,
            )
            .await;
            match outcome {
                Delivery::Delivered => {
                    d.last_version = signal.version;
                    crate::metrics::notified(signal.changed_at_ms);
                }
                Delivery::Refused(status) => {
                    tracing::info!(dialog = %d.record.id, status, "NOTIFY refused; state kept for the next change");
                    d.last_version = signal.version;
                }
                Delivery::Gone(why) => {
                    // RFC 6665 §4.2.2: a 481 or a timeout ends the subscription.
                    tracing::info!(dialog = %d.record.id, presentity = %d.presentity, %why, "watcher gone; ending subscription");
                    Box::pin(forget_subscription(&edge, &d.presentity, &d.record.id)).await;
                    break;
                }
            }
            if !edge.config.notify_min_interval.is_zero() {
                tokio::time::sleep(edge.config.notify_min_interval).await;
            }
            continue;
        }
        let give_up_at = signal.expires_at + EXPIRY_GRACE;
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(give_up_at) => {
                // The presence service should have ended it by now; do it
                // here so no dialog outlives its subscription.
                tracing::info!(dialog = %d.record.id, "subscription expired without a termination; ending it");
                let cseq = d.next_cseq();
                let body = final_body(signal.mode, "timeout", &signal.pidf);
                let _ = Box::pin(send(&edge, &d.record, d.protocol, d.remote, cseq, NotifyState::Terminated("timeout"), body)).await;
                Box::pin(forget_subscription(&edge, &d.presentity, &d.record.id)).await;
                break;
            }
        }
    }
    Box::pin(edge.dialogs.remove(&d.record.id)).await;
}

/// Where a presence change came from, as its announcement says.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change<'a> {
    /// W3C `traceparent` of the request that made it (traces exported).
    pub trace: Option<&'a str>,
    /// When it was accepted (ms since the Unix epoch; 0 when unknown).
    pub at_ms: u64,
}

/// The span of one NOTIFY, linked to the change that caused it (when traces
/// are exported; none otherwise).
fn notify_span(trace: Option<&str>) -> tracing::Span {
    if !telemetry::traces::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "sip.notify",
        otel.name = "NOTIFY",
        otel.kind = "client",
        sip.method = "NOTIFY"
    );
    if let Some(trace) = trace {
        telemetry::traces::link(&span, trace);
    }
    span
}
