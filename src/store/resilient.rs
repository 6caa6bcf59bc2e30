//! The Redis store as the application uses it: connected in the background, never in the way.
//!
//! [`RedisStore::connect`] fails when Redis is unreachable, and the proxy must start anyway
//! (from the vendor, in memory) and switch to shared mode when Redis comes. [`ResilientStore`]
//! is a [`Store`] that exists from the start: a background task connects (and migrates) with
//! backoff until it succeeds; until then every operation fails at once with
//! [`StoreError::Unavailable`], which the sync loops treat as "Redis is down, work alone".
//! Once connected, calls go to the [`RedisStore`], which reconnects by itself after later
//! outages (its pool and change-signal follower have their own backoff).
//!
//! Subscribers get this wrapper's own channels, so a subscription made before Redis came is
//! not lost: when the store connects, a forwarder relays its signals and first announces every
//! stored deployment and cohort, so watchers load what other replicas wrote meanwhile.
//!
//! [`Store::health`] reports the last outcome: why Redis is unavailable, or `None` when the last
//! call (or the connection) succeeded. Readiness shows it so an operator sees the degraded mode.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{
    Change, CohortBlob, CohortChange, CohortDescription, CohortWriter, DocumentChange,
    DocumentStatus, RedisSettings, RedisStore, Store, StoreError, StoredDocument, StoredFlags,
};

/// Capacity of the wrapper's change channels (same as the stores').
const CHANGE_CHANNEL_CAPACITY: usize = 1024;
/// First and longest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

/// Where the connection stands.
#[derive(Clone)]
enum State {
    /// The first attempt has not finished yet.
    Connecting,
    /// Connected (and migrated); calls go here.
    Connected(Arc<RedisStore>),
    /// The last attempt failed; the background task keeps trying.
    Waiting,
}

/// A [`Store`] over Redis that starts without it; see the module documentation.
pub struct ResilientStore {
    state: watch::Sender<State>,
    /// Why connecting was given up for good (bad settings, a keyspace from a newer proxy).
    fatal: Mutex<Option<String>>,
    health: Mutex<Option<String>>,
    changes: broadcast::Sender<Change>,
    cohort_changes: broadcast::Sender<CohortChange>,
    document_changes: broadcast::Sender<DocumentChange>,
}

impl std::fmt::Debug for ResilientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientStore")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl ResilientStore {
    /// Creates the store and starts connecting in the background until `cancel`. A settings
    /// error (bad URL, bad prefix) or a keyspace from a newer proxy is not retried: it is logged
    /// and reported by [`Store::health`], and the proxy keeps working alone.
    pub fn start(settings: RedisSettings, cancel: CancellationToken) -> Arc<Self> {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (cohort_changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (document_changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let store = Arc::new(Self {
            state: watch::Sender::new(State::Connecting),
            fatal: Mutex::new(None),
            health: Mutex::new(Some("connecting to redis".into())),
            changes,
            cohort_changes,
            document_changes,
        });
        tokio::spawn(Arc::clone(&store).connect_loop(settings, cancel));
        store
    }

    /// Waits until the first connection attempt has finished (successfully or not), so the
    /// sync loops know from the start whether replicas can cooperate.
    pub async fn settled(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| !matches!(s, State::Connecting)).await;
    }

    /// Why this store gave up connecting for good, if it did: the proxy refuses to start then
    /// (e.g. the keyspace was written by a newer proxy).
    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn connect_loop(self: Arc<Self>, settings: RedisSettings, cancel: CancellationToken) {
        let mut backoff = BACKOFF.0;
        let mut attempts = 0u64;
        let store = loop {
            attempts += 1;
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return,
                attempt = RedisStore::connect(&settings) => attempt,
            };
            match attempt {
                Ok(store) => break Arc::new(store),
                Err(error) => {
                    let fatal = matches!(
                        error,
                        StoreError::Config(_) | StoreError::SchemaTooNew { .. }
                    );
                    if attempts == 1 || fatal {
                        tracing::error!(%error, "redis is unavailable; this replica syncs from the vendor on its own and serves from memory until it connects");
                    } else {
                        tracing::debug!(%error, "redis still unavailable");
                    }
                    self.set_health(Some(format!("redis unavailable: {error}")));
                    if fatal {
                        *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(error.to_string());
                    }
                    self.state.send_replace(State::Waiting);
                    if fatal {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        };
        // Subscribe before publishing the store, so nothing written after this is missed.
        let flags = store.subscribe();
        let cohorts = store.subscribe_cohorts();
        let documents = store.subscribe_documents();
        self.state
            .send_replace(State::Connected(Arc::clone(&store)));
        self.set_health(None);
        tracing::info!(
            attempts,
            "connected to redis; replicas share flag configs through it"
        );
        self.announce_stored(&store).await;
        tokio::join!(
            relay(flags, &self.changes, &cancel),
            relay(cohorts, &self.cohort_changes, &cancel),
            relay(documents, &self.document_changes, &cancel)
        );
        // Drop the Redis store (and its follower task) when the proxy stops.
        self.state.send_replace(State::Waiting);
    }

    /// Signals every stored deployment and cohort once, for watchers that subscribed before
    /// Redis was connected.
    async fn announce_stored(&self, store: &RedisStore) {
        match store.list_deployments().await {
            Ok(list) => {
                for (deployment, version) in list {
                    let _ = self.changes.send(Change::Flags {
                        deployment,
                        version,
                    });
                }
            }
            Err(error) => tracing::warn!(%error, "could not list the stored deployments"),
        }
        match store.list_cohorts().await {
            Ok(list) => {
                for description in list {
                    let _ = self.cohort_changes.send(CohortChange::Updated {
                        cohort_id: description.cohort_id,
                        last_modified: description.last_modified,
                    });
                }
            }
            Err(error) => tracing::warn!(%error, "could not list the stored cohorts"),
        }
    }

    fn set_health(&self, health: Option<String>) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    }

    /// The connected store, or the reason there is none.
    fn current(&self) -> Result<Arc<RedisStore>, StoreError> {
        match &*self.state.borrow() {
            State::Connected(store) => Ok(Arc::clone(store)),
            State::Connecting => Err(StoreError::Unavailable("still connecting to redis".into())),
            State::Waiting => Err(StoreError::Unavailable(
                "redis is unavailable; retrying in the background".into(),
            )),
        }
    }

    /// Records whether Redis answered, for [`Store::health`], and passes the result on.
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.set_health(None),
            Err(error @ (StoreError::Unavailable(_) | StoreError::Timeout(_))) => {
                self.set_health(Some(format!("redis unavailable: {error}")));
            }
            Err(_) => {}
        }
        result
    }
}

