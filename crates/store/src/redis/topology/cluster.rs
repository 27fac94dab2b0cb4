//! A Redis Cluster: sharded pub/sub (SPUBLISH / SSUBSCRIBE), so a message
//! only travels within the shard owning its entity's slot; commands follow
//! MOVED and ASK redirections and retry TRYAGAIN briefly.

use std::time::Duration;

use async_trait::async_trait;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, Value};
use tokio::sync::mpsc;

use super::{Commands, FeedLink, Topology};
use crate::redis::{map_error, with_timeout, RedisConfig, TlsFiles};
use crate::StoreError;

/// The scheme that selects a Redis Cluster.
const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The same over TLS: every node is reached with `rediss://`.
const TLS_CLUSTER_SCHEME: &str = "rediss+cluster://";

/// How many SSUBSCRIBEs a feed keeps in flight when it re-subscribes
/// (each shard channel needs its own command).
const SSUBSCRIBE_CONCURRENCY: usize = 64;

/// The shortest pause before a command is retried after TRYAGAIN,
/// CLUSTERDOWN or LOADING (ms). The client's default (1.28 s) alone would
/// use up most of the command timeout on the first retry, so a brief
/// resharding state would surface as a failure.
const MIN_RETRY_WAIT_MS: u64 = 10;

/// The longest pause between two such retries (ms); the pauses grow
/// exponentially from 20 ms up to it, all within the command timeout.
const MAX_RETRY_WAIT_MS: u64 = 200;

pub(super) struct Cluster {
    /// The node URLs the cluster is discovered through.
    nodes: Vec<String>,
    tls: TlsFiles,
}

impl Cluster {
    pub(super) fn new(nodes: Vec<String>, config: &RedisConfig) -> Self {
        Cluster {
            nodes,
            tls: config.tls.clone(),
        }
    }

    /// A client builder for the nodes, with the TLS certificates when they
    /// are reached over `rediss://`, and the settings every connection
    /// shares.
    fn builder(&self, limit: Duration) -> ClusterClientBuilder {
        let builder = ClusterClient::builder(self.nodes.clone());
        let builder = if self.nodes.iter().any(|node| node.starts_with("rediss://")) {
            builder.certs(self.tls.certificates())
        } else {
            builder
        };
        builder
            .connection_timeout(limit)
            .response_timeout(limit)
            .min_retry_wait(MIN_RETRY_WAIT_MS)
            .max_retry_wait(MAX_RETRY_WAIT_MS)
    }
}

#[async_trait]
impl Topology for Cluster {
    fn sharded(&self) -> bool {
        true
    }

    async fn connect_commands(&self, config: &RedisConfig) -> Result<Commands, StoreError> {
        let client = self
            .builder(config.command_timeout)
            .build()
            .map_err(|e| StoreError::Protocol(format!("invalid Redis Cluster URL: {e}")))?;
        let conn = with_timeout(config.command_timeout, client.get_async_connection()).await?;
        Ok(Commands::new(conn))
    }

    async fn connect_feed(
        &self,
        config: &RedisConfig,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Box<dyn FeedLink>, StoreError> {
        let limit = config.command_timeout;
        let client = self
            .builder(limit)
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .map_err(map_error)?;
        let conn = with_timeout(limit, client.get_async_connection()).await?;
        Ok(Box::new(ClusterFeed(conn)))
    }
}

/// A RESP3 cluster connection, which routes each SSUBSCRIBE to the shard
/// owning the channel's slot.
#[derive(Clone)]
struct ClusterFeed(ClusterConnection);

#[async_trait]
impl FeedLink for ClusterFeed {
    async fn subscribe(&mut self, channels: &[String], limit: Duration) -> Result<(), StoreError> {
        use futures::{StreamExt, TryStreamExt};
        let subscriptions: Vec<_> = channels
            .iter()
            .map(|channel| {
                let mut conn = self.0.clone();
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

    async fn unsubscribe(&mut self, channel: &str, limit: Duration) -> Result<(), StoreError> {
        with_timeout(limit, self.0.sunsubscribe(channel)).await
    }

    async fn ping(&mut self, limit: Duration) -> Result<(), StoreError> {
        with_timeout::<Value>(limit, redis::cmd("PING").query_async(&mut self.0)).await?;
        Ok(())
    }

    fn clone_link(&self) -> Box<dyn FeedLink> {
        Box::new(self.clone())
    }
}

/// The node URLs of a `redis+cluster://[user:password@]host:port,host:port[/]`
/// URL; `None` when `url` is not a cluster URL.
pub(super) fn nodes_of_url(url: &str) -> Option<Result<Vec<String>, StoreError>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_node() -> Result<(), StoreError> {
        let nodes = nodes_of_url("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/")
            .ok_or_else(|| StoreError::Protocol("not recognised".into()))??;
        assert_eq!(
            nodes,
            vec!["redis://u:p@10.0.0.1:7000/", "redis://u:p@10.0.0.2:7001/"]
        );
        let nodes = nodes_of_url("redis+cluster://h1:1,h2:2?protocol=resp3")
            .ok_or_else(|| StoreError::Protocol("not recognised".into()))??;
        assert_eq!(
            nodes,
            vec![
                "redis://h1:1/?protocol=resp3",
                "redis://h2:2/?protocol=resp3"
            ]
        );
        assert!(nodes_of_url("redis://127.0.0.1:6379/").is_none());
        assert!(matches!(
            nodes_of_url("redis+cluster:///"),
            Some(Err(StoreError::Protocol(_)))
        ));
        Ok(())
    }
}
