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
//! | channel of an entity         | `chan:{<entity>}`          | pub/sub    | `chan:{alice@example.com}`       |
//! | [`Schedule::Bindings`]       | `sched:bindings`           | sorted set | member AOR, score due (ms)       |
//! | [`Schedule::Publications`]   | `sched:publications`       | sorted set | member presentity                |
//! | [`Schedule::Subscriptions`]  | `sched:subscriptions`      | sorted set | member `presentity '\n' dialog`  |
//! | [`Schedule::Leases`]         | `sched:leases`             | sorted set | member edge id, score lease end  |
//!
//! `<prefix>` is [`Kind::prefix`](crate::Kind::prefix): `reg`, `pres`,
//! `subs`, `rules`, `edge`, `epoch`. A record hash has two fields: `rev` (decimal revision,
//! never 0) and `val` (the value bytes); its TTL is the key's PEXPIRE, so an
//! expired record disappears whole and reads as absent (revision 0). A map
//! is a plain hash of field to value without TTL. The schedule keys are
//! global and never touched in the same atomic step as entity keys.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, ProtocolVersion, PushInfo, PushKind, RedisError,
    ServerErrorKind, Value,
};
use tokio::sync::{mpsc, Notify};

use crate::feed::{Offer, Outbox, WatchSet, FEED_CAPACITY};
use crate::{
    lock, next_revision, Backend, ChannelMessage, FeedControl, FeedItem, Key, Record, Schedule,
    StoreError, UnixMillis,
};

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
    fn certificates(&self) -> redis::TlsCertificates {
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
    fn client(&self, url: impl redis::IntoConnectionInfo) -> redis::RedisResult<Client> {
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
    deployment: Arc<Deployment>,
    commands: Commands,
    config: RedisConfig,
    cas_script: redis::Script,
    take_script: redis::Script,
    replace_script: redis::Script,
    claim_script: redis::Script,
    release_script: redis::Script,
}

/// What the backend talks to, and so which pub/sub flavour it uses.
enum Deployment {
    /// One server: PUBLISH / SUBSCRIBE. The client speaks RESP3 and is used
    /// for feed connections (RESP3 delivers pub/sub messages as pushes on an
    /// ordinary multiplexed connection).
    Single { feed_client: Client },
    /// A Redis Cluster: sharded pub/sub (SPUBLISH / SSUBSCRIBE), so that a
    /// message only travels to the shard owning its entity's slot.
    Cluster { nodes: Vec<String>, tls: TlsFiles },
}

impl Deployment {
    fn publish_command(&self) -> &'static str {
        match self {
            Deployment::Single { .. } => "PUBLISH",
            Deployment::Cluster { .. } => "SPUBLISH",
        }
    }
}

/// The connection commands go through: it reconnects (and, for a cluster,
/// follows slot moves) by itself.
#[derive(Clone)]
enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Commands::Single(conn) => conn.req_packed_command(cmd),
            Commands::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(conn) => conn.get_db(),
            Commands::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The scheme that selects a Redis Cluster.
const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The same over TLS: every node is reached with `rediss://`.
const TLS_CLUSTER_SCHEME: &str = "rediss+cluster://";

/// The node URLs of a `redis+cluster://[user:password@]host:port,host:port[/]`
/// URL; `None` when `url` is not a cluster URL.
fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, StoreError>> {
    let (rest, node_scheme) = match url.strip_prefix(CLUSTER_SCHEME) {
        Some(rest) => (rest, "redis"),
        None => (url.strip_prefix(TLS_CLUSTER_SCHEME)?, "rediss"),
    };
    let (authority, query) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], rest[at..].trim_start_matches('/')),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{node_scheme}://{userinfo}{host}/{query}"))
        .collect();
    if nodes.is_empty() {
        return Some(Err(StoreError::Protocol(format!(
            "cluster URL names no node: {}",
            url.rsplit('@').next().unwrap_or_default()
        ))));
    }
    Some(Ok(nodes))
}

/// The cluster client builder with the TLS certificates when the nodes
/// are reached over `rediss://`.
fn with_cluster_tls(
    builder: redis::cluster::ClusterClientBuilder,
    nodes: &[String],
    tls: &TlsFiles,
) -> redis::cluster::ClusterClientBuilder {
    if nodes.iter().any(|node| node.starts_with("rediss://")) {
        builder.certs(tls.certificates())
    } else {
        builder
    }
}

/// Compare-and-swap of one record, with its announcement.
///
/// KEYS[1] record hash, and KEYS[2] the schedule sorted set (only when
/// scheduling, on a single server). ARGV[1] expected revision, ARGV[2] new
/// revision, ARGV[3] `s` (set) or `d` (delete), ARGV[4] value, ARGV[5] TTL
/// in ms or empty, ARGV[6] payload, ARGV[7] the publish command (`PUBLISH`,
/// or `SPUBLISH` on a cluster; empty when not announcing), ARGV[8] `z` to
/// schedule ARGV[10] at ARGV[9] in KEYS[2], with the swap, ARGV[11] the
/// channel.
///
/// The channel is an argument, not a key: it never exists as a key, and
/// while its slot migrates Redis answers a script whose keys are partly
/// missing with TRYAGAIN for as long as the migration lasts. A cluster
/// still checks that the SPUBLISH channel hashes to the record's slot.
/// Revisions are compared as decimal strings, so no precision is lost.
const CAS_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'rev')
if not current then current = '0' end
if current ~= ARGV[1] then return false end
if ARGV[3] == 's' then
  redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'val', ARGV[4])
  if ARGV[5] ~= '' then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  else
    redis.call('PERSIST', KEYS[1])
  end
