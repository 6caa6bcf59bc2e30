//! Background loops that keep each deployment's flag configs current, in memory and in the
//! [`Store`].
//!
//! Per project, either the management API says which deployments exist (re-listed every
//! `deploymentSyncIntervalMillis`), or the configuration lists them. Each deployment then has
//! one loop: it polls the flags API every `flagSyncIntervalMillis`, or watches its flags file.
//! A failure leaves the served flags alone, so the last-known-good flags keep being served.
//!
//! # Replicas
//!
//! Per project, one replica talks to the vendor: the holder of the project's lease
//! ([`crate::amplitude::lease`]). What a loop does depends on this replica's [`Role`]:
//! - **holder**: fetches from the vendor, installs the flags in the [`Registry`] at once, then
//!   writes them (and, in management-key mode, the deployment list) to the store, whose change
//!   signal tells the other replicas. When it takes the lease (at start, after a takeover, after
//!   Redis came back empty) and after a failed write, it re-seeds the store with what it serves.
//! - **follower**: never calls the vendor; loads flags from the store (on each change signal,
//!   through [`Registry::watch`], and once per interval as a safety net) and the deployment
//!   list from the store.
//! - **alone** (the store is unreachable): fetches from the vendor itself and serves from
//!   memory, like a single node, until the store answers again.
//!
//! Every deployment loop first loads what the store already holds, so a replica starting
//! against a warm Redis serves at once even when the vendor is down. A replica never removes
//! store data of projects it is not configured for; the holder removes only deployments the
//! vendor no longer lists for its own project.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::amplitude::assignment::ApiKeys;
use crate::amplitude::lease::{self, Lease, Role};
use crate::amplitude::registry::{Lookup, Registry};
use crate::amplitude::upstream::{AmplitudeClient, UpstreamError};
use crate::metrics::{self as m, mask_key};
use crate::store::Store;

/// How soon a follower looks again for a deployment list the holder has not written yet.
const FOLLOWER_LIST_RETRY: Duration = Duration::from_secs(1);

/// Timing and endpoints shared by every sync loop.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Base URL of the flags API.
    pub server_url: String,
    /// Base URL of the management API.
    pub management_server_url: String,
    /// How often deployments are re-listed.
    pub deployment_sync_interval: Duration,
    /// How often each deployment's flags are re-fetched.
    pub flag_sync_interval: Duration,
    /// How often a flags file is checked for changes.
    pub file_poll_interval: Duration,
    /// Fraction (0..1) by which each wait is randomly stretched or shortened, so replicas and
    /// deployments do not poll in lock-step.
    pub jitter: f64,
    /// TTL of each project's sync lease (renewed every third of it).
    pub lease_ttl: Duration,
}

/// Where one deployment's flags come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagSource {
    /// The flags API at `server_url`.
    Vendor,
    /// A local `/sdk/v2/flags` JSON file, reloaded when it changes.
    File(PathBuf),
}

/// What the sync needs to know about one configured project.
#[derive(Debug, Clone)]
pub struct ProjectSource {
    /// Position in the configuration, used in logs and readiness.
    pub index: usize,
    /// Lists deployments from the management API when set.
    pub management_key: Option<String>,
    /// Deployments listed in the configuration (used when there is no management key).
    pub deployments: Vec<(String, FlagSource)>,
}

/// What one project's loops share.
struct Project {
    /// Position in the configuration.
    index: usize,
    /// Non-secret id: names the lease and the stored deployment list.
    id: String,
    /// This replica's role, set by the lease loop, watched by the others.
    role: watch::Sender<Role>,
    /// Deployments this project serves, for re-seeding the store.
    deployments: Mutex<BTreeSet<String>>,
    /// The management API's last listing (management-key mode), for re-seeding.
    listed: Mutex<Option<Vec<String>>>,
    /// A store write failed while holding the lease: re-seed at the next renewal.
    dirty: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Project {
    fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Records the role, logging transitions.
    fn set_role(&self, role: Role) {
        let changed = self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
        if !changed {
            return;
        }
        let project = self.index;
        match role {
            Role::Holder => {
                tracing::info!(project, "holding the sync lease: fetching from the vendor")
            }
            Role::Follower => tracing::info!(
                project,
                "another replica holds the sync lease: loading flags from the store"
            ),
            Role::Alone => tracing::warn!(
                project,
                "the store is unavailable: fetching from the vendor alone and serving from memory"
            ),
            Role::Unknown => {}
        }
    }
}

/// Shared handles every loop uses.
#[derive(Clone)]
pub struct Syncer {
    settings: Arc<SyncSettings>,
    client: AmplitudeClient,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    tasks: TaskTracker,
    /// Told which project each listed deployment belongs to (for assignment uploads).
    api_keys: Option<Arc<ApiKeys>>,
}

impl Syncer {
    /// Creates the syncer; loops are spawned on `tasks` so shutdown can wait for them.
    pub fn new(
        settings: SyncSettings,
        client: AmplitudeClient,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            settings: Arc::new(settings),
            client,
            store,
            registry,
            tasks,
            api_keys: None,
        }
    }

