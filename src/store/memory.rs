//! The default store: process memory, for a single node.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use super::sorted_members::SortedMembers;
use super::{
    BlobBuilder, Change, CohortBlob, CohortChange, CohortDescription, CohortVersion, CohortWrite,
    CohortWriter, DocumentChange, DocumentStatus, Store, StoreError, StoredDocument, StoredFlags,
};

/// Capacity of the change channels; a subscriber that lags further re-reads everything it serves.
const CHANGE_CHANNEL_CAPACITY: usize = 1024;

/// Default number of live dedup claims kept (the reference's filter capacity).
pub const DEFAULT_DEDUP_CAPACITY: usize = 1 << 20;

/// One stored cohort version.
#[derive(Debug)]
struct Cohort {
    description: CohortDescription,
    members: SortedMembers,
    blob: Bytes,
}

/// Everything but the dedup claims and leases, under one lock.
#[derive(Debug, Default)]
struct Data {
    flags: HashMap<String, StoredFlags>,
    /// Membership lookups search the members of each cohort of the group type: there are few
    /// cohorts and many members, and a per-member index would cost far more memory.
    cohorts: HashMap<String, Cohort>,
    /// Flagsmith environment id -> document.
    documents: HashMap<String, StoredDocument>,
    /// project id -> deployment keys listed for it.
    projects: HashMap<String, Vec<String>>,
}

/// Dedup claims: a map bounded by `capacity`, expired entries dropped oldest first.
#[derive(Debug)]
struct Claims {
    capacity: usize,
    expiry: HashMap<String, Instant>,
    /// Claims in the order they were made; an entry is stale when `expiry` holds another instant.
    order: VecDeque<(Instant, String)>,
}

impl Claims {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            expiry: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Drops the oldest claims while they are expired, or while the map is over capacity.
    fn evict(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let over = self.expiry.len() >= self.capacity;
            let current = self.expiry.get(key) == Some(at);
            if current && !over && *at > now {
                break;
            }
            if current {
                self.expiry.remove(key);
            }
            self.order.pop_front();
        }
    }

    fn claim(&mut self, key: &str, ttl: Duration, now: Instant) -> bool {
        if self.expiry.get(key).is_some_and(|at| *at > now) {
            return false;
        }
        self.evict(now);
        let at = now + ttl;
        self.expiry.insert(key.to_owned(), at);
        self.order.push_back((at, key.to_owned()));
        true
    }
}

/// Keeps everything in mutex-guarded maps. Only sync loops, snapshot rebuilds and the assignment
/// worker touch it, never with a lock held across an await, so plain mutexes are enough.
#[derive(Debug)]
pub struct MemoryStore {
    /// Shared with unfinished cohort writers ([`MemoryCohortWriter`]).
    data: Arc<Mutex<Data>>,
    claims: Mutex<Claims>,
    leases: Mutex<HashMap<String, (String, Instant)>>,
    changes: broadcast::Sender<Change>,
    cohort_changes: broadcast::Sender<CohortChange>,
    document_changes: broadcast::Sender<DocumentChange>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks a mutex, ignoring poisoning: every update below leaves the maps consistent between
/// statements that could panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// An empty store keeping up to [`DEFAULT_DEDUP_CAPACITY`] dedup claims.
    pub fn new() -> Self {
        Self::with_dedup_capacity(DEFAULT_DEDUP_CAPACITY)
    }

