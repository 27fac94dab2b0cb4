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

pub mod notify;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{DialogRecord, WatcherEntry};
use store::FeedControl;
use tokio::sync::watch;
use tokio::time::Instant;

use self::notify::{forget_subscription, send, Delivery, NotifyBody, NotifyState};
use crate::packages::{self, EventPackage, Known, Made, Notifier, WatcherSnapshot};
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

/// What the dialog's NOTIFYs carry, from the presence service's answer
/// (its `SubscriptionStatus` and polite blocking).
pub fn mode_of(record: &DialogRecord, status: i32, masked: bool) -> Mode {
    if record.is_winfo() {
        Mode::Winfo
    } else if status == rpc::presence::v1::SubscriptionStatus::Pending as i32 {
        Mode::Pending
    } else if masked {
        Mode::Masked
    } else {
        Mode::Presence
    }
}

/// How many ended watchers a winfo dialog remembers, to report why a
/// watcher left when several changes were coalesced into one NOTIFY.
const ENDED_MEMORY: usize = 64;

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
    /// Set once by a draining edge: the sender stops (after the NOTIFY in
    /// flight, if any) without a final NOTIFY; another edge continues.
    handed_over: bool,
}

struct Entry {
    presentity: String,
    signal: watch::Sender<Signal>,
    /// The dialog as activated (its route is in the signal).
    record: DialogRecord,
    /// Last CSeq used for a NOTIFY, shared with the sender.
    cseq: Arc<AtomicU32>,
    /// What the watcher last acknowledged ([`Acknowledged`]), written by the
    /// sender and read when the dialog is handed over.
    acknowledged: Arc<AtomicU64>,
    /// The sender task, awaited when the dialog is handed over.
    sender: tokio::task::JoinHandle<()>,
}

/// A dialog's mode and the version of the state its watcher last
/// acknowledged (a 2xx to the NOTIFY), packed into one atomic word: the
/// mode in the top two bits (0 = nothing acknowledged yet), the version in
/// the others. Versions are milliseconds since the Unix epoch or small
/// counters, far below 2^62. Watcher-information dialogs record nothing:
/// their documents are numbered per dialog, so a new owner starts over
/// with a full one.
struct Acknowledged;

impl Acknowledged {
    const VERSION_BITS: u64 = (1 << 62) - 1;

    fn pack(mode: Mode, version: u64) -> u64 {
        let code = match mode {
            Mode::Presence => 1,
            Mode::Masked => 2,
            Mode::Pending => 3,
            Mode::Winfo => return 0,
        };
        (code << 62) | (version & Self::VERSION_BITS)
    }

    fn unpack(word: u64) -> Option<(Mode, u64)> {
        let mode = match word >> 62 {
            1 => Mode::Presence,
            2 => Mode::Masked,
            3 => Mode::Pending,
            _ => return None,
        };
        Some((mode, word & Self::VERSION_BITS))
    }
}

