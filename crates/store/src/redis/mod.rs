//! The clustered backend: every primitive of [`Backend`] on Redis.
//!
//! # Key layout
//!
//! Every key of one entity carries the entity as its Redis Cluster hash tag
//! (`{...}`), so that an entity's record, map and channel share one slot and
//! one Lua script can touch them together. Braces and `%` inside an entity
//! are percent-encoded (`%7B`, `%7D`, `%25`) so that the tag is always the
//! whole entity.
//!
//! | what                         | Redis key / channel        | type       | example                          |
//! |------------------------------|----------------------------|------------|----------------------------------|
//! | record of [`Key`]            | `<prefix>:{<entity>}`      | hash       | `pres:{alice@example.com}`       |
//! | map of [`Key`]               | `<prefix>:{<entity>}:m`    | hash       | `subs:{alice@example.com}:m`     |
//! | map of an edge index shard   | `edges:{<edge-id>/<n>}:m`  | hash       | `edges:{edge-1/17}:m`            |
//! | channel of an entity         | `chan:{<entity>}`          | pub/sub    | `chan:{alice@example.com}`       |
//! | [`Schedule::Bindings`]       | `sched:bindings`           | sorted set | member AOR, score due (ms)       |
//! | [`Schedule::Publications`]   | `sched:publications`       | sorted set | member presentity                |
//! | [`Schedule::Subscriptions`]  | `sched:subscriptions`      | sorted set | member `presentity '\n' dialog`  |
//! | [`Schedule::Leases`]         | `sched:leases`             | sorted set | member edge id, score lease end  |
//!
//! `<prefix>` is [`Kind::prefix`](crate::Kind::prefix): `reg`, `pres`,
//! `subs`, `rules`, `edge`, `edges`, `epoch`, `watching`. A record hash has two fields: `rev` (decimal revision,
//! never 0) and `val` (the value bytes); its TTL is the key's PEXPIRE, so an
//! expired record disappears whole and reads as absent (revision 0). A map
//! is a plain hash of field to value without TTL. The schedule keys are
//! global and never touched in the same atomic step as entity keys.
//!
//! # Memory
//!
//! Redis keeps a hash of at most `hash-max-listpack-entries` (512) fields
//! whose fields and values are at most `hash-max-listpack-value` (64)
//! bytes as one listpack, a few bytes of overhead per entry; anything
//! larger becomes a hash table, ~50 bytes per entry plus the allocations
//! of its field and value. The layout is sized for those defaults: an
//! edge's index is split into shards (`edges:{edge-id/n}:m`, see
//! `presence::ownership`) that stay listpacks, a watcher's index
//! (`watching:{aor}:m`) holds short fields and values, and a subscription
//! record is encoded to fit a 112-byte allocation. Lower thresholds lose
//! that (~50 bytes per subscription), higher ones change nothing
//! needed. Per subscription in Redis, BENCHMARKS.md ("Memory") has the
//! breakdown.
//! A sweeper's claim ([`Backend::claim_due`]) moves members to a
//! fractional score (`hold_until + 0.5` ms), which no other writer uses, so
//! [`Backend::release`] can tell "still claimed" from "scheduled again".
//!
//! # Atomicity
//!
//! [`Backend::cas_record`] is one Lua script (sent by EVALSHA, reloaded
//! transparently after a server restart): it compares `rev`, writes or
//! deletes, sets or clears the TTL and publishes the announcement, all in
//! one step. [`Backend::map_take`] is a second script (HGET, compare, HDEL). No
//! command here ever enumerates the keyspace (no `KEYS`, no `SCAN`).
//!
//! # Failures
//!
//! Every command runs under a timeout ([`RedisConfig::command_timeout`],
//! 2 s by default). Refused connections, dropped connections, I/O errors,
//! timeouts and the transient server states (`LOADING`, `BUSY`, `TRYAGAIN`,
//! `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`) map to
//! [`StoreError::Unavailable`]; anything else the server rejects maps to
//! [`StoreError::Protocol`]. The command connection
//! ([`redis::aio::ConnectionManager`]) reconnects by itself in the
//! background, so once Redis is back the next command succeeds.
//!
//! # Single server and Redis Cluster
//!
//! A `redis://` URL selects one server: announcements use
//! PUBLISH and feeds SUBSCRIBE. A `redis+cluster://[user:pass@]h1:p1,h2:p2/`
//! URL selects a Redis Cluster reached through any of the listed nodes:
//! announcements use SPUBLISH and feeds SSUBSCRIBE (sharded pub/sub, so a
//! message only travels within the shard owning its entity's slot), and
//! commands follow MOVED/ASK redirections. On a cluster the channel of a
//! [`Backend::cas_record`] announcement must hash to the record's slot, which
//! holds whenever it is the record's own entity (the services always
//! announce on the entity they write); anything else fails with a
//! `CROSSSLOT` [`StoreError::Protocol`]. [`Backend::get_records`] is one
//! pipeline on a single server and concurrent reads on a cluster.
//!
//! # Slot migrations
//!
//! While a slot moves (MIGRATING on its owner, IMPORTING on the target),
//! the owner answers for the keys it still holds and redirects the rest
//! with ASK; the client follows (ASKING, then the command on the target).
//! Every script names only real keys of one entity in KEYS — channels go
//! in ARGV — so no command ever spans present and missing keys, which
//! Redis would refuse with TRYAGAIN until the migration ends. TRYAGAIN,
//! CLUSTERDOWN and LOADING are retried after 10–200 ms pauses within the
//! command timeout. Shard channels stay with the owner until the slot is
//! handed over: a swap answered by the target after its record moved
//! announces on the target's shard, and the feed covers it with the
//! resync it sends when the owner ends the shard subscription.
//!
//! # Change feeds
//!
//! Each feed owns one RESP3 connection used only for SUBSCRIBE/UNSUBSCRIBE
//! and the pushes they produce. A task per feed delivers the messages of
//! watched channels and, when the connection drops, stops answering its
//! periodic PING, or the server unsubscribes it from a channel it still
//! watches, reconnects with exponential backoff, re-subscribes every watched
//! channel and only then sends [`FeedItem::Resync`]. On a cluster, a slot
//! migration makes the old owner end the shard subscription; the feed
//! subscribes again at the new owner and sends a resync as well.
//!
//! Watches are recorded before they reach the server: while the feed is
//! disconnected `watch` still succeeds, and the resubscription (followed by
//! a resync) covers it. Messages are filtered against the watched set on
//! delivery, so nothing of an entity arrives after its `unwatch` returns.
//!
//! [`Backend`]: crate::Backend
//! [`Backend::cas_record`]: crate::Backend::cas_record
//! [`Backend::claim_due`]: crate::Backend::claim_due
//! [`Backend::get_records`]: crate::Backend::get_records
//! [`Backend::map_take`]: crate::Backend::map_take
//! [`Backend::release`]: crate::Backend::release
//! [`FeedItem::Resync`]: crate::FeedItem::Resync
//! [`Key`]: crate::Key
//! [`Schedule::Bindings`]: crate::Schedule::Bindings
//! [`Schedule::Leases`]: crate::Schedule::Leases
//! [`Schedule::Publications`]: crate::Schedule::Publications
//! [`Schedule::Subscriptions`]: crate::Schedule::Subscriptions

