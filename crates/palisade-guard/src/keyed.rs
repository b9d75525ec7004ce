//! Keyed rate limiters with a hard cap on the number of keys.
//!
//! `governor`'s keyed limiters do the GCRA arithmetic; this module owns the state store behind
//! them, because governor's own stores grow without bound and cannot answer "is this key
//! already tracked?". [`BoundedStore`] is a `HashMap<K, tat>` behind a mutex that:
//!
//! - admits a new key only while below its cap (`limits.max_tracked_*`);
//! - when full, first runs governor's `retain_recent` (drops every key whose state is
//!   indistinguishable from a fresh one, i.e. idle for a whole burst period), at most once per
//!   [`SWEEP_MIN_INTERVAL`] so a flood of new keys cannot make every call O(n);
//! - if still full, refuses the new key ([`Check::Full`]) instead of evicting an active one:
//!   eviction would hand the evicted (possibly hostile) key a fresh burst.
//!
//! The map uses std's randomly seeded SipHash, so peers cannot pick keys that collide.
//! The common case (a known key) costs one mutex lock and one hash lookup and allocates
//! nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

/// Shortest time between two full sweeps of one map triggered by it being full.
pub const SWEEP_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Approximate heap bytes per tracked key beyond the key and value themselves: hashbrown's
/// control byte plus the load-factor slack (7/8 full at best, 7/16 right after a resize).
pub const MAP_OVERHEAD_BYTES_PER_KEY: usize = 2;

/// Result of a limiter check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Within the rate.
    Allowed,
    /// Over the rate.
    Denied,
    /// The key is new and the map is full of active keys.
    Full,
}

struct StoreInner<K> {
    map: Mutex<HashMap<K, u64>>,
    /// Mirror of `map.len()`, so the common "below cap" case needs no extra lock.
    len: AtomicUsize,
}

/// governor state store with a key cap; shared between the limiter and the guard.
pub(crate) struct BoundedStore<K>(Arc<StoreInner<K>>);