/// A dialog a draining edge gave up, and what its watcher last
/// acknowledged (mode and version), if anything.
#[derive(Clone, Debug)]
pub struct GivenUp {
    pub presentity: String,
    pub dialog_id: String,
    pub acknowledged: Option<(Mode, u64)>,
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
        self.start(edge, dialog, false);
    }

    /// Starts the sender of a dialog another edge handed over after its
    /// watcher acknowledged `dialog.version`'s state: the first NOTIFY waits
    /// for something newer.
    pub fn continue_handed_over(&self, edge: &Arc<Edge>, dialog: NewDialog) {
        self.start(edge, dialog, true);
    }

    fn start(&self, edge: &Arc<Edge>, dialog: NewDialog, acknowledged: bool) {
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
            handed_over: false,
        });
        let id = dialog.record.id.clone();
        let cseq = Arc::new(AtomicU32::new(dialog.first_cseq));
        let acknowledged = acknowledged && dialog.mode != Mode::Winfo;
        let acknowledged_word = Arc::new(AtomicU64::new(if acknowledged {
            Acknowledged::pack(dialog.mode, dialog.version)
        } else {
            0
        }));
        let mut record = dialog.record;
        record.transport = dialog.protocol.as_str().to_string();
        record.remote_addr = dialog.remote.to_string();
        index
            .by_presentity
            .entry(dialog.presentity.clone())
            .or_default()
            .insert(id.clone());
        let sender = Sender {
            record: record.clone(),
            presentity: dialog.presentity.clone(),
            protocol: dialog.protocol,
            remote: dialog.remote,
            cseq: cseq.clone(),
            // A handed-over dialog's watcher has this state already; only
            // something newer is due.
            last_version: if acknowledged { dialog.version } else { 0 },
            offers_seen: 0,
            refreshes_seen: u64::from(acknowledged),
            package: packages::of(&record),
            notifier: packages::of(&record).notifier(),
            resets_seen: 0,
            acknowledged: acknowledged_word.clone(),
        };
        // Spawned under the index lock: the task cannot look the dialog up
        // before it is inserted.
        let task = tokio::spawn(run_sender(edge.clone(), sender, rx));
        index.dialogs.insert(
            id,
            Entry {
                presentity: dialog.presentity,
                signal: tx,
                record,
                cseq,
                acknowledged: acknowledged_word,
                sender: task,
            },
        );
    }

    /// Gives every dialog up (a draining edge): each sender stops, after
    /// the NOTIFY it has in flight if that ends within `wait` (else it is
    /// stopped there, its outcome unknown), without a final NOTIFY. Returns
    /// what each watcher last acknowledged, for the edge that continues
    /// the dialog; dialogs that were ending are left out.
    pub async fn hand_over(&self, wait: Duration) -> Vec<GivenUp> {
        let entries: Vec<(String, Entry)> = {
            let Ok(mut index) = self.index.lock() else {
                return Vec::new();
            };
            index.by_presentity.clear();
            index.dialogs.drain().collect()
        };
        for (_, entry) in &entries {
            entry.signal.send_modify(|s| s.handed_over = true);
        }
        let deadline = Instant::now() + wait;
        let mut given_up = Vec::with_capacity(entries.len());
        for (dialog_id, mut entry) in entries {
            if tokio::time::timeout_at(deadline, &mut entry.sender)
                .await
                .is_err()
            {
                entry.sender.abort();
            }
            if entry.signal.borrow().end.is_some() {
                continue;
            }
            given_up.push(GivenUp {
                presentity: entry.presentity,
                dialog_id,
                acknowledged: Acknowledged::unpack(entry.acknowledged.load(Ordering::SeqCst)),
            });
        }
        given_up
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
    /// The dialog's event package, and what it told the watcher so far.
    package: &'static dyn EventPackage,
    notifier: Box<dyn Notifier>,
    resets_seen: u64,
    /// Shared with the index (see [`Acknowledged`]).
    acknowledged: Arc<AtomicU64>,
}

impl Sender {
    fn next_cseq(&self) -> u32 {
        self.cseq.fetch_add(1, Ordering::SeqCst).wrapping_add(1)
    }

    /// The body of the dialog's final NOTIFY, as its package says.
    fn final_body<'a>(&self, signal: &'a Signal, reason: &str) -> NotifyBody<'a> {
        let pending = signal.mode == Mode::Pending;
        self.package
            .final_body(pending, &signal.pidf, reason)
            .map(|text| (self.package.content_type(), text))
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
            let body = d.final_body(&signal, reason);
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
        if signal.handed_over {
            // Another edge continues the dialog; the index forgot it.
            return;
        }
        let refreshed = signal.refreshes != d.refreshes_seen;
        let reset = signal.resets != d.resets_seen;
        let known = Known {
            presentity: &d.presentity,
            pending: signal.mode == Mode::Pending,
            pidf: &signal.pidf,
            state_changed: reset || signal.version > d.last_version,
            watchers: &signal.watchers,
            ended: &signal.ended,
            refreshed,
        };
        let made = d.notifier.next(&known);
        if refreshed || reset {
            // Seen, whether or not there was something to tell.
            d.refreshes_seen = signal.refreshes;
            d.resets_seen = signal.resets;
        }
        if let Made::Notify(text) = made {
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
            let state = match signal.mode {
                Mode::Pending => NotifyState::Pending(remaining),
                _ => NotifyState::Active(remaining),
            };
            let body = text.as_deref().map(|t| (d.package.content_type(), t));
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
                    d.acknowledged.store(
                        Acknowledged::pack(signal.mode, signal.version),
                        Ordering::SeqCst,
                    );
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
                let body = d.final_body(&signal, "timeout");
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
