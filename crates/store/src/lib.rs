//! The state layer of the presence cluster.
//!
//! Every piece of durable state — registrations, publications, subscriptions
//! — lives behind [`Backend`]. The registrar and presence services keep their
//! logic in plain Rust and use the backend only through a handful of
//! primitives that both implementations ([`memory::MemoryBackend`] for a single
//! process, [`redis::RedisBackend`] for a cluster) provide with the same
//! semantics:
//!
//! * **records**: one value per key, replaced only by compare-and-swap on a
//!   revision number ([`Backend::cas_record`]). All read-modify-write logic
//!   (RFC 3261 registrar rules, the RFC 3903 compositor) runs in Rust between
//!   a [`Backend::get_record`] and a `cas_record`, retrying on conflict. The
//!   swap may publish a message on a channel *in the same atomic step*, so a
//!   change and its announcement can never be separated.
//! * **maps**: small per-entity hash maps (subscriptions of one presentity),
//!   with a conditional delete so that exactly one caller wins a removal.
//! * **schedules**: sorted sets of members by due time, which drive expiry
//!   sweeps without ever scanning the keyspace.
//! * **channels**: publish/subscribe, used for NOTIFY fan-out. Delivery is at
//!   most once; subscribers are told to resynchronise after any gap.
//!
//! Keys passed to the backend are logical ([`Key`]); each backend maps them to
//! its own layout. In Redis every key of one entity shares the hash tag
//! `{entity}` so that a record, its map and its channel live in one Redis
//! Cluster slot.

#![warn(missing_docs)]

mod feed;
pub mod memory;
pub mod metrics;
pub mod redis;
pub mod sweep;
#[cfg(feature = "testing")]
pub mod testing;

pub use feed::FEED_CAPACITY;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached now; the caller should answer
    /// "try again later" (SIP 503 / gRPC UNAVAILABLE).
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this code does not understand.
    #[error("state backend protocol error: {0}")]
    Protocol(String),
    /// A stored value could not be decoded.
    #[error("corrupt stored value under {key}: {reason}")]
    Corrupt {
        /// The backend's name for the damaged key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What kind of entity a key belongs to. Each kind has its own key prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Registrar bindings of one address-of-record.
    Bindings,
    /// Publications and composed-state version of one presentity.
    Presentity,
    /// Subscriptions (dialog records) watching one presentity.
    Subscriptions,
    /// Per-presentity authorization rules and watcher decisions.
    Rules,
    /// The dialogs one edge owns (entity: the edge id), so that survivors
    /// can find and claim them when its lease lapses. The form written by
    /// releases before [`Kind::EdgeDialogShard`]; still read and cleared.
    EdgeDialogs,
    /// One shard of the dialogs one edge owns (entity: the edge id, `/`,
    /// the shard number): the edge's index split into many small maps,
    /// which Redis keeps in its compact encoding.
    EdgeDialogShard,
    /// The state epoch (entity: `cluster`): a random id created when the
    /// backend holds none, so a backend that lost its data is noticed.
    Epoch,
    /// The live subscriptions of one watcher identity (entity: the
    /// watcher's AOR), counted against the per-watcher limit.
    Watching,
}

impl Kind {
    /// Short prefix used in backend key names.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Bindings => "reg",
            Kind::Presentity => "pres",
            Kind::Subscriptions => "subs",
            Kind::Rules => "rules",
            Kind::EdgeDialogs => "edge",
            Kind::EdgeDialogShard => "edges",
            Kind::Epoch => "epoch",
            Kind::Watching => "watching",
        }
    }
}

/// A logical key: the kind of record and the entity it belongs to (an
/// address-of-record such as `alice@example.com`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Which family of state the key holds.
    pub kind: Kind,
    /// The entity (AOR) the state belongs to; any string, braces included.
    pub entity: String,
}

impl Key {
    /// The key of `kind` state of `entity`.
    pub fn new(kind: Kind, entity: impl Into<String>) -> Self {
        Key {
            kind,
            entity: entity.into(),
        }
    }
}