mod backend;
mod feed;
mod keys;
mod reply;
mod scripts;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use redis::{Client, ErrorKind, RedisError, ServerErrorKind, Value};

pub use keys::{channel_name, map_key, record_key, schedule_key};

use crate::StoreError;
use scripts::Scripts;
use topology::{Commands, Topology};

/// Settings of a [`RedisBackend`].
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` for one server, or
    /// `redis+cluster://[user:password@]host:port,host:port[/]` for a Redis
    /// Cluster.
    pub url: String,
    /// The longest any single command (or connection attempt) may take
    /// before it fails with [`StoreError::Unavailable`].
    pub command_timeout: Duration,
    /// How often an idle change feed checks with PING that its connection
    /// still answers; a silent server is treated like a dropped connection.
    pub feed_health_interval: Duration,
    /// The longest pause between two reconnection attempts of a feed.
    pub max_reconnect_delay: Duration,
    /// Certificates for `rediss://` (and `rediss+cluster://`): a CA to
    /// trust instead of the system's roots, and a client certificate for
    /// mutual TLS. Unused for plain `redis://`.
    pub tls: TlsFiles,
}

/// PEM certificates for a TLS connection to Redis.
#[derive(Clone, Default)]
pub struct TlsFiles {
    /// CA certificates to trust (PEM); the system's roots when `None`.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and key (PEM), for mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    pub(super) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.ca.clone(),
        }
    }
}

