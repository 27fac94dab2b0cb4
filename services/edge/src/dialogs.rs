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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pidf::watcherinfo::{DocState, Watcher, WatcherEvent, WatcherInfo, WatcherList, WatcherStatus};
use presence::subscriptions::{DialogRecord, WatcherEntry};
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
    /// When the list was made (orders lists from different replicas).
    pub at_ms: u64,
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
    expires_at: Instant,
    /// Bumped by a refresh: RFC 6665 §4.2.1.2 wants a NOTIFY after every
    /// accepted SUBSCRIBE, even if the state did not change.
    refreshes: u64,
    /// Set once: the reason of the final NOTIFY.
    end: Option<Arc<str>>,
    /// Where NOTIFYs go from now on: set when a refresh arrived over
    /// another connection (a client that reconnected).
    route: Option<(Protocol, SocketAddr)>,
}

struct Entry {
    presentity: String,
    signal: watch::Sender<Signal>,
}

#[derive(Default)]
struct Index {
    dialogs: HashMap<String, Entry>,
    /// Per watched presentity: how many holders (dialogs and subscriptions
    /// being set up) and the latest state heard on its channel.
    watched: HashMap<String, Watched>,
}

#[derive(Default)]
struct Watched {
    holders: usize,
    latest: Option<(u64, Arc<str>)>,
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
                at_ms: 0,
                watchers: dialog.watchers,
            }),
            ended: Arc::new(Vec::new()),
            version,
            pidf,
            expires_at,
            refreshes: 1,
            end: None,
            route: None,
        });
        let id = dialog.record.id.clone();
        index.dialogs.insert(
            id.clone(),
            Entry {
                presentity: dialog.presentity.clone(),
                signal: tx,
            },
        );
        let sender = Sender {
            record: dialog.record,
            presentity: dialog.presentity,
            protocol: dialog.protocol,
            remote: dialog.remote,
            cseq: dialog.first_cseq,
            last_version: 0,
            refreshes_seen: 0,
            winfo: WinfoState::default(),
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
        let Ok(index) = self.index.lock() else {
            return false;
        };
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

    /// A new watcher list of `presentity` was heard: offered to its
    /// `presence.winfo` dialogs (older lists are ignored).
    pub fn offer_watchers(
        &self,
        presentity: &str,
        at_ms: u64,
        watchers: Vec<WatcherEntry>,
        ended: Vec<WatcherEntry>,
    ) {
        let Ok(index) = self.index.lock() else {
            return;
        };
        let snapshot = Arc::new(WatcherSnapshot { at_ms, watchers });
        for entry in index
            .dialogs
            .values()
            .filter(|e| e.presentity == presentity)
        {
            entry.signal.send_if_modified(|s| {
                if s.mode != Mode::Winfo || at_ms <= s.watchers.at_ms {
                    return false;
                }
                s.watchers = snapshot.clone();
                if !ended.is_empty() {
                    let mut remembered: Vec<WatcherEntry> = ended.clone();
                    remembered.extend(s.ended.iter().cloned());
                    remembered.truncate(ENDED_MEMORY);
                    s.ended = Arc::new(remembered);
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
    pub fn offer(&self, presentity: &str, version: u64, pidf: &str) {
        let Ok(mut index) = self.index.lock() else {
            return;
        };
        let pidf: Arc<str> = Arc::from(pidf);
        let Some(w) = index.watched.get_mut(presentity) else {
            return;
        };
        if w.latest.as_ref().is_some_and(|(v, _)| *v >= version) {
            return;
        }
        w.latest = Some((version, pidf.clone()));
        for entry in index
            .dialogs
            .values()
            .filter(|e| e.presentity == presentity)
        {
            entry.signal.send_if_modified(|s| {
                if version > s.version && s.mode == Mode::Presence {
                    s.version = version;
                    s.pidf = pidf.clone();
                    true
                } else {
                    false
                }
            });
        }
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
            index.dialogs.remove(dialog_id).map(|e| e.presentity)
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
    cseq: u32,
    last_version: u64,
    refreshes_seen: u64,
    winfo: WinfoState,
}

/// What a winfo dialog has reported so far.
#[derive(Default)]
struct WinfoState {
    /// The `version` of the last document sent (RFC 3858 §4.4: one more per
    /// document of the subscription).
    version: u64,
    /// The list as of the last document, by subscription id.
    reported: HashMap<String, WatcherEntry>,
    /// `at_ms` of the list last reported.
    at_ms: u64,
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
        self.at_ms = snapshot.at_ms;
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
            d.cseq += 1;
            let body = final_body(signal.mode, reason, &signal.pidf);
            let _ = send(
                &edge,
                &d.record,
                d.protocol,
                d.remote,
                d.cseq,
                NotifyState::Terminated(reason),
                body,
            )
            .await;
            break;
        }
        let refreshed = signal.refreshes != d.refreshes_seen;
        let due = match signal.mode {
            Mode::Winfo => refreshed || signal.watchers.at_ms > d.winfo.at_ms,
            _ => refreshed || signal.version > d.last_version,
        };
        if due {
            d.refreshes_seen = signal.refreshes;
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
            d.cseq += 1;
            let outcome = send(&edge, &d.record, d.protocol, d.remote, d.cseq, state, body).await;
            match outcome {
                Delivery::Delivered => d.last_version = signal.version,
                Delivery::Refused(status) => {
                    tracing::info!(dialog = %d.record.id, status, "NOTIFY refused; state kept for the next change");
                    d.last_version = signal.version;
                }
                Delivery::Gone(why) => {
                    // RFC 6665 §4.2.2: a 481 or a timeout ends the subscription.
                    tracing::info!(dialog = %d.record.id, presentity = %d.presentity, %why, "watcher gone; ending subscription");
                    forget_subscription(&edge, &d.presentity, &d.record.id).await;
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
                d.cseq += 1;
                let body = final_body(signal.mode, "timeout", &signal.pidf);
                let _ = send(&edge, &d.record, d.protocol, d.remote, d.cseq, NotifyState::Terminated("timeout"), body).await;
                forget_subscription(&edge, &d.presentity, &d.record.id).await;
                break;
            }
        }
    }
    edge.dialogs.remove(&d.record.id).await;
}
