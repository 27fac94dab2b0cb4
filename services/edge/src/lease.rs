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
//!
//! Each renewal also names the state epoch. When it changes, the state
//! backend lost its data (a Redis restarted without persistence): the
//! subscription records of every dialog held here are gone while the
//! watchers keep their dialogs and will not re-subscribe before their
//! refresh. The edge then restores every record it holds (`RestoreDialogs`:
//! same dialog, remaining expiry, CSeq as used) and sends each watcher the
//! state the presence service has now.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rpc::presence::v1::{
    ClaimDialogsRequest, ClaimedDialog, HandedOverDialog, HeldDialog, RenewLeaseRequest,
    RestoreDialogsRequest, SubscriptionStatus, UnsubscribeRequest,
};

use crate::dialogs::{GivenUp, Mode, NewDialog};
use crate::transport::Protocol;
use crate::Edge;

/// Dialogs claimed per call; survivors alternate, spreading the load.
const CLAIM_BATCH: u32 = 200;
/// Dialogs restored per call after a loss of state.
const RESTORE_BATCH: usize = 500;
/// Dialogs handed over per call by a draining edge (the service takes 1000).
const HAND_OVER_BATCH: usize = 500;

/// What the renewals tell the claims: the latest state epoch, and from
/// when claiming is safe.
#[derive(Clone, Debug, Default)]
struct Renewals {
    epoch: Option<String>,
    /// `None` while renewals fail. When they fail here, they probably fail
    /// for every edge (the presence service or the backend is down), so
    /// every lease may lapse at once; once they succeed again, the other
    /// live edges renew within a third of a lease, and claiming sooner
    /// would take live edges' dialogs. So after a failure, claims wait for
    /// two thirds of a lease of successful renewals.
    claims_from: Option<Instant>,
}

/// Renews the lease, follows the state epoch and claims orphaned dialogs,
/// until aborted (a drain aborts it before handing the dialogs over).
///
/// Renewals run on their own loop, every third of the lease, each given
/// at most that third: a slow claim or a long restore never delays one.
pub async fn run(edge: Arc<Edge>) {
    let (renewals, heard) = tokio::sync::watch::channel(Renewals::default());
    tokio::join!(renew_loop(edge.clone(), renewals), claim_loop(edge, heard));
}

