//! A dialog's latest signal, and its NOTIFY sender while it has nothing to
//! send.
//!
//! A dialog spends nearly all its life idle, so it holds no task while it
//! waits: its sender is parked in the slot, and whatever changes the signal
//! (a new state, a refresh, a termination, a hand-over) starts a task that
//! runs the sender until it has nothing left to tell, then parks it again.
//! Expiry needs no timer per dialog either: [`Overdue`] files each dialog
//! under the second its expiry and grace run out, and
//! [`super::Dialogs::wake_overdue`] starts the senders of the dialogs filed
//! under seconds that passed, which end them if no refresh moved their
//! expiry meanwhile. (An idle dialog used to keep a task of its own and a
//! `tokio::sync::watch` channel: about 1.8 KB of its 4.2 KB at the edge,
//! `bench/heap.sh`.)
//!
//! The hand-off is race-free because both sides take the slot's lock: a
//! change bumps `changes` and, if the sender is parked, starts it; a sender
//! parks only if `changes` is still what it last read, and otherwise goes
//! on with the newer signal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use contract::DialogRecord;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sender::{run_sender, Sender, EXPIRY_GRACE};
use super::Signal;
use crate::Edge;

#[cfg(test)]
mod tests;

/// A sender at rest, with what it needs to run again.
pub(super) struct Parked {
    pub(super) edge: Arc<Edge>,
    pub(super) sender: Sender,
}

struct Inner {
    signal: Signal,
    /// Bumped by every change of `signal`.
    changes: u32,
    /// The sender, while no task runs it.
    parked: Option<Parked>,
    /// The task running the sender, if one was started and has not parked
    /// (awaited when the dialog is handed over).
    running: Option<JoinHandle<()>>,
    /// Where [`Overdue`] holds the dialog.
    filing: Option<Filing>,
}

/// One dialog's signal and sender (see the module documentation), and what
/// the index reads of the sender without waking it.
pub(super) struct Slot {
    inner: Mutex<Inner>,
    /// Last CSeq used for a NOTIFY (read when the dialog's record is
    /// restored, see [`super::Dialogs::held`]).
    pub(super) cseq: AtomicU32,
    /// What the watcher last acknowledged ([`super::sender::Acknowledged`]), written by
    /// the sender and read when the dialog is handed over.
    pub(super) acknowledged: AtomicU64,
}

impl Slot {
    /// A slot whose sender starts at once, with `signal`'s state to tell.
    /// `cseq` is the last CSeq used, `acknowledged` an [`super::sender::Acknowledged`]
    /// word; `record` is the dialog's record, handed to the first run so it
    /// need not decode what was just encoded.
    pub(super) fn start(
        signal: Signal,
        parked: Parked,
        cseq: u32,
        acknowledged: u64,
        record: Box<DialogRecord>,
    ) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            cseq: AtomicU32::new(cseq),
            acknowledged: AtomicU64::new(acknowledged),
            inner: Mutex::new(Inner {
                signal,
                changes: 0,
                parked: None,
                running: None,
                filing: None,
            }),
        });
        {
            let mut inner = locks::lock(&slot.inner);
            Self::run(&slot, &mut inner, parked, Some(record));
        }
        slot
    }

    /// Starts the sender's task; called under the slot's lock, so the task
    /// cannot park before its handle is recorded.
    fn run(
        slot: &Arc<Slot>,
        inner: &mut Inner,
        parked: Parked,
        at_hand: Option<Box<DialogRecord>>,
    ) {
        inner.running = Some(tokio::spawn(run_sender(slot.clone(), parked, at_hand)));
    }

    /// Changes the signal; a parked sender is started.
    pub(super) fn send_modify(self: &Arc<Self>, modify: impl FnOnce(&mut Signal)) {
        self.send_if_modified(|s| {
            modify(s);
            true
        });
    }

    /// Changes the signal if `modify` says it did (returns true); a parked
    /// sender is then started. Returns what `modify` returned.
    pub(super) fn send_if_modified(
        self: &Arc<Self>,
        modify: impl FnOnce(&mut Signal) -> bool,
    ) -> bool {
        let mut inner = locks::lock(&self.inner);
        if !modify(&mut inner.signal) {
            return false;
        }
        inner.changes = inner.changes.wrapping_add(1);
        if let Some(parked) = inner.parked.take() {
            Self::run(self, &mut inner, parked, None);
        }
        true
    }

    /// Reads the signal.
    pub(super) fn read<T>(&self, read: impl FnOnce(&Signal) -> T) -> T {
        read(&locks::lock(&self.inner).signal)
    }

    /// The signal as it is now, and the count of changes it reflects.
    pub(super) fn snapshot(&self) -> (Signal, u32) {
        let inner = locks::lock(&self.inner);
        (inner.signal.clone(), inner.changes)
    }

    /// Parks the sender unless the signal changed since `seen`; gives it
    /// back if it did (the caller goes on with the newer signal).
    pub(super) fn park(&self, seen: u32, parked: Parked) -> Result<(), Parked> {
        let mut inner = locks::lock(&self.inner);
        if inner.changes != seen {
            return Err(parked);
        }
        inner.parked = Some(parked);
        // Dropping its own handle detaches the task, which ends now.
        inner.running = None;
        Ok(())
    }

    /// The next CSeq of a NOTIFY of the dialog.
    pub(super) fn next_cseq(&self) -> u32 {
        self.cseq.fetch_add(1, Ordering::SeqCst).wrapping_add(1)
    }

    /// The running sender's task, if any (a dialog being handed over).
    pub(super) fn take_running(&self) -> Option<JoinHandle<()>> {
        locks::lock(&self.inner).running.take()
    }

    /// Starts a parked sender whose dialog is past its expiry and grace:
    /// it ends the dialog. True if it was started.
    pub(super) fn wake_if_overdue(self: &Arc<Self>, now: Instant) -> bool {
        let mut inner = locks::lock(&self.inner);
        if inner.parked.is_none() || inner.signal.expires_at + EXPIRY_GRACE > now {
            return false;
        }
        if let Some(parked) = inner.parked.take() {
            Self::run(self, &mut inner, parked, None);
        }
        true
    }
}

