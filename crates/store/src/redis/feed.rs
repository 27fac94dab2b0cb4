//! The change feed of the Redis backend.
//!
//! Each feed owns one RESP3 connection used only for (S)SUBSCRIBE and
//! (S)UNSUBSCRIBE and the pushes they produce. A task per feed delivers the
//! messages of watched channels and, when the connection drops, stops
//! answering its periodic PING, or the server unsubscribes it from a
//! channel it still watches (as the old owner of a migrated slot does),
//! reconnects with exponential backoff, re-subscribes every watched channel
//! and only then sends [`FeedItem::Resync`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, Notify};

use super::keys::{channel_name, entity_of_channel};
use super::reply::bytes_of;
use super::topology::{FeedLink, Topology};
use super::{RedisConfig, MIN_RECONNECT_DELAY};
use crate::feed::{Offer, Outbox, WatchSet, FEED_CAPACITY};
use crate::{lock, ChannelMessage, FeedControl, FeedItem, StoreError};

/// Opens a feed: connects its first link (so a feed opened while Redis is
/// down fails like any other command) and starts its delivery task.
pub(super) async fn open(
    topology: Arc<dyn Topology>,
    config: RedisConfig,
) -> Result<(Box<dyn FeedControl>, mpsc::Receiver<FeedItem>), StoreError> {
    let shared = Arc::new(FeedShared {
        topology,
        config,
        watched: WatchSet::default(),
        link: tokio::sync::Mutex::new(None),
        own_unsubscribes: Mutex::new(HashMap::new()),
        reconnect: Notify::new(),
        stopped: AtomicBool::new(false),
    });
    let pushes = shared.establish().await?;
    let (out_tx, out_rx) = mpsc::channel(FEED_CAPACITY);
    tokio::spawn(run_feed(Arc::clone(&shared), Outbox::new(out_tx), pushes));
    Ok((Box::new(RedisFeedControl { shared }), out_rx))
}

/// State shared by a feed's control half and its delivery task.
struct FeedShared {
    topology: Arc<dyn Topology>,
    config: RedisConfig,
    /// What the subscriber asked for; the source of truth for
    /// resubscription and for filtering deliveries.
    watched: WatchSet,
    /// The live pub/sub connection, `None` while reconnecting. Held across
    /// every (UN)SUBSCRIBE so that the server's view and `watched` change
    /// in the same order.
    link: tokio::sync::Mutex<Option<Box<dyn FeedLink>>>,
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
        let mut conn = self.topology.connect_feed(&self.config, push_tx).await?;
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
    fn abandon(&self, link: &mut Option<Box<dyn FeedLink>>, err: &StoreError) {
        tracing::warn!(error = %err, "change feed connection failed; reconnecting");
        *link = None;
        self.reconnect.notify_one();
    }

    /// True when the link answers PING in time.
    async fn healthy(&self) -> bool {
        let conn = self
            .link
            .lock()
            .await
            .as_ref()
            .map(|conn| conn.clone_link());
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
