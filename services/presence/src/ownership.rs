//! Which edge owns which dialog, and continuing the dialogs of edges that
//! died.
//!
//! Every subscription record names its owning edge, and the edge's index
//! lists what it owns: field `presentity '\n' dialog-id`, in one of
//! [`INDEX_SHARDS`] maps (`edges:{edge-id/n}:m`, n from a hash of the
//! field) so that each stays small enough for Redis's compact encoding, or
//! — written before the shards, or in the upgrade mode — in the one map
//! `edge:{edge-id}:m` ([`EntryForm`]). Each edge renews a lease — a member of the `Leases` schedule due at
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
use crate::subscriptions::{schedule_member, EntryForm, SubscriptionRecord, SubscriptionStatus};
use crate::Compositor;

/// CSeq numbers a new owner skips. An owner that sends more NOTIFYs than
/// this in one dialog before dying could collide; at one NOTIFY per change
/// that is far beyond a subscription's lifetime.
pub const TAKEOVER_CSEQ_GAP: u32 = 10_000;
/// Dead edges examined per claim call.
const DEAD_EDGES_PER_CALL: usize = 16;

/// Maps an edge's index is split into ([`EntryForm::Compact`]). Redis
/// keeps a hash of at most 512 short fields (`hash-max-listpack-entries`,
/// `hash-max-listpack-value` 64 by default) as one compact listpack, ~45
/// bytes an entry instead of ~100 in a hash table; 256 shards keep an edge
/// with up to ~110,000 dialogs there. A larger edge's shards become hash
/// tables, as the one map was. Claims read every shard of a gone edge.
pub const INDEX_SHARDS: u32 = 256;
/// Shards of a gone edge's index read at once by a claim.
const SHARD_READS: usize = 32;

/// The one map of an edge's index written before the shards.
fn legacy_index_key(edge_id: &str) -> Key {
    Key::new(Kind::EdgeDialogs, edge_id)
}

/// Shard `shard` of an edge's index. The entity ends in `/` and the shard
/// number, so distinct edges never share a shard.
fn shard_key(edge_id: &str, shard: u32) -> Key {
    Key::new(Kind::EdgeDialogShard, format!("{edge_id}/{shard}"))
}

/// The shard of an index field: FNV-1a, so every release and process
/// agrees.
fn shard_of(member: &str) -> u32 {
    let hash = member.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % INDEX_SHARDS
}

/// The map holding `member` in `edge_id`'s index, in `form`.
fn index_key(form: EntryForm, edge_id: &str, member: &str) -> Key {
    match form {
        EntryForm::Legacy => legacy_index_key(edge_id),
        EntryForm::Compact => shard_key(edge_id, shard_of(member)),
    }
}

/// Every map of `edge_id`'s index: the legacy one, then each shard.
fn index_keys(edge_id: &str) -> impl Iterator<Item = Key> + '_ {
    std::iter::once(legacy_index_key(edge_id))
        .chain((0..INDEX_SHARDS).map(move |shard| shard_key(edge_id, shard)))
}

/// The subscriptions (`presentity '\n' dialog-id`) `edge_id`'s index
/// lists, in both forms, sorted: for diagnostics and tests.
pub async fn owned(backend: &dyn Backend, edge_id: &str) -> Result<Vec<String>, StoreError> {
    let mut owned = Vec::new();
    for key in index_keys(edge_id) {
        owned.extend(backend.map_list(&key).await?.into_iter().map(|(m, _)| m));
    }
    owned.sort();
    Ok(owned)
}

/// Records that `edge_id` owns the subscription `(presentity, dialog_id)`.
pub async fn index(
    backend: &dyn Backend,
    form: EntryForm,
    edge_id: &str,
    (presentity, dialog_id): (&str, &str),
) -> Result<(), StoreError> {
    if edge_id.is_empty() {
        return Ok(());
    }
    let member = schedule_member(presentity, dialog_id);
    backend
        .map_put(&index_key(form, edge_id, &member), &member, Bytes::new())
        .await
}

/// Forgets that `edge_id` owns the subscription `(presentity, dialog_id)`,
/// indexed in `form`.
pub async fn unindex(
    backend: &dyn Backend,
    form: EntryForm,
    edge_id: &str,
    (presentity, dialog_id): (&str, &str),
) -> Result<(), StoreError> {
    if edge_id.is_empty() {
        return Ok(());
    }
    let member = schedule_member(presentity, dialog_id);
    backend
        .map_take(&index_key(form, edge_id, &member), &member, None)
        .await
        .map(drop)
}

