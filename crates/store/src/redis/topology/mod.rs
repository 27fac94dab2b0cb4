//! What the backend talks to: one server or a Redis Cluster. Everything
//! that differs between them — how connections are made, which pub/sub
//! flavour carries announcements, whether one script or pipeline may span
//! entities — is behind [`Topology`], one implementation per file, so a
//! further kind of deployment is one more file and one more arm in
//! [`select`].

mod cluster;
mod single;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, Value};
use tokio::sync::mpsc;

use super::RedisConfig;
use crate::StoreError;

/// One kind of Redis deployment.
#[async_trait]
pub(super) trait Topology: Send + Sync + 'static {
    /// True when the keyspace is split over shards (Redis Cluster): sharded
    /// pub/sub (SPUBLISH / SSUBSCRIBE), and no script or pipeline may span
    /// keys of different entities or the global schedules.
    fn sharded(&self) -> bool;

    /// The command that publishes on an entity's channel.
    fn publish_command(&self) -> &'static str {
        if self.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Opens the connection commands go through. It reconnects by itself
    /// (and, on a cluster, follows MOVED/ASK redirections).
    async fn connect_commands(&self, config: &RedisConfig) -> Result<Commands, StoreError>;

    /// Opens a pub/sub connection for one change feed; its pushes
    /// (messages, unsubscriptions, disconnection) go to `pushes`.
    async fn connect_feed(
        &self,
        config: &RedisConfig,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Box<dyn FeedLink>, StoreError>;
}

/// The topology a configuration names: a `redis+cluster://` or
/// `rediss+cluster://` URL selects a Redis Cluster, anything else one
/// server.
pub(super) fn select(config: &RedisConfig) -> Result<Arc<dyn Topology>, StoreError> {
    if let Some(nodes) = cluster::nodes_of_url(&config.url) {
        return Ok(Arc::new(cluster::Cluster::new(nodes?, config)));
    }
    Ok(Arc::new(single::Single::new(config)?))
}

/// A command connection of any topology, cheap to clone (clones share it).
pub(super) struct Commands(Box<dyn CommandLink>);

/// A connection that can stand behind [`Commands`].
trait CommandLink: ConnectionLike + Send + Sync {
    fn clone_link(&self) -> Box<dyn CommandLink>;
}

impl<T: ConnectionLike + Clone + Send + Sync + 'static> CommandLink for T {
    fn clone_link(&self) -> Box<dyn CommandLink> {
        Box::new(self.clone())
    }
}

impl Commands {
    fn new(link: impl ConnectionLike + Clone + Send + Sync + 'static) -> Self {
        Commands(Box::new(link))
    }
}

impl Clone for Commands {
    fn clone(&self) -> Self {
        Commands(self.0.clone_link())
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A feed's pub/sub connection.
#[async_trait]
pub(super) trait FeedLink: Send + Sync {
    /// Subscribes to every channel of `channels`, each within `limit`.
    async fn subscribe(&mut self, channels: &[String], limit: Duration) -> Result<(), StoreError>;

    /// Unsubscribes from one channel within `limit`.
    async fn unsubscribe(&mut self, channel: &str, limit: Duration) -> Result<(), StoreError>;

    /// Checks that the connection (every shard's, on a cluster) answers.
    async fn ping(&mut self, limit: Duration) -> Result<(), StoreError>;

    /// Another handle on the same connection.
    fn clone_link(&self) -> Box<dyn FeedLink>;
}