    /// An empty store keeping up to `capacity` dedup claims (the oldest go first when full).
    pub fn with_dedup_capacity(capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (cohort_changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (document_changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        Self {
            data: Arc::new(Mutex::new(Data::default())),
            claims: Mutex::new(Claims::new(capacity)),
            leases: Mutex::new(HashMap::new()),
            changes,
            cohort_changes,
            document_changes,
        }
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        lock(&self.data)
    }
}

/// A cohort write into memory: members are collected (memory is where they are kept anyway),
/// then sorted and de-duplicated into [`SortedMembers`] when the write finishes.
struct MemoryCohortWriter {
    data: Arc<Mutex<Data>>,
    cohort_changes: broadcast::Sender<CohortChange>,
    cohort_id: String,
    members: Vec<String>,
}

impl MemoryCohortWriter {
    /// The stored version, when it is as new as `last_modified` or newer.
    fn stale(&self, last_modified: i64) -> Option<CohortDescription> {
        lock(&self.data)
            .cohorts
            .get(&self.cohort_id)
            .filter(|c| c.description.last_modified >= last_modified)
            .map(|c| c.description.clone())
    }
}

#[async_trait]
impl CohortWriter for MemoryCohortWriter {
    async fn add(&mut self, members: Vec<String>) -> Result<(), StoreError> {
        if self.members.is_empty() {
            self.members = members;
        } else {
            self.members.extend(members);
        }
        Ok(())
    }

    async fn finish(
        self: Box<Self>,
        version: CohortVersion,
        mut blob: Box<dyn BlobBuilder>,
    ) -> Result<CohortWrite, StoreError> {
        if let Some(stored) = self.stale(version.last_modified) {
            return Ok(CohortWrite::Stale { stored });
        }
        let writer = *self;
        let cohort_id = writer.cohort_id.clone();
        let members = writer.members;
        // Sorting a million ids and compressing them takes a while: off the async threads.
        let built = tokio::task::spawn_blocking(move || {
            let members = SortedMembers::new(&members);
            let description = CohortDescription {
                cohort_id,
                group_type: version.group_type,
                size: members.len() as u64,
                last_modified: version.last_modified,
            };
            blob.start(&description);
            for member in members.iter() {
                blob.push(member);
            }
            (description, members, blob.finish())
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("cohort write stopped: {error}")))?;
        let (description, new_members, blob) = built;
        let id = description.cohort_id.as_str();
        let (added, removed) = {
            let mut data = lock(&writer.data);
            let counts = match data.cohorts.get(id) {
                Some(previous)
                    if previous.description.last_modified >= description.last_modified =>
                {
                    return Ok(CohortWrite::Stale {
                        stored: previous.description.clone(),
                    });
                }
                Some(previous) if previous.description.group_type == description.group_type => {
                    previous.members.difference_counts(&new_members)
                }
                // A changed group type: every member leaves the old type and joins the new one.
                Some(previous) => (new_members.len(), previous.members.len()),
                None => (new_members.len(), 0),
            };
            data.cohorts.insert(
                id.to_owned(),
                Cohort {
                    description: description.clone(),
                    members: new_members,
                    blob,
                },
            );
            counts
        };
        let _ = writer.cohort_changes.send(CohortChange::Updated {
            cohort_id: id.to_owned(),
            last_modified: description.last_modified,
        });
        Ok(CohortWrite::Written {
            added: added as u64,
            removed: removed as u64,
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_flags(&self, deployment: &str, json: Bytes) -> Result<u64, StoreError> {
        let version = {
            let mut data = self.data();
            let previous = data.flags.get(deployment);
            if let Some(previous) = previous.filter(|p| p.json == json) {
                return Ok(previous.version);
            }
            let version = previous.map_or(1, |p| p.version + 1);
            data.flags
                .insert(deployment.to_owned(), StoredFlags { version, json });
            version
        };
        // No subscriber is not an error: nobody needs to hear about it.
        let _ = self.changes.send(Change::Flags {
            deployment: deployment.to_owned(),
            version,
        });
        Ok(version)
    }

    async fn get_flags(&self, deployment: &str) -> Result<Option<StoredFlags>, StoreError> {
        Ok(self.data().flags.get(deployment).cloned())
    }

    async fn remove_deployment(&self, deployment: &str) -> Result<(), StoreError> {
        let removed = self.data().flags.remove(deployment).is_some();
        if removed {
            let _ = self.changes.send(Change::DeploymentRemoved {
                deployment: deployment.to_owned(),
            });
        }
        Ok(())
    }

    async fn list_deployments(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut list: Vec<(String, u64)> = self
            .data()
            .flags
            .iter()
            .map(|(k, f)| (k.clone(), f.version))
            .collect();
        list.sort();
        Ok(list)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn put_project_deployments(
        &self,
        project: &str,
        deployments: &[String],
    ) -> Result<(), StoreError> {
        self.data()
            .projects
            .insert(project.to_owned(), deployments.to_vec());
        Ok(())
    }

    async fn get_project_deployments(
        &self,
        project: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self.data().projects.get(project).cloned())
    }

    async fn begin_cohort(&self, cohort_id: &str) -> Result<Box<dyn CohortWriter>, StoreError> {
        Ok(Box::new(MemoryCohortWriter {
            data: Arc::clone(&self.data),
            cohort_changes: self.cohort_changes.clone(),
            cohort_id: cohort_id.to_owned(),
            members: Vec::new(),
        }))
    }

    async fn get_cohort(&self, cohort_id: &str) -> Result<Option<CohortDescription>, StoreError> {
        Ok(self
            .data()
            .cohorts
            .get(cohort_id)
            .map(|c| c.description.clone()))
    }

    async fn list_cohorts(&self) -> Result<Vec<CohortDescription>, StoreError> {
        let mut list: Vec<CohortDescription> = self
            .data()
            .cohorts
            .values()
            .map(|c| c.description.clone())
            .collect();
        list.sort_by(|a, b| a.cohort_id.cmp(&b.cohort_id));
        Ok(list)
    }

    async fn get_cohort_members(&self, cohort_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self
            .data()
            .cohorts
            .get(cohort_id)
            .map(|c| c.members.iter().map(str::to_owned).collect()))
    }

    async fn get_cohort_blob(&self, cohort_id: &str) -> Result<Option<CohortBlob>, StoreError> {
        Ok(self.data().cohorts.get(cohort_id).map(|c| CohortBlob {
            description: c.description.clone(),
            blob: c.blob.clone(),
        }))
    }

    async fn get_memberships(
        &self,
        group_type: &str,
        member: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self
            .data()
            .cohorts
            .iter()
            .filter(|(_, c)| c.description.group_type == group_type && c.members.contains(member))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn remove_cohort(&self, cohort_id: &str) -> Result<(), StoreError> {
        let removed = self.data().cohorts.remove(cohort_id).is_some();
        if removed {
            let _ = self.cohort_changes.send(CohortChange::Removed {
                cohort_id: cohort_id.to_owned(),
            });
        }
        Ok(())
    }

    fn subscribe_cohorts(&self) -> broadcast::Receiver<CohortChange> {
        self.cohort_changes.subscribe()
    }

    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let now = Instant::now();
        let mut claims = lock(&self.claims);
        Ok(keys.iter().map(|key| claims.claim(key, ttl, now)).collect())
    }

    async fn put_document(
        &self,
        environment: &str,
        json: Bytes,
        confirmed_at_millis: u64,
    ) -> Result<u64, StoreError> {
        let version = {
            let mut data = self.data();
            let previous = data.documents.get_mut(environment);
            if let Some(previous) = previous {
                if previous.json == json {
                    previous.confirmed_at_millis = confirmed_at_millis;
                    return Ok(previous.version);
                }
                previous.version += 1;
                previous.json = json;
                previous.confirmed_at_millis = confirmed_at_millis;
                previous.version
            } else {
                let document = StoredDocument {
                    version: 1,
                    json,
                    confirmed_at_millis,
                };
                data.documents.insert(environment.to_owned(), document);
                1
            }
        };
        let _ = self.document_changes.send(DocumentChange {
            environment: environment.to_owned(),
            version,
        });
        Ok(version)
    }

    async fn confirm_document(
        &self,
        environment: &str,
        confirmed_at_millis: u64,
    ) -> Result<bool, StoreError> {
        Ok(match self.data().documents.get_mut(environment) {
            Some(document) => {
                document.confirmed_at_millis = confirmed_at_millis;
                true
            }
            None => false,
        })
    }

    async fn get_document(&self, environment: &str) -> Result<Option<StoredDocument>, StoreError> {
        Ok(self.data().documents.get(environment).cloned())
    }

    async fn document_status(
        &self,
        environment: &str,
    ) -> Result<Option<DocumentStatus>, StoreError> {
        Ok(self
            .data()
            .documents
            .get(environment)
            .map(|d| DocumentStatus {
                version: d.version,
                confirmed_at_millis: d.confirmed_at_millis,
            }))
    }

    fn subscribe_documents(&self) -> broadcast::Receiver<DocumentChange> {
        self.document_changes.subscribe()
    }

    async fn try_acquire(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        let free = match leases.get(name) {
            Some((holder, until)) => holder == token || *until <= now,
            None => true,
        };
        if free {
            leases.insert(name.to_owned(), (token.to_owned(), now + ttl));
        }
        Ok(free)
    }

    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        match leases.get_mut(name) {
            Some((holder, until)) if holder == token && *until > now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        match leases.get(name) {
            Some((holder, until)) if holder == token => {
                let live = *until > now;
                leases.remove(name);
                Ok(live)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_bounded_oldest_first() {
        let mut claims = Claims::new(2);
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        assert!(claims.claim("a", ttl, now));
        assert!(claims.claim("b", ttl, now));
        assert!(!claims.claim("a", ttl, now));
        assert!(claims.claim("c", ttl, now));
        assert_eq!(claims.expiry.len(), 2);
        assert!(
            claims.claim("a", ttl, now),
            "a was evicted to make room for c"
        );
        assert!(!claims.claim("c", ttl, now));
    }

    #[test]
    fn expired_claims_are_dropped_and_reclaimable() {
        let mut claims = Claims::new(10);
        let now = Instant::now();
        assert!(claims.claim("a", Duration::from_millis(5), now));
        let later = now + Duration::from_millis(10);
        assert!(claims.claim("a", Duration::from_millis(5), later));
        assert!(claims.claim("b", Duration::from_millis(5), later));
        assert_eq!(
            claims.order.len(),
            2,
            "the stale entry of the first claim is gone"
        );
    }
}