impl RedisConfig {
    /// Default settings for `url`: 2 s command timeout, feed health check
    /// every 5 s, reconnect backoff capped at 2 s.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            command_timeout: Duration::from_secs(2),
            feed_health_interval: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(2),
            tls: TlsFiles::default(),
        }
    }

    /// A client for `url` (one node), with TLS when the URL is `rediss://`.
    pub(super) fn client(&self, url: impl redis::IntoConnectionInfo) -> redis::RedisResult<Client> {
        let info = url.into_connection_info()?;
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            Client::build_with_tls(info, self.tls.certificates())
        } else {
            Client::open(info)
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show where it points, not all of it.
        let target = self.url.rsplit('@').next().unwrap_or_default();
        f.debug_struct("RedisConfig")
            .field("target", &target)
            .field("command_timeout", &self.command_timeout)
            .field("feed_health_interval", &self.feed_health_interval)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .finish()
    }
}

/// The Redis backend. Cloning is cheap; clones share the command connection.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    topology: Arc<dyn Topology>,
    commands: Commands,
    config: RedisConfig,
    scripts: Scripts,
}

/// First pause before a feed (or a single server's command connection)
/// reconnects.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(50);

impl RedisBackend {
    /// Connects to the Redis server at `url` with default settings.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(RedisConfig::new(url)).await
    }

    /// Connects with explicit settings. Fails with
    /// [`StoreError::Unavailable`] when the server cannot be reached within
    /// the command timeout, and with [`StoreError::Protocol`] when the URL
    /// is not a valid Redis URL.
    pub async fn connect_with(config: RedisConfig) -> Result<Self, StoreError> {
        let topology = topology::select(&config)?;
        let commands = topology.connect_commands(&config).await?;
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                topology,
                commands,
                config,
                scripts: Scripts::new(),
            }),
        })
    }

    /// True when connected to a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        self.inner.topology.sharded()
    }

    /// The settings this backend runs with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Runs one command under the command timeout.
    async fn run(&self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        let mut conn = self.inner.commands.clone();
        with_timeout(
            self.inner.config.command_timeout,
            cmd.query_async(&mut conn),
        )
        .await
    }

    /// Runs a script (EVALSHA, loading it after a server restart) under
    /// the command timeout.
    async fn run_script(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Value, StoreError> {
        let mut conn = self.inner.commands.clone();
        with_timeout(
            self.inner.config.command_timeout,
            invocation.invoke_async(&mut conn),
        )
        .await
    }
}

/// Awaits a Redis future under `limit`, mapping both failure modes.
async fn with_timeout<T>(
    limit: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    let (result, outcome) = match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => (Ok(value), "ok"),
        Ok(Err(e)) => (Err(map_error(e)), "error"),
        Err(_) => (
            Err(StoreError::Unavailable(format!(
                "Redis did not answer within {} ms",
                limit.as_millis()
            ))),
            "timeout",
        ),
    };
    crate::metrics::command(outcome, started.elapsed());
    result
}

/// Sorts a Redis error into "try again later" or "does not make sense".
fn map_error(err: RedisError) -> StoreError {
    let transient = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
        || err.is_cluster_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::ClusterConnectionNotFound
        )
        || err.code() == Some("BUSY");
    if transient {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Protocol(err.to_string())
    }
}
