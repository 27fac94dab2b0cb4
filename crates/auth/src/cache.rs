//! Bounded cache of token validation results, keyed by the SHA-256 of the token.
//!
//! The raw token is never stored: a memory dump of the cache yields no usable credential. The cache is
//! split into shards, each a mutex-protected LRU list, so concurrent validations rarely contend.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::error::AuthError;
use crate::identity::Identity;

/// SHA-256 of a token: the cache key.
pub(crate) type TokenKey = [u8; 32];

const SHARDS: usize = 16;

/// Hashes the token digest with its first eight bytes: the key is already uniformly distributed, so
/// running it through SipHash again would only cost time.
#[derive(Clone, Copy, Default)]
pub(crate) struct DigestPrefixHasher(u64);

impl Hasher for DigestPrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Arrays hash their length prefix first (as a usize) and then the bytes; only the bytes matter.
        if bytes.len() >= 8 {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&bytes[..8]);
            self.0 ^= u64::from_le_bytes(prefix);
        }
    }

    fn write_usize(&mut self, _length: usize) {}
}

impl BuildHasher for DigestPrefixHasher {
    type Hasher = DigestPrefixHasher;

    fn build_hasher(&self) -> Self::Hasher {
        DigestPrefixHasher(0)
    }
}

#[derive(Clone)]
enum Outcome {
    Valid(Identity),
    Invalid(AuthError),
}

struct Entry {
    outcome: Outcome,
    expires_at_ms: u64,
}

/// The result cache of a validator.
pub(crate) struct TokenCache {
    shards: Vec<Mutex<LruCache<TokenKey, Entry, DigestPrefixHasher>>>,
}

impl TokenCache {
    /// A cache holding at most about `max_entries` results; 0 disables caching.
    pub(crate) fn new(max_entries: usize) -> Self {
        let per_shard = max_entries.div_ceil(SHARDS);
        let shards = match NonZeroUsize::new(per_shard) {
            Some(capacity) => (0..SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(capacity, DigestPrefixHasher(0))))
                .collect(),
            None => Vec::new(),
        };
        TokenCache { shards }
    }

    /// The cache key of a token.
    pub(crate) fn key(token: &str) -> TokenKey {
        Sha256::digest(token.as_bytes()).into()
    }

    fn shard(
        &self,
        key: &TokenKey,
    ) -> Option<&Mutex<LruCache<TokenKey, Entry, DigestPrefixHasher>>> {
        if self.shards.is_empty() {
            return None;
        }
        // The last byte is independent of the prefix used by the hasher inside the shard.
        self.shards.get(usize::from(key[31]) % self.shards.len())
    }

    /// The cached result for `key`, if present and not expired at `now_ms`.
    pub(crate) fn get(&self, key: &TokenKey, now_ms: u64) -> Option<Result<Identity, AuthError>> {
        let shard = self.shard(key)?;
        let mut guard = locks::lock(shard);
        let entry = guard.get(key)?;
        if now_ms >= entry.expires_at_ms {
            guard.pop(key);
            return None;
        }
        Some(match &entry.outcome {
            Outcome::Valid(identity) => Ok(identity.clone()),
            Outcome::Invalid(error) => Err(error.clone()),
        })
    }

    /// Remembers a valid identity until `expires_at_ms`.
    pub(crate) fn insert_valid(&self, key: TokenKey, identity: Identity, expires_at_ms: u64) {
        self.insert(key, Outcome::Valid(identity), expires_at_ms);
    }

    /// Remembers a rejection until `expires_at_ms`.
    pub(crate) fn insert_invalid(&self, key: TokenKey, error: AuthError, expires_at_ms: u64) {
        self.insert(key, Outcome::Invalid(error), expires_at_ms);
    }

    fn insert(&self, key: TokenKey, outcome: Outcome, expires_at_ms: u64) {
        if let Some(shard) = self.shard(&key) {
            let mut guard = locks::lock(shard);
            guard.put(
                key,
                Entry {
                    outcome,
                    expires_at_ms,
                },
            );
        }
    }

    /// Number of entries currently held (expired ones included until touched or evicted).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| locks::lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    fn identity(aor: &str) -> Identity {
        Identity {
            aor: aor.to_owned(),
            subject: aor.to_owned(),
            scopes: Vec::new(),
            client_id: None,
            expires_at: None,
            method: AuthMethod::Bearer,
        }
    }

    #[test]
    fn entries_expire_and_are_bounded() {
        let cache = TokenCache::new(32);
        let key = TokenCache::key("token-a");
        cache.insert_valid(key, identity("a@x"), 1_000);
        assert_eq!(cache.get(&key, 999), Some(Ok(identity("a@x"))));
        assert_eq!(cache.get(&key, 1_000), None);
        for i in 0..1_000 {
            cache.insert_invalid(TokenCache::key(&format!("t{i}")), AuthError::Expired, 5_000);
        }
        assert!(cache.len() <= 32);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = TokenCache::new(0);
        let key = TokenCache::key("token-a");
        cache.insert_valid(key, identity("a@x"), u64::MAX);
        assert_eq!(cache.get(&key, 0), None);
    }
}
