//! The state epoch: noticing that the state backend lost its data.
//!
//! A Redis restarted without persistence (or flushed) comes back empty and
//! answers every command as if nothing had ever been stored; the edges
//! still hold live SUBSCRIBE dialogs whose records are gone. One record,
//! `epoch:{cluster}`, holds a random id; it is created only when absent
//! (a compare-and-swap from revision 0, so of racing replicas one wins and
//! the others read its id). An empty backend therefore gets a new id, and
//! an id that differs from the one an edge knew means the data it relied on
//! is gone. Edges learn the id from every lease renewal and restore their
//! dialogs when it changes (`RestoreDialogs`).

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use store::{Backend, Key, Kind, StoreError};

/// Whether this process has read or created an epoch before: creating one
/// after that means the backend lost its data; creating the first one is
/// what every new backend (and every start of an in-memory node) does.
static EPOCH_SEEN: AtomicBool = AtomicBool::new(false);

/// Entity of the one epoch record.
const ENTITY: &str = "cluster";
/// Reads and creation attempts before giving up (only racing deletions,
/// e.g. repeated flushes, can exhaust them).
const ATTEMPTS: usize = 3;

fn key() -> Key {
    Key::new(Kind::Epoch, ENTITY)
}

/// The current epoch id, created when the backend holds none.
pub async fn current(backend: &dyn Backend) -> Result<String, StoreError> {
    for _ in 0..ATTEMPTS {
        if let Some(record) = backend.get_record(&key()).await? {
            EPOCH_SEEN.store(true, Ordering::Relaxed);
            return String::from_utf8(record.value.to_vec()).map_err(|_| StoreError::Corrupt {
                key: "epoch".into(),
                reason: "epoch id is not UTF-8".into(),
            });
        }
        let id = hex::encode(rand::random::<[u8; 8]>());
        if backend
            .cas_record(&key(), 0, Some(Bytes::from(id.clone())), None, None)
            .await?
            .is_some()
        {
            if EPOCH_SEEN.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    epoch = %id,
                    "the state backend LOST ITS DATA (its epoch is gone); created a new \
                     epoch, edges will restore the dialogs they hold"
                );
            } else {
                // A new backend, or one that lost its data while no
                // service ran: the edges, which knew the old epoch, warn.
                tracing::info!(epoch = %id, "the state backend holds no epoch yet; created one");
            }
            return Ok(id);
        }
        // Another replica created it first: read theirs.
    }
    Err(StoreError::Unavailable(
        "the state epoch keeps disappearing".into(),
    ))
}

#[cfg(test)]
mod tests {
    use store::memory::MemoryBackend;

    use super::*;

    #[tokio::test]
    async fn the_epoch_is_stable_until_the_data_is_lost() -> Result<(), StoreError> {
        let backend = MemoryBackend::new();
        let first = current(&backend).await?;
        assert_eq!(first.len(), 16);
        assert_eq!(current(&backend).await?, first);
        let Some(record) = backend.get_record(&key()).await? else {
            panic!("no epoch record");
        };
        // The data is lost: the record is gone.
        assert!(backend
            .cas_record(&key(), record.rev, None, None, None)
            .await?
            .is_some());
        let second = current(&backend).await?;
        assert_ne!(second, first);
        assert_eq!(current(&backend).await?, second);
        Ok(())
    }
}
