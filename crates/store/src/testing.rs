//! Throw-away Redis servers for tests.
//!
//! [`RedisServer::start`] runs the real `redis-server` binary on a free
//! loopback port with persistence off and its own temporary directory, and
//! kills it when dropped. [`RedisServer::stop`] and [`RedisServer::restart`]
//! let tests exercise outages and reconnection; a restart reuses the port so
//! clients reconnect to the same URL.
//!
//! [`RedisCluster::start`] runs several such servers in cluster mode, with
//! the 16384 slots split evenly between them as masters (no replicas), and
//! can move a slot from one master to another to exercise slot migration.
//!
//! The binary is required, not optional: without it [`RedisServer::start`]
//! fails with an error telling how to install it, so that a test run on a
//! machine without Redis fails loudly instead of silently testing less.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a test server could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TestServerError {
    /// `redis-server` is not on `PATH`.
    #[error(
        "redis-server was not found on PATH; install the Debian package `redis-server` \
         (apt-get install -y redis-server) to run these tests"
    )]
    NotInstalled,
    /// Spawning the process or preparing its directory failed.
    #[error("could not run redis-server: {0}")]
    Io(#[from] std::io::Error),
    /// A setup command was refused.
    #[error("redis setup command failed: {0}")]
    Command(#[from] redis::RedisError),
    /// The cluster did not reach a consistent, fully covered state in time.
    #[error("redis cluster did not converge: {0}")]
    ClusterNotReady(String),
    /// The server started but did not answer PING in time.
    #[error("redis-server on port {port} did not become ready: {log}")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// The tail of its log.
        log: String,
    },
}

