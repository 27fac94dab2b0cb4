//! The single-process backend: every primitive of [`Backend`] over plain
//! in-memory tables.
//!
//! Semantics match the Redis backend exactly (the conformance suite runs
//! against both):
//!
//! * A record's revision starts at 1 when created and grows by one with
//!   every swap; a deleted or expired record is absent and reads as
//!   revision 0, so the next swap must expect 0.
//! * Expiry is lazy: an expired record is invisible to reads and swaps from
//!   the instant its TTL runs out, and every swap also drops the records
//!   whose TTL has passed (cheap: the expiry index is ordered by deadline,
//!   so the purge touches only what is due).
//! * A swap and its announcement happen under the same lock, so watchers see
//!   announcements in revision order and never see one for a failed swap.
//! * Channels are per-entity. Each feed has a forwarding task that moves
//!   messages into the subscriber's bounded queue; when that queue is full
//!   the subscriber gets [`FeedItem::Resync`] instead of the lost messages.
//!   Nothing here ever disconnects, so that is the only source of resyncs.

mod sharded;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::feed::{Offer, Outbox, WatchSet, FEED_CAPACITY};
use crate::{
    lock, next_revision, Backend, ChannelMessage, FeedControl, FeedItem, Key, Record, Schedule,
    StoreError, UnixMillis,
};
use sharded::Sharded;

/// The in-memory backend. Cloning is cheap and every clone shares the same
/// state, so one value can be handed to several services of one process.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("records", &self.record_count())
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every record whose TTL has run out and returns how many were
    /// dropped. Swaps already do this as they go; a periodic call bounds the
    /// memory held by records that are never written again.
    pub fn purge_expired(&self) -> usize {
        lock(&self.inner.records).purge(Instant::now())
    }

    /// How many records are stored, counting expired ones not yet purged.
    pub fn record_count(&self) -> usize {
        lock(&self.inner.records).entries.len()
    }
}

#[derive(Default)]
struct Inner {
    records: Mutex<RecordTable>,
    maps: Mutex<HashMap<Key, HashMap<String, Bytes>>>,
    schedules: Mutex<HashMap<Schedule, ScheduleSet>>,
    hub: Arc<Hub>,
}

struct StoredRecord {
    rev: u64,
    value: Bytes,
    expires_at: Option<Instant>,
}

impl StoredRecord {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct RecordTable {
    entries: Sharded<Key, StoredRecord>,
    /// Deadlines of the entries that have one, earliest first.
    expiries: BTreeSet<(Instant, Key)>,
}

impl RecordTable {
    fn live(&self, key: &Key, now: Instant) -> Option<&StoredRecord> {
        self.entries.get(key).filter(|stored| stored.is_live(now))
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            if let Some(at) = old.expires_at {
                self.expiries.remove(&(at, key.clone()));
            }
        }
    }

    fn insert(&mut self, key: &Key, stored: StoredRecord) {
        self.remove(key);
        if let Some(at) = stored.expires_at {
            self.expiries.insert((at, key.clone()));
        }
        self.entries.insert(key.clone(), stored);
    }

    fn purge(&mut self, now: Instant) -> usize {
        let mut purged = 0;
        while let Some((at, _)) = self.expiries.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.expiries.pop_first() {
                self.entries.remove(&key);
                purged += 1;
            }
        }
        purged
    }
}

#[derive(Default)]
struct ScheduleSet {
    by_due: BTreeSet<(UnixMillis, String)>,
    due_of: Sharded<String, UnixMillis>,
    /// Members held by a sweeper's claim and not scheduled since.
    claimed: HashSet<String>,
}

impl ScheduleSet {
    fn put(&mut self, member: &str, due: UnixMillis) {
        if let Some(previous) = self.due_of.insert(member.to_owned(), due) {
            self.by_due.remove(&(previous, member.to_owned()));
        }
        self.by_due.insert((due, member.to_owned()));
    }

    fn remove(&mut self, member: &str) -> bool {
        self.claimed.remove(member);
        match self.due_of.remove(member) {
            Some(previous) => {
                self.by_due.remove(&(previous, member.to_owned()));
                true
            }
            None => false,
        }
    }
}

/// Routes channel messages to the feeds watching each entity.
#[derive(Default)]
struct Hub {
    watchers: Mutex<HashMap<String, HashMap<u64, mpsc::UnboundedSender<ChannelMessage>>>>,
    next_feed_id: AtomicU64,
}

