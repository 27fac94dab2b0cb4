//! The workspace's one way to take a `std::sync` lock.
//!
//! A lock is poisoned when a thread panicked while holding it. Every
//! critical section in this workspace leaves its data consistent at each
//! step (an insert, a remove, a counter bump, a swap of an `Arc`), so the
//! data behind a poisoned lock is still sound; the panic itself is already
//! reported where it happened. Propagating the poison instead would turn
//! one bug into every later caller failing — an outage of the whole process
//! for a fault in one request. So the guard is recovered, here, once.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering the guard if the lock is poisoned.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `lock`, recovering the guard if the lock is poisoned.
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, recovering the guard if the lock is poisoned.
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Consumes `mutex`, recovering its value if the lock is poisoned.
pub fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex.into_inner().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_serves_its_data() {
        let mutex = Arc::new(Mutex::new(vec![1]));
        let rwlock = Arc::new(RwLock::new(1));
        let (m, r) = (Arc::clone(&mutex), Arc::clone(&rwlock));
        let panicked = std::thread::spawn(move || {
            let _m = m.lock().unwrap();
            let _r = r.write().unwrap();
            panic!("poisoning both locks");
        })
        .join();
        assert!(panicked.is_err());
        assert!(mutex.is_poisoned() && rwlock.is_poisoned());

        lock(&mutex).push(2);
        assert_eq!(*lock(&mutex), [1, 2]);
        *write(&rwlock) += 1;
        assert_eq!(*read(&rwlock), 2);
        let mutex = Arc::try_unwrap(mutex).unwrap();
        assert_eq!(into_inner(mutex), [1, 2]);
    }
}