else
  redis.call('DEL', KEYS[1])
end
if ARGV[7] ~= '' then
  redis.call(ARGV[7], ARGV[11], ARGV[6])
end
if ARGV[8] == 'z' then
  redis.call('ZADD', KEYS[2], ARGV[9], ARGV[10])
end
return 1
";

/// Conditional removal of one map field.
///
/// KEYS[1] map hash. ARGV[1] field, ARGV[2] `1` when ARGV[3] holds the
/// value the field must have, `0` to remove whatever is there.
const TAKE_SCRIPT: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return false end
if ARGV[2] == '1' and value ~= ARGV[3] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return value
";

const REPLACE_SCRIPT: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Claims due members of one schedule for a sweeper.
///
/// KEYS[1] the schedule sorted set. ARGV[1] now (ms), ARGV[2] limit,
/// ARGV[3] the hold score. Returns the claimed members with their scores,
/// flat. The hold score is `hold_until + 0.5`: every other writer of a
/// schedule sets whole milliseconds, so a fractional score means "claimed
/// and not scheduled since", which is what [`RELEASE_SCRIPT`] checks.
const CLAIM_SCRIPT: &str = r"
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2], 'WITHSCORES')
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], due[i])
end
return due
";

/// Drops claimed members nobody scheduled again.
///
/// KEYS[1] the schedule sorted set. ARGV the members. Returns how many
/// were removed.
const RELEASE_SCRIPT: &str = r"
local removed = 0
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    local n = tonumber(score)
    if n ~= math.floor(n) then
      redis.call('ZREM', KEYS[1], ARGV[i])
      removed = removed + 1
    end
  end
end
return removed
";

/// The longest TTL passed to Redis (about 100 years). Longer ones are
/// clamped so that `now + ttl` cannot overflow on the server.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// The shortest pause before a cluster command is retried after TRYAGAIN,
/// CLUSTERDOWN or LOADING (ms). The client's default (1.28 s) alone would
/// use up most of the command timeout on the first retry, so a brief
/// resharding state would surface as a failure.
const MIN_CLUSTER_RETRY_WAIT_MS: u64 = 10;

/// The longest pause between two such retries (ms); the pauses grow
/// exponentially from 20 ms up to it, all within the command timeout.
const MAX_CLUSTER_RETRY_WAIT_MS: u64 = 200;

/// First pause before a feed reconnects.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(50);

