//! The expiry sweep shared by the services: drain one schedule in bounded
//! batches until nothing due is left, with statistics an operator can read.
//!
//! A pass ([`drain`]) claims a batch of due members ([`Backend::claim_due`],
//! which moves them out of other sweepers' way for [`CLAIM_LEASE_MS`]),
//! handles the batch with bounded concurrency, drops the members nobody
//! re-armed ([`Backend::release`]) and claims the next batch, until a claim
//! comes back short. The batch size bounds how long one step holds the
//! backend, not how much a pass removes: a pass keeps pace with any rate of
//! expiry the backend can serve. Exactly-once announcements do not depend
//! on the claim — every removal is still a compare-and-swap or a
//! conditional take — the claim only keeps replicas from doing the same
//! work twice.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;

use crate::{Backend, Schedule, StoreError, UnixMillis};

/// Members claimed per step of a pass.
pub const BATCH: usize = 512;
/// Members of one batch handled at once (round trips in flight on Redis).
pub const CONCURRENCY: usize = 32;
/// How long a claim keeps a member from other sweepers. Far above the time
/// a batch takes; a sweeper that dies mid-batch delays those members' expiry
/// by at most this much.
pub const CLAIM_LEASE_MS: u64 = 15_000;
/// When handling a member failed (backend unavailable, contention), it is
/// due again this much later.
pub const RETRY_MS: u64 = 1_000;

/// What handling one due member came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Something expired and was removed (and announced) by this call.
    Removed,
    /// Nothing was due after all (refreshed, already removed by another
    /// sweeper): the member was re-armed or can be dropped.
    Nothing,
    /// Handling failed; the member is retried [`RETRY_MS`] later.
    Failed,
}

/// Counters of one schedule's sweeps, updated as they run. Process-wide
/// statics of this type are what the services expose (`sweeper::stats()`).
#[derive(Debug, Default)]
pub struct SweepStats {
    oldest_due_age_ms: AtomicU64,
    removed_total: AtomicU64,
    handled_total: AtomicU64,
    failed_total: AtomicU64,
    sweeps_total: AtomicU64,
}

/// A copy of [`SweepStats`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepSnapshot {
    /// How overdue the oldest due item was when the latest claim took it
    /// (ms); 0 when the latest claim found nothing due. A value that stays
    /// above the sweep interval means expiry is falling behind.
    pub oldest_due_age_ms: u64,
    /// Items expired (removed and announced) since the process started.
    pub removed_total: u64,
    /// Due schedule members handled, including those that turned out to
    /// be refreshed or already removed.
    pub handled_total: u64,
    /// Members whose handling failed and was retried.
    pub failed_total: u64,
    /// Sweep passes run.
    pub sweeps_total: u64,
}

impl SweepSnapshot {
    /// The sum of two schedules' figures; the age is the larger one.
    pub fn combine(self, other: SweepSnapshot) -> SweepSnapshot {
        SweepSnapshot {
            oldest_due_age_ms: self.oldest_due_age_ms.max(other.oldest_due_age_ms),
            removed_total: self.removed_total + other.removed_total,
            handled_total: self.handled_total + other.handled_total,
            failed_total: self.failed_total + other.failed_total,
            sweeps_total: self.sweeps_total + other.sweeps_total,
        }
    }
}

