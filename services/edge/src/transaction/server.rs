//! The server transaction table (RFC 3261 §17.2).
//!
//! Every request over UDP leaves its transaction here for Timer J (32 s at
//! the default T1), so at 16,000 requests/s the table holds about half a
//! million of them: it is laid out for that. One entry is one slot of a
//! hash table and one allocation (the key's text), besides the response
//! it keeps; the purge queue holds a hash and a serial number per
//! transaction, no copy of the key. (The previous layout, a map of
//! branches to vectors with the key cloned into the purge queue, took
//! about 13 allocations and twice the memory per transaction.)
//!
//! Entries are hashed by branch and sent-by only, so a CANCEL finds the
//! request it cancels, and a branch reused with another method or CSeq
//! (looping test tools, RFC 4475 examples) lands beside the first request
//! and is told apart by comparing the whole key.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;

use crate::transport::Source;

#[cfg(test)]
pub(super) mod tests;

/// Identifies a server transaction (RFC 3261 §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// Top Via branch, or Call-ID + CSeq + From tag for RFC 2543 peers
    /// whose branch lacks the magic cookie.
    pub id: String,
    /// Request method (ACK and CANCEL have transactions of their own).
    pub method: String,
    /// Top Via sent-by.
    pub sent_by: String,
    /// CSeq as number and method (`"2 REGISTER"`): a retransmission
    /// repeats it exactly.
    pub cseq: String,
}

/// What to do with an incoming request.
pub enum Begin {
    /// A new transaction: run the handler.
    New,
    /// A retransmission: resend this response, if one was already sent.
    Retransmission(Option<(Bytes, Source)>),
    /// Too many transactions are open: answer 503 without running anything.
    Overloaded,
}

/// Most server transactions held at once (each holds its response for
/// Timer J, 32 s, on UDP: 16,000 requests/s keep about 512,000, some 600
/// bytes each with the response); past it new requests get 503 rather
/// than memory.
pub const MAX_SERVER_TRANSACTIONS: usize = 1_000_000;

enum State {
    Proceeding,
    Completed { response: Bytes, source: Source },
}

/// One transaction: its key as one string (`id`, `sent_by`, `method` and
/// `cseq` one after another, split at the recorded lengths).
struct Entry {
    key: Box<str>,
    /// Hash of the branch, kept so that growing the table rehashes nothing.
    hash: u64,
    /// Lengths of `id`, `sent_by` and `method` within `key`.
    lengths: [u16; 3],
    /// Told apart from any other transaction of the same hash by the purge.
    serial: u64,
    state: State,
    since: Instant,
}

impl Entry {
    fn new(key: &TransactionKey, hash: u64, serial: u64, now: Instant) -> Option<Entry> {
        let length = |s: &str| u16::try_from(s.len()).ok();
        let lengths = [
            length(&key.id)?,
            length(&key.sent_by)?,
            length(&key.method)?,
        ];
        let mut text = String::with_capacity(
            key.id.len() + key.sent_by.len() + key.method.len() + key.cseq.len(),
        );
        for part in [&key.id, &key.sent_by, &key.method, &key.cseq] {
            text.push_str(part);
        }
        Some(Entry {
            key: text.into_boxed_str(),
            hash,
            lengths,
            serial,
            state: State::Proceeding,
            since: now,
        })
    }

    /// The key's parts: id, sent-by, method, CSeq.
    fn parts(&self) -> (&str, &str, &str, &str) {
        let [id, sent_by, method] = self.lengths.map(usize::from);
        let (a, rest) = self.key.split_at(id);
        let (b, rest) = rest.split_at(sent_by);
        let (c, d) = rest.split_at(method);
        (a, b, c, d)
    }

    fn same_branch(&self, key: &TransactionKey) -> bool {
        let (id, sent_by, _, _) = self.parts();
        id == key.id && sent_by == key.sent_by
    }

    fn is(&self, key: &TransactionKey) -> bool {
        let (id, sent_by, method, cseq) = self.parts();
        id == key.id && sent_by == key.sent_by && method == key.method && cseq == key.cseq
    }

    fn method(&self) -> &str {
        self.parts().2
    }
}

/// A transaction's deadline in the purge queue.
struct Due {
    at: Instant,
    hash: u64,
    serial: u64,
}

struct Table {
    entries: HashTable<Entry>,
    /// Entries still waiting for their handler's answer.
    proceeding: usize,
    next_serial: u64,
    /// When each transaction may go, in the order they were started: a
    /// purge looks at what is due and nothing else, however many
    /// transactions are held. A transaction is first looked at an eighth
    /// of Timer J after Timer J from its start (4 s at the default T1:
    /// handlers answer within their service deadline, 2 s by default, so
    /// nearly every transaction is due then and goes at once), and kept if
    /// it is not due yet (answered late, or still unanswered).
    due: VecDeque<Due>,
}

/// Server transactions of one edge.
///
/// The table is split in [`SHARDS`] by the branch's hash, each with its own
/// lock: a hash table grows by moving every entry at once, which at half a
/// million transactions held up every request for tens of milliseconds
/// (most of it page faults of the new table); a shard moves a sixteenth.
pub struct ServerTransactions {
    shards: Box<[Mutex<Table>]>,
    /// Keyed per process: branches come from the network, so their hashes
    /// must not be predictable.
    hasher: RandomState,
    timer_j: Duration,
    /// Per shard.
    capacity: usize,
}

/// Shards of a table holding [`MAX_SERVER_TRANSACTIONS`]; a small table
/// (tests) is one shard, so its capacity is exact.
const SHARDS: usize = 16;

impl ServerTransactions {
    pub fn new(t1: Duration) -> Self {
        Self::with_capacity(t1, MAX_SERVER_TRANSACTIONS)
    }

