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
//!
//! A draining edge first hands its dialogs over ([`Ownership::hand_over`]):
//! what each watcher last acknowledged (status, masking, version) is
//! written as the value of the dialog's entry in the edge's index, which a
//! claim reads anyway. The new owner then sends nothing until something
//! changes, instead of repeating the state the watcher has. A refresh
//! re-indexes the dialog with an empty value, which only costs that one
//! repeat.

use bytes::Bytes;
use store::{Backend, Key, Kind, Schedule, StoreError};

use crate::compositor::PresenceView;
use crate::subscriptions::{SubscriptionRecord, SubscriptionStatus};
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
    match SubscriptionRecord::decode(raw) {
        Ok(record) => unindex(backend, &record.dialog.edge_id, member).await,
        Err(_) => Ok(()),
    }
}

/// Dialogs a draining edge may hand over in one call.
pub const MAX_HAND_OVER: usize = 1000;
/// Index entries written at once by a hand-over.
const HAND_OVER_CONCURRENCY: usize = 64;

/// What a dialog's watcher last acknowledged, as the edge that gave the
/// dialog up says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notified {
    pub status: SubscriptionStatus,
    pub masked: bool,
    pub version: u64,
}

impl Notified {
    /// The index value: `a`, `m` (active and masked) or `p`, a colon, the
    /// version.
    fn encode(&self) -> Bytes {
        let kind = match (self.status, self.masked) {
            (SubscriptionStatus::Pending, _) => 'p',
            (_, true) => 'm',
            _ => 'a',
        };
        Bytes::from(format!("{kind}:{}", self.version))
    }

    fn decode(value: &[u8]) -> Option<Notified> {
        let text = std::str::from_utf8(value).ok()?;
        let (kind, version) = text.split_once(':')?;
        let (status, masked) = match kind {
            "a" => (SubscriptionStatus::Active, false),
            "m" => (SubscriptionStatus::Active, true),
            "p" => (SubscriptionStatus::Pending, false),
            _ => return None,
        };
        Some(Notified {
            status,
            masked,
            version: version.parse().ok()?,
        })
    }

    /// Whether a NOTIFY of `record` carrying a state of `version` would
    /// only repeat what the watcher has. Watcher-information dialogs always
    /// get their full document.
    pub fn covers(&self, record: &SubscriptionRecord, version: u64) -> bool {
        !record.dialog.is_winfo()
            && self.status == record.status
            && self.masked == record.masked
            && version <= self.version
    }
}

/// A dialog a draining edge gives up.
#[derive(Clone, Debug, PartialEq)]
pub struct HandedOver {
    pub presentity: String,
    pub dialog_id: String,
    pub notified: Notified,
}

