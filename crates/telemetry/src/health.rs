//! Readiness of the process: a set of named conditions, each passing or
//! failing with a reason, and the draining flag.
//!
//! A process is ready when every condition passes and it is not draining.
//! `/readyz` reports it, and the gRPC health service follows it (see
//! `runtime::follow_health`): a replica whose Redis is unreachable answers
//! every call UNAVAILABLE, so it must be taken out of the load balancer's
//! rotation instead of staying SERVING. Liveness is separate and always
//! passes while the process answers: restarting a replica because Redis is
//! down would not bring Redis back.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use tokio::sync::watch;

/// The readiness conditions of this process.
pub struct Health {
    conditions: Mutex<BTreeMap<&'static str, Option<String>>>,
    draining: std::sync::atomic::AtomicBool,
    ready: watch::Sender<bool>,
}

/// The process's health.
pub fn health() -> &'static Health {
    static HEALTH: LazyLock<Health> = LazyLock::new(|| Health {
        conditions: Mutex::new(BTreeMap::new()),
        draining: std::sync::atomic::AtomicBool::new(false),
        ready: watch::channel(true).0,
    });
    &HEALTH
}

impl Health {
    /// Marks `condition` as passing.
    pub fn pass(&self, condition: &'static str) {
        self.set(condition, None);
    }

    /// Marks `condition` as failing because of `reason`.
    pub fn fail(&self, condition: &'static str, reason: impl Into<String>) {
        self.set(condition, Some(reason.into()));
    }

    /// The process stops taking new work (SIGTERM): not ready from now on.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.update();
    }

    /// Whether the process is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons: Vec<String> = self
            .lock()
            .iter()
            .filter_map(|(name, failure)| {
                failure.as_ref().map(|reason| format!("{name}: {reason}"))
            })
            .collect();
        if self.draining() {
            reasons.push("draining".to_owned());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Readiness as it changes (true = ready).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn set(&self, condition: &'static str, failure: Option<String>) {
        self.lock().insert(condition, failure);
        self.update();
    }

    fn update(&self) {
        let ready = self.readiness().is_ok();
        self.ready.send_if_modified(|current| {
            let changed = *current != ready;
            *current = ready;
            changed
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Option<String>>> {
        locks::lock(&self.conditions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Health {
        Health {
            conditions: Mutex::new(BTreeMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            ready: watch::channel(true).0,
        }
    }

    #[test]
    fn ready_only_while_every_condition_passes_and_not_draining() {
        let health = fresh();
        let mut changes = health.subscribe();
        assert_eq!(health.readiness(), Ok(()));
        health.fail("backend", "connection refused");
        assert_eq!(
            health.readiness(),
            Err(vec!["backend: connection refused".to_owned()])
        );
        assert!(changes.has_changed().unwrap_or(false));
        assert!(!*changes.borrow_and_update());
        health.pass("backend");
        assert_eq!(health.readiness(), Ok(()));
        assert!(*changes.borrow_and_update());
        health.start_draining();
        assert_eq!(health.readiness(), Err(vec!["draining".to_owned()]));
        assert!(!*changes.borrow_and_update());
    }
}