impl RedisBackend {
    /// The swap script ([`CAS_SCRIPT`]), scheduling with it when asked.
    async fn swap(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
        schedule: Option<(Schedule, &str, UnixMillis)>,
    ) -> Result<Option<u64>, StoreError> {
        let new_rev = next_revision(key, expected_rev)?;
        let mut invocation = self.inner.cas_script.prepare_invoke();
        invocation.key(record_key(key));
        if let Some((which, _, _)) = schedule {
            invocation.key(schedule_key(which));
        }
        invocation
            .arg(expected_rev.to_string())
            .arg(new_rev.to_string());
        match &value {
            Some(value) => invocation.arg("s").arg(value.as_ref()),
            None => invocation.arg("d").arg(""),
        };
        match ttl_ms {
            Some(ttl) => invocation.arg(ttl.min(MAX_TTL_MS).to_string()),
            None => invocation.arg(""),
        };
        match &announce {
            Some(message) => invocation
                .arg(message.payload.as_ref())
                .arg(self.inner.deployment.publish_command()),
            None => invocation.arg("").arg(""),
        };
        match schedule {
            Some((_, member, due)) => invocation.arg("z").arg(due).arg(member),
            None => invocation.arg("").arg("").arg(""),
        };
        match &announce {
            Some(message) => invocation.arg(channel_name(&message.entity)),
            None => invocation.arg(""),
        };
        let reply = self.run_script(&invocation).await?;
        match reply {
            Value::Nil => Ok(None),
            Value::Int(1) => Ok(Some(new_rev)),
            other => Err(protocol_error("the swap script", &other)),
        }
    }
    /// Connects to the Redis server at `url` with default settings.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(RedisConfig::new(url)).await
    }

    /// Connects with explicit settings. Fails with
    /// [`StoreError::Unavailable`] when the server cannot be reached within
    /// the command timeout, and with [`StoreError::Protocol`] when the URL
    /// is not a valid Redis URL.
    pub async fn connect_with(config: RedisConfig) -> Result<Self, StoreError> {
        if let Some(nodes) = cluster_nodes(&config.url) {
            return Self::connect_cluster(config.clone(), nodes?).await;
        }
        let client = config
            .client(config.url.as_str())
            .map_err(|e| StoreError::Protocol(format!("invalid Redis URL: {e}")))?;
        let info = client.get_connection_info().clone();
        let feed_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let feed_client = config
            .client(info.set_redis_settings(feed_settings))
            .map_err(|e| StoreError::Protocol(format!("invalid Redis URL: {e}")))?;

        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_min_delay(MIN_RECONNECT_DELAY)
            .set_max_delay(config.max_reconnect_delay)
            .set_number_of_retries(2);
        let commands = tokio::time::timeout(
            config.command_timeout,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        .map_err(|_| StoreError::Unavailable("timed out connecting to Redis".into()))?
        .map_err(map_error)?;

        Ok(Self::assemble(
            Deployment::Single { feed_client },
            Commands::Single(commands),
            config,
        ))
    }

    /// Connects to a Redis Cluster through any of `nodes`.
    async fn connect_cluster(config: RedisConfig, nodes: Vec<String>) -> Result<Self, StoreError> {
        let client = with_cluster_tls(ClusterClient::builder(nodes.clone()), &nodes, &config.tls)
            .connection_timeout(config.command_timeout)
            .response_timeout(config.command_timeout)
            .min_retry_wait(MIN_CLUSTER_RETRY_WAIT_MS)
            .max_retry_wait(MAX_CLUSTER_RETRY_WAIT_MS)
            .build()
            .map_err(|e| StoreError::Protocol(format!("invalid Redis Cluster URL: {e}")))?;
        let commands = with_timeout(config.command_timeout, client.get_async_connection()).await?;
        Ok(Self::assemble(
            Deployment::Cluster {
                nodes,
                tls: config.tls.clone(),
            },
            Commands::Cluster(commands),
            config,
        ))
    }

    fn assemble(deployment: Deployment, commands: Commands, config: RedisConfig) -> Self {
        RedisBackend {
            inner: Arc::new(Inner {
                deployment: Arc::new(deployment),
                commands,
                config,
                cas_script: redis::Script::new(CAS_SCRIPT),
                take_script: redis::Script::new(TAKE_SCRIPT),
                replace_script: redis::Script::new(REPLACE_SCRIPT),
                claim_script: redis::Script::new(CLAIM_SCRIPT),
                release_script: redis::Script::new(RELEASE_SCRIPT),
            }),
        }
    }

    /// True when connected to a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        matches!(*self.inner.deployment, Deployment::Cluster { .. })
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

/// Percent-encodes the characters that would end or nest a hash tag.
fn escape_entity(entity: &str) -> std::borrow::Cow<'_, str> {
    if !entity.contains(['{', '}', '%']) {
        return std::borrow::Cow::Borrowed(entity);
    }
    let mut escaped = String::with_capacity(entity.len() + 6);
    for c in entity.chars() {
        match c {
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            '%' => escaped.push_str("%25"),
            other => escaped.push(other),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Reverses [`escape_entity`]; `None` for a malformed escape.
fn unescape_entity(escaped: &str) -> Option<String> {
    if !escaped.contains('%') {
        return Some(escaped.to_owned());
    }
    let mut entity = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        entity.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        entity.push(match code {
            "7B" => '{',
            "7D" => '}',
            "25" => '%',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    entity.push_str(rest);
    Some(entity)
}

/// The Redis key of a record.
pub fn record_key(key: &Key) -> String {
    format!("{}:{{{}}}", key.kind.prefix(), escape_entity(&key.entity))
}

/// The Redis key of a map.
pub fn map_key(key: &Key) -> String {
    format!("{}:{{{}}}:m", key.kind.prefix(), escape_entity(&key.entity))
}

/// The pub/sub channel of an entity.
pub fn channel_name(entity: &str) -> String {
    format!("chan:{{{}}}", escape_entity(entity))
}

/// The entity whose channel is `channel`; `None` for foreign channels.
fn entity_of_channel(channel: &[u8]) -> Option<String> {
    let channel = std::str::from_utf8(channel).ok()?;
    let escaped = channel.strip_prefix("chan:{")?.strip_suffix('}')?;
    unescape_entity(escaped)
}

/// The Redis key of a schedule.
pub fn schedule_key(schedule: Schedule) -> &'static str {
    match schedule {
        Schedule::Bindings => "sched:bindings",
        Schedule::Publications => "sched:publications",
        Schedule::Subscriptions => "sched:subscriptions",
        Schedule::Leases => "sched:leases",
    }
}

fn protocol_error(what: &str, value: &Value) -> StoreError {
    StoreError::Protocol(format!("unexpected reply to {what}: {value:?}"))
}

/// The bytes of a string-like reply; `None` for nil.
fn bytes_of(value: Value) -> Result<Option<Vec<u8>>, Value> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(text) => Ok(Some(text.into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Some(text.into_bytes())),
        Value::Okay => Ok(Some(b"OK".to_vec())),
        other => Err(other),
    }
}

/// The elements of an aggregate reply (RESP2 array or RESP3 set).
fn elements(value: Value) -> Result<Vec<Value>, Value> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(other),
    }
}

/// Field/value pairs of a reply that is a RESP3 map, a flat RESP2 array,
/// or an array of two-element arrays.
fn pairs(value: Value) -> Result<Vec<(Value, Value)>, Value> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) => {
            if items
                .iter()
                .all(|item| matches!(item, Value::Array(pair) if pair.len() == 2))
            {
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    if let Value::Array(pair) = item {
                        let mut pair = pair.into_iter();
                        if let (Some(a), Some(b)) = (pair.next(), pair.next()) {
                            pairs.push((a, b));
                        }
                    }
                }
                return Ok(pairs);
            }
            if items.len() % 2 != 0 {
                return Err(Value::Array(items));
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(a), Some(b)) = (items.next(), items.next()) {
                pairs.push((a, b));
            }
            Ok(pairs)
        }
        Value::Nil => Ok(Vec::new()),
        other => Err(other),
    }
}

