//! The run's time base: nanoseconds since one start instant shared by every
//! part of the process, so a send time written into a document by the
//! publisher can be compared with a receive time taken by a watcher.

use std::time::{Duration, Instant};

/// The shared start instant.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// Nanoseconds from the start to `at` (0 for instants before the start).
    pub fn ns_at(&self, at: Instant) -> u64 {
        // u64 nanoseconds cover 584 years; saturate rather than wrap beyond.
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the start.
    pub fn instant(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_grow_and_round_trip() {
        let clock = Clock::start();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert_eq!(clock.ns_at(clock.instant(1_234_567)), 1_234_567);
    }
}