/// Copies one store's signals to the wrapper's channel until `cancel` or the source closes.
async fn relay<T: Clone>(
    mut source: broadcast::Receiver<T>,
    sink: &broadcast::Sender<T>,
    cancel: &CancellationToken,
) {
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            received = source.recv() => received,
        };
        match received {
            Ok(change) => {
                let _ = sink.send(change);
            }
            // Subscribers of the wrapper lag the same way and recover by reloading everything.
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "change relay lagged");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[async_trait]
impl Store for ResilientStore {
    async fn put_flags(&self, deployment: &str, json: Bytes) -> Result<u64, StoreError> {
        let store = self.current()?;
        self.note(store.put_flags(deployment, json).await)
    }

    async fn get_flags(&self, deployment: &str) -> Result<Option<StoredFlags>, StoreError> {
        let store = self.current()?;
        self.note(store.get_flags(deployment).await)
    }

    async fn remove_deployment(&self, deployment: &str) -> Result<(), StoreError> {
        let store = self.current()?;
        self.note(store.remove_deployment(deployment).await)
    }

    async fn list_deployments(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let store = self.current()?;
        self.note(store.list_deployments().await)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn put_project_deployments(
        &self,
        project: &str,
        deployments: &[String],
    ) -> Result<(), StoreError> {
        let store = self.current()?;
        self.note(store.put_project_deployments(project, deployments).await)
    }

    async fn get_project_deployments(
        &self,
        project: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let store = self.current()?;
        self.note(store.get_project_deployments(project).await)
    }

    async fn begin_cohort(&self, cohort_id: &str) -> Result<Box<dyn CohortWriter>, StoreError> {
        let store = self.current()?;
        self.note(store.begin_cohort(cohort_id).await)
    }

    async fn get_cohort(&self, cohort_id: &str) -> Result<Option<CohortDescription>, StoreError> {
        let store = self.current()?;
        self.note(store.get_cohort(cohort_id).await)
    }

    async fn list_cohorts(&self) -> Result<Vec<CohortDescription>, StoreError> {
        let store = self.current()?;
        self.note(store.list_cohorts().await)
    }

    async fn get_cohort_members(&self, cohort_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let store = self.current()?;
        self.note(store.get_cohort_members(cohort_id).await)
    }

    async fn get_cohort_blob(&self, cohort_id: &str) -> Result<Option<CohortBlob>, StoreError> {
        let store = self.current()?;
        self.note(store.get_cohort_blob(cohort_id).await)
    }

    async fn get_memberships(
        &self,
        group_type: &str,
        member: &str,
    ) -> Result<Vec<String>, StoreError> {
        let store = self.current()?;
        self.note(store.get_memberships(group_type, member).await)
    }

    async fn remove_cohort(&self, cohort_id: &str) -> Result<(), StoreError> {
        let store = self.current()?;
        self.note(store.remove_cohort(cohort_id).await)
    }

    fn subscribe_cohorts(&self) -> broadcast::Receiver<CohortChange> {
        self.cohort_changes.subscribe()
    }

    async fn put_document(
        &self,
        environment: &str,
        json: Bytes,
        confirmed_at_millis: u64,
    ) -> Result<u64, StoreError> {
        let store = self.current()?;
        self.note(
            store
                .put_document(environment, json, confirmed_at_millis)
                .await,
        )
    }

    async fn confirm_document(
        &self,
        environment: &str,
        confirmed_at_millis: u64,
    ) -> Result<bool, StoreError> {
        let store = self.current()?;
        self.note(
            store
                .confirm_document(environment, confirmed_at_millis)
                .await,
        )
    }

    async fn get_document(&self, environment: &str) -> Result<Option<StoredDocument>, StoreError> {
        let store = self.current()?;
        self.note(store.get_document(environment).await)
    }

    async fn document_status(
        &self,
        environment: &str,
    ) -> Result<Option<DocumentStatus>, StoreError> {
        let store = self.current()?;
        self.note(store.document_status(environment).await)
    }

    /// Documents written before Redis connected are not announced: Flagsmith followers also
    /// check the stored status on every lease tick.
    fn subscribe_documents(&self) -> broadcast::Receiver<DocumentChange> {
        self.document_changes.subscribe()
    }

    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let store = self.current()?;
        self.note(store.claim(keys, ttl).await)
    }

    async fn try_acquire(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let store = self.current()?;
        self.note(store.try_acquire(name, token, ttl).await)
    }

    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let store = self.current()?;
        self.note(store.renew(name, token, ttl).await)
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        let store = self.current()?;
        self.note(store.release(name, token).await)
    }

    fn health(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