    /// Registers each deployment the management API lists with its project's API key.
    pub fn with_api_keys(mut self, keys: Arc<ApiKeys>) -> Self {
        self.api_keys = Some(keys);
        self
    }

    /// Declares what a project will serve, so readiness waits for it even before its loops
    /// start (they wait for the store's first connection attempt).
    pub fn declare(&self, source: &ProjectSource) {
        match source.management_key {
            Some(_) => self.registry.expect_project_listing(source.index),
            None => {
                for (deployment, _) in &source.deployments {
                    self.registry.expect(deployment);
                }
            }
        }
    }

    /// Starts the loops of one project. They stop when `cancel` fires; the lease is released.
    pub fn start_project(&self, source: ProjectSource, cancel: CancellationToken) {
        self.declare(&source);
        let keys: Vec<String> = source.deployments.iter().map(|(k, _)| k.clone()).collect();
        let project = Arc::new(Project {
            index: source.index,
            id: lease::project_id(source.management_key.as_deref(), &keys),
            role: watch::Sender::new(Role::Unknown),
            deployments: Mutex::new(BTreeSet::new()),
            listed: Mutex::new(None),
            dirty: AtomicBool::new(false),
        });
        let this = self.clone();
        let lease_project = Arc::clone(&project);
        let lease_cancel = cancel.clone();
        self.tasks
            .spawn(async move { this.lease_loop(&lease_project, lease_cancel).await });
        match source.management_key {
            Some(key) => {
                let this = self.clone();
                self.tasks
                    .spawn(async move { this.deployments_loop(project, key, cancel).await });
            }
            None => {
                for (deployment, flag_source) in source.deployments {
                    self.start_deployment(&project, deployment, flag_source, cancel.child_token());
                }
            }
        }
    }

    fn start_deployment(
        &self,
        project: &Arc<Project>,
        deployment: String,
        source: FlagSource,
        cancel: CancellationToken,
    ) {
        self.registry.expect(&deployment);
        lock(&project.deployments).insert(deployment.clone());
        let this = self.clone();
        let project = Arc::clone(project);
        self.tasks.spawn(async move {
            match source {
                FlagSource::Vendor => this.vendor_flags_loop(&project, &deployment, cancel).await,
                FlagSource::File(path) => {
                    this.file_flags_loop(&project, &deployment, &path, cancel)
                        .await
                }
            }
        });
    }

