//! The delivery end shared by every backend's change feed.
//!
//! A feed hands items to its subscriber through a bounded channel so that a
//! slow subscriber cannot make the backend buffer without limit. When the
//! channel is full the message is dropped and the subscriber owes a
//! [`FeedItem::Resync`]; the resync is delivered as soon as there is room,
//! and messages are dropped until then (the subscriber re-reads everything
//! anyway, so they would be redundant).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::{lock, ChannelMessage, FeedItem};

/// How many items a feed buffers for its subscriber before it falls back to
/// [`FeedItem::Resync`]. Sized for a mass expiry: the sweepers announce
/// tens of thousands of expiries within seconds, faster for a moment than
/// an edge turns them into NOTIFYs, and a resync (re-reading every watched
/// presentity) in the middle of that burst costs far more than the
/// buffered messages (about 1 KB each, and only while the subscriber lags).
pub const FEED_CAPACITY: usize = 32_768;

/// The entities one feed watches, shared between its control half and the
/// task that delivers its messages.
///
/// Messages are filtered against this set at delivery time, so that after
/// `unwatch` returns nothing more of that entity reaches the subscriber even
/// if the backend still had some in flight.
#[derive(Clone, Default)]
pub(crate) struct WatchSet(Arc<Mutex<HashSet<String>>>);

impl WatchSet {
    /// Adds an entity; true when it was not watched before.
    pub(crate) fn insert(&self, entity: &str) -> bool {
        lock(&self.0).insert(entity.to_owned())
    }

    /// Removes an entity; true when it was watched.
    pub(crate) fn remove(&self, entity: &str) -> bool {
        lock(&self.0).remove(entity)
    }

    pub(crate) fn contains(&self, entity: &str) -> bool {
        lock(&self.0).contains(entity)
    }

    /// A copy of the watched entities.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        lock(&self.0).iter().cloned().collect()
    }
}

/// What happened to an offered item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued for the subscriber, or dropped in favour of a pending resync.
    Accepted,
    /// The subscriber dropped its receiver: the feed should shut down.
    Closed,
}

/// The sending end of a feed, with the lag bookkeeping.
pub(crate) struct Outbox {
    tx: mpsc::Sender<FeedItem>,
    resync_owed: bool,
}

impl Outbox {
    pub(crate) fn new(tx: mpsc::Sender<FeedItem>) -> Self {
        Outbox {
            tx,
            resync_owed: false,
        }
    }

    /// Offers a message without waiting. A full queue turns into an owed
    /// resync.
    pub(crate) fn offer(&mut self, message: ChannelMessage) -> Offer {
        if self.resync_owed {
            return self.try_pay_resync();
        }
        match self.tx.try_send(FeedItem::Message(message)) {
            Ok(()) => Offer::Accepted,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.resync_owed = true;
                Offer::Accepted
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Records that the subscriber must resynchronise, and tries to tell it
    /// right away.
    pub(crate) fn owe_resync(&mut self) -> Offer {
        self.resync_owed = true;
        self.try_pay_resync()
    }

    fn try_pay_resync(&mut self) -> Offer {
        match self.tx.try_send(FeedItem::Resync) {
            Ok(()) => {
                self.resync_owed = false;
                Offer::Accepted
            }
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Accepted,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// True while a resync is owed and not yet queued.
    pub(crate) fn resync_owed(&self) -> bool {
        self.resync_owed
    }

    /// Waits for room and queues the owed resync. Cancel-safe: if the
    /// future is dropped before room appears, the resync stays owed.
    pub(crate) async fn pay_resync(&mut self) -> Offer {
        match self.tx.reserve().await {
            Ok(permit) => {
                permit.send(FeedItem::Resync);
                self.resync_owed = false;
                Offer::Accepted
            }
            Err(_) => Offer::Closed,
        }
    }

    /// A handle that tells when the subscriber has gone, usable while the
    /// outbox itself is borrowed.
    pub(crate) fn closed_signal(&self) -> ClosedSignal {
        ClosedSignal(self.tx.clone())
    }
}

/// Resolves once a feed's subscriber has dropped its receiver.
pub(crate) struct ClosedSignal(mpsc::Sender<FeedItem>);

impl ClosedSignal {
    pub(crate) async fn closed(&self) {
        self.0.closed().await
    }
}