impl Hub {
    fn publish(&self, message: ChannelMessage) {
        let mut watchers = lock(&self.watchers);
        let Some(feeds) = watchers.get_mut(&message.entity) else {
            return;
        };
        // A send fails only when the feed's forwarder has ended; forget it.
        feeds.retain(|_, tx| tx.send(message.clone()).is_ok());
        if feeds.is_empty() {
            watchers.remove(&message.entity);
        }
    }

    fn watch(&self, entity: &str, feed_id: u64, tx: &mpsc::UnboundedSender<ChannelMessage>) {
        lock(&self.watchers)
            .entry(entity.to_owned())
            .or_default()
            .insert(feed_id, tx.clone());
    }

    fn unwatch(&self, entity: &str, feed_id: u64) {
        let mut watchers = lock(&self.watchers);
        if let Some(feeds) = watchers.get_mut(entity) {
            feeds.remove(&feed_id);
            if feeds.is_empty() {
                watchers.remove(entity);
            }
        }
    }
}

/// The control half of an in-memory feed.
struct MemoryFeedControl {
    hub: Arc<Hub>,
    feed_id: u64,
    tx: mpsc::UnboundedSender<ChannelMessage>,
    watched: WatchSet,
}

#[async_trait]
impl FeedControl for MemoryFeedControl {
    async fn watch(&self, entity: &str) -> Result<(), StoreError> {
        if self.tx.is_closed() {
            return Err(StoreError::Unavailable("change feed closed".into()));
        }
        self.watched.insert(entity);
        self.hub.watch(entity, self.feed_id, &self.tx);
        Ok(())
    }

    async fn unwatch(&self, entity: &str) -> Result<(), StoreError> {
        self.watched.remove(entity);
        self.hub.unwatch(entity, self.feed_id);
        Ok(())
    }
}

