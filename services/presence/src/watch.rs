//! `WatchPresence`: the presence of chosen presentities as a stream of
//! versioned states, for applications that do not speak SIP.
//!
//! One replica opens **one** change feed on the backend (one Redis pub/sub
//! connection) however many streams it serves: [`WatchHub`] watches a
//! presentity's channel while at least one stream wants it and routes each
//! announcement to those streams' inboxes.
//!
//! A stream never misses a change:
//! 1. it joins the hub (the channels are watched) *before* reading the
//!    snapshot, so a change racing the read is in its inbox;
//! 2. it sends a state only when its version is newer than the last one it
//!    sent (or than the version the client said it knows), so the race
//!    above never sends anything twice or backwards;
//! 3. when the feed may have lost messages ([`FeedItem::Resync`]) or the
//!    inbox overflowed because the client reads slowly, it re-reads every
//!    presentity and sends what is newer — the latest state, not every
//!    intermediate one;
//! 4. when the feed itself is gone the stream ends with `UNAVAILABLE`; the
//!    client reconnects with its versions and gets whatever changed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::Announcement;
use rpc::presence::v1 as pb;
use store::{Backend, FeedControl, FeedItem, StoreError};
use tokio::sync::{mpsc, Notify};
use tonic::Status;

use crate::compositor::{PresenceView, PresentityRecord};
use crate::grpc::state_to_pb;
use crate::Compositor;

/// Most presentities one stream may watch.
pub const MAX_WATCHED: usize = 1000;
/// Longest presentity name accepted (an address-of-record).
pub const MAX_PRESENTITY_LEN: usize = 512;
/// Changes an inbox holds before it gives up on them and re-reads instead.
const INBOX_CAPACITY: usize = 1024;
/// Events buffered between a stream's task and the gRPC connection.
const STREAM_BUFFER: usize = 64;

use locks::lock;

/// A composed state heard on a channel.
struct Change {
    presentity: String,
    version: u64,
    pidf: String,
}

/// What the hub has for one stream, waiting to be sent.
#[derive(Default)]
struct Pending {
    changes: VecDeque<Change>,
    /// Re-read every presentity: the feed or this inbox lost changes.
    resync: bool,
    /// The feed is gone: the stream must end.
    failed: bool,
}

/// One stream's mailbox, filled by the hub's dispatcher.
#[derive(Default)]
struct Inbox {
    pending: Mutex<Pending>,
    ready: Notify,
}

impl Inbox {
    fn push(&self, change: Change) {
        {
            let mut pending = lock(&self.pending);
            if pending.resync || pending.failed {
                // A re-read is due anyway; it will see this change.
            } else if pending.changes.len() >= INBOX_CAPACITY {
                pending.changes.clear();
                pending.resync = true;
            } else {
                pending.changes.push_back(change);
            }
        }
        self.ready.notify_one();
    }

    fn resync(&self) {
        lock(&self.pending).resync = true;
        self.ready.notify_one();
    }

    fn fail(&self) {
        lock(&self.pending).failed = true;
        self.ready.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *lock(&self.pending))
    }
}

/// Which inboxes want which presentity, for the feed of one generation.
#[derive(Default)]
struct Routes {
    generation: u64,
    by_presentity: HashMap<String, HashMap<u64, Arc<Inbox>>>,
}

/// The open feed of one generation.
struct Feed {
    control: Box<dyn FeedControl>,
    generation: u64,
}

struct HubShared {
    backend: Arc<dyn Backend>,
    /// Serialises watch/unwatch so the channel set always matches `routes`.
    feed: tokio::sync::Mutex<Option<Feed>>,
    routes: Mutex<Routes>,
    next_stream: AtomicU64,
    next_generation: AtomicU64,
}

/// The change-feed multiplexer of one presence replica. Cheap to clone.
#[derive(Clone)]
pub struct WatchHub {
    shared: Arc<HubShared>,
}

/// A stream's place in the hub; leaving is done on drop.
struct Membership {
    hub: WatchHub,
    stream: u64,
    generation: u64,
    presentities: Vec<String>,
    inbox: Arc<Inbox>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let hub = self.hub.clone();
        let stream = self.stream;
        let generation = self.generation;
        let presentities = std::mem::take(&mut self.presentities);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { hub.leave(stream, generation, &presentities).await });
        }
    }
}

