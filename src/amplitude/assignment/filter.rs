//! The per-process dedup filter: an LRU of assignment digests with a 24-hour TTL (spec §7.5).
//!
//! In memory mode it is the dedup; with Redis it answers repeats without a round trip and is
//! the fallback when Redis fails. Time comes from a [`Clock`] so tests can move it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The time source of assignment timestamps and of the filter's TTL.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `millis`.
    pub fn new(millis: i64) -> Self {
        Self(AtomicI64::new(millis))
    }

    /// Moves the clock forward by `millis`.
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Hashes a digest by its low 64 bits: digests are already uniform XXH3 output, so SipHash
/// over them would only cost time.
#[derive(Debug, Default, Clone, Copy)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for u128 keys (they use `write_u128`); a plain FNV-1a keeps it correct.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, digest: u128) {
        // Truncation intended: the low half of a uniform hash.
        self.0 = digest as u64;
    }
}

/// No slot: the end of the recency list.
const NONE: u32 = u32::MAX;

/// One digest in the slab, linked into the recency list.
#[derive(Debug, Clone, Copy)]
struct Slot {
    digest: u128,
    inserted_millis: i64,
    /// Towards the least recently used end.
    older: u32,
    /// Towards the most recently used end.
    newer: u32,
}

/// An LRU set of 128-bit digests whose entries expire `ttl_millis` after insertion.
///
/// A slab of slots linked in recency order, and a map from digest to slot: a hit moves one slot
/// to the front in O(1) without allocating; at capacity the oldest slot is reused.
#[derive(Debug)]
pub struct LocalFilter {
    capacity: usize,
    ttl_millis: i64,
    index: HashMap<u128, u32, BuildHasherDefault<DigestHasher>>,
    slots: Vec<Slot>,
    /// Most recently used slot.
    newest: u32,
    /// Least recently used slot.
    oldest: u32,
}

impl LocalFilter {
    /// A filter holding at most `capacity` (at least 1, at most `u32::MAX - 1`) digests.
    pub fn new(capacity: usize, ttl_millis: i64) -> Self {
        Self {
            capacity: capacity.clamp(1, (NONE - 1) as usize),
            ttl_millis,
            index: HashMap::default(),
            slots: Vec::new(),
            newest: NONE,
            oldest: NONE,
        }
    }

    /// The reference's `shouldTrack`: true, and the digest is (re)inserted, when it is absent or
    /// expired; false when it was seen within the TTL. Either way it becomes most recent.
    pub fn should_track(&mut self, digest: u128, now_millis: i64) -> bool {
        if let Some(&at) = self.index.get(&digest) {
            self.unlink(at);
            self.push_newest(at);
            let Some(slot) = self.slots.get_mut(at as usize) else {
                return true;
            };
            let expired = now_millis.saturating_sub(slot.inserted_millis) >= self.ttl_millis;
            if expired {
                slot.inserted_millis = now_millis;
            }
            return expired;
        }
        let fresh = Slot {
            digest,
            inserted_millis: now_millis,
            older: NONE,
            newer: NONE,
        };
        let at = if self.slots.len() < self.capacity {
            self.slots.push(fresh);
            // Below `capacity`, which fits in a u32.
            (self.slots.len() - 1) as u32
        } else {
            // Full: the least recently used slot is evicted and reused.
            let at = self.oldest;
            self.unlink(at);
            if let Some(slot) = self.slots.get_mut(at as usize) {
                self.index.remove(&slot.digest);
                *slot = fresh;
            }
            at
        };
        self.index.insert(digest, at);
        self.push_newest(at);
        true
    }

    /// Takes slot `at` out of the recency list.
    fn unlink(&mut self, at: u32) {
        let Some(&Slot { older, newer, .. }) = self.slots.get(at as usize) else {
            return;
        };
        match self.slots.get_mut(older as usize) {
            Some(slot) => slot.newer = newer,
            None => self.oldest = newer,
        }
        match self.slots.get_mut(newer as usize) {
            Some(slot) => slot.older = older,
            None => self.newest = older,
        }
    }

    /// Links slot `at` in as the most recent.
    fn push_newest(&mut self, at: u32) {
        let previous = self.newest;
        if let Some(slot) = self.slots.get_mut(at as usize) {
            slot.older = previous;
            slot.newer = NONE;
        }
        match self.slots.get_mut(previous as usize) {
            Some(slot) => slot.newer = at,
            None => self.oldest = at,
        }
        self.newest = at;
    }

    /// Digests held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn same_digest_is_filtered_for_a_day() {
        let mut filter = LocalFilter::new(10, DAY);
        assert!(filter.should_track(1, 0));
        assert!(!filter.should_track(1, DAY - 1));
        assert!(filter.should_track(1, DAY), "expired after 24 h");
        assert!(!filter.should_track(1, DAY + 1));
        assert!(
            filter.should_track(2, 1),
            "a different assignment is tracked"
        );
    }

    #[test]
    fn capacity_two_evicts_the_least_recently_used() {
        let mut filter = LocalFilter::new(2, DAY);
        assert!(filter.should_track(1, 0));
        assert!(filter.should_track(2, 0));
        assert!(!filter.should_track(1, 0), "reading 1 makes 2 the oldest");
        assert!(filter.should_track(3, 0));
        assert_eq!(filter.len(), 2);
        assert!(!filter.should_track(1, 0));
        assert!(filter.should_track(2, 0), "2 was evicted");
    }

    #[test]
    fn manual_clock_advances() {
        let clock = ManualClock::new(5);
        clock.advance(10);
        assert_eq!(clock.now_millis(), 15);
        assert!(SystemClock.now_millis() > 1_600_000_000_000);
    }

    #[test]
    fn matches_a_naive_lru_on_a_random_workload() {
        // A plain recency list as the oracle, over a pseudo-random mix of repeats and evictions.
        let mut filter = LocalFilter::new(7, 50);
        let mut naive: Vec<(u128, i64)> = Vec::new(); // most recent last
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for step in 0..5000i64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digest = u128::from(state % 12) << 64 | u128::from(state % 12);
            let now = step / 3;
            let expected = match naive.iter().position(|(d, _)| *d == digest) {
                Some(at) => {
                    let (d, inserted) = naive.remove(at);
                    let expired = now - inserted >= 50;
                    naive.push((d, if expired { now } else { inserted }));
                    expired
                }
                None => {
                    naive.push((digest, now));
                    if naive.len() > 7 {
                        naive.remove(0);
                    }
                    true
                }
            };
            assert_eq!(filter.should_track(digest, now), expected, "step {step}");
            assert_eq!(filter.len(), naive.len());
        }
        let mut one = LocalFilter::new(0, DAY);
        assert!(one.should_track(1, 0));
        assert!(one.should_track(2, 0));
        assert!(one.should_track(1, 0), "capacity 0 is 1");
        assert_eq!(one.len(), 1);
    }
}
