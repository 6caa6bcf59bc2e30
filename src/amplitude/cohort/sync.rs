//! The cohort sync loop (spec §6.5-6.6, with the reference's bugs fixed).
//!
//! Which cohorts to sync is derived from the registry's compiled snapshots, so a new flag
//! version that targets a new cohort is noticed as soon as it is served. Every
//! `cohortSyncIntervalMillis` all targeted cohorts are refreshed (`lastModified` makes an
//! unchanged one cost a 204) and those no longer targeted are removed; in between, the loop
//! wakes on flag changes and on a short tick to pick up newly targeted cohorts.
//!
//! Replicas sharing Redis coordinate per cohort with a lease (`cohort_loading:{id}`) held with
//! this process's random token for longer than the interval and renewed on every refresh: the
//! holder is the one replica that downloads (and removes) that cohort, the others read it from
//! the store. A lease of a stopped replica expires and another one takes over.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::upstream::{CohortClient, CohortError, Download, Downloaded};
use super::{blob, Cohorts, SyncStatus};
use crate::amplitude::registry::Registry;
use crate::metrics as m;
use crate::store::{new_token, CohortVersion, CohortWrite, Store, StoreError};

/// How often the loop looks for newly targeted cohorts between full refreshes.
const TARGET_CHECK: Duration = Duration::from_millis(250);
/// Extra lease time beyond the interval, so a slow download does not lose the lease.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Why one cohort could not be synced.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Download(#[from] CohortError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no configured project has apiKey and secretKey")]
    NoCredentials,
    #[error("the cohort API said not modified, but no version is stored")]
    NothingStored,
}

/// The loop's state; see the module documentation.
pub struct CohortSync {
    cohorts: Arc<Cohorts>,
    registry: Arc<Registry>,
    client: CohortClient,
    interval: Duration,
    token: String,
    /// Which project's credentials last worked for a cohort (index into the credentials).
    owners: HashMap<String, usize>,
    /// Cohorts whose lease this process holds.
    leases: BTreeSet<String>,
}

