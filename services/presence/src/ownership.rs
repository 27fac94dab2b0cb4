//! Which edge owns which dialog, and continuing the dialogs of edges that
//! died.
//!
//! Every subscription record names its owning edge, and the edge's index
//! (`edge:{edge-id}:m`, field `presentity '\n' dialog-id`) lists what it
//! owns. Each edge renews a lease — a member of the `Leases` schedule due at
//! the lease's end. A lease that falls due marks its edge as gone: surviving
//! edges ask to claim its dialogs, and each dialog moves to exactly one of
//! them (a conditional replace of the stored record). A draining edge
//! releases its lease (due now), so its dialogs are claimed at once.
//!
//! A new owner continues the dialog's CSeq above anything the old owner
//! could have used: the stored `notify_cseq` jumps by [`TAKEOVER_CSEQ_GAP`]
//! on every claim.

use bytes::Bytes;
use store::{Backend, Key, Kind, Schedule, StoreError};

use crate::compositor::PresenceView;
use crate::subscriptions::SubscriptionRecord;
use crate::Compositor;

/// CSeq numbers a new owner skips. An owner that sends more NOTIFYs than
/// this in one dialog before dying could collide; at one NOTIFY per change
/// that is far beyond a subscription's lifetime.
pub const TAKEOVER_CSEQ_GAP: u32 = 10_000;
/// Dead edges examined per claim call.
const DEAD_EDGES_PER_CALL: usize = 16;

fn index_key(edge_id: &str) -> Key {
    Key::new(Kind::EdgeDialogs, edge_id)
}

/// Records that `edge_id` owns the subscription `member`.
pub async fn index(backend: &dyn Backend, edge_id: &str, member: &str) -> Result<(), StoreError> {
    if edge_id.is_empty() {
        return Ok(());
    }
    backend
        .map_put(&index_key(edge_id), member, Bytes::new())
        .await
}

/// Forgets that `edge_id` owns `member`.
pub async fn unindex(backend: &dyn Backend, edge_id: &str, member: &str) -> Result<(), StoreError> {
    if edge_id.is_empty() {
        return Ok(());
    }
    backend
        .map_take(&index_key(edge_id), member, None)
        .await
        .map(drop)
}

/// Forgets the owner named in a stored record (unreadable records name none).
pub async fn unindex_record(
    backend: &dyn Backend,
    raw: &[u8],
    member: &str,
) -> Result<(), StoreError> {
    match serde_json::from_slice::<SubscriptionRecord>(raw) {
        Ok(record) => unindex(backend, &record.dialog.edge_id, member).await,
        Err(_) => Ok(()),
    }
}

/// A dialog moved to a new owner, with the state its next NOTIFY carries.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDialog {
    pub record: SubscriptionRecord,
    pub view: PresenceView,
}

/// Leases of edges and claims of their dialogs.
#[derive(Clone)]
pub struct Ownership {
    compositor: Compositor,
}

impl Ownership {
    pub fn new(compositor: Compositor) -> Self {
        Ownership { compositor }
    }

    /// Extends `edge_id`'s lease to `ttl_ms` from `now_ms`.
    pub async fn renew(&self, edge_id: &str, ttl_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        self.compositor
            .backend()
            .schedule(Schedule::Leases, edge_id, now_ms + ttl_ms)
            .await
    }

    /// Ends `edge_id`'s lease now: its dialogs become claimable at once.
    pub async fn release(&self, edge_id: &str) -> Result<(), StoreError> {
        self.compositor
            .backend()
            .schedule(Schedule::Leases, edge_id, 0)
            .await
    }

    /// Moves up to `max` dialogs of edges whose lease lapsed to `claimer`.
    pub async fn claim(
        &self,
        claimer: &str,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<ClaimedDialog>, StoreError> {
        let backend = self.compositor.backend();
        let mut claimed = Vec::new();
        for (dead, _) in backend
            .due(Schedule::Leases, now_ms, DEAD_EDGES_PER_CALL)
            .await?
        {
            if dead == claimer {
                continue;
            }
            let owned = backend.map_list(&index_key(&dead)).await?;
            if owned.is_empty() {
                // Nothing left to continue: the edge is fully taken over.
                backend.unschedule(Schedule::Leases, &dead).await?;
                continue;
            }
            for (member, _) in owned {
                if claimed.len() >= max {
                    return Ok(claimed);
                }
                if let Some(dialog) = self.claim_one(claimer, &dead, &member).await? {
                    claimed.push(dialog);
                }
            }
        }
        Ok(claimed)
    }

    async fn claim_one(
        &self,
        claimer: &str,
        dead: &str,
        member: &str,
    ) -> Result<Option<ClaimedDialog>, StoreError> {
        let backend = self.compositor.backend();
        let Some((presentity, dialog_id)) = member.split_once('\n') else {
            unindex(backend.as_ref(), dead, member).await?;
            return Ok(None);
        };
        let key = Key::new(Kind::Subscriptions, presentity);
        let Some(raw) = backend.map_get(&key, dialog_id).await? else {
            unindex(backend.as_ref(), dead, member).await?;
            return Ok(None);
        };
        let Ok(mut record) = serde_json::from_slice::<SubscriptionRecord>(&raw) else {
            unindex(backend.as_ref(), dead, member).await?;
            return Ok(None);
        };
        if record.dialog.edge_id != dead {
            // Already continued elsewhere (a refresh reached another edge).
            unindex(backend.as_ref(), dead, member).await?;
            return Ok(None);
        }
        record.dialog.edge_id = claimer.to_string();
        record.dialog.notify_cseq = record.dialog.notify_cseq.saturating_add(TAKEOVER_CSEQ_GAP);
        let value = serde_json::to_vec(&record).map_err(|e| StoreError::Protocol(e.to_string()))?;
        if !backend
            .map_replace(&key, dialog_id, &raw, Bytes::from(value))
            .await?
        {
            // Another survivor (or a refresh) won the race.
            return Ok(None);
        }
        index(backend.as_ref(), claimer, member).await?;
        unindex(backend.as_ref(), dead, member).await?;
        let view = self.compositor.view(presentity).await?;
        Ok(Some(ClaimedDialog { record, view }))
    }
}