fn string_of(value: Value, what: &str) -> Result<String, StoreError> {
    match bytes_of(value) {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map_err(|_| StoreError::Protocol(format!("non-UTF-8 {what} in reply"))),
        Ok(None) => Err(StoreError::Protocol(format!("nil {what} in reply"))),
        Err(other) => Err(protocol_error(what, &other)),
    }
}

/// A sorted-set score as due milliseconds.
fn due_of(value: Value) -> Result<UnixMillis, StoreError> {
    let score = match value {
        Value::Double(score) => score,
        Value::Int(score) => score as f64,
        other => {
            let text = string_of(other, "score")?;
            text.parse::<f64>()
                .map_err(|_| StoreError::Protocol(format!("bad score {text:?}")))?
        }
    };
    if !(score >= 0.0 && score.is_finite()) {
        return Err(StoreError::Protocol(format!("bad score {score}")));
    }
    // Due times are far below 2^53 ms, where f64 is exact.
    Ok(score as UnixMillis)
}

/// Decodes the reply of `HMGET <record> rev val`.
fn decode_record(key: &Key, reply: Value) -> Result<Option<Record>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: record_key(key),
        reason,
    };
    let fields = elements(reply).map_err(|other| protocol_error("HMGET", &other))?;
    let mut fields = fields.into_iter();
    let (Some(rev), Some(val)) = (fields.next(), fields.next()) else {
        return Err(StoreError::Protocol("HMGET returned too few fields".into()));
    };
    let rev = bytes_of(rev).map_err(|other| protocol_error("HMGET", &other))?;
    let val = bytes_of(val).map_err(|other| protocol_error("HMGET", &other))?;
    match (rev, val) {
        (None, None) => Ok(None),
        (Some(rev), Some(val)) => {
            let rev = std::str::from_utf8(&rev)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .filter(|rev| *rev > 0)
                .ok_or_else(|| {
                    corrupt(format!("bad revision {:?}", String::from_utf8_lossy(&rev)))
                })?;
            Ok(Some(Record {
                rev,
                value: Bytes::from(val),
            }))
        }
        (Some(_), None) => Err(corrupt("revision without value".into())),
        (None, Some(_)) => Err(corrupt("value without revision".into())),
    }
}

fn hmget_record(key: &Key) -> redis::Cmd {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(record_key(key)).arg("rev").arg("val");
    cmd
}