impl<K> Clone for BoundedStore<K> {
    fn clone(&self) -> Self {
        BoundedStore(self.0.clone())
    }
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    fn new() -> Self {
        BoundedStore(Arc::new(StoreInner { map: Mutex::new(HashMap::new()), len: AtomicUsize::new(0) }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, u64>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or assignment), so a poisoned lock is safe to keep using.
        self.0.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }

    fn tat(&self, key: &K) -> Option<u64> {
        self.lock().get(key).copied()
    }

    fn remove(&self, key: &K) -> bool {
        let mut m = self.lock();
        let removed = m.remove(key).is_some();
        self.0.len.store(m.len(), Ordering::Relaxed);
        removed
    }

    fn capacity(&self) -> usize {
        self.lock().capacity()
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut m = self.lock();
        if let Some(tat) = m.get_mut(key) {
            let (out, next) = f(Some(Nanos::new(*tat)))?;
            *tat = next.as_u64();
            return Ok(out);
        }
        let (out, next) = f(None)?;
        m.insert(key.clone(), next.as_u64());
        self.0.len.store(m.len(), Ordering::Relaxed);
        Ok(out)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut m = self.lock();
        let floor = drop_below.as_u64();
        m.retain(|_, tat| *tat >= floor);
        self.0.len.store(m.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        let mut m = self.lock();
        // Shrinking rehashes everything; only worth it when most of the table is empty.
        if m.capacity() > 64 && m.len() < m.capacity() / 4 {
            m.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.0.len.load(Ordering::Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Limiter<K> =
    RateLimiter<K, BoundedStore<K>, DefaultClock, NoOpMiddleware<<DefaultClock as Clock>::Instant>>;

/// A snapshot of one key's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BucketState {
    /// Units that could be taken right now.
    pub available: u32,
    /// Bucket capacity (the burst).
    pub burst: u32,
    /// Sustained rate, units per second.
    pub per_sec: u32,
}

/// One keyed GCRA limiter over a [`BoundedStore`].
pub(crate) struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    store: BoundedStore<K>,
    cap: usize,
    per_sec: u32,
    burst: u32,
    /// Start of the limiter's time frame, captured just before governor captures its own
    /// (nanoseconds earlier), used only to report bucket states.
    clock: DefaultClock,
    frame_start: <DefaultClock as Clock>::Instant,
    created: Instant,
    last_sweep_ms: AtomicU64,
    sweeps: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_sec` units per second with a bucket of `burst` units, at most `cap` keys.
    pub(crate) fn new(per_sec: u32, burst: u32, cap: usize) -> KeyedLimiter<K> {
        let per = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let b = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let store = BoundedStore::new();
        let clock = DefaultClock::default();
        let frame_start = clock.now();
        let limiter = RateLimiter::new(Quota::per_second(per).allow_burst(b), store.clone(), clock.clone());
        KeyedLimiter {
            limiter,
            store,
            cap: cap.max(1),
            per_sec: per.get(),
            burst: b.get(),
            clock,
            frame_start,
            created: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
        }
    }

    /// Takes `n` units for `key`. `n == 0` always passes.
    pub(crate) fn check(&self, key: &K, n: u32) -> Check {
        let Some(n) = NonZeroU32::new(n) else { return Check::Allowed };
        if !self.admits(key) {
            return Check::Full;
        }
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(())) => Check::Allowed,
            // Err(InsufficientCapacity): `n` exceeds the burst; config validation prevents it
            // for the built-in charges, and denying is the safe answer anyway.
            Ok(Err(_)) | Err(_) => Check::Denied,
        }
    }

    /// Whether `key` may be (or already is) tracked.
    fn admits(&self, key: &K) -> bool {
        if self.store.0.len.load(Ordering::Relaxed) < self.cap || self.store.contains(key) {
            return true;
        }
        let now_ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(SWEEP_MIN_INTERVAL.as_millis()).unwrap_or(100);
        if now_ms.saturating_sub(last) >= interval
            && self.last_sweep_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.prune();
        }
        self.store.0.len.load(Ordering::Relaxed) < self.cap
    }

    /// Drops idle keys (governor `retain_recent`) and returns memory when mostly empty.
    pub(crate) fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets `key` (e.g. the peer disconnected and its state is idle anyway).
    #[allow(dead_code)]
    pub(crate) fn forget(&self, key: &K) -> bool {
        self.store.remove(key)
    }

    /// Number of tracked keys.
    pub(crate) fn len(&self) -> usize {
        self.store.0.len.load(Ordering::Relaxed)
    }

    /// The key cap.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Estimated heap bytes of the key map.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.capacity() * (std::mem::size_of::<(K, u64)>() + MAP_OVERHEAD_BYTES_PER_KEY)
    }

    /// The bucket of `key` now (a fresh bucket for untracked keys).
    pub(crate) fn state(&self, key: &K) -> BucketState {
        let full = BucketState { available: self.burst, burst: self.burst, per_sec: self.per_sec };
        let Some(tat) = self.store.tat(key) else { return full };
        let now = self.clock.now().duration_since(self.frame_start).as_u64();
        let t = (1_000_000_000 / u64::from(self.per_sec)).max(1);
        // GCRA: the bucket is full when tat <= now; each unit taken pushes tat forward by t.
        let used = tat.saturating_sub(now).div_ceil(t);
        let available = u64::from(self.burst).saturating_sub(used);
        BucketState { available: u32::try_from(available).unwrap_or(self.burst), ..full }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_rate_per_key() {
        let l = KeyedLimiter::<u32>::new(1, 5, 100);
        for _ in 0..5 {
            assert_eq!(l.check(&1, 1), Check::Allowed);
        }
        assert_eq!(l.check(&1, 1), Check::Denied);
        // Another key has its own bucket.
        assert_eq!(l.check(&2, 1), Check::Allowed);
        assert_eq!(l.state(&1).available, 0);
        assert_eq!(l.state(&2).available, 4);
        assert_eq!(l.state(&3).available, 5);
        // Weighted charges and charges above the burst.
        assert_eq!(l.check(&4, 5), Check::Allowed);
        assert_eq!(l.check(&5, 6), Check::Denied);
        assert_eq!(l.check(&6, 0), Check::Allowed);
    }

    #[test]
    fn cap_holds_and_idle_keys_are_swept() {
        // 1000/s with burst 1: a key is idle again 1 ms after its last use.
        let l = KeyedLimiter::<u32>::new(1000, 1, 50);
        for k in 0..50 {
            assert_eq!(l.check(&k, 1), Check::Allowed);
        }
        assert_eq!(l.len(), 50);
        // Active keys fill the map: a new key is refused, known keys still work.
        let mut full = 0;
        for k in 50..1000 {
            if l.check(&k, 1) == Check::Full {
                full += 1;
            }
            assert!(l.len() <= 50);
        }
        assert!(full > 0);
        std::thread::sleep(SWEEP_MIN_INTERVAL + Duration::from_millis(20));
        // Everything is idle now: the next new key triggers a sweep and gets in.
        assert_eq!(l.check(&5000, 1), Check::Allowed);
        assert!(l.len() <= 2, "len {}", l.len());
        assert!(l.memory_bytes() > 0);
    }
}