/// Moves messages from the hub to the subscriber until the subscriber goes
/// away, then removes the feed from every entity it still watched.
async fn forward(
    hub: Arc<Hub>,
    feed_id: u64,
    watched: WatchSet,
    mut inbound: mpsc::UnboundedReceiver<ChannelMessage>,
    mut outbox: Outbox,
) {
    let gone = outbox.closed_signal();
    loop {
        let owed = outbox.resync_owed();
        tokio::select! {
            offer = outbox.pay_resync(), if owed => {
                if offer == Offer::Closed {
                    break;
                }
            }
            message = inbound.recv() => {
                let Some(message) = message else { break };
                if watched.contains(&message.entity) && outbox.offer(message) == Offer::Closed {
                    break;
                }
            }
            () = gone.closed() => break,
        }
    }
    for entity in watched.snapshot() {
        hub.unwatch(&entity, feed_id);
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn get_record(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let now = Instant::now();
        let records = lock(&self.inner.records);
        Ok(records.live(key, now).map(|stored| Record {
            rev: stored.rev,
            value: stored.value.clone(),
        }))
    }

    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError> {
        let now = Instant::now();
        let records = lock(&self.inner.records);
        Ok(keys
            .iter()
            .map(|key| {
                records.live(key, now).map(|stored| Record {
                    rev: stored.rev,
                    value: stored.value.clone(),
                })
            })
            .collect())
    }

    async fn cas_record(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
    ) -> Result<Option<u64>, StoreError> {
        let now = Instant::now();
        let mut records = lock(&self.inner.records);
        records.purge(now);
        let current_rev = records.live(key, now).map_or(0, |stored| stored.rev);
        if current_rev != expected_rev {
            return Ok(None);
        }
        let new_rev = next_revision(key, expected_rev)?;
        match value {
            Some(value) => {
                let expires_at = ttl_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
                records.insert(
                    key,
                    StoredRecord {
                        rev: new_rev,
                        value,
                        expires_at,
                    },
                );
            }
            None => records.remove(key),
        }
        // Published while the record lock is held: announcements of one
        // record reach watchers in revision order.
        if let Some(message) = announce {
            self.inner.hub.publish(message);
        }
        Ok(Some(new_rev))
    }

    async fn map_put(&self, key: &Key, field: &str, value: Bytes) -> Result<(), StoreError> {
        lock(&self.inner.maps)
            .entry(key.clone())
            .or_default()
            .insert(field.to_owned(), value);
        Ok(())
    }

    async fn map_get(&self, key: &Key, field: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(lock(&self.inner.maps)
            .get(key)
            .and_then(|map| map.get(field))
            .cloned())
    }

    async fn map_list(&self, key: &Key) -> Result<Vec<(String, Bytes)>, StoreError> {
        Ok(lock(&self.inner.maps)
            .get(key)
            .map(|map| {
                map.iter()
                    .map(|(field, value)| (field.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn map_take(
        &self,
        key: &Key,
        field: &str,
        only_if: Option<&[u8]>,
    ) -> Result<Option<Bytes>, StoreError> {
        let mut maps = lock(&self.inner.maps);
        let Some(map) = maps.get_mut(key) else {
            return Ok(None);
        };
        let matches = match (map.get(field), only_if) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(current), Some(expected)) => current.as_ref() == expected,
        };
        if !matches {
            return Ok(None);
        }
        let taken = map.remove(field);
        if map.is_empty() {
            maps.remove(key);
        }
        Ok(taken)
    }

    async fn map_replace(
        &self,
        key: &Key,
        field: &str,
        expected: &[u8],
        value: Bytes,
    ) -> Result<bool, StoreError> {
        let mut maps = lock(&self.inner.maps);
        let Some(current) = maps.get_mut(key).and_then(|m| m.get_mut(field)) else {
            return Ok(false);
        };
        if current.as_ref() != expected {
            return Ok(false);
        }
        *current = value;
        Ok(true)
    }

    async fn schedule(
        &self,
        schedule: Schedule,
        member: &str,
        due: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut schedules = lock(&self.inner.schedules);
        let set = schedules.entry(schedule).or_default();
        set.claimed.remove(member);
        set.put(member, due);
        Ok(())
    }

    async fn schedule_len(&self, schedule: Schedule) -> Result<u64, StoreError> {
        let schedules = lock(&self.inner.schedules);
        Ok(schedules
            .get(&schedule)
            .map_or(0, |set| set.due_of.len() as u64))
    }

    async fn unschedule(&self, schedule: Schedule, member: &str) -> Result<(), StoreError> {
        let mut schedules = lock(&self.inner.schedules);
        if let Some(set) = schedules.get_mut(&schedule) {
            set.remove(member);
        }
        Ok(())
    }

    async fn claim_due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
        hold_until: UnixMillis,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        let mut schedules = lock(&self.inner.schedules);
        let Some(set) = schedules.get_mut(&schedule) else {
            return Ok(Vec::new());
        };
        let claimed: Vec<(String, UnixMillis)> = set
            .by_due
            .iter()
            .take_while(|(due, _)| *due <= now)
            .take(limit)
            .map(|(due, member)| (member.clone(), *due))
            .collect();
        for (member, _) in &claimed {
            set.put(member, hold_until);
            set.claimed.insert(member.clone());
        }
        Ok(claimed)
    }

    async fn release(&self, schedule: Schedule, members: &[String]) -> Result<usize, StoreError> {
        let mut schedules = lock(&self.inner.schedules);
        let Some(set) = schedules.get_mut(&schedule) else {
            return Ok(0);
        };
        let mut removed = 0;
        for member in members {
            if set.claimed.contains(member) && set.remove(member) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        let schedules = lock(&self.inner.schedules);
        Ok(schedules
            .get(&schedule)
            .map(|set| {
                set.by_due
                    .iter()
                    .take_while(|(due, _)| *due <= now)
                    .take(limit)
                    .map(|(due, member)| (member.clone(), *due))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn publish(&self, message: ChannelMessage) -> Result<(), StoreError> {
        self.inner.hub.publish(message);
        Ok(())
    }

    async fn open_feed(
        &self,
    ) -> Result<(Box<dyn FeedControl>, mpsc::Receiver<FeedItem>), StoreError> {
        let hub = Arc::clone(&self.inner.hub);
        let feed_id = hub.next_feed_id.fetch_add(1, Ordering::Relaxed);
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(FEED_CAPACITY);
        let watched = WatchSet::default();
        tokio::spawn(forward(
            Arc::clone(&hub),
            feed_id,
            watched.clone(),
            inbound_rx,
            Outbox::new(out_tx),
        ));
        let control = MemoryFeedControl {
            hub,
            feed_id,
            tx: inbound_tx,
            watched,
        };
        Ok((Box::new(control), out_rx))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
