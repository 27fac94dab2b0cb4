//! The SUBSCRIBE dialogs this edge holds, and one NOTIFY sender per dialog.
//!
//! The dialog records live in the presence service; this is a cache of the
//! ones this edge owns, with what only the owner needs: the next CSeq and the
//! last version sent. Each dialog's sender sends its NOTIFYs strictly one
//! after another, in a task that runs only while there is something to tell (a NOTIFY waits for the previous one's final
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
//!
//! * [`channels`] — the counted channel watches and the latest state heard.
//! * `state` — the dialog index and what changes a dialog's state.
//! * `sender` — each dialog's NOTIFY sender.
//! * `slot` — a dialog's latest signal, and its sender while idle: an idle
//!   dialog holds no task; the schedule of dialogs by when they are overdue.
//! * `compact` — a held dialog's record, kept encoded between NOTIFYs.
//! * [`notify`] — building and sending one NOTIFY; the body comes from the
//!   dialog's event package ([`crate::packages`]).

pub mod channels;
mod compact;
pub mod notify;
mod sender;
mod slot;
mod state;

pub use state::SourceSlot;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{DialogRecord, WatcherEntry};
use store::FeedControl;
use tokio::time::Instant;

use crate::packages::WatcherSnapshot;
use crate::transport::Protocol;

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
    offers: u32,
    expires_at: Instant,
    /// Bumped by a refresh: RFC 6665 §4.2.1.2 wants a NOTIFY after every
    /// accepted SUBSCRIBE, even if the state did not change.
    refreshes: u32,
    /// Set once: the reason of the final NOTIFY.
    end: Option<Arc<str>>,
    /// Where NOTIFYs go from now on: set when a refresh arrived over
    /// another connection (a client that reconnected).
    route: Option<(Protocol, SocketAddr)>,
    /// Bumped when the state backend lost its data and the dialog's state
    /// was reset to what the presence service has now, which may be older
    /// than what was sent (a NOTIFY is due although the version is not
    /// newer).
    resets: u32,
    /// Set once by a draining edge: the sender stops (after the NOTIFY in
    /// flight, if any) without a final NOTIFY; another edge continues.
    handed_over: bool,
}

struct Entry {
    /// Shared with the index's `by_presentity` key and the sender.
    presentity: Arc<str>,
    /// The dialog's signal, and its sender while idle.
    slot: Arc<slot::Slot>,
    /// The dialog as activated (its route is in the signal), encoded;
    /// shared with its sender.
    record: Arc<compact::CompactRecord>,
    /// The dialog's place in its source's count, given back with the entry.
    _source: Arc<SourceSlot>,
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
    /// By dialog id (the key shared with the presentity's [`DialogIds`]).
    dialogs: HashMap<Arc<str>, Entry>,
    /// Per presentity this edge hears or holds dialogs of: its channel's
    /// holders, the latest state heard there, and its dialogs. One entry
    /// (and one copy of the name, shared with the dialogs) serves both
    /// jobs: at 100,000 dialogs each watching a presentity of its own, two
    /// maps cost about 200 bytes more per dialog (`bench/heap.sh`).
    presentities: HashMap<Arc<str>, Watched>,
    /// Counts the states heard on channels; see [`Dialogs::mark`].
    heard: u64,
}

#[derive(Default)]
struct Watched {
    /// Holders of the channel watch: dialogs and subscriptions being set
    /// up. The channel is heard while this is above zero.
    holders: usize,
    latest: Option<(u64, Arc<str>)>,
    /// The value of `Index::heard` when `latest` was heard.
    heard_at: u64,
    /// The document the last dialog of this presentity started with,
    /// shared with the next ones that start with the same text (see
    /// [`Watched::share`]).
    started_with: Option<Arc<str>>,
    /// The ids of this presentity's dialogs in `Index::dialogs`: a change
    /// is offered to its own dialogs without a scan of every dialog the
    /// edge holds (at 100,000 dialogs and thousands of changes a second,
    /// the scan was the edge's bottleneck).
    dialogs: DialogIds,
}

/// A presentity's dialog ids. Most presentities an edge hears have one
/// watcher there, which needs no set of its own (a set's table is an
/// allocation of its own, 100 bytes or so with its first buckets).
#[derive(Default)]
enum DialogIds {
    #[default]
    None,
    One(Arc<str>),
    /// Boxed: a set inline would make every presentity's entry 32 bytes
    /// larger, for the few with more than one dialog here.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<Arc<str>>>),
}

impl DialogIds {
    fn insert(&mut self, id: Arc<str>) {
        match self {
            DialogIds::None => *self = DialogIds::One(id),
            DialogIds::One(first) if *first == id => {}
            DialogIds::One(first) => {
                let set = HashSet::from([first.clone(), id]);
                *self = DialogIds::Many(Box::new(set));
            }
            DialogIds::Many(set) => {
                set.insert(id);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        match self {
            DialogIds::One(only) if **only == *id => *self = DialogIds::None,
            DialogIds::Many(set) => {
                set.remove(id);
                if set.is_empty() {
                    *self = DialogIds::None;
                }
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, DialogIds::None)
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        let (one, many) = match self {
            DialogIds::None => (None, None),
            DialogIds::One(id) => (Some(id), None),
            DialogIds::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
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
    /// The slot a new SUBSCRIBE reserved in its source's count; `None`
    /// (a dialog continued from another edge): one is taken at start,
    /// past the cap if need be.
    pub source_slot: Option<Arc<SourceSlot>>,
}

/// The dialogs of this edge.
pub struct Dialogs {
    feed: Box<dyn FeedControl>,
    index: Mutex<Index>,
    /// Dialogs held (and being set up) per source address.
    sources: Arc<state::SourceCounts>,
    /// Dialogs by when they are overdue (see `slot`).
    overdue: slot::Overdue,
}

/// Where a presence change came from, as its announcement says.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change<'a> {
    /// W3C `traceparent` of the request that made it (traces exported).
    pub trace: Option<&'a str>,
    /// When it was accepted (ms since the Unix epoch; 0 when unknown).
    pub at_ms: u64,
}

/// Once a second, ends the dialogs past their expiry whose termination was
/// never heard (see [`Dialogs::wake_overdue`]): idle dialogs hold no timer.
pub async fn wake_overdue_loop(edge: Arc<crate::Edge>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let woken = edge.dialogs.wake_overdue();
        if woken > 0 {
            tracing::debug!(woken, "dialogs past their expiry woken to end");
        }
    }
}