/// A named sorted set of members by due time, used to find what expires
/// without scanning. Members are opaque strings chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// Members are AORs whose earliest binding expiry is due.
    Bindings,
    /// Members are presentities whose earliest publication expiry is due.
    Publications,
    /// Members are `presentity '\n' dialog-id` of subscriptions.
    Subscriptions,
    /// Members are edge ids, due when the edge's lease lapses unless
    /// renewed.
    Leases,
}

/// A record as stored: its revision and value. Revision 0 means "absent".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The revision, 1 for a freshly created record; +1 per swap.
    pub rev: u64,
    /// The stored bytes, opaque to the backend.
    pub value: Bytes,
}

/// A message to publish on an entity's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelMessage {
    /// The entity whose channel carries the message (presentity AOR).
    pub entity: String,
    /// The message bytes, opaque to the backend.
    pub payload: Bytes,
}

/// What a change-feed subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedItem {
    /// A message published on a watched entity's channel.
    Message(ChannelMessage),
    /// The feed lost messages (reconnect, server-side unsubscribe) and has
    /// re-established every watch; the receiver must re-read the state of
    /// every entity it watches.
    Resync,
}

/// The sending half a subscriber uses to choose which channels it hears.
#[async_trait]
pub trait FeedControl: Send + Sync {
    /// Start receiving messages of `entity`'s channel. Idempotent.
    async fn watch(&self, entity: &str) -> Result<(), StoreError>;
    /// Stop receiving messages of `entity`'s channel. Idempotent.
    async fn unwatch(&self, entity: &str) -> Result<(), StoreError>;
}

