//! One Redis server: PUBLISH / SUBSCRIBE, and scripts or pipelines may
//! span any keys.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, Value};
use tokio::sync::mpsc;

use super::{Commands, FeedLink, Topology};
use crate::redis::{map_error, with_timeout, RedisConfig, MIN_RECONNECT_DELAY};
use crate::StoreError;

/// How many channels one SUBSCRIBE carries when a feed re-subscribes.
const SUBSCRIBE_BATCH: usize = 512;

pub(super) struct Single {
    /// The client of the command connection (RESP2 or as the URL says).
    client: Client,
    /// The same server over RESP3, for feed connections: RESP3 delivers
    /// pub/sub messages as pushes on an ordinary multiplexed connection.
    feed_client: Client,
}

impl Single {
    /// The clients for the `redis://` (or `rediss://`) URL of `config`;
    /// [`StoreError::Protocol`] when it is not a valid Redis URL.
    pub(super) fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        let invalid =
            |e: redis::RedisError| StoreError::Protocol(format!("invalid Redis URL: {e}"));
        let client = config.client(config.url.as_str()).map_err(invalid)?;
        let info = client.get_connection_info().clone();
        let feed_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let feed_client = config
            .client(info.set_redis_settings(feed_settings))
            .map_err(invalid)?;
        Ok(Single {
            client,
            feed_client,
        })
    }
}

#[async_trait]
impl Topology for Single {
    fn sharded(&self) -> bool {
        false
    }

    async fn connect_commands(&self, config: &RedisConfig) -> Result<Commands, StoreError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_min_delay(MIN_RECONNECT_DELAY)
            .set_max_delay(config.max_reconnect_delay)
            .set_number_of_retries(2);
        let manager = tokio::time::timeout(
            config.command_timeout,
            ConnectionManager::new_with_config(self.client.clone(), manager_config),
        )
        .await
        .map_err(|_| StoreError::Unavailable("timed out connecting to Redis".into()))?
        .map_err(map_error)?;
        Ok(Commands::new(manager))
    }

    async fn connect_feed(
        &self,
        config: &RedisConfig,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<Box<dyn FeedLink>, StoreError> {
        let limit = config.command_timeout;
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(Some(limit))
            .set_push_sender(pushes);
        let conn = with_timeout(
            limit,
            self.feed_client
                .get_multiplexed_async_connection_with_config(&connection_config),
        )
        .await?;
        Ok(Box::new(SingleFeed(conn)))
    }
}

/// One RESP3 connection to the server.
#[derive(Clone)]
struct SingleFeed(MultiplexedConnection);

#[async_trait]
impl FeedLink for SingleFeed {
    async fn subscribe(&mut self, channels: &[String], limit: Duration) -> Result<(), StoreError> {
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            with_timeout(limit, self.0.subscribe(batch)).await?;
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, channel: &str, limit: Duration) -> Result<(), StoreError> {
        with_timeout(limit, self.0.unsubscribe(channel)).await
    }

    async fn ping(&mut self, limit: Duration) -> Result<(), StoreError> {
        with_timeout::<Value>(limit, redis::cmd("PING").query_async(&mut self.0)).await?;
        Ok(())
    }

    fn clone_link(&self) -> Box<dyn FeedLink> {
        Box::new(self.clone())
    }
}