#[async_trait]
impl Backend for RedisBackend {
    async fn get_record(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let reply = self.run(&hmget_record(key)).await?;
        decode_record(key, reply)
    }

    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_cluster() {
            // A cluster pipeline must stay within one slot; entities are
            // spread over all of them, so the reads go out concurrently.
            return futures::future::try_join_all(keys.iter().map(|key| self.get_record(key)))
                .await;
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.add_command(hmget_record(key));
        }
        let mut conn = self.inner.commands.clone();
        let replies: Vec<Value> = with_timeout(
            self.inner.config.command_timeout,
            pipe.query_async(&mut conn),
        )
        .await?;
        if replies.len() != keys.len() {
            return Err(StoreError::Protocol(format!(
                "pipeline of {} HMGET returned {} replies",
                keys.len(),
                replies.len()
            )));
        }
        keys.iter()
            .zip(replies)
            .map(|(key, reply)| decode_record(key, reply))
            .collect()
    }

    async fn cas_record(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
    ) -> Result<Option<u64>, StoreError> {
        self.swap(key, expected_rev, value, ttl_ms, announce, None)
            .await
    }

    /// On a single server the schedule entry is written by the swap
    /// script itself: one round trip, and atomic with the record. A Redis
    /// Cluster keeps each schedule in one slot, generally not the record's,
    /// so there it is written first, as the default does.
    async fn cas_record_scheduled(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
        schedule: (Schedule, &str, UnixMillis),
    ) -> Result<Option<u64>, StoreError> {
        if let Deployment::Cluster { .. } = *self.inner.deployment {
            self.schedule(schedule.0, schedule.1, schedule.2).await?;
            return self
                .swap(key, expected_rev, value, ttl_ms, announce, None)
                .await;
        }
        self.swap(key, expected_rev, value, ttl_ms, announce, Some(schedule))
            .await
    }

    async fn map_put(&self, key: &Key, field: &str, value: Bytes) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(map_key(key)).arg(field).arg(value.as_ref());
        self.run(&cmd).await.map(drop)
    }

    async fn map_get(&self, key: &Key, field: &str) -> Result<Option<Bytes>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(map_key(key)).arg(field);
        let reply = self.run(&cmd).await?;
        bytes_of(reply)
            .map(|bytes| bytes.map(Bytes::from))
            .map_err(|other| protocol_error("HGET", &other))
    }

    async fn map_list(&self, key: &Key) -> Result<Vec<(String, Bytes)>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(map_key(key));
        let reply = self.run(&cmd).await?;
        let pairs = pairs(reply).map_err(|other| protocol_error("HGETALL", &other))?;
        pairs
            .into_iter()
            .map(|(field, value)| {
                let field = string_of(field, "map field")?;
                let value = match bytes_of(value) {
                    Ok(Some(bytes)) => Bytes::from(bytes),
                    Ok(None) => Bytes::new(),
                    Err(other) => return Err(protocol_error("HGETALL", &other)),
                };
                Ok((field, value))
            })
            .collect()
    }

    async fn map_take(
        &self,
        key: &Key,
        field: &str,
        only_if: Option<&[u8]>,
    ) -> Result<Option<Bytes>, StoreError> {
        let mut invocation = self.inner.take_script.prepare_invoke();
        invocation.key(map_key(key)).arg(field);
        match only_if {
            Some(expected) => invocation.arg("1").arg(expected),
            None => invocation.arg("0").arg(""),
        };
        let reply = self.run_script(&invocation).await?;
        bytes_of(reply)
            .map(|bytes| bytes.map(Bytes::from))
            .map_err(|other| protocol_error("the take script", &other))
    }

    async fn map_replace(
        &self,
        key: &Key,
        field: &str,
        expected: &[u8],
        value: Bytes,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.inner.replace_script.prepare_invoke();
        invocation
            .key(map_key(key))
            .arg(field)
            .arg(expected)
            .arg(value.as_ref());
        let reply = self.run_script(&invocation).await?;
        match reply {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            other => Err(protocol_error("the replace script", &other)),
        }
    }

    async fn schedule(
        &self,
        schedule: Schedule,
        member: &str,
        due: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(schedule_key(schedule)).arg(due).arg(member);
        self.run(&cmd).await.map(drop)
    }

    async fn schedule_len(&self, schedule: Schedule) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(schedule_key(schedule));
        match self.run(&cmd).await? {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(StoreError::Protocol(format!("ZCARD answered {other:?}"))),
        }
    }

    async fn unschedule(&self, schedule: Schedule, member: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(schedule_key(schedule)).arg(member);
        self.run(&cmd).await.map(drop)
    }

    async fn due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(schedule_key(schedule))
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES");
        let reply = self.run(&cmd).await?;
        let pairs = pairs(reply).map_err(|other| protocol_error("ZRANGE", &other))?;
        pairs
            .into_iter()
            .map(|(member, score)| Ok((string_of(member, "schedule member")?, due_of(score)?)))
            .collect()
    }

    async fn claim_due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
        hold_until: UnixMillis,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut invocation = self.inner.claim_script.prepare_invoke();
        invocation
            .key(schedule_key(schedule))
            .arg(now)
            .arg(limit)
            .arg(format!("{hold_until}.5"));
        let reply = self.run_script(&invocation).await?;
        let pairs = pairs(reply).map_err(|other| protocol_error("the claim script", &other))?;
        pairs
            .into_iter()
            .map(|(member, score)| Ok((string_of(member, "schedule member")?, due_of(score)?)))
            .collect()
    }

    async fn release(&self, schedule: Schedule, members: &[String]) -> Result<usize, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.inner.release_script.prepare_invoke();
        invocation.key(schedule_key(schedule));
        for member in members {
            invocation.arg(member.as_str());
        }
        match self.run_script(&invocation).await? {
            Value::Int(removed) => Ok(usize::try_from(removed).unwrap_or(0)),
            other => Err(protocol_error("the release script", &other)),
        }
    }

    async fn publish(&self, message: ChannelMessage) -> Result<(), StoreError> {
        let mut cmd = redis::cmd(self.inner.deployment.publish_command());
        cmd.arg(channel_name(&message.entity))
            .arg(message.payload.as_ref());
        self.run(&cmd).await.map(drop)
    }

    async fn open_feed(
        &self,
    ) -> Result<(Box<dyn FeedControl>, mpsc::Receiver<FeedItem>), StoreError> {
        let shared = Arc::new(FeedShared {
            deployment: Arc::clone(&self.inner.deployment),
            config: self.inner.config.clone(),
            watched: WatchSet::default(),
            link: tokio::sync::Mutex::new(None),
            own_unsubscribes: Mutex::new(HashMap::new()),
            reconnect: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        // The first connection is made here so that a feed opened while
        // Redis is down fails like any other command.
        let pushes = shared.establish().await?;
        let (out_tx, out_rx) = mpsc::channel(FEED_CAPACITY);
        tokio::spawn(run_feed(Arc::clone(&shared), Outbox::new(out_tx), pushes));
        Ok((Box::new(RedisFeedControl { shared }), out_rx))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let reply = self.run(&redis::cmd("PING")).await?;
        match bytes_of(reply) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StoreError::Protocol("nil reply to PING".into())),
            Err(other) => Err(protocol_error("PING", &other)),
        }
    }
}

