use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Inner, Overdue, Slot};
use crate::dialogs::{Mode, Signal};

/// A slot with no sender (none is needed to file one).
fn slot(expires_at: Instant) -> Arc<Slot> {
    Arc::new(Slot {
        cseq: AtomicU32::new(0),
        acknowledged: AtomicU64::new(0),
        inner: Mutex::new(Inner {
            signal: Signal::first(Mode::Presence, Vec::new(), 1, Arc::from(""), expires_at),
            changes: 0,
            parked: None,
            running: None,
            filing: None,
        }),
    })
}

/// A slot filed as a dialog expiring at `expires_at` is.
fn filed(overdue: &Overdue, expires_at: Instant) -> Arc<Slot> {
    let slot = slot(expires_at);
    overdue.file(&slot, expires_at);
    slot
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_dialog_is_due_once_its_expiry_and_grace_have_passed_and_is_taken_once() {
    let overdue = Overdue::new();
    let start = overdue.origin;
    let early = filed(&overdue, start + secs(30));
    let late = filed(&overdue, start + secs(90));
    // Expiry 30 s, grace 10 s: not before 40 s.
    assert!(overdue.take_due(start + secs(39)).is_empty());
    let due = overdue.take_due(start + secs(41));
    assert_eq!(due.len(), 1);
    assert!(Arc::ptr_eq(&due[0], &early));
    assert!(overdue.take_due(start + secs(42)).is_empty());
    assert_eq!(overdue.len(), 1);
    let due = overdue.take_due(start + secs(101));
    assert!(due.len() == 1 && Arc::ptr_eq(&due[0], &late));
    assert_eq!(overdue.len(), 0);
}

#[test]
fn a_refresh_files_the_dialog_again_and_its_old_second_finds_nothing() {
    let overdue = Overdue::new();
    let start = overdue.origin;
    let dialog = filed(&overdue, start + secs(30));
    overdue.file(&dialog, start + secs(600));
    assert_eq!(overdue.len(), 1, "one filing per dialog");
    assert!(overdue.take_due(start + secs(60)).is_empty());
    assert_eq!(overdue.take_due(start + secs(611)).len(), 1);
}

#[test]
fn a_dialog_leaving_the_index_leaves_no_filing_and_a_dropped_one_is_never_returned() {
    let overdue = Overdue::new();
    let start = overdue.origin;
    let unfiled = filed(&overdue, start + secs(30));
    overdue.unfile(&unfiled);
    assert_eq!(overdue.len(), 0);
    // Unfiling twice (a dialog ended after its sweep) is harmless.
    overdue.unfile(&unfiled);

    let dropped = filed(&overdue, start + secs(30));
    drop(dropped);
    assert!(overdue.take_due(start + secs(100)).is_empty());
    assert_eq!(overdue.len(), 0);
}

#[test]
fn a_sender_not_parked_or_not_yet_overdue_is_left_alone() {
    let now = Instant::now();
    // Nothing parked (a sender running): it ends an overdue dialog itself
    // when it has nothing left to send.
    let running = slot(now);
    assert!(!running.wake_if_overdue(now + secs(60)));
    // Not overdue (refreshed since it was filed).
    let refreshed = slot(now + secs(60));
    assert!(!refreshed.wake_if_overdue(now));
}

#[test]
fn a_wrapped_serial_never_files_one_dialog_over_another() {
    use std::sync::atomic::Ordering;
    let overdue = Overdue::new();
    let at = overdue.origin + secs(30);
    overdue.next.store(u32::MAX, Ordering::Relaxed);
    let first = filed(&overdue, at);
    let second = filed(&overdue, at);
    // The serial wrapped to 0; back to where the first was filed, a third
    // dialog of the same second skips both serials taken.
    overdue.next.store(u32::MAX, Ordering::Relaxed);
    let third = filed(&overdue, at);
    assert_eq!(overdue.len(), 3);
    let due = overdue.take_due(at + secs(11));
    assert_eq!(due.len(), 3);
    for slot in [&first, &second, &third] {
        assert!(due.iter().any(|d| Arc::ptr_eq(d, slot)));
    }
}