impl SweepStats {
    /// Zeroed counters (usable in a `static`).
    pub const fn new() -> Self {
        SweepStats {
            oldest_due_age_ms: AtomicU64::new(0),
            removed_total: AtomicU64::new(0),
            handled_total: AtomicU64::new(0),
            failed_total: AtomicU64::new(0),
            sweeps_total: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> SweepSnapshot {
        SweepSnapshot {
            oldest_due_age_ms: self.oldest_due_age_ms.load(Ordering::Relaxed),
            removed_total: self.removed_total.load(Ordering::Relaxed),
            handled_total: self.handled_total.load(Ordering::Relaxed),
            failed_total: self.failed_total.load(Ordering::Relaxed),
            sweeps_total: self.sweeps_total.load(Ordering::Relaxed),
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Items expired by this pass.
    pub removed: usize,
    /// Members handled.
    pub handled: usize,
    /// Members whose handling failed (retried later).
    pub failed: usize,
    /// The most overdue member this pass claimed (ms).
    pub oldest_due_age_ms: u64,
}

impl Drained {
    /// Adds another pass's figures to these.
    pub fn add(&mut self, other: Drained) {
        self.removed += other.removed;
        self.handled += other.handled;
        self.failed += other.failed;
        self.oldest_due_age_ms = self.oldest_due_age_ms.max(other.oldest_due_age_ms);
    }
}

/// Sweeps `schedule` until nothing is due at the time of the last claim:
/// claims [`BATCH`] members at a time and calls `handle(member, now)` on up
/// to [`CONCURRENCY`] of them at once. `clock` gives the current time in
/// ms (each claim reads it afresh, so a long pass also takes what fell due
/// while it ran). Fails only when claiming or releasing fails; a failure
/// of one member is counted and that member retried later.
pub async fn drain<H, Fut>(
    backend: &dyn Backend,
    schedule: Schedule,
    stats: &SweepStats,
    clock: impl Fn() -> UnixMillis,
    handle: H,
) -> Result<Drained, StoreError>
where
    H: Fn(String, UnixMillis) -> Fut,
    Fut: Future<Output = Handled>,
{
    stats.sweeps_total.fetch_add(1, Ordering::Relaxed);
    let mut drained = Drained::default();
    loop {
        let now = clock();
        let claimed = backend
            .claim_due(schedule, now, BATCH, now + CLAIM_LEASE_MS)
            .await?;
        let age = claimed
            .first()
            .map_or(0, |(_, due)| now.saturating_sub(*due));
        stats.oldest_due_age_ms.store(age, Ordering::Relaxed);
        drained.oldest_due_age_ms = drained.oldest_due_age_ms.max(age);
        if claimed.is_empty() {
            return Ok(drained);
        }
        tracing::debug!(
            ?schedule,
            claimed = claimed.len(),
            oldest_due_age_ms = age,
            "sweep batch claimed"
        );
        let full = claimed.len() == BATCH;
        let outcomes: Vec<(String, Handled)> = futures::stream::iter(claimed)
            .map(|(member, _)| {
                let outcome = handle(member.clone(), now);
                async move { (member, outcome.await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut settled = Vec::with_capacity(outcomes.len());
        let mut failed = Vec::new();
        let mut removed = 0;
        for (member, outcome) in outcomes {
            match outcome {
                Handled::Removed => {
                    removed += 1;
                    settled.push(member);
                }
                Handled::Nothing => settled.push(member),
                Handled::Failed => failed.push(member),
            }
        }
        let handled = settled.len() + failed.len();
        drained.add(Drained {
            removed,
            handled,
            failed: failed.len(),
            oldest_due_age_ms: 0,
        });
        stats
            .removed_total
            .fetch_add(removed as u64, Ordering::Relaxed);
        stats
            .handled_total
            .fetch_add(handled as u64, Ordering::Relaxed);
        stats
            .failed_total
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        backend.release(schedule, &settled).await?;
        for member in &failed {
            // Earlier than the claim's lease; a write that re-armed the
            // member meanwhile loses nothing by an early entry.
            backend.schedule(schedule, member, now + RETRY_MS).await?;
        }
        if !full {
            return Ok(drained);
        }
        // Let the rest of the process (and other sweeps) run between batches.
        tokio::task::yield_now().await;
    }
}

/// The shortest pause between two passes of a sweeper that has more due
/// soon: under a steady stream of expiries a pass then takes tens to
/// hundreds of members at once instead of one per wake-up.
pub const MIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a sweeper may sleep after a pass at `now`: until the earliest
/// member of `schedules` falls due, but at least [`MIN_PAUSE`] and at most
/// `interval` (so members scheduled meanwhile by other replicas wait at
/// most `interval`). When the backend cannot say, `interval`.
pub async fn pause(
    backend: &dyn Backend,
    schedules: &[Schedule],
    now: UnixMillis,
    interval: std::time::Duration,
) -> std::time::Duration {
    let mut earliest: Option<UnixMillis> = None;
    for schedule in schedules {
        match backend.due(*schedule, UnixMillis::MAX, 1).await {
            Ok(first) => {
                if let Some((_, due)) = first.first() {
                    earliest = Some(earliest.map_or(*due, |e| e.min(*due)));
                }
            }
            Err(_) => return interval,
        }
    }
    match earliest {
        Some(due) => std::time::Duration::from_millis(due.saturating_sub(now))
            .clamp(MIN_PAUSE, interval.max(MIN_PAUSE)),
        None => interval,
    }
}

/// Counts of a sweeper between two log lines, and when to write the next.
#[derive(Debug)]
pub struct Report<T> {
    since: std::time::Instant,
    /// What the passes since the last line did.
    pub window: T,
    /// Passes that failed since the last line.
    pub errors: usize,
}

/// How often a sweeper logs its counts at info.
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl<T: Default + PartialEq> Default for Report<T> {
    fn default() -> Self {
        Report {
            since: std::time::Instant::now(),
            window: T::default(),
            errors: 0,
        }
    }
}

impl<T: Default + PartialEq> Report<T> {
    /// Takes the window's counts when [`REPORT_EVERY`] has passed since the
    /// last time and there is something to say, and starts a new window.
    pub fn due(&mut self) -> Option<(T, usize)> {
        if self.since.elapsed() < REPORT_EVERY {
            return None;
        }
        self.since = std::time::Instant::now();
        let window = std::mem::take(&mut self.window);
        let errors = std::mem::take(&mut self.errors);
        (window != T::default() || errors > 0).then_some((window, errors))
    }
}
