//! A hash map split in [`SHARDS`] maps by the key's hash.
//!
//! A hash map grows by moving every entry into a table twice the size, all
//! at once: at a million records that is tens of milliseconds (most of it
//! the page faults of the new table), during which every request waiting
//! for the store's lock waits too. That was much of the in-memory
//! backend's p99 at high request rates (`BENCHMARKS.md`, "p99 stalls").
//! Split in sixteen, each growth moves a sixteenth of the entries; the
//! total work is the same.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

/// How many maps the entries are split in.
pub(super) const SHARDS: usize = 16;

pub(super) struct Sharded<K, V> {
    shards: Box<[HashMap<K, V>]>,
    /// Chooses the shard; keyed per process like the maps' own hashers.
    hasher: RandomState,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The high half: each shard's own hasher is independent of it, so
        // the entries of one shard still spread over its whole table.
        (self.hasher.hash_one(key) >> 32) as usize % SHARDS
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard(key)].get(key)
    }

    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = self.shard(&key);
        self.shards[shard].insert(key, value)
    }

    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard(key);
        self.shards[shard].remove(key)
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_with_its_entries_spread_over_every_shard() {
        let mut map = Sharded::default();
        for n in 0..10_000u32 {
            assert_eq!(map.insert(format!("key{n}"), n), None);
        }
        assert_eq!(map.insert("key7".to_string(), 70), Some(7));
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get("key7"), Some(&70));
        assert_eq!(map.get("key9999"), Some(&9999));
        assert_eq!(map.get("absent"), None);
        assert_eq!(map.remove("key7"), Some(70));
        assert_eq!(map.remove("key7"), None);
        assert_eq!(map.len(), 9_999);
        // No shard holds more than twice its share: a growth moves a
        // sixteenth of the entries, not all of them.
        for shard in map.shards.iter() {
            assert!(
                !shard.is_empty() && shard.len() < 2 * 10_000 / SHARDS,
                "{}",
                shard.len()
            );
        }
    }
}
