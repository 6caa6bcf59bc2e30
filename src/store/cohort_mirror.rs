//! A replica-local, read-only mirror of every stored cohort's members for the Redis store, so
//! that a membership lookup (`(groupType, member) -> cohort ids`, on the request path of every
//! evaluation of a cohort-targeting flag) needs no Redis round trip, not even for a user the
//! replica has never seen (the [`super::membership_cache`] only helps returning users).
//!
//! Each cohort is kept as [`SortedMembers`] (sorted ids in one buffer with end offsets, about the
//! id length + 8 bytes per member, the in-memory store's form) with the group type and
//! `lastModified` of the version it was read from. A lookup binary-searches each mirrored cohort
//! of the group type, like [`super::MemoryStore`].
//!
//! # When the mirror answers
//!
//! The mirror knows the stored version of every cohort from the change signals the store
//! already follows (`cohort <lastModified> <id>`, `cohort_removed`, and the catch-up after each
//! (re)subscription, which announces every stored cohort once): [`CohortMirror::expect`] and
//! [`CohortMirror::forget`]. It answers ([`CohortMirror::lookup`] returns `Some`) only while
//! - the change signals are being followed ([`CohortMirror::set_following`]; while the pub/sub
//!   connection is down a missed signal could leave the mirror stale), and
//! - every stored cohort is mirrored at exactly its stored version and no other cohort is.
//!
//! Otherwise the store answers as before (cache, then `SMEMBERS` of the membership index), so
//! answers stay correct while a version loads. Readiness is for all group types at once: the
//! group type of a version announced by a signal is only known once it is read.
//! A version this replica wrote itself is expected as soon as the write returns (read-your-writes
//! without waiting for the signal), and a removed cohort is dropped at once.
//!
//! # Loading
//!
//! One background task ([`run_loader`]) per store reads the cohorts marked to load, one at a
//! time: the description (`GET`), the members set in `SSCAN` pages straight into a
//! [`SortedMembersBuilder`], and the description again. The members set is replaced and the
//! description set by one script (`RENAME` + `SET`), and each written version has a larger
//! `lastModified`, so equal descriptions before and after the scan mean the scan saw one
//! version; otherwise the read is dropped and the cohort read again once its signal arrives.
//! (A removal and re-creation with the same `lastModified` inside one scan would go unnoticed.)
//! The sort runs on a blocking thread; the new version replaces the old one by swapping an
//! immutable view ([`ArcSwap`]), so lookups never wait for a load or a lock. Signals arriving
//! during a load only mark the cohort again (a burst costs one more read, not one per signal),
//! and an expected new version drops the old copy at once, so a cohort is held at most twice
//! (old readers still finishing, new being built) for the time of one swap.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::redis::Inner;
use super::sorted_members::{SortedMembers, SortedMembersBuilder};
use super::StoreError;

/// Pause before reading a cohort again after a failed read.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// One mirrored cohort version.
#[derive(Debug)]
pub(crate) struct MirroredCohort {
    /// The vendor's cohort id.
    pub(crate) cohort_id: String,
    /// The group type of this version.
    pub(crate) group_type: String,
    /// The `lastModified` of this version.
    pub(crate) last_modified: i64,
    /// Its members.
    pub(crate) members: SortedMembers,
}

/// What lookups read: rebuilt (cheaply: `Arc`s) on every change of the state below.
#[derive(Debug, Default)]
struct View {
    /// Whether lookups may be answered from `by_group`.
    ready: bool,
    /// Mirrored cohorts per group type, sorted by id.
    by_group: HashMap<String, Vec<Arc<MirroredCohort>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Whether change signals are being followed.
    following: bool,
    /// The stored version of every cohort, as signalled.
    expected: HashMap<String, i64>,
    /// The mirrored versions.
    loaded: HashMap<String, Arc<MirroredCohort>>,
    /// Cohorts to (re)read.
    dirty: BTreeSet<String>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct CohortMirror {
    /// `false`: the mirror is switched off and never answers nor loads.
    enabled: bool,
    view: ArcSwap<View>,
    state: Mutex<State>,
    /// Wakes the loader when a cohort is marked.
    wake: Notify,
}

impl CohortMirror {
    /// An empty mirror; `enabled: false` switches it off for good.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            view: ArcSwap::from_pointee(View::default()),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sorted ids of the cohorts of `group_type` containing `member`, or `None` when the
    /// mirror cannot answer (see the module documentation).
    pub(crate) fn lookup(&self, group_type: &str, member: &str) -> Option<Vec<String>> {
        let view = self.view.load();
        if !view.ready {
            return None;
        }
        Some(
            view.by_group
                .get(group_type)
                .map_or_else(Vec::new, |cohorts| {
                    cohorts
                        .iter()
                        .filter(|c| c.members.contains(member))
                        .map(|c| c.cohort_id.clone())
                        .collect()
                }),
        )
    }