/// Forgets the owner named in a stored record, where the record's form
/// says it is indexed (unreadable records name none).
pub async fn unindex_record(
    backend: &dyn Backend,
    raw: &[u8],
    (presentity, dialog_id): (&str, &str),
) -> Result<(), StoreError> {
    match SubscriptionRecord::decode(presentity, dialog_id, raw) {
        Ok(record) => {
            unindex(
                backend,
                EntryForm::of_stored(raw),
                &record.dialog.edge_id,
                (presentity, dialog_id),
            )
            .await
        }
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
    /// each, several at a time; an entry not in its shard is looked for in
    /// the legacy map); returns how many.
    pub async fn hand_over(
        &self,
        edge_id: &str,
        dialogs: Vec<HandedOver>,
    ) -> Result<usize, StoreError> {
        let backend = self.compositor.backend();
        let mut written = 0;
        let mut dialogs = dialogs.into_iter();
        loop {
            let mut writes = tokio::task::JoinSet::new();
            for dialog in dialogs.by_ref().take(HAND_OVER_CONCURRENCY) {
                let (backend, edge_id) = (backend.clone(), edge_id.to_owned());
                writes.spawn(async move {
                    let member = schedule_member(&dialog.presentity, &dialog.dialog_id);
                    let value = dialog.notified.encode();
                    for form in [EntryForm::Compact, EntryForm::Legacy] {
                        let key = index_key(form, &edge_id, &member);
                        if backend
                            .map_replace(&key, &member, b"", value.clone())
                            .await?
                        {
                            return Ok(true);
                        }
                    }
                    Ok(false)
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
            let mut found = false;
            let mut keys = index_keys(&dead);
            loop {
                let mut reads = tokio::task::JoinSet::new();
                for key in keys.by_ref().take(SHARD_READS) {
                    let backend = backend.clone();
                    reads.spawn(async move {
                        let owned = backend.map_list(&key).await;
                        (key, owned)
                    });
                }
                if reads.is_empty() {
                    break;
                }
                let mut lists = Vec::with_capacity(reads.len());
                while let Some(done) = reads.join_next().await {
                    let (key, owned) = done.map_err(|e| StoreError::Protocol(e.to_string()))?;
                    lists.push((key, owned?));
                }
                for (key, owned) in lists {
                    found |= !owned.is_empty();
                    for (member, value) in owned {
                        if claimed.len() >= max {
                            return Ok(claimed);
                        }
                        let handed_over = Notified::decode(&value);
                        if let Some(dialog) = self
                            .claim_one(claimer, &dead, &key, &member, handed_over)
                            .await?
                        {
                            claimed.push(dialog);
                        }
                    }
                }
            }
            if !found {
                // Nothing left to continue: the edge is fully taken over.
                backend.unschedule(Schedule::Leases, &dead).await?;
            }
        }
        Ok(claimed)
    }

    /// Moves the dialog `member`, found in `found_in` (a map of `dead`'s
    /// index), to `claimer`.
    async fn claim_one(
        &self,
        claimer: &str,
        dead: &str,
        found_in: &Key,
        member: &str,
        handed_over: Option<Notified>,
    ) -> Result<Option<ClaimedDialog>, StoreError> {
        let backend = self.compositor.backend();
        let forget = || async { backend.map_take(found_in, member, None).await.map(drop) };
        let Some((presentity, dialog_id)) = member.split_once('\n') else {
            forget().await?;
            return Ok(None);
        };
        let key = Key::new(Kind::Subscriptions, presentity);
        let Some(raw) = backend.map_get(&key, dialog_id).await? else {
            forget().await?;
            return Ok(None);
        };
        let Ok(mut record) = SubscriptionRecord::decode(presentity, dialog_id, &raw) else {
            forget().await?;
            return Ok(None);
        };
        if record.dialog.edge_id != dead {
            // Already continued elsewhere (a refresh reached another edge).
            forget().await?;
            return Ok(None);
        }
        record.dialog.edge_id = claimer.to_string();
        record.dialog.notify_cseq = record.dialog.notify_cseq.saturating_add(TAKEOVER_CSEQ_GAP);
        let encoded = record.encode();
        let (before, after) = (EntryForm::of_stored(&raw), EntryForm::of_stored(&encoded));
        if !backend
            .map_replace(&key, dialog_id, &raw, Bytes::from(encoded))
            .await?
        {
            // Another survivor (or a refresh) won the race.
            return Ok(None);
        }
        let id = (presentity, dialog_id);
        index(backend.as_ref(), after, claimer, id).await?;
        forget().await?;
        if before != after {
            crate::subscriptions::move_watching(backend.as_ref(), before, after, &record).await?;
        }
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

    /// A watcher that acknowledged `version` of an active, unmasked dialog.
    fn acknowledged(version: u64) -> Notified {
        Notified {
            status: SubscriptionStatus::Active,
            masked: false,
            version,
        }
    }

    /// Alice's dialog `id`, handed over with what its watcher has.
    fn given_up(id: &str, notified: Notified) -> HandedOver {
        HandedOver {
            presentity: "alice@example.com".into(),
            dialog_id: id.into(),
            notified,
        }
    }

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
        let notified = acknowledged(42);
        let given_up = |id: &str| given_up(id, notified);
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

    #[tokio::test]
    async fn dialogs_indexed_by_the_previous_release_are_claimed_and_handed_over() {
        let (ownership, subscriptions) = setup().await;
        let backend = ownership.compositor.backend().clone();
        // d9 as the previous release stored it: a record in binary
        // version 1 and the entry in the edge's one map.
        let old = SubscriptionRecord {
            presentity: "alice@example.com".into(),
            dialog: DialogRecord {
                id: "d9".into(),
                watcher: "bob@example.com".into(),
                edge_id: "edge-a".into(),
                notify_cseq: 7,
                ..DialogRecord::default()
            },
            expires_at_ms: T0 + 600_000,
            status: SubscriptionStatus::Active,
            masked: false,
            approved: false,
        };
        let mut w = contract::Writer::record(1, 256);
        w.str(&old.presentity);
        old.dialog.encode_into(&mut w);
        w.varint(old.expires_at_ms);
        w.u8(0);
        w.bool(false);
        w.bool(false);
        let key = Key::new(Kind::Subscriptions, "alice@example.com");
        backend
            .map_put(&key, "d9", Bytes::from(w.into_vec()))
            .await
            .unwrap();
        let member = schedule_member("alice@example.com", "d9");
        let legacy = legacy_index_key("edge-a");
        backend
            .map_put(&legacy, &member, Bytes::new())
            .await
            .unwrap();
        let notified = acknowledged(5);
        let given_up = |id: &str| given_up(id, notified);
        // The old entry is found for the hand-over as well as the new ones.
        let written = ownership
            .hand_over("edge-a", vec![given_up("d9"), given_up("d1")])
            .await
            .unwrap();
        assert_eq!(written, 2);
        ownership.release("edge-a").await.unwrap();
        // Claimed one at a time, the old entry among them.
        let mut ids = Vec::new();
        for _ in 0..3 {
            for dialog in ownership.claim("edge-b", 1, T0).await.unwrap() {
                if dialog.record.dialog.id != "d2" {
                    assert_eq!(dialog.handed_over, Some(notified));
                }
                ids.push(dialog.record.dialog.id);
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, ["d1", "d2", "d9"]);
        // The old entry is gone; the claimed record is in the new form,
        // and so are its entries.
        assert!(backend.map_list(&legacy).await.unwrap().is_empty());
        let raw = backend.map_get(&key, "d9").await.unwrap().unwrap();
        assert_eq!(EntryForm::of_stored(&raw), EntryForm::Compact);
        let shard = index_key(EntryForm::Compact, "edge-b", &member);
        assert!(backend.map_get(&shard, &member).await.unwrap().is_some());
        let record = SubscriptionRecord::decode("alice@example.com", "d9", &raw).unwrap();
        assert_eq!(record.dialog.notify_cseq, 7 + TAKEOVER_CSEQ_GAP);
        // Nothing left of edge-a: its lease goes once every map is empty.
        assert!(ownership.claim("edge-b", 10, T0).await.unwrap().is_empty());
        assert!(backend
            .due(Schedule::Leases, T0, 10)
            .await
            .unwrap()
            .iter()
            .all(|(edge, _)| edge != "edge-a"));
        // And it expires from its old schedule member, leaving nothing.
        assert!(subscriptions.expire(&member, T0 + 600_000).await.unwrap());
        assert!(backend.map_get(&shard, &member).await.unwrap().is_none());
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // A release and process independent hash: fixed values.
        assert_eq!(shard_of(""), 0x811c_9dc5 % INDEX_SHARDS);
        assert_eq!(
            shard_of("alice@example.com\nd1"),
            shard_of("alice@example.com\nd1")
        );
        let mut counts = vec![0u32; INDEX_SHARDS as usize];
        for n in 0..100_000 {
            let member = format!(
                "user{n:06}@example.com\n{:016x}",
                u64::from(n as u32) * 0x9e37_79b9
            );
            counts[shard_of(&member) as usize] += 1;
        }
        // 100,000 dialogs: every shard well below 512 entries.
        let max = counts.iter().max().copied().unwrap_or_default();
        assert!(max < 480, "{max} in one shard");
        assert_eq!(
            shard_key("edge-a", 7),
            Key::new(Kind::EdgeDialogShard, "edge-a/7")
        );
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