/// How many channels one SUBSCRIBE carries when a feed re-subscribes.
const SUBSCRIBE_BATCH: usize = 512;

/// How many SSUBSCRIBEs a cluster feed keeps in flight when it
/// re-subscribes (each shard channel needs its own command).
const SSUBSCRIBE_CONCURRENCY: usize = 64;

/// A feed's pub/sub connection.
#[derive(Clone)]
enum Link {
    /// One RESP3 connection to the single server.
    Single(MultiplexedConnection),
    /// A RESP3 cluster connection, which routes each SSUBSCRIBE to the
    /// shard owning the channel's slot.
    Cluster(ClusterConnection),
}

impl Link {
    async fn connect(
        deployment: &Deployment,
        limit: Duration,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Link, StoreError> {
        match deployment {
            Deployment::Single { feed_client } => {
                let connection_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(limit))
                    .set_response_timeout(Some(limit))
                    .set_push_sender(pushes);
                let conn = with_timeout(
                    limit,
                    feed_client.get_multiplexed_async_connection_with_config(&connection_config),
                )
                .await?;
                Ok(Link::Single(conn))
            }
            Deployment::Cluster { nodes, tls } => {
                let client = with_cluster_tls(ClusterClient::builder(nodes.clone()), nodes, tls)
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(limit)
                    .response_timeout(limit)
                    .min_retry_wait(MIN_CLUSTER_RETRY_WAIT_MS)
                    .max_retry_wait(MAX_CLUSTER_RETRY_WAIT_MS)
                    .push_sender(pushes)
                    .build()
                    .map_err(map_error)?;
                let conn = with_timeout(limit, client.get_async_connection()).await?;
                Ok(Link::Cluster(conn))
            }
        }
    }

    /// Subscribes to every channel of `channels`, each within `limit`.
    async fn subscribe(&mut self, channels: &[String], limit: Duration) -> Result<(), StoreError> {
        match self {
            Link::Single(conn) => {
                for batch in channels.chunks(SUBSCRIBE_BATCH) {
                    with_timeout(limit, conn.subscribe(batch)).await?;
                }
                Ok(())
            }
            Link::Cluster(conn) => {
                use futures::{StreamExt, TryStreamExt};
                let subscriptions: Vec<_> = channels
                    .iter()
                    .map(|channel| {
                        let mut conn = conn.clone();
                        let channel = channel.clone();
                        async move { with_timeout(limit, conn.ssubscribe(channel)).await }
                    })
                    .collect();
                futures::stream::iter(subscriptions)
                    .buffer_unordered(SSUBSCRIBE_CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await
                    .map(drop)
            }
        }
    }

    async fn unsubscribe(&mut self, channel: &str, limit: Duration) -> Result<(), StoreError> {
        match self {
            Link::Single(conn) => with_timeout(limit, conn.unsubscribe(channel)).await,
            Link::Cluster(conn) => with_timeout(limit, conn.sunsubscribe(channel)).await,
        }
    }

    /// Checks that the connection (every shard's, on a cluster) answers.
    async fn ping(&mut self, limit: Duration) -> Result<(), StoreError> {
        let ping = redis::cmd("PING");
        match self {
            Link::Single(conn) => with_timeout::<Value>(limit, ping.query_async(conn)).await?,
            Link::Cluster(conn) => with_timeout::<Value>(limit, ping.query_async(conn)).await?,
        };
        Ok(())
    }
}

/// State shared by a feed's control half and its delivery task.
struct FeedShared {
    deployment: Arc<Deployment>,
    config: RedisConfig,
    /// What the subscriber asked for; the source of truth for
    /// resubscription and for filtering deliveries.
    watched: WatchSet,
    /// The live pub/sub connection, `None` while reconnecting. Held across
    /// every (UN)SUBSCRIBE so that the server's view and `watched` change
    /// in the same order.
    link: tokio::sync::Mutex<Option<Link>>,
    /// Unsubscribe confirmations still expected for our own UNSUBSCRIBEs,
    /// per channel. Any other unsubscribe push came from the server.
    own_unsubscribes: Mutex<HashMap<String, u32>>,
    /// Wakes the delivery task when a control command found the link
    /// broken (it has already cleared `link`).
    reconnect: Notify,
    /// Set once the delivery task has ended (the subscriber went away).
    stopped: AtomicBool,
}

/// Why serving one connection ended.
enum Served {
    /// The subscriber dropped its receiver: the feed is over.
    SubscriberGone,
    /// The connection is gone or unusable: reconnect and resync.
    LinkLost,
}

impl FeedShared {
    /// Opens a fresh connection, subscribes every watched channel on it and
    /// installs it as the link. Returns the receiver of its pushes.
    async fn establish(&self) -> Result<mpsc::UnboundedReceiver<PushInfo>, StoreError> {
        let limit = self.config.command_timeout;
        let mut link = self.link.lock().await;
        *link = None;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let mut conn = Link::connect(&self.deployment, limit, push_tx).await?;
        let channels: Vec<String> = self
            .watched
            .snapshot()
            .iter()
            .map(|entity| channel_name(entity))
            .collect();
        conn.subscribe(&channels, limit).await?;
        lock(&self.own_unsubscribes).clear();
        *link = Some(conn);
        Ok(push_rx)
    }