    /// Whether lookups are answered from the mirror right now.
    pub(crate) fn ready(&self) -> bool {
        self.view.load().ready
    }

    /// The stored version of `cohort_id` is `last_modified`: read it unless it is mirrored.
    pub(crate) fn expect(&self, cohort_id: &str, last_modified: i64) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        state.expected.insert(cohort_id.to_owned(), last_modified);
        let mirrored = state
            .loaded
            .get(cohort_id)
            .is_some_and(|c| c.last_modified == last_modified);
        if !mirrored {
            // The old version is of no use any more: drop it now rather than after the load.
            state.loaded.remove(cohort_id);
            state.dirty.insert(cohort_id.to_owned());
            self.wake.notify_one();
        }
        self.publish(&state);
    }

    /// `cohort_id` is no longer stored.
    pub(crate) fn forget(&self, cohort_id: &str) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        state.expected.remove(cohort_id);
        state.dirty.remove(cohort_id);
        let removed = state.loaded.remove(cohort_id);
        self.publish(&state);
        drop(state);
        drop(removed);
    }

    /// Change signals are (`true`) or are no longer (`false`) being followed.
    pub(crate) fn set_following(&self, following: bool) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        state.following = following;
        self.publish(&state);
    }

    /// Takes the next cohort to read, if any.
    fn next_dirty(&self) -> Option<String> {
        let mut state = self.lock();
        state.dirty.pop_first()
    }

    /// Whether `cohort_id` is marked to be read.
    fn is_marked(&self, cohort_id: &str) -> bool {
        self.lock().dirty.contains(cohort_id)
    }

    /// Marks `cohort_id` to be read again, if it is still expected and not mirrored.
    fn retry(&self, cohort_id: &str) {
        let mut state = self.lock();
        let wanted = state.expected.get(cohort_id).is_some_and(|expected| {
            state
                .loaded
                .get(cohort_id)
                .is_none_or(|c| c.last_modified != *expected)
        });
        if wanted {
            state.dirty.insert(cohort_id.to_owned());
            self.wake.notify_one();
        }
    }

    /// Installs a version read from Redis, unless the cohort was removed or a newer version
    /// is expected meanwhile (its signal marked it again). Returns whether it was installed.
    fn install(&self, cohort: MirroredCohort) -> bool {
        let mut state = self.lock();
        let current = state
            .expected
            .get(&cohort.cohort_id)
            .is_some_and(|expected| cohort.last_modified >= *expected);
        if !current {
            drop(state);
            return false;
        }
        let previous = state
            .loaded
            .insert(cohort.cohort_id.clone(), Arc::new(cohort));
        self.publish(&state);
        drop(state);
        drop(previous);
        true
    }

    /// Rebuilds the view lookups read from `state`.
    fn publish(&self, state: &State) {
        let ready = state.following
            && state.loaded.len() == state.expected.len()
            && state.expected.iter().all(|(id, expected)| {
                state
                    .loaded
                    .get(id)
                    .is_some_and(|c| c.last_modified == *expected)
            });
        let mut by_group: HashMap<String, Vec<Arc<MirroredCohort>>> = HashMap::new();
        for cohort in state.loaded.values() {
            by_group
                .entry(cohort.group_type.clone())
                .or_default()
                .push(Arc::clone(cohort));
        }
        for cohorts in by_group.values_mut() {
            cohorts.sort_by(|a, b| a.cohort_id.cmp(&b.cohort_id));
        }
        self.view.store(Arc::new(View { ready, by_group }));
    }

    /// Mirrored members in all and bytes they take (logs, benchmarks).
    pub(crate) fn size(&self) -> (usize, usize) {
        let state = self.lock();
        state.loaded.values().fold((0, 0), |(members, bytes), c| {
            (members + c.members.len(), bytes + c.members.heap_bytes())
        })
    }
}