impl WatchHub {
    /// A hub over `backend`; the feed is opened by the first stream.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        WatchHub {
            shared: Arc::new(HubShared {
                backend,
                feed: tokio::sync::Mutex::new(None),
                routes: Mutex::new(Routes::default()),
                next_stream: AtomicU64::new(1),
                next_generation: AtomicU64::new(1),
            }),
        }
    }

    /// Number of presentity channels currently watched (for tests and
    /// metrics).
    pub fn watched_channels(&self) -> usize {
        lock(&self.shared.routes).by_presentity.len()
    }

    /// Makes the hub route changes of `presentities` to a new inbox, the
    /// channels being watched when this returns.
    async fn join(&self, presentities: &[String]) -> Result<Membership, StoreError> {
        let shared = &self.shared;
        let mut feed = shared.feed.lock().await;
        if feed.is_none() {
            let (control, items) = shared.backend.open_feed().await?;
            let generation = shared.next_generation.fetch_add(1, Ordering::Relaxed);
            lock(&shared.routes).generation = generation;
            tokio::spawn(dispatch(Arc::downgrade(shared), generation, items));
            *feed = Some(Feed {
                control,
                generation,
            });
        }
        let Some(open) = feed.as_ref() else {
            return Err(StoreError::Unavailable("change feed not open".into()));
        };
        let membership = Membership {
            hub: self.clone(),
            stream: shared.next_stream.fetch_add(1, Ordering::Relaxed),
            generation: open.generation,
            presentities: presentities.to_vec(),
            inbox: Arc::new(Inbox::default()),
        };
        let mut new_channels = Vec::new();
        {
            let mut routes = lock(&shared.routes);
            for presentity in presentities {
                let streams = routes.by_presentity.entry(presentity.clone()).or_default();
                if streams.is_empty() {
                    new_channels.push(presentity.clone());
                }
                streams.insert(membership.stream, membership.inbox.clone());
            }
        }
        for presentity in &new_channels {
            // On failure the membership is dropped, which unroutes it again.
            open.control.watch(presentity).await?;
        }
        Ok(membership)
    }

    /// Removes a stream; channels no other stream wants are unwatched.
    async fn leave(&self, stream: u64, generation: u64, presentities: &[String]) {
        let shared = &self.shared;
        let feed = shared.feed.lock().await;
        let mut unused = Vec::new();
        {
            let mut routes = lock(&shared.routes);
            if routes.generation != generation {
                return;
            }
            for presentity in presentities {
                if let Some(streams) = routes.by_presentity.get_mut(presentity) {
                    streams.remove(&stream);
                    if streams.is_empty() {
                        routes.by_presentity.remove(presentity);
                        unused.push(presentity.clone());
                    }
                }
            }
        }
        let Some(open) = feed.as_ref().filter(|f| f.generation == generation) else {
            return;
        };
        for presentity in unused {
            if let Err(error) = open.control.unwatch(&presentity).await {
                tracing::warn!(%presentity, %error, "unwatching a presentity channel failed");
            }
        }
    }

    /// Forgets a feed that has ended, so the next stream opens a new one.
    async fn reset(&self, generation: u64) {
        let mut feed = self.shared.feed.lock().await;
        if feed.as_ref().is_some_and(|f| f.generation == generation) {
            *feed = None;
        }
    }
}

/// Delivers the feed's items to the inboxes until the feed ends or the hub
/// is gone.
async fn dispatch(
    shared: std::sync::Weak<HubShared>,
    generation: u64,
    mut items: mpsc::Receiver<FeedItem>,
) {
    while let Some(item) = items.recv().await {
        let Some(hub) = shared.upgrade() else { return };
        let routes = lock(&hub.routes);
        match item {
            FeedItem::Message(message) => match Announcement::from_payload(&message.payload) {
                Some(Announcement::State { version, pidf, .. }) => {
                    if let Some(streams) = routes.by_presentity.get(&message.entity) {
                        for inbox in streams.values() {
                            inbox.push(Change {
                                presentity: message.entity.clone(),
                                version,
                                pidf: pidf.clone(),
                            });
                        }
                    }
                }
                // Other announcements concern SIP dialogs, not presence state.
                Some(_) => {}
                None => {
                    tracing::warn!(presentity = %message.entity, "unrecognised announcement ignored");
                }
            },
            FeedItem::Resync => {
                tracing::info!("change feed resynchronising WatchPresence streams");
                for inbox in routes.by_presentity.values().flat_map(|s| s.values()) {
                    inbox.resync();
                }
            }
        }
    }
    let Some(hub) = shared.upgrade() else { return };
    tracing::warn!("change feed closed; WatchPresence streams end and clients reconnect");
    {
        let mut routes = lock(&hub.routes);
        if routes.generation == generation {
            for inbox in routes.by_presentity.values().flat_map(|s| s.values()) {
                inbox.fail();
            }
            routes.by_presentity.clear();
        }
    }
    WatchHub { shared: hub }.reset(generation).await;
}

/// A validated WatchPresence request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchRequest {
    /// Distinct presentities, in the order asked.
    pub presentities: Vec<String>,
    /// The versions the client already has.
    pub known_versions: HashMap<String, u64>,
    /// When the caller's credentials expire: the stream ends then.
    pub credentials_expire: Option<std::time::SystemTime>,
}

impl WatchRequest {
    /// Checks and de-duplicates a request.
    pub fn new(
        presentities: Vec<String>,
        known_versions: HashMap<String, u64>,
    ) -> Result<Self, Status> {
        let mut seen = HashSet::new();
        let presentities: Vec<String> = presentities
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect();
        if presentities.is_empty() {
            return Err(Status::invalid_argument(
                "at least one presentity is required",
            ));
        }
        if let Some(bad) = presentities.iter().find(|p| !valid_presentity(p)) {
            return Err(Status::invalid_argument(format!(
                "invalid presentity {:?}: 1-{MAX_PRESENTITY_LEN} bytes without spaces or control characters",
                bad.chars().take(64).collect::<String>()
            )));
        }
        if presentities.len() > MAX_WATCHED {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_WATCHED} presentities per stream"
            )));
        }
        Ok(WatchRequest {
            presentities,
            known_versions,
            credentials_expire: None,
        })
    }
}