    /// Drops the link after a command on it failed, and asks the delivery
    /// task to reconnect.
    fn abandon(&self, link: &mut Option<Link>, err: &StoreError) {
        tracing::warn!(error = %err, "change feed connection failed; reconnecting");
        *link = None;
        self.reconnect.notify_one();
    }

    /// True when the link answers PING in time.
    async fn healthy(&self) -> bool {
        let conn = self.link.lock().await.clone();
        let Some(mut conn) = conn else {
            return false;
        };
        conn.ping(self.config.command_timeout).await.is_ok()
    }

    /// Subscribes again to a channel the server dropped, if still watched.
    async fn resubscribe(&self, entity: &str) -> Result<bool, StoreError> {
        let mut link = self.link.lock().await;
        if !self.watched.contains(entity) {
            return Ok(false);
        }
        let Some(conn) = link.as_mut() else {
            return Err(StoreError::Unavailable("change feed disconnected".into()));
        };
        conn.subscribe(&[channel_name(entity)], self.config.command_timeout)
            .await?;
        Ok(true)
    }

    /// Handles one push of the link.
    async fn on_push(&self, push: PushInfo, outbox: &mut Outbox) -> Option<Served> {
        let mut data = push.data.into_iter();
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
                    return None;
                };
                let (Ok(Some(channel)), Ok(Some(payload))) = (bytes_of(channel), bytes_of(payload))
                else {
                    return None;
                };
                let entity = entity_of_channel(&channel)?;
                if !self.watched.contains(&entity) {
                    return None;
                }
                let message = ChannelMessage {
                    entity,
                    payload: Bytes::from(payload),
                };
                match outbox.offer(message) {
                    Offer::Accepted => None,
                    Offer::Closed => Some(Served::SubscriberGone),
                }
            }
            PushKind::Disconnection => Some(Served::LinkLost),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                let Some(Ok(Some(channel))) = data.next().map(bytes_of) else {
                    return None;
                };
                let channel = String::from_utf8(channel).ok()?;
                {
                    let mut own = lock(&self.own_unsubscribes);
                    if let Some(count) = own.get_mut(&channel) {
                        *count -= 1;
                        if *count == 0 {
                            own.remove(&channel);
                        }
                        return None;
                    }
                }
                let entity = entity_of_channel(channel.as_bytes())?;
                tracing::info!(%channel, "server ended a watched subscription; resubscribing");
                match self.resubscribe(&entity).await {
                    Ok(false) => None,
                    Ok(true) => match outbox.owe_resync() {
                        Offer::Accepted => None,
                        Offer::Closed => Some(Served::SubscriberGone),
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "resubscription failed; reconnecting");
                        Some(Served::LinkLost)
                    }
                }
            }
            _ => None,
        }
    }

    /// Delivers the pushes of one connection until it is lost or the
    /// subscriber goes away.
    async fn serve(
        &self,
        outbox: &mut Outbox,
        pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    ) -> Served {
        let mut health = tokio::time::interval(self.config.feed_health_interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the connection was just checked.
        health.tick().await;
        let gone = outbox.closed_signal();
        loop {
            let owed = outbox.resync_owed();
            tokio::select! {
                () = gone.closed() => return Served::SubscriberGone,
                offer = outbox.pay_resync(), if owed => {
                    if offer == Offer::Closed {
                        return Served::SubscriberGone;
                    }
                }
                () = self.reconnect.notified() => {
                    // A stale request from before the current link is
                    // ignored: whoever failed has cleared `link`.
                    if self.link.lock().await.is_none() {
                        return Served::LinkLost;
                    }
                }
                _ = health.tick() => {
                    if !self.healthy().await {
                        tracing::warn!("change feed connection stopped answering; reconnecting");
                        return Served::LinkLost;
                    }
                }
                push = pushes.recv() => {
                    let Some(push) = push else {
                        return Served::LinkLost;
                    };
                    if let Some(served) = self.on_push(push, outbox).await {
                        return served;
                    }
                }
            }
        }
    }
}