    /// Takes or renews the project's lease every third of its TTL, setting the role; releases
    /// it on shutdown.
    async fn lease_loop(&self, project: &Project, cancel: CancellationToken) {
        let mut lease = Lease::new(
            Arc::clone(&self.store),
            &project.id,
            self.settings.lease_ttl,
        );
        loop {
            let (role, acquired) = tokio::select! {
                _ = cancel.cancelled() => break,
                step = lease.step() => step,
            };
            project.set_role(role);
            if role == Role::Holder && (acquired | project.dirty.swap(false, Ordering::SeqCst)) {
                // Bounded, so a slow Redis cannot delay the next renewal past the lease's TTL.
                let seeded = tokio::time::timeout(lease.interval(), self.reseed(project)).await;
                if seeded.is_err() {
                    project.dirty.store(true, Ordering::SeqCst);
                    tracing::warn!(
                        project = project.index,
                        "seeding the store timed out; retrying at the next lease renewal"
                    );
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(lease.interval()) => {}
            }
        }
        lease.release().await;
    }

    /// Writes what this replica serves for the project to the store (the holder, after taking
    /// the lease or after a failed write): Redis may have lost it, or never had it.
    async fn reseed(&self, project: &Project) {
        let mut failed = None;
        let listed = lock(&project.listed).clone();
        if let Some(listed) = listed {
            if let Err(error) = self
                .store
                .put_project_deployments(&project.id, &listed)
                .await
            {
                failed = Some(error);
            }
        }
        let deployments: Vec<String> = lock(&project.deployments).iter().cloned().collect();
        let mut written = 0usize;
        for deployment in deployments {
            if let Lookup::Ready(snapshot) = self.registry.lookup(&deployment) {
                match self
                    .store
                    .put_flags(&deployment, snapshot.flags_json.clone())
                    .await
                {
                    Ok(_) => written += 1,
                    Err(error) => failed = Some(error),
                }
            }
        }
        match failed {
            None => tracing::debug!(
                project = project.index,
                written,
                "store seeded with the served flags"
            ),
            Some(error) => {
                project.dirty.store(true, Ordering::SeqCst);
                tracing::warn!(project = project.index, %error, "could not seed the store; retrying at the next lease renewal");
            }
        }
    }

    /// Keeps the project's deployment list current: from the management API when this replica
    /// holds the lease or works alone, from the store when it follows.
    async fn deployments_loop(
        &self,
        project: Arc<Project>,
        management_key: String,
        cancel: CancellationToken,
    ) {
        let mut running: HashMap<String, CancellationToken> = HashMap::new();
        let mut roles = project.role.subscribe();
        // A warm store lets this replica serve before (or without) the vendor answering.
        self.list_from_store(&project, &mut running, &cancel).await;
        loop {
            let role = *roles.borrow_and_update();
            let wait = match role {
                Role::Unknown => None,
                Role::Holder | Role::Alone => {
                    self.list_from_vendor(&project, &management_key, &mut running, &cancel)
                        .await;
                    Some(self.settings.deployment_sync_interval)
                }
                Role::Follower => {
                    if self.list_from_store(&project, &mut running, &cancel).await {
                        Some(self.settings.deployment_sync_interval)
                    } else {
                        Some(FOLLOWER_LIST_RETRY)
                    }
                }
            };
            if !self.wait(&mut roles, wait, &cancel).await {
                return;
            }
        }
    }

    /// Lists deployments from the management API and starts or stops their loops.
    async fn list_from_vendor(
        &self,
        project: &Arc<Project>,
        management_key: &str,
        running: &mut HashMap<String, CancellationToken>,
        cancel: &CancellationToken,
    ) {
        let index = project.index;
        metrics::counter!(m::DEPLOYMENTS_FETCH).increment(1);
        match self
            .client
            .deployments(&self.settings.management_server_url, management_key)
            .await
        {
            Ok(deployments) => {
                let listed: Vec<String> = deployments.into_iter().map(|d| d.key).collect();
                let holder = project.role() == Role::Holder;
                self.reconcile(project, running, &listed, holder, cancel)
                    .await;
                *lock(&project.listed) = Some(listed.clone());
                if holder {
                    if let Err(error) = self
                        .store
                        .put_project_deployments(&project.id, &listed)
                        .await
                    {
                        project.dirty.store(true, Ordering::SeqCst);
                        tracing::warn!(project = index, %error, "could not share the deployment list through the store");
                    }
                }
                self.registry.project_listed(index);
                self.registry
                    .record_sync_result(&format!("project {index}"), None);
            }
            Err(error) => {
                metrics::counter!(m::DEPLOYMENTS_FETCH_FAILURE).increment(1);
                self.registry
                    .record_sync_result(&format!("project {index}"), Some(error.to_string()));
                tracing::error!(project = index, %error, "listing deployments failed; keeping the known ones");
            }
        }
    }

    /// Takes the deployment list the holder stored. Returns false when there is none yet.
    async fn list_from_store(
        &self,
        project: &Arc<Project>,
        running: &mut HashMap<String, CancellationToken>,
        cancel: &CancellationToken,
    ) -> bool {
        match self.store.get_project_deployments(&project.id).await {
            Ok(Some(listed)) => {
                self.reconcile(project, running, &listed, false, cancel)
                    .await;
                self.registry.project_listed(project.index);
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::debug!(project = project.index, %error, "could not read the stored deployment list");
                false
            }
        }
    }

    /// Starts loops for new deployments and stops deleted ones; only the holder removes them
    /// from the store.
    async fn reconcile(
        &self,
        project: &Arc<Project>,
        running: &mut HashMap<String, CancellationToken>,
        listed: &[String],
        remove_from_store: bool,
        cancel: &CancellationToken,
    ) {
        if let Some(keys) = &self.api_keys {
            listed
                .iter()
                .for_each(|key| keys.register(key, project.index));
        }
        for key in listed {
            if !running.contains_key(key) {
                tracing::info!(deployment = %mask_key(key), "adding deployment");
                let token = cancel.child_token();
                running.insert(key.clone(), token.clone());
                self.start_deployment(project, key.clone(), FlagSource::Vendor, token);
            }
        }
        let removed: Vec<String> = running
            .keys()
            .filter(|key| !listed.contains(key))
            .cloned()
            .collect();
        for key in removed {
            tracing::info!(deployment = %mask_key(&key), "removing deployment");
            if let Some(token) = running.remove(&key) {
                token.cancel();
            }
            lock(&project.deployments).remove(&key);
            self.registry.forget(&key);
            if remove_from_store {
                if let Err(error) = self.store.remove_deployment(&key).await {
                    tracing::error!(deployment = %mask_key(&key), %error, "could not remove deployment from the store");
                }
            }
        }
    }

    /// Keeps a deployment's flags current: from the vendor when this replica holds the lease or
    /// works alone, from the store when it follows.
    async fn vendor_flags_loop(
        &self,
        project: &Project,
        deployment: &str,
        cancel: CancellationToken,
    ) {
        let mut roles = project.role.subscribe();
        // Serve what the store already holds at once (a warm Redis, even with the vendor down).
        self.load_stored(deployment).await;
        loop {
            let role = *roles.borrow_and_update();
            let wait = match role {
                Role::Unknown => None,
                Role::Holder | Role::Alone => {
                    let fetched = tokio::select! {
                        _ = cancel.cancelled() => return,
                        fetched = self.client.flags(&self.settings.server_url, deployment) => fetched,
                    };
                    self.publish(project, deployment, fetched.map_err(FetchError::Upstream))
                        .await;
                    Some(self.settings.flag_sync_interval)
                }
                Role::Follower => {
                    // Normally the change signal already did this; this catches a missed one.
                    self.load_stored(deployment).await;
                    Some(self.settings.flag_sync_interval)
                }
            };
            if !self.wait(&mut roles, wait, &cancel).await {
                return;
            }
        }
    }

    /// Loads a deployment's stored flags into the registry; a store that cannot be reached is
    /// not an error here (the vendor path covers it).
    async fn load_stored(&self, deployment: &str) {
        if let Err(error) = self.registry.reload(deployment).await {
            tracing::debug!(deployment = %mask_key(deployment), %error, "could not load stored flag configs");
        }
    }

    /// Loads a flags file at start and again whenever its modification time or size changes.
    async fn file_flags_loop(
        &self,
        project: &Project,
        deployment: &str,
        path: &Path,
        cancel: CancellationToken,
    ) {
        let mut last_seen: Option<(SystemTime, u64)> = None;
        loop {
            let stamp = tokio::fs::metadata(path)
                .await
                .ok()
                .and_then(|meta| Some((meta.modified().ok()?, meta.len())));
            if stamp.is_none() || stamp != last_seen {
                let read = tokio::fs::read(path).await.map(Bytes::from);
                let ok = read.is_ok();
                self.publish(
                    project,
                    deployment,
                    read.map_err(|e| FetchError::File(path.to_owned(), e)),
                )
                .await;
                // A missing or unreadable file is retried on the next tick.
                last_seen = if ok { stamp } else { None };
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.settings.file_poll_interval) => {}
            }
        }
    }