/// The primitives every state backend provides, with identical semantics.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads a record; `None` when absent (or expired).
    async fn get_record(&self, key: &Key) -> Result<Option<Record>, StoreError>;

    /// Reads several records of the same kind at once (batch lookups).
    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError>;

    /// Atomically: if the record's current revision is `expected_rev` (0 for
    /// absent), store `value` (or delete when `None`) with revision
    /// `expected_rev + 1`, expiring the whole record after `ttl_ms` when
    /// given, and publish `announce` on its entity's channel. Returns the new
    /// revision, or `None` when the revision did not match (nothing changed,
    /// nothing published).
    async fn cas_record(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
    ) -> Result<Option<u64>, StoreError>;

    /// [`Backend::cas_record`] that also adds or moves `member` in a
    /// schedule to `due` (see [`Backend::schedule`]). The schedule entry is
    /// written before the record or atomically with it, never after, so no
    /// record is ever stored unscheduled; a lost race may leave it
    /// scheduled early, which its sweeper treats as nothing due. Backends
    /// that can do both in one step (one Redis round trip) override this.
    async fn cas_record_scheduled(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
        schedule: (Schedule, &str, UnixMillis),
    ) -> Result<Option<u64>, StoreError> {
        self.schedule(schedule.0, schedule.1, schedule.2).await?;
        self.cas_record(key, expected_rev, value, ttl_ms, announce)
            .await
    }

    /// Sets one field of an entity's map.
    async fn map_put(&self, key: &Key, field: &str, value: Bytes) -> Result<(), StoreError>;

    /// Reads one field of an entity's map.
    async fn map_get(&self, key: &Key, field: &str) -> Result<Option<Bytes>, StoreError>;

    /// Reads the whole map (field, value), in no particular order.
    async fn map_list(&self, key: &Key) -> Result<Vec<(String, Bytes)>, StoreError>;

    /// Atomically removes a field and returns its value if it was present
    /// and — when `only_if` is given — its value was exactly `only_if`.
    /// Of many concurrent callers at most one gets `Some`; that caller is the
    /// one that must act on the removal (e.g. send the final NOTIFY).
    async fn map_take(
        &self,
        key: &Key,
        field: &str,
        only_if: Option<&[u8]>,
    ) -> Result<Option<Bytes>, StoreError>;

    /// Atomically replaces a field's value with `value` if it is exactly
    /// `expected` now. Of many concurrent callers at most one gets `true`
    /// (used to move a dialog record to a new owner exactly once).
    async fn map_replace(
        &self,
        key: &Key,
        field: &str,
        expected: &[u8],
        value: Bytes,
    ) -> Result<bool, StoreError>;

    /// Adds or moves `member` in a schedule to `due`.
    async fn schedule(
        &self,
        schedule: Schedule,
        member: &str,
        due: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Removes `member` from a schedule.
    async fn unschedule(&self, schedule: Schedule, member: &str) -> Result<(), StoreError>;

    /// How many members a schedule holds (for metrics: the live
    /// registrations' AORs, presentities with publications, subscriptions).
    async fn schedule_len(&self, schedule: Schedule) -> Result<u64, StoreError>;

    /// Up to `limit` members due at or before `now`, earliest first. Does not
    /// remove them: callers process each member (idempotently) and then
    /// re-schedule or unschedule it.
    async fn due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError>;

    /// Claims up to `limit` members due at or before `now`, earliest first,
    /// for one sweeper: each is moved to `hold_until` in the same atomic
    /// step, so concurrent sweepers (other replicas) claim other members,
    /// and a sweeper that dies mid-batch leaves its members due again at
    /// `hold_until`. Returns the members with the due times they had.
    ///
    /// The claimant then handles each member and either schedules it again
    /// ([`Backend::schedule`], which ends the claim) or lets
    /// [`Backend::release`] drop it.
    async fn claim_due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
        hold_until: UnixMillis,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError>;

    /// Removes each of `members` from the schedule if it is still held by
    /// a claim ([`Backend::claim_due`]); a member scheduled again since its
    /// claim — by a write that re-armed it, or by the sweeper itself — is
    /// kept. Returns how many were removed.
    async fn release(&self, schedule: Schedule, members: &[String]) -> Result<usize, StoreError>;

    /// Publishes a message on its entity's channel (outside any record swap).
    async fn publish(&self, message: ChannelMessage) -> Result<(), StoreError>;

    /// Opens a change feed: a control to choose channels, and the receiver
    /// of what arrives on them. The feed reconnects by itself and sends
    /// [`FeedItem::Resync`] after any possible loss.
    async fn open_feed(
        &self,
    ) -> Result<(Box<dyn FeedControl>, mpsc::Receiver<FeedItem>), StoreError>;

    /// Checks the backend answers (health checks, readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the backend a service is configured with: `memory:` (or `memory`)
/// for the single-process store, a `redis://` URL for one Redis server, a
/// `redis+cluster://host:port,host:port` URL for a Redis Cluster, and
/// `rediss://` / `rediss+cluster://` for the same over TLS (see
/// [`redis::RedisBackend::connect`]).
pub async fn open(url: &str) -> Result<Arc<dyn Backend>, StoreError> {
    open_with_tls(url, redis::TlsFiles::default()).await
}

/// [`open`] with the certificates a `rediss://` (or `rediss+cluster://`)
/// URL uses: a CA to trust, a client certificate for mutual TLS.
pub async fn open_with_tls(
    url: &str,
    tls: redis::TlsFiles,
) -> Result<Arc<dyn Backend>, StoreError> {
    if url == "memory" || url.starts_with("memory:") {
        return Ok(Arc::new(memory::MemoryBackend::new()));
    }
    let mut config = redis::RedisConfig::new(url);
    config.tls = tls;
    let backend = redis::RedisBackend::connect_with(config).await?;
    Ok(Arc::new(backend))
}

/// Locks a mutex even if a previous holder panicked: every critical section
/// in this crate leaves its data consistent at each step, so a poisoned
/// lock carries no half-done state.
pub(crate) use locks::lock;

/// The revision a successful swap from `expected_rev` produces.
pub(crate) fn next_revision(key: &Key, expected_rev: u64) -> Result<u64, StoreError> {
    expected_rev
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{}:{}", key.kind.prefix(), key.entity),
            reason: "revision counter exhausted".into(),
        })
}