/// The delivery task of a feed: serve, and after any loss reconnect with
/// backoff, re-subscribe, then tell the subscriber to resynchronise.
async fn run_feed(
    shared: Arc<FeedShared>,
    mut outbox: Outbox,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
) {
    let gone = outbox.closed_signal();
    'feed: loop {
        if let Served::SubscriberGone = shared.serve(&mut outbox, &mut pushes).await {
            break;
        }
        *shared.link.lock().await = None;
        let mut delay = MIN_RECONNECT_DELAY;
        loop {
            tokio::select! {
                () = gone.closed() => break 'feed,
                () = tokio::time::sleep(delay) => {}
            }
            let attempt = tokio::select! {
                () = gone.closed() => break 'feed,
                attempt = shared.establish() => attempt,
            };
            match attempt {
                Ok(fresh) => {
                    crate::metrics::metrics().feed_reconnects.inc();
                    pushes = fresh;
                    break;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "change feed reconnection failed");
                    delay = (delay * 2).min(shared.config.max_reconnect_delay);
                }
            }
        }
        if outbox.owe_resync() == Offer::Closed {
            break;
        }
    }
    shared.stopped.store(true, Ordering::Release);
    *shared.link.lock().await = None;
}

/// The control half of a Redis feed.
struct RedisFeedControl {
    shared: Arc<FeedShared>,
}

impl RedisFeedControl {
    fn ensure_running(&self) -> Result<(), StoreError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("change feed closed".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl FeedControl for RedisFeedControl {
    async fn watch(&self, entity: &str) -> Result<(), StoreError> {
        self.ensure_running()?;
        let shared = &self.shared;
        let mut link = shared.link.lock().await;
        if !shared.watched.insert(entity) {
            return Ok(());
        }
        if let Some(conn) = link.as_mut() {
            let subscribed = conn
                .subscribe(&[channel_name(entity)], shared.config.command_timeout)
                .await;
            if let Err(err) = subscribed {
                // The watch stays recorded: the reconnection re-subscribes
                // it and then sends a resync, so nothing is missed.
                shared.abandon(&mut link, &err);
            }
        }
        Ok(())
    }

    async fn unwatch(&self, entity: &str) -> Result<(), StoreError> {
        self.ensure_running()?;
        let shared = &self.shared;
        let mut link = shared.link.lock().await;
        if !shared.watched.remove(entity) {
            return Ok(());
        }
        if let Some(conn) = link.as_mut() {
            let channel = channel_name(entity);
            *lock(&shared.own_unsubscribes)
                .entry(channel.clone())
                .or_insert(0) += 1;
            let unsubscribed = conn
                .unsubscribe(&channel, shared.config.command_timeout)
                .await;
            if let Err(err) = unsubscribed {
                // Reconnecting subscribes only what is still watched.
                shared.abandon(&mut link, &err);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn keys_share_the_entity_hash_tag() {
        let key = Key::new(Kind::Subscriptions, "alice@example.com");
        assert_eq!(record_key(&key), "subs:{alice@example.com}");
        assert_eq!(map_key(&key), "subs:{alice@example.com}:m");
        assert_eq!(
            channel_name("alice@example.com"),
            "chan:{alice@example.com}"
        );
    }

    #[test]
    fn braces_in_entities_are_escaped_and_recovered() {
        let entity = "we{ir}d%20name";
        let channel = channel_name(entity);
        assert_eq!(channel, "chan:{we%7Bir%7Dd%2520name}");
        assert_eq!(
            entity_of_channel(channel.as_bytes()).as_deref(),
            Some(entity)
        );
    }

    #[test]
    fn cluster_urls_name_every_node() -> Result<(), StoreError> {
        let nodes = cluster_nodes("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/")
            .ok_or_else(|| StoreError::Protocol("not recognised".into()))??;
        assert_eq!(
            nodes,
            vec!["redis://u:p@10.0.0.1:7000/", "redis://u:p@10.0.0.2:7001/"]
        );
        let nodes = cluster_nodes("redis+cluster://h1:1,h2:2?protocol=resp3")
            .ok_or_else(|| StoreError::Protocol("not recognised".into()))??;
        assert_eq!(
            nodes,
            vec![
                "redis://h1:1/?protocol=resp3",
                "redis://h2:2/?protocol=resp3"
            ]
        );
        assert!(cluster_nodes("redis://127.0.0.1:6379/").is_none());
        assert!(matches!(
            cluster_nodes("redis+cluster:///"),
            Some(Err(StoreError::Protocol(_)))
        ));
        Ok(())
    }

    #[test]
    fn foreign_channels_are_not_entities() {
        assert_eq!(entity_of_channel(b"other:{x}"), None);
        assert_eq!(entity_of_channel(b"chan:{bad%zz}"), None);
    }

    #[test]
    fn replies_decode_in_both_protocols() -> Result<(), StoreError> {
        let flat = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"1500".to_vec()),
        ]);
        let nested = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Double(1500.0),
        ])]);
        for reply in [flat, nested] {
            let decoded = pairs(reply).map_err(|other| protocol_error("test", &other))?;
            let (member, score) = decoded
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Protocol("no pair".into()))?;
            assert_eq!(string_of(member, "member")?, "a");
            assert_eq!(due_of(score)?, 1500);
        }
        Ok(())
    }

    #[test]
    fn half_written_records_are_corrupt() {
        let key = Key::new(Kind::Presentity, "bob@example.com");
        let reply = Value::Array(vec![Value::BulkString(b"3".to_vec()), Value::Nil]);
        assert!(matches!(
            decode_record(&key, reply),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
