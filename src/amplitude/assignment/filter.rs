//! The per-process dedup filter: an LRU of assignment digests with a 24-hour TTL (spec §7.5).
//!
//! In memory mode it is the dedup; with Redis it answers repeats without a round trip and is
//! the fallback when Redis fails. Time comes from a [`Clock`] so tests can move it.

use std::collections::{BTreeMap, HashMap};
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

#[derive(Debug, Clone, Copy)]
struct Entry {
    inserted_millis: i64,
    /// Position in the recency order; larger is more recent.
    stamp: u64,
}

/// An LRU set of 128-bit digests whose entries expire `ttl_millis` after insertion.
#[derive(Debug)]
pub struct LocalFilter {
    capacity: usize,
    ttl_millis: i64,
    entries: HashMap<u128, Entry>,
    recency: BTreeMap<u64, u128>,
    next_stamp: u64,
}

impl LocalFilter {
    /// A filter holding at most `capacity` (at least 1) digests.
    pub fn new(capacity: usize, ttl_millis: i64) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl_millis,
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// The reference's `shouldTrack`: true, and the digest is (re)inserted, when it is absent or
    /// expired; false when it was seen within the TTL. Either way it becomes most recent.
    pub fn should_track(&mut self, digest: u128, now_millis: i64) -> bool {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let fresh = match self.entries.get_mut(&digest) {
            Some(entry) => {
                self.recency.remove(&entry.stamp);
                entry.stamp = stamp;
                let expired = now_millis.saturating_sub(entry.inserted_millis) >= self.ttl_millis;
                if expired {
                    entry.inserted_millis = now_millis;
                }
                expired
            }
            None => {
                self.entries.insert(
                    digest,
                    Entry {
                        inserted_millis: now_millis,
                        stamp,
                    },
                );
                true
            }
        };
        self.recency.insert(stamp, digest);
        self.evict();
        fresh
    }

    /// Drops least recently used digests beyond the capacity.
    fn evict(&mut self) {
        while self.entries.len() > self.capacity {
            let Some((_, digest)) = self.recency.pop_first() else {
                return;
            };
            self.entries.remove(&digest);
        }
    }

    /// Digests held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
}
