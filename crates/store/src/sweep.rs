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
/// Members of one batch handled at once (round trips in flight on Redis):
/// a subscription's expiry is about six round trips, so on a loaded
/// Redis 32 at once ended only ~3,000 a second; 128 keep pace with 10,000.
pub const CONCURRENCY: usize = 128;
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
    /// (ms) while a pass is working through a backlog; 0 once a pass has
    /// taken everything that was due. A value that stays above a second
    /// means expiry is falling behind.
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
            // Everything due at this claim has been handled.
            stats.oldest_due_age_ms.store(0, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;
    use crate::redis::RedisBackend;
    use crate::testing::RedisServer;

    /// Claims take each due member once, hold it from other claimants, and
    /// release drops only what nobody scheduled again.
    async fn claims_are_exclusive_and_release_keeps_rearmed(backend: &dyn Backend) {
        let schedule = Schedule::Publications;
        for (member, due) in [("a", 100), ("b", 200), ("c", 300), ("later", 10_000)] {
            backend.schedule(schedule, member, due).await.unwrap();
        }
        let first = backend.claim_due(schedule, 1_000, 2, 5_000).await.unwrap();
        assert_eq!(first, vec![("a".to_string(), 100), ("b".to_string(), 200)]);
        // Another sweeper at the same moment gets the rest, not the same.
        let second = backend.claim_due(schedule, 1_000, 10, 5_000).await.unwrap();
        assert_eq!(second, vec![("c".to_string(), 300)]);
        assert!(backend
            .claim_due(schedule, 1_000, 10, 5_000)
            .await
            .unwrap()
            .is_empty());
        // A write re-arms "b" while it is claimed: release keeps it.
        backend.schedule(schedule, "b", 7_000).await.unwrap();
        let members: Vec<String> = ["a", "b", "c"].iter().map(|m| m.to_string()).collect();
        assert_eq!(backend.release(schedule, &members).await.unwrap(), 2);
        let left = backend.due(schedule, u64::MAX, 10).await.unwrap();
        assert_eq!(
            left,
            vec![("b".to_string(), 7_000), ("later".to_string(), 10_000)]
        );
        // A claim whose holder died: due again once the hold lapses.
        backend.schedule(schedule, "d", 400).await.unwrap();
        let held = backend.claim_due(schedule, 1_000, 10, 5_000).await.unwrap();
        assert_eq!(held, vec![("d".to_string(), 400)]);
        let again = backend.claim_due(schedule, 5_001, 10, 9_000).await.unwrap();
        assert_eq!(again.first().map(|(m, _)| m.as_str()), Some("d"));
    }

    #[tokio::test]
    async fn memory_claims_are_exclusive_and_release_keeps_rearmed() {
        claims_are_exclusive_and_release_keeps_rearmed(&MemoryBackend::new()).await;
    }

    #[tokio::test]
    async fn redis_claims_are_exclusive_and_release_keeps_rearmed() {
        let server = RedisServer::start().expect("redis-server");
        let backend = RedisBackend::connect(&server.url()).await.unwrap();
        claims_are_exclusive_and_release_keeps_rearmed(&backend).await;
    }

    #[tokio::test]
    async fn redis_cluster_claims_are_exclusive_and_release_keeps_rearmed() {
        let cluster = crate::testing::RedisCluster::start(3).expect("redis cluster");
        let backend = RedisBackend::connect(&cluster.url()).await.unwrap();
        claims_are_exclusive_and_release_keeps_rearmed(&backend).await;
    }

    /// One pass handles everything due, however many batches that takes,
    /// leaves what is not due, and counts what it did.
    #[tokio::test]
    async fn a_pass_drains_every_due_member_in_batches() {
        let backend = MemoryBackend::new();
        let schedule = Schedule::Subscriptions;
        let due_count = 3 * BATCH + 7;
        for i in 0..due_count {
            backend
                .schedule(schedule, &format!("m{i}"), 1_000 + i as u64)
                .await
                .unwrap();
        }
        backend
            .schedule(schedule, "future", 1_000_000)
            .await
            .unwrap();
        backend
            .schedule(schedule, "refreshed", 1_500)
            .await
            .unwrap();
        let stats = SweepStats::new();
        let seen = std::sync::Mutex::new(Vec::new());
        let drained = drain(
            &backend,
            schedule,
            &stats,
            || 10_000,
            |member, now| {
                assert_eq!(now, 10_000);
                seen.lock().unwrap().push(member.clone());
                let backend = backend.clone();
                async move {
                    if member == "refreshed" {
                        // Handling found it refreshed and re-armed it.
                        backend.schedule(schedule, &member, 50_000).await.unwrap();
                        return Handled::Nothing;
                    }
                    Handled::Removed
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(drained.removed, due_count);
        assert_eq!(drained.handled, due_count + 1);
        assert_eq!(seen.lock().unwrap().len(), due_count + 1);
        let left = backend.due(schedule, u64::MAX, 10).await.unwrap();
        assert_eq!(
            left,
            vec![
                ("refreshed".to_string(), 50_000),
                ("future".to_string(), 1_000_000)
            ]
        );
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.removed_total, due_count as u64);
        assert_eq!(snapshot.sweeps_total, 1);
        assert_eq!(
            snapshot.oldest_due_age_ms, 0,
            "nothing due at the last claim"
        );
    }

    /// A member whose handling failed is retried soon, not dropped.
    #[tokio::test]
    async fn a_failed_member_is_due_again_shortly() {
        let backend = MemoryBackend::new();
        let schedule = Schedule::Bindings;
        backend.schedule(schedule, "x", 500).await.unwrap();
        let stats = SweepStats::new();
        let drained = drain(
            &backend,
            schedule,
            &stats,
            || 1_000,
            |_, _| async { Handled::Failed },
        )
        .await
        .unwrap();
        assert_eq!(drained.failed, 1);
        assert_eq!(
            backend.due(schedule, u64::MAX, 10).await.unwrap(),
            vec![("x".to_string(), 1_000 + RETRY_MS)]
        );
        assert_eq!(stats.snapshot().failed_total, 1);
    }
}