/// Dialogs by the second their expiry and grace run out (seconds since the
/// edge started): each dialog is filed when it starts, filed again (its old
/// filing removed) at every refresh, and taken out when it leaves the
/// index; a sweep looks only at the dialogs filed under seconds that
/// passed, instead of at every dialog. A filing holds a weak reference, so
/// it never keeps a dialog alive.
pub(super) struct Overdue {
    origin: Instant,
    next: AtomicU32,
    filed: Mutex<BTreeMap<Filing, Weak<Slot>>>,
}

/// Where a dialog is filed: its second (since the edge started), and a
/// serial that tells dialogs of the same second apart. 32 bits each keep
/// the slot small; the serial wraps, so filing skips any serial taken in
/// that second.
type Filing = (u32, u32);

impl Overdue {
    pub(super) fn new() -> Self {
        Overdue {
            origin: Instant::now(),
            next: AtomicU32::new(0),
            filed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Files `slot` under the second in which `expires_at` plus the grace
    /// has passed, replacing its earlier filing.
    pub(super) fn file(&self, slot: &Arc<Slot>, expires_at: Instant) {
        let due = expires_at + EXPIRY_GRACE;
        // Rounded up: a sweep in that second finds it due.
        let second = u32::try_from(due.saturating_duration_since(self.origin).as_secs() + 1)
            .unwrap_or(u32::MAX);
        // The slot's filing changes under this lock, so two refreshes at
        // once cannot leave a filing behind.
        let mut filed = locks::lock(&self.filed);
        let mut filing = (second, self.next.fetch_add(1, Ordering::Relaxed));
        while filed.contains_key(&filing) {
            filing.1 = self.next.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(old) = locks::lock(&slot.inner).filing.replace(filing) {
            filed.remove(&old);
        }
        filed.insert(filing, Arc::downgrade(slot));
    }

    /// Takes `slot`'s filing out (its dialog left the index).
    pub(super) fn unfile(&self, slot: &Slot) {
        let mut filed = locks::lock(&self.filed);
        if let Some(old) = locks::lock(&slot.inner).filing.take() {
            filed.remove(&old);
        }
    }

    /// The dialogs filed under seconds up to `now`, taken out.
    pub(super) fn take_due(&self, now: Instant) -> Vec<Arc<Slot>> {
        let second = now.saturating_duration_since(self.origin).as_secs();
        let mut filed = locks::lock(&self.filed);
        let Ok(next) = u32::try_from(second + 1) else {
            // 136 years after the edge started: everything filed is due.
            return std::mem::take(&mut *filed)
                .into_values()
                .filter_map(|weak| weak.upgrade())
                .collect();
        };
        let later = filed.split_off(&(next, 0));
        let due = std::mem::replace(&mut *filed, later);
        drop(filed);
        due.into_values()
            .filter_map(|weak| weak.upgrade())
            .collect()
    }

    /// Filings held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        locks::lock(&self.filed).len()
    }
}
