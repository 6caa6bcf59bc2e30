//! Compiled per-deployment snapshots, swapped atomically, read by every request.
//!
//! The sync loops write flag configs to the [`Store`]; [`Registry::watch`] hears about each
//! change and rebuilds that deployment's [`DeploymentSnapshot`]: flags parsed and compiled once,
//! the `/sdk/v2/flags` body and its gzip prepared once. Requests only do a map lookup on an
//! `ArcSwap` and clone an `Arc`: no locks, no parsing, no store I/O.
//!
//! A replica that fetched flags itself (the lease holder, or any replica while Redis is down)
//! installs them directly ([`Registry::install`]) so serving never waits on the store. A
//! snapshot is rebuilt only when the stored bytes differ from the served ones: store versions
//! restart when Redis loses its data, so they cannot be compared. Only deployments this replica
//! was configured or listed for are ever served, whatever other fleets write to the store.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::amplitude::engine::{parse_flags, CompiledFlags, FlagParseError};
use crate::metrics::mask_key;
use crate::store::{Change, Store, StoreError};

/// Everything a request needs about one deployment, immutable once built.
#[derive(Debug)]
pub struct DeploymentSnapshot {
    /// Store version these flags came from (0 when this replica fetched them itself).
    pub version: u64,
    /// The flags, compiled for evaluation.
    pub flags: CompiledFlags,
    /// The `/sdk/v2/flags` body: the JSON array as fetched.
    pub flags_json: Bytes,
    /// `flags_json` gzip-compressed once, for clients that accept gzip.
    pub flags_json_gzip: Bytes,
    /// Unix milliseconds when the sync last confirmed these flags (fetched or re-read).
    confirmed_at_millis: AtomicU64,
}

impl DeploymentSnapshot {
    /// Compiles a snapshot from the stored JSON array.
    pub fn build(version: u64, json: Bytes) -> Result<Self, FlagParseError> {
        let flags = CompiledFlags::compile(parse_flags(&json)?);
        let flags_json_gzip = gzip(&json);
        Ok(Self {
            version,
            flags,
            flags_json: json,
            flags_json_gzip,
            confirmed_at_millis: AtomicU64::new(now_millis()),
        })
    }

    /// Seconds since the flags were last confirmed, for the snapshot-age metric.
    pub fn age_seconds(&self) -> f64 {
        let confirmed = self.confirmed_at_millis.load(Ordering::Relaxed);
        now_millis().saturating_sub(confirmed) as f64 / 1000.0
    }

    fn confirm(&self) {
        self.confirmed_at_millis
            .store(now_millis(), Ordering::Relaxed);
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// What the registry knows about a deployment key.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Not a deployment of any configured project.
    Unknown,
    /// A configured or synced deployment whose flags have not loaded yet.
    Pending,
    /// Flags are loaded.
    Ready(Arc<DeploymentSnapshot>),
}

#[derive(Debug, Clone)]
enum Entry {
    Pending,
    Ready(Arc<DeploymentSnapshot>),
}

/// The per-deployment snapshots, plus what readiness needs to know.
pub struct Registry {
    store: Arc<dyn Store>,
    deployments: ArcSwap<HashMap<String, Entry>>,
    /// Projects whose deployment list has not been fetched yet (by index in the config).
    unlisted_projects: std::sync::Mutex<BTreeSet<usize>>,
    /// The last sync error per deployment key or `project <n>`, cleared on success; shown in
    /// readiness so an operator sees why something is not ready.
    last_errors: std::sync::Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("deployments", &self.deployments.load().len())
            .finish_non_exhaustive()
    }
}

/// Why a snapshot could not be rebuilt; the previous snapshot keeps being served.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored flags are not a valid `/sdk/v2/flags` array.
    #[error("invalid flag configs: {0}")]
    Flags(#[from] FlagParseError),
}

impl Registry {
    /// An empty registry reading from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            deployments: ArcSwap::from_pointee(HashMap::new()),
            unlisted_projects: std::sync::Mutex::new(BTreeSet::new()),
            last_errors: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The hot-path lookup.
    pub fn lookup(&self, deployment: &str) -> Lookup {
        match self.deployments.load().get(deployment) {
            None => Lookup::Unknown,
            Some(Entry::Pending) => Lookup::Pending,
            Some(Entry::Ready(snapshot)) => Lookup::Ready(Arc::clone(snapshot)),
        }
    }

