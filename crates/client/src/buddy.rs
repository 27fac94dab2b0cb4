//! A buddy list: many watchers, one merged stream of changes.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{FutureExt, Stream, StreamExt};
use tokio_stream::StreamMap;

use crate::error::Result;
use crate::peer::SimplePeer;
use crate::status::PresenceInfo;
use crate::watch::PresenceWatcher;

/// The people an application watches, by the name it added them with.
///
/// ```no_run
/// use presence_client::{BuddyList, SimplePeer};
/// # async fn run(peer: SimplePeer) -> presence_client::Result<()> {
/// let mut buddies = BuddyList::new();
/// buddies.add(&peer, "bob@example.com").await?;
/// buddies.add(&peer, "charlie@example.com").await?;
/// for (buddy, status) in buddies.poll().await {
///     println!("{} is now {:?}", buddy, status);
/// }
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct BuddyList {
    watchers: StreamMap<String, PresenceWatcher>,
}

impl std::fmt::Debug for BuddyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuddyList")
            .field("buddies", &self.names())
            .finish()
    }
}

impl BuddyList {
    /// An empty list.
    pub fn new() -> BuddyList {
        BuddyList::default()
    }

    /// Starts watching `buddy` through `peer` (see [`SimplePeer::watch`] for the forms of
    /// the name). Adding a name again replaces its watcher.
    pub async fn add(&mut self, peer: &SimplePeer, buddy: &str) -> Result<()> {
        let watcher = peer.watch(buddy).await?;
        if let Some(old) = self.watchers.insert(buddy.to_owned(), watcher) {
            old.stop().await;
        }
        Ok(())
    }

    /// Stops watching `buddy`; whether it was in the list.
    pub async fn remove(&mut self, buddy: &str) -> bool {
        match self.watchers.remove(buddy) {
            Some(watcher) => {
                watcher.stop().await;
                true
            }
            None => false,
        }
    }

    /// The names in the list.
    pub fn names(&self) -> Vec<String> {
        self.watchers.keys().cloned().collect()
    }

    /// How many buddies are watched.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Waits for at least one change, then returns every change already arrived (errors
    /// are skipped; read a [`PresenceWatcher`] directly to see them). Empty when the list
    /// is empty.
    pub async fn poll(&mut self) -> Vec<(String, PresenceInfo)> {
        let mut changes = Vec::new();
        let Some(first) = self.next().await else {
            return changes;
        };
        changes.push(first);
        while let Some(Some(change)) = self.next().now_or_never() {
            changes.push(change);
        }
        changes
    }

    /// The latest known presence of every buddy (those without a NOTIFY yet are left out).
    pub fn snapshot(&self) -> HashMap<String, PresenceInfo> {
        self.watchers
            .iter()
            .filter_map(|(name, watcher)| watcher.current().map(|info| (name.clone(), info)))
            .collect()
    }
}

impl Stream for BuddyList {
    type Item = (String, PresenceInfo);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.watchers).poll_next(cx) {
                Poll::Ready(Some((name, Ok(info)))) => return Poll::Ready(Some((name, info))),
                Poll::Ready(Some((name, Err(e)))) => {
                    tracing::debug!(buddy = %name, error = %e, "watch error");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
