//! Background loops that keep each deployment's flag configs in the [`Store`] current.
//!
//! Per project, either the management API says which deployments exist (re-listed every
//! `deploymentSyncIntervalMillis`), or the configuration lists them. Each deployment then has
//! one loop: it polls the flags API every `flagSyncIntervalMillis`, or watches its flags file.
//! A failure leaves the stored flags alone, so the last-known-good flags keep being served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::amplitude::engine::parse_flags;
use crate::amplitude::registry::Registry;
use crate::amplitude::upstream::{AmplitudeClient, UpstreamError};
use crate::metrics::{self as m, mask_key};
use crate::store::Store;

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

/// Shared handles every loop uses.
#[derive(Clone)]
pub struct Syncer {
    settings: Arc<SyncSettings>,
    client: AmplitudeClient,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    tasks: TaskTracker,
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
        }
    }

    /// Starts the loops of one project. They stop when `cancel` fires.
    pub fn start_project(&self, project: ProjectSource, cancel: CancellationToken) {
        match project.management_key.clone() {
            Some(key) => {
                self.registry.expect_project_listing(project.index);
                let this = self.clone();
                self.tasks
                    .spawn(async move { this.deployments_loop(project.index, key, cancel).await });
            }
            None => {
                for (deployment, source) in project.deployments {
                    self.start_deployment(deployment, source, cancel.child_token());
                }
            }
        }
    }

    fn start_deployment(&self, deployment: String, source: FlagSource, cancel: CancellationToken) {
        self.registry.expect(&deployment);
        let this = self.clone();
        self.tasks.spawn(async move {
            match source {
                FlagSource::Vendor => this.vendor_flags_loop(&deployment, cancel).await,
                FlagSource::File(path) => this.file_flags_loop(&deployment, &path, cancel).await,
            }
        });
    }

    /// Re-lists the project's deployments forever, starting and stopping flag loops.
    async fn deployments_loop(
        &self,
        project: usize,
        management_key: String,
        cancel: CancellationToken,
    ) {
        let mut running: HashMap<String, CancellationToken> = HashMap::new();
        loop {
            metrics::counter!(m::DEPLOYMENTS_FETCH).increment(1);
            match self
                .client
                .deployments(&self.settings.management_server_url, &management_key)
                .await
            {
                Ok(deployments) => {
                    let listed: Vec<String> = deployments.into_iter().map(|d| d.key).collect();
                    self.reconcile(&mut running, &listed, &cancel).await;
                    self.registry.project_listed(project);
                    self.registry
                        .record_sync_result(&format!("project {project}"), None);
                }
                Err(error) => {
                    metrics::counter!(m::DEPLOYMENTS_FETCH_FAILURE).increment(1);
                    self.registry
                        .record_sync_result(&format!("project {project}"), Some(error.to_string()));
                    tracing::error!(project, %error, "listing deployments failed; keeping the known ones");
                }
            }
            if !self
                .sleep(self.settings.deployment_sync_interval, &cancel)
                .await
            {
                return;
            }
        }
    }

    /// Starts loops for new deployments and stops and removes deleted ones.
    async fn reconcile(
        &self,
        running: &mut HashMap<String, CancellationToken>,
        listed: &[String],
        cancel: &CancellationToken,
    ) {
        for key in listed {
            if !running.contains_key(key) {
                tracing::info!(deployment = %mask_key(key), "adding deployment");
                let token = cancel.child_token();
                running.insert(key.clone(), token.clone());
                self.start_deployment(key.clone(), FlagSource::Vendor, token);
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
            self.registry.forget(&key);
            if let Err(error) = self.store.remove_deployment(&key).await {
                tracing::error!(deployment = %mask_key(&key), %error, "could not remove deployment from the store");
            }
        }
    }

    /// Fetches a deployment's flags from the vendor forever.
    async fn vendor_flags_loop(&self, deployment: &str, cancel: CancellationToken) {
        loop {
            let fetched = tokio::select! {
                _ = cancel.cancelled() => return,
                fetched = self.client.flags(&self.settings.server_url, deployment) => fetched,
            };
            self.publish(deployment, fetched.map_err(FetchError::Upstream))
                .await;
            if !self.sleep(self.settings.flag_sync_interval, &cancel).await {
                return;
            }
        }
    }

    /// Loads a flags file at start and again whenever its modification time or size changes.
    async fn file_flags_loop(&self, deployment: &str, path: &Path, cancel: CancellationToken) {
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

    /// Validates fetched flags and writes them to the store; on any failure, keeps the old.
    async fn publish(&self, deployment: &str, fetched: Result<Bytes, FetchError>) {
        metrics::counter!(m::FLAGS_FETCH).increment(1);
        let result = match fetched {
            Ok(json) => match parse_flags(&json) {
                Ok(_) => self
                    .store
                    .put_flags(deployment, json)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("invalid flag configs: {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        self.registry
            .record_sync_result(deployment, result.as_ref().err().cloned());
        match result {
            Ok(_) => self.registry.confirm(deployment),
            Err(error) => {
                metrics::counter!(m::FLAGS_FETCH_FAILURE).increment(1);
                tracing::error!(deployment = %mask_key(deployment), %error, "flag sync failed; serving the last-known-good flags");
            }
        }
    }

    /// Waits `interval` with jitter. Returns false when cancelled.
    async fn sleep(&self, interval: Duration, cancel: &CancellationToken) -> bool {
        let wait = jittered(interval, self.settings.jitter);
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
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