    /// Server transactions holding at most `capacity` at once.
    pub fn with_capacity(t1: Duration, capacity: usize) -> Self {
        let shards = if capacity >= SHARDS * 4096 { SHARDS } else { 1 };
        ServerTransactions {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Table {
                        entries: HashTable::new(),
                        proceeding: 0,
                        next_serial: 0,
                        due: VecDeque::new(),
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            timer_j: t1 * 64,
            capacity: capacity / shards,
        }
    }

    /// The shard of a branch's hash: bits the shard's own table uses for
    /// neither its bucket index (the low ones) nor its tags (the top seven).
    fn shard(&self, hash: u64) -> &Mutex<Table> {
        &self.shards[(hash >> 32) as usize % self.shards.len()]
    }

    /// The hash of a branch: its id and sent-by.
    fn hash_branch(&self, id: &str, sent_by: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        id.hash(&mut hasher);
        sent_by.hash(&mut hasher);
        hasher.finish()
    }

    fn hash_of(&self, key: &TransactionKey) -> u64 {
        self.hash_branch(&key.id, &key.sent_by)
    }

    /// Starts a transaction or recognises a retransmission.
    pub fn begin(&self, key: &TransactionKey) -> Begin {
        let hash = self.hash_of(key);
        let mut table = locks::lock(self.shard(hash));
        if let Some(entry) = table.entries.find(hash, |e| e.is(key)) {
            return match &entry.state {
                State::Completed { response, source } => {
                    Begin::Retransmission(Some((response.clone(), *source)))
                }
                State::Proceeding => Begin::Retransmission(None),
            };
        }
        if table.entries.len() >= self.capacity {
            return Begin::Overloaded;
        }
        let now = Instant::now();
        let serial = table.next_serial;
        let Some(entry) = Entry::new(key, hash, serial, now) else {
            // A branch or sent-by over 64 KB cannot come through the
            // parser's limits; treated like a full table, never stored.
            return Begin::Overloaded;
        };
        table.next_serial += 1;
        table.proceeding += 1;
        table.entries.insert_unique(hash, entry, |e| e.hash);
        table.due.push_back(Due {
            at: now + self.timer_j + self.timer_j / 8,
            hash,
            serial,
        });
        Begin::New
    }

    /// Whether a transaction other than a CANCEL is open under the branch
    /// of `cancel` — the request a CANCEL cancels (RFC 3261 §9.2).
    pub fn has_cancelled_request(&self, cancel: &TransactionKey) -> bool {
        let hash = self.hash_of(cancel);
        locks::lock(self.shard(hash))
            .entries
            .iter_hash(hash)
            .any(|e| e.same_branch(cancel) && e.method() != "CANCEL")
    }

    /// Records the final response; kept for retransmissions on UDP only.
    pub fn complete(&self, key: &TransactionKey, response: Bytes, source: Source) {
        let hash = self.hash_of(key);
        let mut guard = locks::lock(self.shard(hash));
        let table = &mut *guard;
        let Ok(entry) = table.entries.find_entry(hash, |e| e.is(key)) else {
            return;
        };
        let was_proceeding = matches!(entry.get().state, State::Proceeding);
        if source.protocol.is_reliable() {
            entry.remove();
        } else {
            let entry = entry.into_mut();
            entry.state = State::Completed { response, source };
            entry.since = Instant::now();
        }
        if was_proceeding {
            table.proceeding -= 1;
        }
    }

    /// Forgets a transaction whose handler produced no response (ACK).
    pub fn forget(&self, key: &TransactionKey) {
        let hash = self.hash_of(key);
        let mut guard = locks::lock(self.shard(hash));
        let table = &mut *guard;
        if let Ok(entry) = table.entries.find_entry(hash, |e| e.is(key)) {
            let (removed, _) = entry.remove();
            if matches!(removed.state, State::Proceeding) {
                table.proceeding -= 1;
            }
        }
    }

    /// Drops transactions past Timer J (and abandoned ones past twice it).
    pub fn purge(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            self.purge_shard(&mut locks::lock(shard), now);
        }
    }

    fn purge_shard(&self, table: &mut Table, now: Instant) {
        while table.due.front().is_some_and(|d| d.at <= now) {
            let Some(item) = table.due.pop_front() else {
                break;
            };
            // The transaction may be gone already (answered over a stream,
            // forgotten) or not due yet (answered late, or unanswered).
            let Ok(entry) = table
                .entries
                .find_entry(item.hash, |e| e.serial == item.serial)
            else {
                continue;
            };
            let goes_at = match entry.get().state {
                State::Completed { .. } => entry.get().since + self.timer_j,
                State::Proceeding => entry.get().since + self.timer_j * 2,
            };
            if goes_at > now {
                table.due.push_back(Due {
                    at: goes_at,
                    ..item
                });
                continue;
            }
            let (removed, _) = entry.remove();
            if matches!(removed.state, State::Proceeding) {
                table.proceeding -= 1;
            }
        }
        // A burst of traffic leaves the table (and the queue) sized for
        // it; give the memory back once it is mostly empty.
        if table.entries.capacity() > 4096 && table.entries.len() < table.entries.capacity() / 8 {
            table.entries.shrink_to(table.entries.len() * 2, |e| e.hash);
        }
        if table.due.capacity() > 4096 && table.due.len() < table.due.capacity() / 8 {
            table.due.shrink_to(table.due.len() * 2);
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| locks::lock(shard).entries.len())
            .sum()
    }

    /// Transactions whose handler has not answered yet (drain waits for them).
    pub fn in_progress(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| locks::lock(shard).proceeding)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
