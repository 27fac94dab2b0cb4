//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store::redis::{RedisBackend, RedisConfig};
use store::testing::{RedisCluster, RedisServer};
use store::{Backend, ChannelMessage, FeedItem};
use tokio::sync::mpsc;

/// How long a test waits for something that should arrive.
pub const ARRIVAL: Duration = Duration::from_secs(5);

/// How long a test listens to conclude that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(300);

/// A Redis backend with a short command timeout, so outage tests are quick.
pub async fn redis_backend(server: &RedisServer) -> anyhow::Result<RedisBackend> {
    let mut config = RedisConfig::new(server.url());
    config.command_timeout = Duration::from_millis(500);
    config.feed_health_interval = Duration::from_millis(500);
    config.max_reconnect_delay = Duration::from_millis(200);
    Ok(RedisBackend::connect_with(config).await?)
}

/// A backend on a Redis Cluster, with the same short timeouts.
pub async fn redis_cluster_backend(cluster: &RedisCluster) -> anyhow::Result<RedisBackend> {
    let mut config = RedisConfig::new(cluster.url());
    config.command_timeout = Duration::from_millis(1000);
    config.feed_health_interval = Duration::from_millis(500);
    config.max_reconnect_delay = Duration::from_millis(200);
    let backend = RedisBackend::connect_with(config).await?;
    anyhow::ensure!(
        backend.is_cluster(),
        "cluster URL did not select cluster mode"
    );
    Ok(backend)
}

pub fn message(entity: &str, payload: &str) -> ChannelMessage {
    ChannelMessage {
        entity: entity.to_owned(),
        payload: Bytes::from(payload.to_owned()),
    }
}

/// The next feed item, failing the test if none arrives in time.
pub async fn next_item(rx: &mut mpsc::Receiver<FeedItem>) -> anyhow::Result<FeedItem> {
    match tokio::time::timeout(ARRIVAL, rx.recv()).await {
        Ok(Some(item)) => Ok(item),
        Ok(None) => anyhow::bail!("feed closed"),
        Err(_) => anyhow::bail!("nothing arrived within {ARRIVAL:?}"),
    }
}

/// The next message, failing on a resync or on silence.
pub async fn next_message(rx: &mut mpsc::Receiver<FeedItem>) -> anyhow::Result<ChannelMessage> {
    match next_item(rx).await? {
        FeedItem::Message(message) => Ok(message),
        FeedItem::Resync => anyhow::bail!("unexpected resync"),
    }
}

/// Fails if anything arrives within [`SILENCE`].
pub async fn expect_silence(rx: &mut mpsc::Receiver<FeedItem>) -> anyhow::Result<()> {
    match tokio::time::timeout(SILENCE, rx.recv()).await {
        Ok(Some(item)) => anyhow::bail!("unexpected feed item {item:?}"),
        Ok(None) => anyhow::bail!("feed closed"),
        Err(_) => Ok(()),
    }
}

/// Skips resyncs and messages until one with `payload` arrives; fails on
/// silence.
pub async fn wait_for_payload(
    rx: &mut mpsc::Receiver<FeedItem>,
    payload: &str,
) -> anyhow::Result<()> {
    loop {
        if let FeedItem::Message(message) = next_item(rx).await? {
            if message.payload == payload.as_bytes() {
                return Ok(());
            }
        }
    }
}

/// Retries `op` until it succeeds or `ARRIVAL` passes.
pub async fn eventually<T, F, Fut>(mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, store::StoreError>>,
{
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("still failing after {ARRIVAL:?}: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub type DynBackend = Arc<dyn Backend>;