impl CohortSync {
    /// A sync refreshing every `interval`.
    pub fn new(
        cohorts: Arc<Cohorts>,
        registry: Arc<Registry>,
        client: CohortClient,
        interval: Duration,
    ) -> Self {
        Self {
            cohorts,
            registry,
            client,
            interval,
            token: new_token(),
            owners: HashMap::new(),
            leases: BTreeSet::new(),
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.cohorts.store()
    }

    /// Runs until `cancel`, then gives up the leases it holds.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut flag_changes = self.store().subscribe();
        let mut next_full = Instant::now();
        loop {
            let full = Instant::now() >= next_full;
            if full {
                next_full = Instant::now() + self.interval;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.pass(full) => {}
            }
            let wait = TARGET_CHECK.min(next_full.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = flag_changes.recv() => {
                    // Let the registry compile the new flags before reading its snapshots.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.release_leases().await;
    }

    /// One pass: syncs targeted cohorts (all of them when `full`, otherwise those not synced
    /// yet), and on a full pass removes stored cohorts nothing targets any more.
    async fn pass(&mut self, full: bool) {
        let targeted = self.targeted();
        let ids: BTreeSet<String> = targeted.keys().cloned().collect();
        self.cohorts.retain(&ids);
        for id in &ids {
            if full || self.cohorts.status(id).is_none() {
                self.sync_logged(id).await;
            }
        }
        if full {
            self.remove_untargeted(&ids).await;
        }
    }

    /// Cohort id -> group type, over every served deployment.
    fn targeted(&self) -> BTreeMap<String, String> {
        let mut targeted = BTreeMap::new();
        for (_, snapshot) in self.registry.snapshots() {
            for (group_type, ids) in snapshot.flags.cohort_ids_by_group_type() {
                for id in ids {
                    targeted.insert(id.clone(), group_type.clone());
                }
            }
        }
        targeted
    }

    async fn sync_logged(&mut self, id: &str) {
        match self.sync_one(id).await {
            Ok(Some(status)) => self.cohorts.set_status(id, status),
            Ok(None) => {} // another replica holds the lease and has not stored it yet
            Err(error) => {
                metrics::counter!(m::COHORT_DOWNLOAD_FAILURE).increment(1);
                if matches!(error, SyncError::Download(CohortError::TooLarge { .. })) {
                    metrics::counter!(m::COHORT_TOO_LARGE).increment(1);
                }
                tracing::error!(cohort = id, %error, "cohort download/save failed; flags targeting it are served without it");
                self.cohorts
                    .set_status(id, SyncStatus::Failed(error.to_string()));
            }
        }
    }

    /// Syncs one cohort if this process holds (or takes) its lease. `Ok(None)`: another
    /// replica holds it and the cohort is not in the store yet.
    async fn sync_one(&mut self, id: &str) -> Result<Option<SyncStatus>, SyncError> {
        if self.cohorts.credentials().is_empty() {
            return Err(SyncError::NoCredentials);
        }
        if !self.take_lease(id).await? {
            let stored = self.store().get_cohort(id).await?;
            return Ok(stored.map(|_| SyncStatus::Loaded));
        }
        let stored = self.store().get_cohort(id).await?;
        metrics::counter!(m::COHORT_DOWNLOAD).increment(1);
        let download = self
            .download(id, stored.as_ref().map(|d| d.last_modified))
            .await?;
        match download {
            Download::NotModified if stored.is_some() => {
                tracing::debug!(cohort = id, "cohort not modified");
                Ok(Some(SyncStatus::Loaded))
            }
            Download::NotModified => Err(SyncError::NothingStored),
            Download::Modified(downloaded) => {
                self.ingest(downloaded).await?;
                Ok(Some(SyncStatus::Loaded))
            }
        }
    }

    /// Downloads with the credentials that worked last, then the other projects' in order
    /// while the answer is "no access" (the store does not record which project owns a cohort).
    async fn download(
        &mut self,
        id: &str,
        stored_last_modified: Option<i64>,
    ) -> Result<Download, SyncError> {
        let credentials = self.cohorts.credentials().to_vec();
        let first = self.owners.get(id).copied().unwrap_or(0);
        let order = std::iter::once(first).chain((0..credentials.len()).filter(|i| *i != first));
        let mut last_error = SyncError::NoCredentials;
        for index in order {
            let Some(project) = credentials.get(index) else {
                continue;
            };
            let store = Arc::clone(self.store());
            match self
                .client
                .download(id, project, stored_last_modified, store.as_ref())
                .await
            {
                Ok(download) => {
                    self.owners.insert(id.to_owned(), index);
                    return Ok(download);
                }
                Err(error) if error.is_access_denied() => last_error = error.into(),
                Err(error) => return Err(error.into()),
            }
        }
        Err(last_error)
    }

    /// Finishes the store write a download streamed its members into: the store diffs and
    /// indexes them, and builds the blob from the distinct members it holds.
    async fn ingest(&self, downloaded: Downloaded) -> Result<(), SyncError> {
        let Downloaded {
            cohort_id,
            group_type,
            last_modified,
            members_read,
            writer,
        } = downloaded;
        let version = CohortVersion {
            group_type,
            last_modified,
        };
        match writer
            .finish(version.clone(), Box::new(blob::GzipBlob::new()))
            .await?
        {
            CohortWrite::Written { added, removed } => {
                // Only for the log line: the distinct member count the store stored.
                let size = match self.store().get_cohort(&cohort_id).await {
                    Ok(Some(stored)) => stored.size,
                    _ => members_read,
                };
                tracing::info!(
                    cohort = %cohort_id,
                    group_type = %version.group_type,
                    size,
                    last_modified,
                    added,
                    removed,
                    "cohort download/save completed"
                );
            }
            CohortWrite::Stale { stored } => tracing::debug!(
                cohort = %cohort_id,
                stored = stored.last_modified,
                "a newer version is already stored"
            ),
        }
        Ok(())
    }

    /// Removes stored cohorts that no served flag targets, once every deployment is served
    /// (before that, "not targeted" may only mean "not loaded yet").
    async fn remove_untargeted(&mut self, targeted: &BTreeSet<String>) {
        if !self.registry.not_ready_reasons().is_empty() {
            return;
        }
        let stored = match self.store().list_cohorts().await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, "cannot list stored cohorts");
                return;
            }
        };
        for description in stored {
            let id = description.cohort_id;
            if targeted.contains(&id) {
                continue;
            }
            let removed = match self.take_lease(&id).await {
                Ok(true) => self.store().remove_cohort(&id).await,
                Ok(false) => continue,
                Err(error) => Err(error),
            };
            match removed {
                Ok(()) => tracing::info!(cohort = %id, "removed unused cohort"),
                Err(error) => tracing::error!(cohort = %id, %error, "cannot remove unused cohort"),
            }
            self.give_up_lease(&id).await;
        }
    }

    async fn take_lease(&mut self, id: &str) -> Result<bool, StoreError> {
        let ttl = self.interval.saturating_mul(2) + LEASE_MARGIN;
        let acquired = self
            .store()
            .try_acquire(&lease_name(id), &self.token, ttl)
            .await?;
        if acquired {
            self.leases.insert(id.to_owned());
        }
        Ok(acquired)
    }

    async fn give_up_lease(&mut self, id: &str) {
        if self.leases.remove(id) {
            if let Err(error) = self.store().release(&lease_name(id), &self.token).await {
                tracing::warn!(cohort = id, %error, "cannot release cohort lease");
            }
        }
    }

    async fn release_leases(&mut self) {
        let ids: Vec<String> = self.leases.iter().cloned().collect();
        for id in ids {
            self.give_up_lease(&id).await;
        }
    }
}

/// The lease that makes one replica responsible for a cohort.
fn lease_name(cohort_id: &str) -> String {
    format!("cohort_loading:{cohort_id}")
}