/// Reads the marked cohorts into `inner`'s mirror until `cancel`; see the module documentation.
pub(crate) async fn run_loader(inner: Arc<Inner>, cancel: CancellationToken) {
    let mirror = &inner.mirror;
    if !mirror.enabled {
        return;
    }
    loop {
        while let Some(cohort_id) = mirror.next_dirty() {
            let started = std::time::Instant::now();
            let read = tokio::select! {
                _ = cancel.cancelled() => return,
                read = read_cohort(&inner, &cohort_id) => read,
            };
            match read {
                Ok(Some(cohort)) => {
                    let (members, last_modified) = (cohort.members.len(), cohort.last_modified);
                    let bytes = cohort.members.heap_bytes();
                    if mirror.install(cohort) {
                        // One line per cohort version (rare), as the sync logs its downloads.
                        tracing::info!(
                            cohort_id,
                            last_modified,
                            members,
                            bytes,
                            millis = started.elapsed().as_millis() as u64,
                            "mirrored a cohort version"
                        );
                    }
                }
                // Removed, or changed during the read: its signal marks it again (usually it
                // has already); otherwise read again after a pause.
                Ok(None) if mirror.is_marked(&cohort_id) => {}
                Ok(None) => pause_and_retry(mirror, &cohort_id, &cancel).await,
                Err(error) => {
                    tracing::warn!(cohort_id, %error, "could not mirror a cohort; retrying");
                    pause_and_retry(mirror, &cohort_id, &cancel).await;
                }
            }
            if cancel.is_cancelled() {
                return;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = mirror.wake.notified() => {}
        }
    }
}

async fn pause_and_retry(mirror: &CohortMirror, cohort_id: &str, cancel: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(RETRY_PAUSE) => mirror.retry(cohort_id),
    }
}

