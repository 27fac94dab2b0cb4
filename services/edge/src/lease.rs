//! This edge's lease, and taking over the dialogs of edges that are gone.
//!
//! The edge renews its lease with the presence service every third of its
//! length, and every `claim_interval` asks to claim dialogs of edges whose
//! lease lapsed. Each claimed dialog is continued here from its stored
//! record: same Call-ID, tags, route set and remote target, CSeq above
//! anything the previous owner used, and a NOTIFY with the current state at
//! once. Watchers over UDP simply see NOTIFYs continue (from another
//! address); a watcher whose stream connection died with its edge cannot be
//! reached, so its subscription ends and it re-subscribes through any edge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rpc::presence::v1::{ClaimDialogsRequest, ClaimedDialog, RenewLeaseRequest};

use crate::dialogs::NewDialog;
use crate::transport::Protocol;
use crate::Edge;

/// Dialogs claimed per call; survivors alternate, spreading the load.
const CLAIM_BATCH: u32 = 200;

/// Renews the lease and claims orphaned dialogs, forever.
pub async fn run(edge: Arc<Edge>) {
    let ttl = edge.config.lease_ttl;
    let mut tick = tokio::time::interval(edge.config.claim_interval.min(ttl / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed: Option<Instant> = None;
    loop {
        tick.tick().await;
        if renewed.is_none_or(|at| at.elapsed() >= ttl / 3) {
            match renew(&edge, false).await {
                Ok(()) => renewed = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
        }
        claim(&edge).await;
    }
}

/// Renews (or with `release`, ends) this edge's lease.
pub async fn renew(edge: &Edge, release: bool) -> Result<(), tonic::Status> {
    let mut client = edge.services.presence.clone();
    client
        .renew_lease(RenewLeaseRequest {
            edge_id: edge.config.edge_id.clone(),
            ttl_ms: edge.config.lease_ttl.as_millis() as u64,
            release,
        })
        .await
        .map(drop)
}

async fn claim(edge: &Arc<Edge>) {
    let mut client = edge.services.presence.clone();
    let claimed = match client
        .claim_dialogs(ClaimDialogsRequest {
            edge_id: edge.config.edge_id.clone(),
            max: CLAIM_BATCH,
        })
        .await
    {
        Ok(reply) => reply.into_inner().dialogs,
        Err(e) => {
            tracing::debug!(error = %e, "claiming dialogs failed");
            return;
        }
    };
    if !claimed.is_empty() {
        tracing::info!(dialogs = claimed.len(), "continuing dialogs of a gone edge");
    }
    for dialog in claimed {
        adopt(edge, dialog).await;
    }
}

/// Starts sending NOTIFYs for a claimed dialog.
async fn adopt(edge: &Arc<Edge>, claimed: ClaimedDialog) {
    let Some(dialog) = claimed.dialog else { return };
    let record = presence::grpc::dialog_from_pb(dialog);
    let (Some(protocol), Ok(remote)) = (
        Protocol::parse(&record.transport),
        record.remote_addr.parse::<SocketAddr>(),
    ) else {
        tracing::warn!(dialog = %record.id, transport = %record.transport, remote = %record.remote_addr, "claimed dialog has no usable address");
        return;
    };
    if let Err(e) = edge.dialogs.hold(&claimed.presentity).await {
        tracing::warn!(presentity = %claimed.presentity, error = %e, "cannot watch a claimed dialog's presentity");
        return;
    }
    let state = claimed.state.unwrap_or_default();
    let left_ms = claimed.expires_at_ms.saturating_sub(presence::now_ms());
    let mode = crate::methods::subscribe::mode_of(&record, claimed.status, claimed.masked);
    edge.dialogs.activate(
        edge,
        NewDialog {
            mode,
            watchers: claimed
                .watchers
                .into_iter()
                .map(presence::grpc::watcher_from_pb)
                .collect(),
            first_cseq: record.notify_cseq,
            record,
            presentity: claimed.presentity,
            version: state.version,
            pidf: String::from_utf8_lossy(&state.pidf).into_owned(),
            expires: (left_ms / 1000) as u32,
            protocol,
            remote,
        },
    );
}