/// Whether `presentity` can name an address-of-record.
pub fn valid_presentity(presentity: &str) -> bool {
    !presentity.is_empty()
        && presentity.len() <= MAX_PRESENTITY_LEN
        && !presentity
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
}

/// Whether a state at `version` is news to a client that last saw `known`.
/// A record that vanished (version 0) is news to a client that saw one.
fn is_news(version: u64, known: Option<u64>) -> bool {
    match known {
        None => true,
        Some(known) => version > known || (version == 0 && known > 0),
    }
}

type EventSender = mpsc::Sender<Result<pb::WatchPresenceEvent, Status>>;

fn state_event(view: PresenceView) -> pb::WatchPresenceEvent {
    pb::WatchPresenceEvent {
        event: Some(pb::watch_presence_event::Event::State(state_to_pb(view))),
    }
}

/// Starts a stream: joins the hub (so nothing is missed from now on) and
/// returns the receiving end of its events; a task sends the snapshot and
/// then the changes until the client goes away.
pub async fn start(
    hub: &WatchHub,
    compositor: Compositor,
    request: WatchRequest,
) -> Result<mpsc::Receiver<Result<pb::WatchPresenceEvent, Status>>, Status> {
    let membership = hub.join(&request.presentities).await.map_err(|e| {
        tracing::warn!(error = %e, "WatchPresence could not watch the change feed");
        Status::unavailable(e.to_string())
    })?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let presentities = request.presentities.len();
        tracing::debug!(presentities, "WatchPresence stream started");
        if let Err(status) = run(&compositor, &membership, request, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
        tracing::debug!(presentities, "WatchPresence stream ended");
        drop(membership);
    });
    Ok(rx)
}

/// Why a stream stopped sending.
enum Stop {
    /// The client went away.
    Gone,
}

async fn send(tx: &EventSender, event: pb::WatchPresenceEvent) -> Result<(), Stop> {
    tx.send(Ok(event)).await.map_err(|_| Stop::Gone)
}

/// Reads every presentity and sends those the client has not seen.
async fn send_newer(
    compositor: &Compositor,
    presentities: &[String],
    last_sent: &mut HashMap<String, u64>,
    tx: &EventSender,
) -> Result<Result<(), Stop>, Status> {
    let views = compositor
        .views(presentities)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    for view in views {
        if is_news(view.version, last_sent.get(&view.presentity).copied()) {
            last_sent.insert(view.presentity.clone(), view.version);
            if let Err(stop) = send(tx, state_event(view)).await {
                return Ok(Err(stop));
            }
        }
    }
    Ok(Ok(()))
}

/// The life of one stream after it joined the hub. Returns the status to
/// end it with, or `Ok` when the client went away.
async fn run(
    compositor: &Compositor,
    membership: &Membership,
    request: WatchRequest,
    tx: &EventSender,
) -> Result<(), Status> {
    let mut last_sent: HashMap<String, u64> = request
        .known_versions
        .into_iter()
        .filter(|(p, _)| membership.presentities.contains(p))
        .collect();
    if send_newer(compositor, &request.presentities, &mut last_sent, tx)
        .await?
        .is_err()
    {
        return Ok(());
    }
    let synced = pb::WatchPresenceEvent {
        event: Some(pb::watch_presence_event::Event::Synced(pb::WatchSynced {})),
    };
    if send(tx, synced).await.is_err() {
        return Ok(());
    }
    let expiry = request.credentials_expire.map(|at| {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + left
    });
    let credentials_expired = async {
        match expiry {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(credentials_expired);
    loop {
        tokio::select! {
            _ = membership.inbox.ready.notified() => {}
            _ = tx.closed() => return Ok(()),
            _ = &mut credentials_expired => {
                return Err(Status::unauthenticated(
                    "the token expired; reconnect with a fresh token and known_versions",
                ));
            }
        }
        let pending = membership.inbox.take();
        if pending.failed {
            return Err(Status::unavailable(
                "change feed lost; reconnect with known_versions",
            ));
        }
        if pending.resync {
            if send_newer(compositor, &request.presentities, &mut last_sent, tx)
                .await?
                .is_err()
            {
                return Ok(());
            }
            continue;
        }
        for change in pending.changes {
            // Announced states always have a version; only newer ones count.
            if last_sent
                .get(&change.presentity)
                .is_some_and(|known| change.version <= *known)
            {
                continue;
            }
            last_sent.insert(change.presentity.clone(), change.version);
            let record = PresentityRecord {
                version: change.version,
                publications: Vec::new(),
                composed: change.pidf,
                ..PresentityRecord::default()
            };
            let view = PresenceView::from_record(&change.presentity, &record);
            if send(tx, state_event(view)).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
