//! A replica-local cache of membership lookups (`(groupType, member) -> cohort ids`) for the
//! Redis store, so an evaluation of a returning user does not wait for a Redis round trip.
//!
//! Correctness rests on the change signals: every write of a cohort (by any replica) ends with
//! a pub/sub message, and the store clears this cache when it relays one, when it writes or
//! removes a cohort itself, and whenever its change-signal connection is down (the cache is
//! then bypassed, since a missed signal would leave stale entries). A lookup that raced with a
//! clear is not stored: [`MembershipCache::generation`] is read before the Redis query and
//! [`MembershipCache::insert`] drops the answer when a clear happened meanwhile.
//!
//! Bounded by two generations of at most `capacity / 2` entries each: when the young one is
//! full it becomes the old one (the previous old one is dropped); a hit in the old one is
//! moved to the young one. That keeps recently used entries at a cost of O(1) per operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The cached answer of one lookup: the sorted cohort ids.
pub(crate) type Ids = Arc<[String]>;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct MembershipCache {
    /// Most entries of each generation.
    half: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every clear; answers fetched under an older generation are not stored.
    generation: u64,
    /// Whether entries may be stored and served (the change signals are being followed).
    enabled: bool,
    young: HashMap<(String, String), Ids>,
    old: HashMap<(String, String), Ids>,
}

impl MembershipCache {
    /// An empty, disabled cache holding at most `capacity` entries (0 disables it for good).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            half: capacity / 2,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached ids of `member` of `group_type`, if any.
    pub(crate) fn get(&self, group_type: &str, member: &str) -> Option<Ids> {
        if self.half == 0 {
            return None;
        }
        let mut state = self.lock();
        if !state.enabled {
            return None;
        }
        // The tuple key needs owned strings: two small allocations per probe.
        let key = (group_type.to_owned(), member.to_owned());
        if let Some(ids) = state.young.get(&key) {
            return Some(Arc::clone(ids));
        }
        let ids = state.old.remove(&key)?;
        self.insert_young(&mut state, key, Arc::clone(&ids));
        Some(ids)
    }

    /// The current generation; pass it to [`MembershipCache::insert`] with the answer.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Stores an answer fetched after [`MembershipCache::generation`] returned `generation`,
    /// unless the cache was cleared (or disabled) since.
    pub(crate) fn insert(&self, generation: u64, group_type: &str, member: &str, ids: Ids) {
        if self.half == 0 {
            return;
        }
        let mut state = self.lock();
        if !state.enabled || state.generation != generation {
            return;
        }
        self.insert_young(&mut state, (group_type.to_owned(), member.to_owned()), ids);
    }

    fn insert_young(&self, state: &mut State, key: (String, String), ids: Ids) {
        if state.young.len() >= self.half && !state.young.contains_key(&key) {
            state.old = std::mem::take(&mut state.young);
        }
        state.young.insert(key, ids);
    }

    /// Forgets every entry (a cohort changed) and invalidates lookups in flight.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.generation = state.generation.wrapping_add(1);
        // Dropping large maps under the lock is a one-off cost per cohort change.
        state.young = HashMap::new();
        state.old = HashMap::new();
    }

    /// Starts (`true`, once change signals are followed) or stops serving and storing entries;
    /// either way the cache is cleared.
    pub(crate) fn set_enabled(&self, enabled: bool) {
        let mut state = self.lock();
        state.enabled = enabled;
        state.generation = state.generation.wrapping_add(1);
        state.young = HashMap::new();
        state.old = HashMap::new();
    }

    /// Number of entries (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        let state = self.lock();
        state.young.len() + state.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Ids {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn serves_only_while_enabled_and_until_cleared() {
        let cache = MembershipCache::new(8);
        let g = cache.generation();
        cache.insert(g, "User", "u1", ids(&["c1"]));
        assert_eq!(cache.get("User", "u1"), None, "disabled: nothing stored");
        cache.set_enabled(true);
        let g = cache.generation();
        cache.insert(g, "User", "u1", ids(&["c1"]));
        assert_eq!(cache.get("User", "u1"), Some(ids(&["c1"])));
        assert_eq!(cache.get("org", "u1"), None);
        cache.clear();
        assert_eq!(cache.get("User", "u1"), None);
        cache.insert(cache.generation(), "User", "u1", ids(&["c2"]));
        cache.set_enabled(false);
        assert_eq!(cache.get("User", "u1"), None);
    }

    #[test]
    fn an_answer_fetched_before_a_clear_is_not_stored() {
        let cache = MembershipCache::new(8);
        cache.set_enabled(true);
        let before = cache.generation();
        cache.clear();
        cache.insert(before, "User", "u1", ids(&["stale"]));
        assert_eq!(cache.get("User", "u1"), None);
    }

    #[test]
    fn stays_bounded_and_keeps_recently_used_entries() {
        let cache = MembershipCache::new(4);
        cache.set_enabled(true);
        for i in 0..100 {
            let g = cache.generation();
            cache.insert(g, "User", &format!("u{i}"), ids(&[]));
            // u0 is used after every insert, so it survives every generation switch.
            assert!(cache.get("User", "u0").is_some(), "after u{i}");
            assert!(cache.len() <= 4);
        }
        assert!(cache.get("User", "u1").is_none());
    }
}