/// A dialog moved to a new owner, with the state its next NOTIFY carries.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDialog {
    pub record: SubscriptionRecord,
    pub view: PresenceView,
    /// What the previous owner said its watcher last acknowledged, when it
    /// handed the dialog over.
    pub handed_over: Option<Notified>,
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

    /// Records what the watchers of dialogs `edge_id` gives up last
    /// acknowledged, for their next owner. Only entries `edge_id` still
    /// owns and that carry nothing yet are written (one conditional write
    /// each, several at a time); returns how many.
    pub async fn hand_over(
        &self,
        edge_id: &str,
        dialogs: Vec<HandedOver>,
    ) -> Result<usize, StoreError> {
        let backend = self.compositor.backend();
        let key = index_key(edge_id);
        let mut written = 0;
        let mut dialogs = dialogs.into_iter();
        loop {
            let mut writes = tokio::task::JoinSet::new();
            for dialog in dialogs.by_ref().take(HAND_OVER_CONCURRENCY) {
                let (backend, key) = (backend.clone(), key.clone());
                writes.spawn(async move {
                    let member = format!("{}\n{}", dialog.presentity, dialog.dialog_id);
                    backend
                        .map_replace(&key, &member, b"", dialog.notified.encode())
                        .await
                });
            }
            if writes.is_empty() {
                return Ok(written);
            }
            while let Some(done) = writes.join_next().await {
                let replaced = done.map_err(|e| StoreError::Protocol(e.to_string()))??;
                written += usize::from(replaced);
            }
        }
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
            for (member, value) in owned {
                if claimed.len() >= max {
                    return Ok(claimed);
                }
                let handed_over = Notified::decode(&value);
                if let Some(dialog) = self.claim_one(claimer, &dead, &member, handed_over).await? {
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
        handed_over: Option<Notified>,
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
        let Ok(mut record) = SubscriptionRecord::decode(&raw) else {
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
        if !backend
            .map_replace(&key, dialog_id, &raw, Bytes::from(record.encode()))
            .await?
        {
            // Another survivor (or a refresh) won the race.
            return Ok(None);
        }
        index(backend.as_ref(), claimer, member).await?;
        unindex(backend.as_ref(), dead, member).await?;
        let view = self.compositor.view(presentity).await?;
        Ok(Some(ClaimedDialog {
            record,
            view,
            handed_over,
        }))
    }
}

#[cfg(test)]
mod tests {
    //! Leases and claims over the in-memory backend.

    use std::sync::Arc;

    use contract::DialogRecord;

    use super::*;
    use crate::{PresenceConfig, SubscribeCommand, Subscriptions};

    const T0: u64 = 1_000_000_000;

    async fn setup() -> (Ownership, Subscriptions) {
        let compositor = Compositor::new(
            Arc::new(store::memory::MemoryBackend::new()),
            PresenceConfig::default(),
        );
        let subscriptions = Subscriptions::new(compositor.clone());
        for (id, edge) in [("d1", "edge-a"), ("d2", "edge-a"), ("d3", "edge-b")] {
            let command = SubscribeCommand {
                presentity: "alice@example.com".into(),
                dialog: DialogRecord {
                    id: id.into(),
                    watcher: "bob@example.com".into(),
                    edge_id: edge.into(),
                    notify_cseq: 7,
                    ..DialogRecord::default()
                },
                expires: Some(600),
                refresh: false,
            };
            subscriptions.subscribe(&command, T0).await.unwrap();
        }
        (Ownership::new(compositor), subscriptions)
    }

    #[tokio::test]
    async fn a_lapsed_edges_dialogs_move_to_exactly_one_survivor() {
        let (ownership, subscriptions) = setup().await;
        ownership.renew("edge-a", 6_000, T0).await.unwrap();
        ownership.renew("edge-b", 6_000, T0).await.unwrap();
        // Every lease alive: nothing to claim.
        assert!(ownership
            .claim("edge-b", 10, T0 + 1)
            .await
            .unwrap()
            .is_empty());
        // edge-a goes silent; edge-b renews.
        ownership.renew("edge-b", 6_000, T0 + 5_000).await.unwrap();
        let claimed = ownership.claim("edge-b", 10, T0 + 6_000).await.unwrap();
        let mut ids: Vec<&str> = claimed
            .iter()
            .map(|c| c.record.dialog.id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["d1", "d2"]);
        for dialog in &claimed {
            assert_eq!(dialog.record.dialog.edge_id, "edge-b");
            assert_eq!(dialog.record.dialog.notify_cseq, 7 + TAKEOVER_CSEQ_GAP);
        }
        // A second survivor finds nothing left.
        assert!(ownership
            .claim("edge-c", 10, T0 + 6_000)
            .await
            .unwrap()
            .is_empty());
        let owners: Vec<String> = subscriptions
            .list("alice@example.com")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.dialog.edge_id)
            .collect();
        assert!(owners.iter().all(|o| o == "edge-b"), "{owners:?}");
    }

    #[tokio::test]
    async fn a_released_lease_is_claimable_at_once_but_never_by_its_own_edge() {
        let (ownership, _) = setup().await;
        ownership.renew("edge-a", 6_000, T0).await.unwrap();
        ownership.release("edge-a").await.unwrap();
        assert!(ownership.claim("edge-a", 10, T0).await.unwrap().is_empty());
        let claimed = ownership.claim("edge-b", 1, T0).await.unwrap();
        assert_eq!(claimed.len(), 1, "at most `max` per call");
        assert_eq!(ownership.claim("edge-b", 10, T0).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_hand_over_tells_the_next_owner_what_each_watcher_has() {
        let (ownership, _) = setup().await;
        let notified = Notified {
            status: SubscriptionStatus::Active,
            masked: false,
            version: 42,
        };
        let given_up = |id: &str| HandedOver {
            presentity: "alice@example.com".into(),
            dialog_id: id.into(),
            notified,
        };
        // d3 is edge-b's and d9 nobody's: only d1 is edge-a's to hand over.
        let written = ownership
            .hand_over(
                "edge-a",
                vec![given_up("d1"), given_up("d3"), given_up("d9")],
            )
            .await
            .unwrap();
        assert_eq!(written, 1);
        ownership.release("edge-a").await.unwrap();
        let claimed = ownership.claim("edge-b", 10, T0).await.unwrap();
        assert_eq!(claimed.len(), 2);
        for dialog in claimed {
            match dialog.record.dialog.id.as_str() {
                "d1" => {
                    assert_eq!(dialog.handed_over, Some(notified));
                    assert!(notified.covers(&dialog.record, 42));
                    assert!(!notified.covers(&dialog.record, 43), "a newer state");
                    let masked = SubscriptionRecord {
                        masked: true,
                        ..dialog.record.clone()
                    };
                    assert!(!notified.covers(&masked, 42), "another view");
                }
                "d2" => assert_eq!(dialog.handed_over, None),
                other => panic!("claimed {other}"),
            }
        }
    }

    #[test]
    fn a_hand_over_value_round_trips() {
        for (status, masked) in [
            (SubscriptionStatus::Active, false),
            (SubscriptionStatus::Active, true),
            (SubscriptionStatus::Pending, false),
        ] {
            let notified = Notified {
                status,
                masked,
                version: 1_700_000_000_123,
            };
            assert_eq!(Notified::decode(&notified.encode()), Some(notified));
        }
        assert_eq!(Notified::decode(b""), None);
        assert_eq!(Notified::decode(b"x:1"), None);
        assert_eq!(Notified::decode(b"a:"), None);
    }
}
