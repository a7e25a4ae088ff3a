//! Time and memory for replay protection: the verifier's clock and the store
//! of nonces already seen.
//!
//! The daemon brings a store that keeps nonces on disk until they expire;
//! [`MemoryNonceStore`] serves tests and senders.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::names::Nonce;

/// The error type a nonce store may fail with (disk full, corrupt file...).
pub type NonceStoreError = Box<dyn std::error::Error + Send + Sync>;

/// The verifier's source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in Unix seconds.
    fn now(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
    }
}

/// A clock that says what it is told, for tests.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    /// A clock stopped at `now`.
    pub fn new(now: u64) -> Self {
        FixedClock(AtomicU64::new(now))
    }

    /// Moves the clock to `now`.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Nonces already used, each kept until it can no longer be valid.
pub trait NonceStore {
    /// Whether `nonce` was recorded before.
    fn contains(&self, nonce: &Nonce) -> Result<bool, NonceStoreError>;

    /// Records `nonce` until `keep_until` (Unix seconds). Returns `false`,
    /// changing nothing, when it was already there (a concurrent replay): the
    /// caller must reject.
    fn insert(&mut self, nonce: &Nonce, keep_until: u64) -> Result<bool, NonceStoreError>;
}

/// Nonces in memory, forgotten when the process ends.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    keep_until: HashMap<Nonce, u64>,
}

impl MemoryNonceStore {
    /// Forgets the nonces that expired before `now`.
    pub fn prune(&mut self, now: u64) {
        self.keep_until.retain(|_, until| *until >= now);
    }

    /// How many nonces are kept.
    pub fn len(&self) -> usize {
        self.keep_until.len()
    }

    /// Whether no nonce is kept.
    pub fn is_empty(&self) -> bool {
        self.keep_until.is_empty()
    }
}

impl NonceStore for MemoryNonceStore {
    fn contains(&self, nonce: &Nonce) -> Result<bool, NonceStoreError> {
        Ok(self.keep_until.contains_key(nonce))
    }

    fn insert(&mut self, nonce: &Nonce, keep_until: u64) -> Result<bool, NonceStoreError> {
        match self.keep_until.entry(nonce.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(keep_until);
                Ok(true)
            }
        }
    }
}
