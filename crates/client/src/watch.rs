//! Watching someone's presence: one subscription (RFC 6665, RFC 3856) kept alive by its own
//! task, and the [`PresenceWatcher`] the application reads from.
//!
//! The task refreshes the subscription before it expires; follows target refreshes (the
//! Contact of each NOTIFY becomes where refreshes go, which is how a dialog moves to another
//! edge when its edge dies); subscribes again after 481, after a NOTIFY ending the
//! subscription with a reason that allows it, and after network loss, with a growing delay;
//! and peer to peer sends OPTIONS heartbeats, reporting a silent peer Offline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use sip::Uri;
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::Core;
use crate::error::{Error, Result};
use crate::refresh::Backoff;
use crate::status::PresenceInfo;
use crate::transport::Link;

mod subscription;

use subscription::Subscription;

/// Who is watched and how they are reached.
#[derive(Debug, Clone)]
pub(crate) struct WatchTarget {
    /// The presentity's URI (Request-URI and To of the initial SUBSCRIBE).
    pub uri: Uri,
    /// Where the initial SUBSCRIBE goes.
    pub link: Link,
    /// Directly to a peer (no server): no credentials, OPTIONS heartbeats.
    pub direct: bool,
}

impl WatchTarget {
    /// Parses what an application names: `alice` (a user of the peer's domain, through the
    /// server), `alice@example.com` (through the server if there is one, else directly),
    /// `alice@192.168.1.100:5060` or a full `sip:` URI with a port or an IP address
    /// (directly, peer to peer).
    pub async fn parse(core: &Core, text: &str) -> Result<WatchTarget> {
        let invalid = |why: &str| Error::InvalidAddress(text.to_owned(), why.to_owned());
        let trimmed = text.trim();
        let uri = if trimmed.starts_with("sip:") || trimmed.starts_with("sips:") {
            Uri::parse(trimmed).map_err(|e| invalid(&e.to_string()))?
        } else if trimmed.contains('@') {
            Uri::parse(&format!("sip:{trimmed}")).map_err(|e| invalid(&e.to_string()))?
        } else {
            Uri::sip(Some(trimmed), &core.identity.domain, None)
                .map_err(|e| invalid(&e.to_string()))?
        };
        if uri.user().is_none() {
            return Err(invalid("names no user"));
        }
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        let literal = host.parse::<std::net::IpAddr>().is_ok();
        let server = core.server();
        match server {
            Some(server) if uri.port().is_none() && !literal => Ok(WatchTarget {
                uri,
                link: server.link,
                direct: false,
            }),
            _ => {
                let link = core.net.resolve(&uri, core.transport).await?;
                Ok(WatchTarget {
                    uri,
                    link,
                    direct: true,
                })
            }
        }
    }
}

/// How long `watch()` waits for the first answer before returning a watcher that keeps
/// trying by itself.
const FIRST_ANSWER_PATIENCE: Duration = Duration::from_secs(5);

/// One item of a watcher's stream.
pub type WatchItem = Result<PresenceInfo>;

enum Control {
    Stop(oneshot::Sender<()>),
}

/// The presence of one presentity as it changes.
///
/// Read it with [`recv`](PresenceWatcher::recv) or as a [`Stream`] of
/// `Result<PresenceInfo>`: errors (a malformed NOTIFY, a refused refresh, a lost network) are
/// items of the stream, and the watcher keeps going after them. [`current`](PresenceWatcher::current)
/// is the latest known state. Dropping the watcher ends the subscription, like
/// [`stop`](PresenceWatcher::stop) without waiting.
pub struct PresenceWatcher {
    target: String,
    events: mpsc::UnboundedReceiver<WatchItem>,
    current: watch::Receiver<Option<PresenceInfo>>,
    control: mpsc::UnboundedSender<Control>,
}

impl std::fmt::Debug for PresenceWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceWatcher")
            .field("target", &self.target)
            .field("current", &*self.current.borrow())
            .finish()
    }
}

impl PresenceWatcher {
    /// Subscribes and returns once the first SUBSCRIBE is answered (or after 5 s without
    /// an answer). A refusal (403, 404, 489, ...) is an error; a network failure is not:
    /// the watcher retries and reports it on its stream.
    pub(crate) async fn start(core: Arc<Core>, name: &str, target: WatchTarget) -> Result<Self> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (current_tx, current) = watch::channel(None);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let core_timeout = core.timers.transaction_timeout;
        let task = Subscription {
            backoff: Backoff::new(&core.timers),
            core,
            target,
            events: events_tx,
            current: current_tx,
            last_sent: None,
            dialog: None,
            first: Some(first_tx),
        };
        // A peer that does not answer would hold the caller for the whole transaction
        // timeout: after a few seconds the watcher is returned and keeps trying.
        let patience = FIRST_ANSWER_PATIENCE.min(core_timeout);
        tokio::spawn(task.run(control_rx));
        match tokio::time::timeout(patience, first_rx).await {
            Ok(Ok(Err(e))) => Err(e),
            _ => Ok(PresenceWatcher {
                target: name.to_owned(),
                events,
                current,
                control,
            }),
        }
    }

    /// Who is watched, as given to [`SimplePeer::watch`](crate::SimplePeer::watch).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The next change of presence; errors on the way are logged and skipped. `None` once
    /// the watcher has stopped.
    pub async fn recv(&mut self) -> Option<PresenceInfo> {
        loop {
            match self.events.recv().await? {
                Ok(info) => return Some(info),
                Err(e) => tracing::debug!(target = %self.target, error = %e, "watch error"),
            }
        }
    }

    /// The next item: a change of presence, or an error the watcher went on after.
    pub async fn recv_event(&mut self) -> Option<WatchItem> {
        self.events.recv().await
    }

    /// The latest known presence (`None` before the first NOTIFY).
    pub fn current(&self) -> Option<PresenceInfo> {
        self.current.borrow().clone()
    }

    /// Ends the subscription (SUBSCRIBE with `Expires: 0`) and waits for it to be done.
    pub async fn stop(self) {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Stop(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl Stream for PresenceWatcher {
    type Item = WatchItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}