    /// Validates fetched flags and serves them at once; the holder (or, for flags files, any
    /// replica: the file is its own) then writes them to the store for the others. On any
    /// failure the previous flags keep being served.
    async fn publish(
        &self,
        project: &Project,
        deployment: &str,
        fetched: Result<Bytes, FetchError>,
    ) {
        metrics::counter!(m::FLAGS_FETCH).increment(1);
        let installed = fetched.map_err(|e| e.to_string()).and_then(|json| {
            self.registry
                .install(deployment, json.clone())
                .map(|_| json)
                .map_err(|e| format!("invalid flag configs: {e}"))
        });
        let json = match installed {
            Ok(json) => json,
            Err(error) => {
                self.registry
                    .record_sync_result(deployment, Some(error.clone()));
                metrics::counter!(m::FLAGS_FETCH_FAILURE).increment(1);
                tracing::error!(deployment = %mask_key(deployment), %error, "flag sync failed; serving the last-known-good flags");
                return;
            }
        };
        self.registry.record_sync_result(deployment, None);
        if project.role() == Role::Alone {
            return;
        }
        if let Err(error) = self.store.put_flags(deployment, json).await {
            project.dirty.store(true, Ordering::SeqCst);
            tracing::warn!(deployment = %mask_key(deployment), %error, "could not share the flag configs through the store; serving them from memory");
        }
    }

    /// Waits `interval` (with jitter), or until the role changes, or forever when `None` (until
    /// the role changes). Returns false when cancelled.
    async fn wait(
        &self,
        roles: &mut watch::Receiver<Role>,
        interval: Option<Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let sleep = async {
            match interval {
                Some(interval) => {
                    tokio::time::sleep(jittered(interval, self.settings.jitter)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => false,
            changed = roles.changed() => changed.is_ok(),
            _ = sleep => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("cannot read {0}: {1}")]
    File(PathBuf, std::io::Error),
}

/// `interval` stretched or shortened by a random fraction of at most `jitter`.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    if jitter == 0.0 {
        return interval;
    }
    let factor = rand::rng().random_range((1.0 - jitter)..=(1.0 + jitter));
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        let base = Duration::from_secs(10);
        for _ in 0..1000 {
            let d = jittered(base, 0.1);
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
        assert_eq!(jittered(base, 0.0), base);
    }
}
