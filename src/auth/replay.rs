//! DPoP proof replay: each proof's identity (SHA-256 of its key's thumbprint and its `jti`) is
//! remembered until the proof would be refused as too old anyway; a proof seen before within
//! that time is refused.
//!
//! [`ReplayStore`] is what the decision core asks; [`Replay`] is the store a generation keeps:
//! [`MemoryReplayCache`], the in-process store, bounded in bytes, or [`RedisReplayStore`]
//! (`dpop_replay_store`). Several replicas behind one proxy each remember only the proofs they
//! saw, so a proof replayed to another replica is not caught by the in-process store: the
//! Redis store, shared by the replicas, is what closes that gap. Whichever it is, a proof the
//! store cannot remember (full, unreachable, slow, an error) is refused, never let through.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::telemetry::metrics::StoreFailure;

mod shared;

pub use shared::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_PORT, DEFAULT_TIMEOUT, KEY_PREFIX, Password, RedisReplayStore,
    RedisSettings, RedisTarget,
};

/// Default `dpop_replay_cache_bytes`: 16 MiB, about 130,000 proofs, two seconds over a minute's
/// window at 2,000 DPoP requests a second.
pub const DEFAULT_REPLAY_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// What one remembered proof is counted as, from above: the map's entry (key, expiry, control
/// byte, at most half the buckets empty) and the expiry index's entry (the B-tree's nodes at
/// worst half full).
pub const ENTRY_BYTES: u64 = 128;

/// Why a proof is not accepted by the replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The proof was seen before, and has not expired.
    #[error("proof was already used")]
    Replayed,
    /// The store is full of unexpired proofs (or cannot be reached): the proof cannot be
    /// remembered, so it is refused rather than let through unchecked or an older one forgotten.
    #[error("replay store is full")]
    Unavailable,
    /// The shared store did not answer in time, or answered with an error: whether the proof
    /// was seen is unknown, so it is refused.
    #[error("replay store failed: {0:?}")]
    Store(StoreFailure),
}

/// Where proofs are remembered. `remember` is one atomic check-and-insert per key: of two
/// requests with the same proof at once, exactly one gets `Ok`.
pub trait ReplayStore: Send + Sync + std::fmt::Debug {
    /// Remembers the proof `key` through `expires_at` (Unix seconds), at `now`; `Err(Replayed)`
    /// when it is already remembered and unexpired.
    fn remember(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send;
}

/// Proofs remembered in this process, bounded in bytes: once full of unexpired proofs it
/// refuses new ones ([`ReplayError::Unavailable`]) rather than forget one that could then be
/// replayed. Expired proofs are dropped as new ones arrive.
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    expiries: HashMap<[u8; 32], u64>,
    /// The same entries by expiry, so expired ones are dropped oldest first.
    by_expiry: BTreeSet<(u64, [u8; 32])>,
}

impl MemoryReplayCache {
    /// A cache of at most `max_bytes` (counted as [`ENTRY_BYTES`] a proof).
    pub fn new(max_bytes: u64) -> MemoryReplayCache {
        MemoryReplayCache {
            capacity: usize::try_from(max_bytes / ENTRY_BYTES).unwrap_or(usize::MAX),
            inner: Mutex::default(),
        }
    }

    /// How many proofs it may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many proofs it holds (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().expiries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (every step below is a
        // whole insert or remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The check-and-insert, synchronous (the lock is never held across an await).
    pub fn remember_now(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        let mut inner = self.lock();
        while let Some(&(expiry, old)) = inner.by_expiry.first() {
            // A proof is still accepted at its expiry second itself, so it is kept through it.
            if expiry >= now {
                break;
            }
            inner.by_expiry.pop_first();
            inner.expiries.remove(&old);
        }
        if inner.expiries.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if inner.expiries.len() >= self.capacity {
            return Err(ReplayError::Unavailable);
        }
        inner.expiries.insert(key, expires_at);
        inner.by_expiry.insert((expires_at, key));
        Ok(())
    }
}

impl ReplayStore for MemoryReplayCache {
    fn remember(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send {
        std::future::ready(self.remember_now(key, expires_at, now))
    }
}

/// The replay store a generation keeps: shared by reference, so asking it allocates nothing.
#[derive(Debug, Clone)]
pub enum Replay {
    /// In this process (`dpop_replay_cache_bytes`).
    Memory(Arc<MemoryReplayCache>),
    /// In Redis, shared by the replicas (`dpop_replay_store`).
    Redis(Arc<RedisReplayStore>),
}

impl ReplayStore for Replay {
    async fn remember(&self, key: [u8; 32], expires_at: u64, now: u64) -> Result<(), ReplayError> {
        match self {
            Replay::Memory(cache) => cache.remember_now(key, expires_at, now),
            Replay::Redis(store) => store.remember(key, expires_at, now).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_accepted_once_until_it_expires_and_a_full_cache_refuses() {
        // A dpop_replay_cache_bytes of two proofs.
        let cache = MemoryReplayCache::new(2 * ENTRY_BYTES);
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        // (proof, expires_at, now, what remember says)
        type Step = ([u8; 32], u64, u64, Result<(), ReplayError>);
        let steps: &[Step] = &[
            (a, 100, 10, Ok(())),
            (a, 100, 11, Err(ReplayError::Replayed)),
            (a, 100, 99, Err(ReplayError::Replayed)),
            (a, 100, 100, Err(ReplayError::Replayed)),
            (b, 200, 20, Ok(())),
            // Full of unexpired proofs: refused, and nothing forgotten.
            (c, 300, 30, Err(ReplayError::Unavailable)),
            (a, 100, 30, Err(ReplayError::Replayed)),
            // a has expired: dropped, which makes room for c.
            (c, 300, 101, Ok(())),
            (b, 200, 150, Err(ReplayError::Replayed)),
        ];
        for (i, (key, expires_at, now, want)) in steps.iter().enumerate() {
            assert_eq!(
                cache.remember_now(*key, *expires_at, *now),
                *want,
                "step {i}"
            );
        }
        assert_eq!(cache.len(), 2);
    }
}