/// How long a freshly spawned server may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by a test.
pub struct RedisServer {
    port: u16,
    /// Extra command-line arguments, kept for restarts.
    extra_args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Result<RedisServer, TestServerError> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments (for example
    /// `["--cluster-enabled", "yes"]`).
    pub fn start_with_args(extra_args: &[&str]) -> Result<RedisServer, TestServerError> {
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        // Another process may grab the port between probing and binding;
        // a few attempts make that race harmless.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = RedisServer {
                port,
                extra_args: extra_args.clone(),
                child: None,
                dir: tempfile::Builder::new().prefix("redis-test-").tempdir()?,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(err @ TestServerError::NotInstalled) => return Err(err),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or(TestServerError::NotReady {
            port: 0,
            log: "no attempt made".into(),
        }))
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The address of the server.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's working directory (logs, cluster config).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (as a crash would: no shutdown handshake) and waits
    /// for the process to end. Harmless when already stopped.
    pub fn stop(&mut self) -> Result<(), TestServerError> {
        if let Some(mut child) = self.child.take() {
            // Killing a process that already exited is not an error here.
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the server if running and starts a new, empty one on the same
    /// port.
    pub fn restart(&mut self) -> Result<(), TestServerError> {
        self.stop()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        // The old socket may linger a moment; retry until the port is free.
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(err @ TestServerError::NotInstalled) => return Err(err),
                Err(err) if Instant::now() >= deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Sends one inline command and returns the raw reply (for test setup
    /// such as `CLIENT KILL` or `DEBUG SLEEP`).
    pub fn command(&self, inline: &str) -> Result<String, TestServerError> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{inline}\r\n").as_bytes())?;
        let mut reply = [0u8; 4096];
        let read = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..read]).into_owned())
    }

    /// A plain synchronous connection, for test setup.
    pub fn connection(&self) -> Result<redis::Connection, TestServerError> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_connection_with_timeout(Duration::from_secs(5))?)
    }

    /// The cluster node id of a server started in cluster mode.
    pub fn node_id(&self) -> Result<String, TestServerError> {
        let mut conn = self.connection()?;
        Ok(redis::cmd("CLUSTER").arg("MYID").query(&mut conn)?)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn spawn(&mut self) -> Result<(), TestServerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(TestServerError::NotInstalled)
            }
            Err(err) => return Err(err.into()),
        };
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                break;
            }
            if matches!(self.command("PING"), Ok(reply) if reply.starts_with("+PONG")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log_tail();
        self.stop()?;
        Err(TestServerError::NotReady {
            port: self.port,
            log,
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, TestServerError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// How long a fresh cluster may take to agree on its slot map.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The number of hash slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// Several `redis-server` processes forming one Redis Cluster of masters.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` servers in cluster mode, assigns each an even share
    /// of the slots, joins them and waits until every node reports the
    /// cluster healthy and agrees on the slot map.
    pub fn start(masters: usize) -> Result<RedisCluster, TestServerError> {
        if masters == 0 {
            return Err(TestServerError::ClusterNotReady(
                "no masters requested".into(),
            ));
        }
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(RedisServer::start_with_args(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--enable-debug-command",
                "yes",
            ])?);
        }
        let cluster = RedisCluster { nodes };
        let slots = usize::from(CLUSTER_SLOTS);
        for (index, node) in cluster.nodes.iter().enumerate() {
            let first = index * slots / masters;
            let last = (index + 1) * slots / masters - 1;
            let mut conn = node.connection()?;
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .exec(&mut conn)?;
        }
        let mut first = cluster.nodes[0].connection()?;
        for node in &cluster.nodes[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port())
                .exec(&mut first)?;
        }
        cluster.wait_until_consistent()?;
        Ok(cluster)
    }

    /// The `redis+cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    /// The servers, in slot order (node 0 owns the lowest slots).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills node `index` (as a crash would). Its slots become unreachable
    /// until [`RedisCluster::restart_node`] brings it back.
    pub fn stop_node(&mut self, index: usize) -> Result<(), TestServerError> {
        let node = self.nodes.get_mut(index).ok_or_else(|| {
            TestServerError::ClusterNotReady(format!("no node {index} in the cluster"))
        })?;
        node.stop()
    }

    /// Restarts node `index` on the same port with its cluster config (so
    /// it rejoins owning the same slots, with no data), and waits until the
    /// cluster is healthy again.
    pub fn restart_node(&mut self, index: usize) -> Result<(), TestServerError> {
        let node = self.nodes.get_mut(index).ok_or_else(|| {
            TestServerError::ClusterNotReady(format!("no node {index} in the cluster"))
        })?;
        node.restart()?;
        self.wait_until_consistent()
    }

    /// The slot of `key` (hash tags respected), as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> Result<u16, TestServerError> {
        let mut conn = self.nodes[0].connection()?;
        Ok(redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)?)
    }

    /// The index of the node that owns `slot` now (as node 0 sees it).
    pub fn owner_of(&self, slot: u16) -> Result<usize, TestServerError> {
        let mut conn = self.nodes[0].connection()?;
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn)?;
        for range in ranges {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let (Some(redis::Value::Int(first)), Some(redis::Value::Int(last))) =
                (fields.first(), fields.get(1))
            else {
                continue;
            };
            if i64::from(slot) < *first || i64::from(slot) > *last {
                continue;
            }
            let Some(redis::Value::Array(master)) = fields.get(2) else {
                continue;
            };
            if let Some(redis::Value::Int(port)) = master.get(1) {
                if let Some(index) = self
                    .nodes
                    .iter()
                    .position(|node| i64::from(node.port()) == *port)
                {
                    return Ok(index);
                }
            }
        }
        Err(TestServerError::ClusterNotReady(format!(
            "no node owns slot {slot}"
        )))
    }

    /// Moves `slot` (and any keys in it) to node `to`, the way
    /// `redis-cli --cluster reshard` does, and waits until every node agrees.
    pub fn migrate_slot(&self, slot: u16, to: usize) -> Result<(), TestServerError> {
        if self.owner_of(slot)? == to {
            return Ok(());
        }
        let migration = self.begin_migration(slot, to)?;
        while self.migrate_keys(&migration, 100)? > 0 {}
        self.finish_migration(migration)
    }

    /// Opens the migration of `slot` to node `to`: the target is set
    /// IMPORTING and the owner MIGRATING, and the slot stays in that state
    /// (keys answered by the owner, missing ones redirected with ASK) until
    /// [`RedisCluster::finish_migration`]. Keys move only when
    /// [`RedisCluster::migrate_keys`] moves them.
    pub fn begin_migration(&self, slot: u16, to: usize) -> Result<Migration, TestServerError> {
        let from = self.owner_of(slot)?;
        if from == to {
            return Err(TestServerError::ClusterNotReady(format!(
                "slot {slot} is already on node {to}"
            )));
        }
        let source = &self.nodes[from];
        let target = self.nodes.get(to).ok_or_else(|| {
            TestServerError::ClusterNotReady(format!("no node {to} in the cluster"))
        })?;
        let source_id = source.node_id()?;
        let target_id = target.node_id()?;
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&source_id)
            .exec(&mut target.connection()?)?;
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&target_id)
            .exec(&mut source.connection()?)?;
        Ok(Migration {
            slot,
            from,
            to,
            target_id,
        })
    }

    /// Moves up to `batch` keys of a migrating slot from its owner to the
    /// target (MIGRATE); returns how many moved (0 once none are left).
    pub fn migrate_keys(
        &self,
        migration: &Migration,
        batch: usize,
    ) -> Result<usize, TestServerError> {
        let mut source_conn = self.nodes[migration.from].connection()?;
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(migration.slot)
            .arg(batch)
            .query(&mut source_conn)?;
        if keys.is_empty() {
            return Ok(0);
        }
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.nodes[migration.to].port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .exec(&mut source_conn)?;
        Ok(keys.len())
    }

    /// Moves the keys still left at the owner and gives the slot to the
    /// target on every node (SETSLOT NODE), then waits until every node
    /// agrees.
    pub fn finish_migration(&self, migration: Migration) -> Result<(), TestServerError> {
        while self.migrate_keys(&migration, 100)? > 0 {}
        // The target first, then the source, as `redis-cli` does: the slot
        // is never left without an owner that accepts its keys.
        let mut order = vec![migration.to, migration.from];
        order.extend((0..self.nodes.len()).filter(|i| *i != migration.to && *i != migration.from));
        for index in order {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(migration.slot)
                .arg("NODE")
                .arg(&migration.target_id)
                .exec(&mut self.nodes[index].connection()?)?;
        }
        self.wait_until_consistent()
    }

    /// Waits until every node reports `cluster_state:ok` and all nodes
    /// describe the same slot map.
    fn wait_until_consistent(&self) -> Result<(), TestServerError> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.consistent() {
                Ok(true) => return Ok(()),
                Ok(false) => last = "nodes disagree or are not ok yet".into(),
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(TestServerError::ClusterNotReady(last))
    }

    fn consistent(&self) -> Result<bool, TestServerError> {
        let mut maps = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let mut conn = node.connection()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn)?;
            if !info.contains("cluster_state:ok") {
                return Ok(false);
            }
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn)?;
            let mut map: Vec<String> = nodes
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split(' ').collect();
                    let slots = fields.get(8..)?.join(" ");
                    Some(format!("{} {}", fields.first()?, slots))
                })
                .collect();
            if map.len() != self.nodes.len() {
                return Ok(false);
            }
            map.sort();
            maps.push(map);
        }
        Ok(maps.windows(2).all(|pair| pair[0] == pair[1]))
    }
}

/// A slot migration opened by [`RedisCluster::begin_migration`].
#[derive(Debug)]
pub struct Migration {
    slot: u16,
    from: usize,
    to: usize,
    target_id: String,
}

impl Migration {
    /// The migrating slot.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The index of the node that owned the slot.
    pub fn from(&self) -> usize {
        self.from
    }

    /// The index of the node the slot moves to.
    pub fn to(&self) -> usize {
        self.to
    }
}
