//! The table of open stream connections: the slots of the connection caps
//! (all sources together, and per source address) and the way back to each
//! peer (RFC 3261 §18: connections are indexed by transport and remote
//! address).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Protocol, SourceKey, TransportCounters};
use crate::Edge;

/// The writing side of one open stream connection.
#[derive(Clone)]
pub(super) struct Connection {
    id: u64,
    pub(super) queue: mpsc::Sender<Bytes>,
}

/// Open stream connections, and how many each source holds.
pub(super) struct ConnectionTable {
    by_remote: Mutex<HashMap<(Protocol, SocketAddr), Connection>>,
    open: AtomicUsize,
    /// Open connections per source (an IPv4 address or an IPv6 /64); a
    /// source is removed when its last connection closes, so the map never
    /// holds more entries than there are open connections.
    per_source: Mutex<HashMap<SourceKey, usize>>,
    next_id: AtomicU64,
    max: usize,
    /// Zero: no cap per source.
    max_per_source: usize,
}

impl ConnectionTable {
    pub(super) fn new(max: usize, max_per_source: usize) -> Self {
        ConnectionTable {
            by_remote: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            max,
            max_per_source,
        }
    }

    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(super) fn queue(
        &self,
        protocol: Protocol,
        remote: SocketAddr,
    ) -> Option<mpsc::Sender<Bytes>> {
        locks::lock(&self.by_remote)
            .get(&(protocol, remote))
            .map(|c| c.queue.clone())
    }

    pub(super) fn contains(&self, protocol: Protocol, remote: SocketAddr) -> bool {
        locks::lock(&self.by_remote).contains_key(&(protocol, remote))
    }

    /// Takes one slot of the cap per source and one of the overall cap, or
    /// counts a refusal. The per-source cap is checked first, so that one
    /// source flooding the edge cannot take the slots everyone shares.
    pub(super) fn admit(edge: &Arc<Edge>, protocol: Protocol, remote: SocketAddr) -> Option<Slot> {
        let table = &edge.transports.connections;
        let counters = &edge.transports.counters;
        let source = SourceKey::of(remote.ip());
        if table.max_per_source > 0 {
            let mut per_source = locks::lock(&table.per_source);
            let held = per_source.entry(source).or_insert(0);
            if *held >= table.max_per_source {
                let held = *held;
                drop(per_source);
                TransportCounters::bump(&counters.refused_source_connections);
                tracing::warn!(%remote, %protocol, held, "connection refused: too many open connections from this source");
                return None;
            }
            *held += 1;
        }
        // From here on, dropping the slot gives back what was taken.
        let slot = Slot {
            edge: edge.clone(),
            source,
        };
        let open = table.open.fetch_add(1, Ordering::AcqRel);
        if open >= table.max {
            TransportCounters::bump(&counters.refused_connections);
            tracing::warn!(%remote, %protocol, open, "connection refused: too many open connections");
            return None;
        }
        Some(slot)
    }

    /// Makes a connection the way to reach `remote` on `protocol` until the
    /// returned guard is dropped.
    pub(super) fn register(
        edge: &Arc<Edge>,
        protocol: Protocol,
        remote: SocketAddr,
        queue: mpsc::Sender<Bytes>,
    ) -> Registration {
        let table = &edge.transports.connections;
        let id = table.next_id.fetch_add(1, Ordering::Relaxed);
        locks::lock(&table.by_remote).insert((protocol, remote), Connection { id, queue });
        Registration {
            edge: edge.clone(),
            key: (protocol, remote),
            id,
        }
    }
}

/// One slot of the overall and per-source connection caps; released when
/// dropped.
pub(crate) struct Slot {
    edge: Arc<Edge>,
    source: SourceKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let table = &self.edge.transports.connections;
        table.open.fetch_sub(1, Ordering::AcqRel);
        if table.max_per_source == 0 {
            return;
        }
        let mut per_source = locks::lock(&table.per_source);
        if let Some(held) = per_source.get_mut(&self.source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// A connection's entry in the connection table; removed when dropped
/// (unless a newer connection from the same address replaced it).
pub(crate) struct Registration {
    edge: Arc<Edge>,
    key: (Protocol, SocketAddr),
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut connections = locks::lock(&self.edge.transports.connections.by_remote);
        if connections.get(&self.key).is_some_and(|c| c.id == self.id) {
            connections.remove(&self.key);
        }
    }
}