async fn renew_loop(edge: Arc<Edge>, renewals: tokio::sync::watch::Sender<Renewals>) {
    let period = edge.config.lease_ttl / 3;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When claims may start: at once on start-up, two thirds of a lease
    // after the first success that follows a failure.
    let mut claims_from: Option<Instant> = Some(Instant::now());
    loop {
        tick.tick().await;
        let started = Instant::now();
        let failure = match tokio::time::timeout(period, renew(&edge, false)).await {
            Ok(Ok(epoch)) => {
                let from = *claims_from.get_or_insert(started + 2 * period);
                renewals.send_modify(|r| {
                    r.epoch = Some(epoch);
                    r.claims_from = Some(from);
                });
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {period:?}"),
        };
        tracing::warn!(error = %failure, "lease renewal failed");
        claims_from = None;
        renewals.send_modify(|r| r.claims_from = None);
    }
}

async fn claim_loop(edge: Arc<Edge>, mut heard: tokio::sync::watch::Receiver<Renewals>) {
    let mut tick = tokio::time::interval(edge.config.claim_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The epoch whose records match the dialogs held here.
    let mut epoch: Option<String> = None;
    loop {
        tick.tick().await;
        let renewed = heard.has_changed().unwrap_or(false);
        let renewals = heard.borrow_and_update().clone();
        if let (true, Some(current)) = (renewed, renewals.epoch) {
            epoch = follow_epoch(&edge, epoch, current).await;
        }
        if renewals.claims_from.is_some_and(|at| Instant::now() >= at) {
            claim(&edge).await;
        }
    }
}

/// The epoch to remember after a renewal answered `current`: restores the
/// dialogs first when it changed, and keeps the old one when that failed
/// (so the next renewal tries again).
async fn follow_epoch(edge: &Edge, known: Option<String>, current: String) -> Option<String> {
    if current.is_empty() {
        // A presence service that does not name epochs.
        return known;
    }
    match known {
        Some(known) if known != current => match restore(edge, &known, &current).await {
            Ok(()) => Some(current),
            Err(e) => {
                tracing::warn!(error = %e, "restoring dialogs after a loss of state failed; retrying at the next renewal");
                Some(known)
            }
        },
        _ => Some(current),
    }
}

/// Renews (or with `release`, ends) this edge's lease; returns the state
/// epoch (empty on a release).
pub async fn renew(edge: &Edge, release: bool) -> Result<String, tonic::Status> {
    edge.services
        .presence
        .renew_lease(RenewLeaseRequest {
            edge_id: edge.config.edge_id.clone(),
            ttl_ms: edge.config.lease_ttl.as_millis() as u64,
            release,
            handed_over: Vec::new(),
        })
        .await
        .map(|reply| reply.state_epoch)
}

/// Hands the dialogs a draining edge gave up to the others: tells the
/// presence service what each watcher last acknowledged (so the next owner
/// does not send it again), then releases the lease, which makes them
/// claimable at once. A batch that fails only costs its watchers one
/// repeated NOTIFY; a failed release leaves them until the lease lapses.
pub async fn hand_over(edge: &Edge, given_up: Vec<GivenUp>) {
    let dialogs: Vec<HandedOverDialog> = given_up
        .into_iter()
        .filter_map(|d| {
            let (mode, version) = d.acknowledged?;
            let (status, masked) = match mode {
                Mode::Presence => (SubscriptionStatus::Active, false),
                Mode::Masked => (SubscriptionStatus::Active, true),
                Mode::Pending => (SubscriptionStatus::Pending, false),
                Mode::Winfo => return None,
            };
            Some(HandedOverDialog {
                presentity: d.presentity,
                dialog_id: d.dialog_id,
                status: status as i32,
                masked,
                version,
            })
        })
        .collect();
    let count = dialogs.len();
    for batch in dialogs.chunks(HAND_OVER_BATCH) {
        let recorded = edge
            .services
            .presence
            .renew_lease(RenewLeaseRequest {
                edge_id: edge.config.edge_id.clone(),
                ttl_ms: edge.config.lease_ttl.as_millis() as u64,
                release: false,
                handed_over: batch.to_vec(),
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, dialogs = batch.len(), "recording handed-over dialogs failed; their next owner repeats their state");
        }
    }
    match renew(edge, true).await {
        Ok(_) => tracing::info!(
            handed_over = count,
            "lease released; dialogs are being taken over"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "releasing the lease failed; dialogs move when it lapses")
        }
    }
}

/// Re-creates the subscription record of every dialog held here and sends
/// each watcher the current state.
async fn restore(edge: &Edge, old: &str, new: &str) -> Result<(), tonic::Status> {
    // States heard from here on were published after the loss; see
    // `Dialogs::reset`.
    let mark = edge.dialogs.mark();
    let held = edge.dialogs.held();
    tracing::warn!(
        old_epoch = %old,
        new_epoch = %new,
        dialogs = held.len(),
        "THE STATE BACKEND LOST ITS DATA: restoring the subscription records of every dialog held here"
    );
    let (mut restored, mut already_stored, mut notified) = (0usize, 0usize, 0usize);
    for batch in held.chunks(RESTORE_BATCH) {
        let reply = edge
            .services
            .presence
            .restore_dialogs(RestoreDialogsRequest {
                edge_id: edge.config.edge_id.clone(),
                dialogs: batch
                    .iter()
                    .map(|d| HeldDialog {
                        presentity: d.presentity.clone(),
                        dialog: Some(d.record.clone().into()),
                        expires_in_ms: d.expires_in.as_millis() as u64,
                    })
                    .collect(),
            })
            .await?;
        for dialog in reply.dialogs {
            if dialog.restored {
                restored += 1;
            } else {
                already_stored += 1;
            }
            if dialog.restored && edge.dialogs.presentity_of(&dialog.dialog_id).is_none() {
                // It ended while being restored: remove what was re-created.
                if let Some(held) = batch.iter().find(|d| d.record.id == dialog.dialog_id) {
                    let _ = edge
                        .services
                        .presence
                        .unsubscribe(UnsubscribeRequest {
                            presentity: held.presentity.clone(),
                            dialog_id: dialog.dialog_id.clone(),
                        })
                        .await;
                }
                continue;
            }
            let state = dialog.state.unwrap_or_default();
            if edge.dialogs.reset(
                &dialog.dialog_id,
                state.version,
                &String::from_utf8_lossy(&state.pidf),
                mark,
            ) {
                notified += 1;
            }
        }
    }
    tracing::warn!(
        epoch = %new,
        restored,
        already_stored,
        notified,
        "dialogs restored after the loss of state"
    );
    Ok(())
}

async fn claim(edge: &Arc<Edge>) {
    let claimed = match edge
        .services
        .presence
        .claim_dialogs(ClaimDialogsRequest {
            edge_id: edge.config.edge_id.clone(),
            max: CLAIM_BATCH,
        })
        .await
    {
        Ok(reply) => reply.dialogs,
        Err(e) => {
            tracing::debug!(error = %e, "claiming dialogs failed");
            return;
        }
    };
    if !claimed.is_empty() {
        tracing::info!(dialogs = claimed.len(), "continuing dialogs of a gone edge");
        crate::metrics::metrics()
            .takeovers
            .inc_by(claimed.len() as u64);
    }
    for dialog in claimed {
        adopt(edge, dialog).await;
    }
}

/// Starts sending NOTIFYs for a claimed dialog.
async fn adopt(edge: &Arc<Edge>, claimed: ClaimedDialog) {
    let Some(dialog) = claimed.dialog else { return };
    let record = contract::DialogRecord::from(dialog);
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
    let left_ms = claimed.expires_at_ms.saturating_sub(contract::now_ms());
    let mode = crate::dialogs::mode_of(&record, claimed.status, claimed.masked);
    let dialog = NewDialog {
        mode,
        watchers: claimed
            .watchers
            .into_iter()
            .map(contract::WatcherEntry::from)
            .collect(),
        first_cseq: record.notify_cseq,
        record,
        presentity: claimed.presentity,
        version: state.version,
        pidf: String::from_utf8_lossy(&state.pidf).into_owned(),
        expires: (left_ms / 1000) as u32,
        protocol,
        remote,
        source_slot: None,
    };
    if claimed.notified {
        // Handed over by a draining edge after the watcher acknowledged
        // this very state: nothing to tell it until the next change.
        edge.dialogs.continue_handed_over(edge, dialog);
    } else {
        // The watcher may or may not have it (its edge died): send it.
        edge.dialogs.activate(edge, dialog);
    }
}