/// The stored version of a cohort, or `None` when none is stored or it changed during the read.
async fn read_cohort(inner: &Inner, cohort_id: &str) -> Result<Option<MirroredCohort>, StoreError> {
    let Some(before) = inner.cohort_description(cohort_id).await? else {
        return Ok(None);
    };
    let key = inner.keys.cohort_members(cohort_id);
    let mut builder = SortedMembersBuilder::default();
    let mut cursor = 0;
    loop {
        let (next, page) = inner.scan_page::<String>("SSCAN", &key, cursor).await?;
        for member in &page {
            builder.push(member);
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if inner.cohort_description(cohort_id).await?.as_ref() != Some(&before) {
        return Ok(None);
    }
    let members = tokio::task::spawn_blocking(move || builder.finish())
        .await
        .map_err(|error| StoreError::Unavailable(format!("sorting cohort members: {error}")))?;
    Ok(Some(MirroredCohort {
        cohort_id: cohort_id.to_owned(),
        group_type: before.group_type,
        last_modified: before.last_modified,
        members,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cohort(id: &str, group_type: &str, last_modified: i64, ids: &[&str]) -> MirroredCohort {
        let mut builder = SortedMembersBuilder::default();
        for id in ids {
            builder.push(id);
        }
        MirroredCohort {
            cohort_id: id.to_owned(),
            group_type: group_type.to_owned(),
            last_modified,
            members: builder.finish(),
        }
    }

    fn ids(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn answers_only_when_every_expected_version_is_mirrored_and_signals_are_followed() {
        let mirror = CohortMirror::new(true);
        assert_eq!(mirror.lookup("User", "a"), None, "not following yet");
        mirror.set_following(true);
        assert_eq!(mirror.lookup("User", "a"), ids(&[]), "nothing stored");
        mirror.expect("c2", 1);
        mirror.expect("c1", 1);
        assert_eq!(mirror.lookup("User", "a"), None, "c1, c2 not loaded");
        assert_eq!(mirror.next_dirty().as_deref(), Some("c1"));
        assert!(mirror.install(cohort("c1", "User", 1, &["a", "b"])));
        assert_eq!(mirror.lookup("User", "a"), None, "c2 not loaded");
        assert_eq!(mirror.next_dirty().as_deref(), Some("c2"));
        assert_eq!(mirror.next_dirty(), None);
        assert!(mirror.install(cohort("c2", "User", 1, &["a"])));
        assert!(mirror.ready());
        assert_eq!(mirror.lookup("User", "a"), ids(&["c1", "c2"]));
        assert_eq!(mirror.lookup("User", "b"), ids(&["c1"]));
        assert_eq!(mirror.lookup("User", "z"), ids(&[]));
        assert_eq!(mirror.lookup("org", "a"), ids(&[]));
        assert_eq!(mirror.size().0, 3);

        mirror.set_following(false);
        assert_eq!(mirror.lookup("User", "a"), None, "signals not followed");
        mirror.set_following(true);
        assert_eq!(mirror.lookup("User", "a"), ids(&["c1", "c2"]), "kept");
        // The same version again (the signal after this replica's own write) is a no-op.
        mirror.expect("c1", 1);
        assert_eq!(mirror.next_dirty(), None);
        assert_eq!(mirror.lookup("User", "a"), ids(&["c1", "c2"]));
    }

    #[test]
    fn a_new_version_falls_back_until_read_and_group_types_move() {
        let mirror = CohortMirror::new(true);
        mirror.set_following(true);
        mirror.expect("c1", 1);
        mirror.next_dirty();
        assert!(mirror.install(cohort("c1", "User", 1, &["a"])));
        mirror.expect("c1", 2);
        assert_eq!(mirror.lookup("User", "a"), None, "version 2 not read yet");
        assert_eq!(mirror.size(), (0, 0), "version 1 dropped at once");
        assert_eq!(mirror.next_dirty().as_deref(), Some("c1"));
        // A read of the old version that finishes late is not installed.
        assert!(!mirror.install(cohort("c1", "User", 1, &["a"])));
        assert_eq!(mirror.lookup("User", "a"), None);
        assert!(mirror.install(cohort("c1", "org", 2, &["a"])));
        assert_eq!(mirror.lookup("User", "a"), ids(&[]));
        assert_eq!(mirror.lookup("org", "a"), ids(&["c1"]));
        // Empty cohorts are mirrored too.
        mirror.expect("empty", 5);
        mirror.next_dirty();
        assert!(mirror.install(cohort("empty", "org", 5, &[])));
        assert_eq!(mirror.lookup("org", "a"), ids(&["c1"]));
        assert!(mirror.ready());
    }

    #[test]
    fn removals_drop_at_once_and_cancel_reads_in_flight() {
        let mirror = CohortMirror::new(true);
        mirror.set_following(true);
        mirror.expect("c1", 1);
        mirror.expect("c2", 1);
        mirror.next_dirty();
        assert!(mirror.install(cohort("c1", "User", 1, &["a"])));
        assert_eq!(mirror.next_dirty().as_deref(), Some("c2"));
        mirror.forget("c2");
        assert_eq!(mirror.lookup("User", "a"), ids(&["c1"]));
        assert!(!mirror.install(cohort("c2", "User", 1, &["a"])), "removed");
        mirror.retry("c2");
        assert_eq!(mirror.next_dirty(), None, "not wanted any more");
        mirror.forget("c1");
        assert_eq!(mirror.lookup("User", "a"), ids(&[]));
        // A wanted cohort whose read failed is read again.
        mirror.expect("c3", 1);
        assert!(mirror.is_marked("c3"));
        assert_eq!(mirror.next_dirty().as_deref(), Some("c3"));
        assert!(!mirror.is_marked("c3"));
        mirror.retry("c3");
        assert_eq!(mirror.next_dirty().as_deref(), Some("c3"));
    }

    #[test]
    fn a_disabled_mirror_never_answers() {
        let mirror = CohortMirror::new(false);
        mirror.set_following(true);
        mirror.expect("c1", 1);
        assert_eq!(mirror.next_dirty(), None);
        assert_eq!(mirror.lookup("User", "a"), None);
        assert!(!mirror.ready());
    }
}