    /// Declares a deployment as valid before its flags load, so readiness waits for it.
    pub fn expect(&self, deployment: &str) {
        self.deployments.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(deployment.to_owned()).or_insert(Entry::Pending);
            map
        });
    }

    /// Forgets a deployment: its key stops being accepted.
    pub fn forget(&self, deployment: &str) {
        self.deployments.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.remove(deployment);
            map
        });
    }

    /// Marks a project whose deployments come from the management API as not listed yet.
    pub fn expect_project_listing(&self, project: usize) {
        self.lock_unlisted().insert(project);
    }

    /// Records that a project's deployments were listed once.
    pub fn project_listed(&self, project: usize) {
        self.lock_unlisted().remove(&project);
    }

    fn lock_unlisted(&self) -> std::sync::MutexGuard<'_, BTreeSet<usize>> {
        self.unlisted_projects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the outcome of a sync attempt for `subject` (a deployment key, or `project <n>`):
    /// `Some(error)` is kept for readiness, `None` clears it.
    pub fn record_sync_result(&self, subject: &str, error: Option<String>) {
        let mut errors = self
            .last_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match error {
            Some(error) => errors.insert(subject.to_owned(), error),
            None => errors.remove(subject),
        };
    }

    fn last_error(&self, subject: &str) -> Option<String> {
        let errors = self
            .last_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        errors.get(subject).map(|e| format!(" (last error: {e})"))
    }

    /// Records that the sync re-confirmed a deployment's flags (unchanged content), so the
    /// snapshot-age metric tells how fresh the served flags are.
    pub fn confirm(&self, deployment: &str) {
        if let Some(Entry::Ready(snapshot)) = self.deployments.load().get(deployment) {
            snapshot.confirm();
        }
    }

    /// Serves flags this replica fetched itself (vendor or file), without waiting for the
    /// store: the holder, and a replica working alone while the store is down, install what
    /// they fetched here before writing it to the store. Returns whether the served flags
    /// changed; unchanged content only refreshes the snapshot age.
    pub fn install(&self, deployment: &str, json: Bytes) -> Result<bool, FlagParseError> {
        if let Lookup::Ready(current) = self.lookup(deployment) {
            if current.flags_json == json {
                current.confirm();
                return Ok(false);
            }
        }
        // Version 0: these bytes did not come from the store (its version is unknown here).
        self.swap_in(deployment, DeploymentSnapshot::build(0, json)?);
        Ok(true)
    }

    /// Rebuilds one deployment's snapshot from the store. Keeps the current snapshot when the
    /// stored content is the one already served (compared by bytes: versions restart when Redis
    /// loses its data, and locally installed flags have no store version) or when the new
    /// flags do not compile.
    pub async fn reload(&self, deployment: &str) -> Result<(), ReloadError> {
        // Other fleets may share the store: only serve deployments this replica was given.
        if matches!(self.lookup(deployment), Lookup::Unknown) {
            return Ok(());
        }
        let Some(stored) = self.store.get_flags(deployment).await? else {
            return Ok(());
        };
        if let Lookup::Ready(current) = self.lookup(deployment) {
            if current.flags_json == stored.json {
                return Ok(());
            }
        }
        self.swap_in(
            deployment,
            DeploymentSnapshot::build(stored.version, stored.json)?,
        );
        Ok(())
    }

    fn swap_in(&self, deployment: &str, snapshot: DeploymentSnapshot) {
        let snapshot = Arc::new(snapshot);
        tracing::info!(
            deployment = %mask_key(deployment),
            version = snapshot.version,
            flags = snapshot.flags.len(),
            "serving new flag configs"
        );
        self.deployments.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(deployment.to_owned(), Entry::Ready(Arc::clone(&snapshot)));
            map
        });
    }

    /// Why the shared store is degraded (Redis unreachable), for readiness details.
    pub fn store_health(&self) -> Option<String> {
        self.store.health()
    }

    /// Follows the store's change signal until `cancel`, rebuilding snapshots as flags change.
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let mut changes = self.store.subscribe();
        loop {
            let change = tokio::select! {
                _ = cancel.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Ok(Change::Flags { deployment, .. }) => self.reload_logged(&deployment).await,
                // Not a reason to stop serving: Redis signals this too when it lost its data
                // (restart without persistence). Which deployments exist is decided by the
                // sync (the management API, or the holder's stored list), which forgets them.
                Ok(Change::DeploymentRemoved { deployment }) => {
                    tracing::debug!(deployment = %mask_key(&deployment), "flags removed from the store; still serving the last ones until the sync drops the deployment");
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed store changes; reloading every deployment");
                    let keys: Vec<String> = self.deployments.load().keys().cloned().collect();
                    for key in keys {
                        self.reload_logged(&key).await;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Reloads a deployment, logging (not returning) a failure.
    pub async fn reload_logged(&self, deployment: &str) {
        if let Err(error) = self.reload(deployment).await {
            tracing::error!(deployment = %mask_key(deployment), %error, "could not load flag configs; still serving the previous ones");
        }
    }

    /// Why the proxy is not ready yet, or an empty list when every deployment is served.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .lock_unlisted()
            .iter()
            .map(|p| {
                let error = self.last_error(&format!("project {p}")).unwrap_or_default();
                format!("project {p}: deployments not fetched yet{error}")
            })
            .collect();
        let map = self.deployments.load();
        let mut pending: Vec<String> = map
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::Pending))
            .map(|(key, _)| {
                let error = self.last_error(key).unwrap_or_default();
                format!("deployment {}: flags not loaded yet{error}", mask_key(key))
            })
            .collect();
        pending.sort();
        reasons.extend(pending);
        reasons
    }

    /// The ready snapshots, for metrics.
    pub fn snapshots(&self) -> Vec<(String, Arc<DeploymentSnapshot>)> {
        self.deployments
            .load()
            .iter()
            .filter_map(|(key, entry)| match entry {
                Entry::Ready(s) => Some((key.clone(), Arc::clone(s))),
                Entry::Pending => None,
            })
            .collect()
    }
}
