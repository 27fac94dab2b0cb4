//! The contract between the SIP edges and the services behind them: the
//! records and formats both sides read and write, so neither depends on the
//! other's internals.
//!
//! * [`codec`] — the compact binary encoding of stored records (JSON is
//!   still read).
//! * [`dialog`] — the dialog record an edge needs to send NOTIFYs, and the
//!   watcher entries of watcher information (RFC 3858).
//! * [`announcement`] — what is published on a presentity's channel for the
//!   edges.
//! * [`convert`] — the protobuf forms of both (`From` impls).
//! * [`now_ms`] — the one wall clock of timestamps that cross the boundary.

pub mod announcement;
pub mod codec;
pub mod convert;
pub mod dialog;

pub use announcement::Announcement;
pub use codec::{CodecError, Reader, Writer};
pub use dialog::{DialogRecord, WatcherEntry, PRESENCE, WINFO};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
