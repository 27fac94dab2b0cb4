//! From presentity channels to dialogs: every announcement heard is offered
//! to the dialogs of its presentity; after a gap in the feed, the state of
//! every watched presentity is read again (pub/sub is at most once; the
//! versioned state is the truth).

use std::sync::Arc;

use contract::Announcement;
use rpc::presence::v1::GetPresenceRequest;
use store::FeedItem;
use tokio::sync::mpsc;

use crate::Edge;

/// Runs until the feed closes.
pub async fn run(edge: Arc<Edge>, mut feed: mpsc::Receiver<FeedItem>) {
    while let Some(item) = feed.recv().await {
        match item {
            FeedItem::Message(message) => match Announcement::from_payload(&message.payload) {
                Some(Announcement::State {
                    version,
                    pidf,
                    trace,
                    at_ms,
                }) => {
                    let change = crate::dialogs::Change {
                        trace: trace.as_deref(),
                        at_ms,
                    };
                    edge.dialogs.offer(&message.entity, version, &pidf, change);
                }
                Some(Announcement::Terminated { dialog_id, reason }) => {
                    edge.dialogs.terminate(&dialog_id, &reason);
                }
                Some(Announcement::Authorized {
                    dialog_id,
                    masked,
                    version,
                    pidf,
                }) => {
                    edge.dialogs.authorize(&dialog_id, masked, version, &pidf);
                }
                Some(Announcement::Watchers { changed, .. }) => {
                    edge.dialogs.offer_watchers(&message.entity, &changed);
                }
                None => {
                    tracing::warn!(presentity = %message.entity, "unrecognised announcement ignored");
                }
            },
            FeedItem::Resync => {
                tracing::info!("change feed resynchronising");
                tokio::spawn(resync(edge.clone()));
            }
        }
    }
    tracing::warn!("change feed closed");
}

/// Re-reads every watched presentity and offers what is newer.
pub async fn resync(edge: Arc<Edge>) {
    for presentity in edge.dialogs.watched() {
        match edge
            .services
            .presence
            .get_presence(GetPresenceRequest {
                presentity: presentity.clone(),
            })
            .await
        {
            Ok(state) => {
                let pidf = String::from_utf8_lossy(&state.pidf);
                let change = crate::dialogs::Change::default();
                edge.dialogs
                    .offer(&presentity, state.version, &pidf, change);
            }
            Err(e) => tracing::warn!(%presentity, error = %e, "resynchronisation read failed"),
        }
    }
}
