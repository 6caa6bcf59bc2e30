//! Background loops that keep each Flagsmith environment's document current.
//!
//! One loop per environment, so one environment's failure or slow upstream never stalls
//! the others. A loop either polls `{api_url}/environment-document/` with the server-side
//! key and `If-Modified-Since` (derived from the cached document's `updated_at`; a 304
//! keeps the cached document), or watches a document file and reloads it when it changes.
//! Any failure keeps the last-known-good document; the loops never die on bad input.
//!
//! API environments go through the [`Store`] so that, with Redis, one replica polls for all:
//! each loop competes for a per-environment lease (`flagsmith:<environment id>`). The holder
//! polls the API, serves what it fetched and writes it to the store (with the time it last
//! confirmed it); the others load the document from the store when it changes (a change
//! signal, with a status check every lease tick as a backstop) and take their health from the
//! holder's confirmations. At start every loop first serves what the store already has, so a
//! warm store makes a replica ready without the API. When the store fails, a loop polls the
//! API itself, so a Redis outage never stops documents from updating or being served. With
//! the in-memory store the lease is always this replica's: it simply polls. Document files
//! stay local: every replica reads its own file, no lease.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use reqwest::StatusCode;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::registry::{DocumentError, EnvironmentSnapshot, FlagsmithRegistry};
use super::time::{http_date, parse_iso8601};
use crate::metrics::{self as m, mask_key};
use crate::store::{new_token, DocumentChange, Store, StoreError};

/// Where one environment's document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentSource {
    /// Polled from the Flagsmith API with this server-side key.
    Api {
        /// The environment's server-side key.
        server_key: String,
    },
    /// Read from a local file, reloaded when its modification time or size changes.
    File(PathBuf),
}

/// Settings shared by every loop.
#[derive(Debug, Clone)]
pub struct FlagsmithSyncSettings {
    /// `{api_url}/environment-document/`.
    pub document_url: String,
    /// Pause between two polls.
    pub poll_interval: Duration,
    /// Timeout of one poll request.
    pub timeout: Duration,
    /// How often a document file is checked for changes.
    pub file_poll_interval: Duration,
    /// TTL of the per-environment poll lease; the holder renews it every third of it, and
    /// another replica takes over within two TTLs after the holder stops.
    pub lease_ttl: Duration,
}

impl FlagsmithSyncSettings {
    /// A lease TTL long enough for the holder to renew it around one poll request: renewal
    /// every third of the TTL plus a poll that may take the whole `timeout`.
    pub fn lease_ttl_for(timeout: Duration) -> Duration {
        (timeout * 2 + Duration::from_secs(3)).max(Duration::from_secs(3))
    }
}

/// The store id of an environment: a hash of its server-side key, so the key itself never
/// reaches Redis keys or change messages (hex MD5 of a fixed prefix and the key; it only has
/// to be stable and not reveal the key).
pub fn environment_id(server_key: &str) -> String {
    let digest = Md5::new()
        .chain_update(b"flagsmith-environment:")
        .chain_update(server_key.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Transport error or timeout.
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// A status other than 200 or 304.
    #[error("unexpected status {0}")]
    Status(StatusCode),
    /// 304 while no document is cached (the reference crashes here).
    #[error("304 Not Modified but no document is cached")]
    NotModifiedWithoutDocument,
    /// The body is not a usable document.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document file could not be read.
    #[error("cannot read {0}: {1}")]
    File(PathBuf, std::io::Error),
}

/// What a successful poll or file check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fetched {
    /// A new document is served.
    Updated,
    /// `304 Not Modified`.
    NotModified,
    /// A 200 (or file) with the document already served.
    Unchanged,
}

impl Fetched {
    fn label(&self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::NotModified => "not_modified",
            Self::Unchanged => "unchanged",
        }
    }
}

/// This loop's role for one environment, from its last lease attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Holds the lease: polls the API and writes the store.
    Holder,
    /// Another replica holds it: loads from the store.
    Follower,
    /// The store failed: polls the API on its own until the store answers again.
    Alone,
}

/// One API environment's loop state.
struct ApiEnvironment<'a> {
    index: usize,
    server_key: &'a str,
    /// [`environment_id`] of the server key.
    id: String,
    lease: String,
    token: String,
    role: Role,
    /// Store version of the served document, when it came from or went to the store.
    version: Option<u64>,
    next_poll: Instant,
    /// Whether the last store call failed (to log transitions, not every attempt).
    store_failing: bool,
}

/// Starts and runs the per-environment loops.
#[derive(Clone)]
pub struct FlagsmithSyncer {
    settings: Arc<FlagsmithSyncSettings>,
    client: reqwest::Client,
    registry: Arc<FlagsmithRegistry>,
    store: Arc<dyn Store>,
}

impl FlagsmithSyncer {
    /// A syncer writing into `registry`, sharing API documents through `store`.
    pub fn new(
        settings: FlagsmithSyncSettings,
        registry: Arc<FlagsmithRegistry>,
        store: Arc<dyn Store>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("evaluation-proxy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            settings: Arc::new(settings),
            client,
            registry,
            store,
        })
    }

    /// Spawns one loop per environment (`sources[i]` feeds environment `i`).
    pub fn start(
        &self,
        sources: Vec<DocumentSource>,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        for (index, source) in sources.into_iter().enumerate() {
            let this = self.clone();
            let cancel = cancel.child_token();
            tasks.spawn(async move {
                match source {
                    DocumentSource::Api { server_key } => {
                        this.api_loop(index, &server_key, cancel).await
                    }
                    DocumentSource::File(path) => this.file_loop(index, &path, cancel).await,
                }
            });
        }
    }

    async fn api_loop(&self, index: usize, server_key: &str, cancel: CancellationToken) {
        let id = environment_id(server_key);
        let mut env = ApiEnvironment {
            index,
            server_key,
            lease: format!("flagsmith:{id}"),
            id,
            token: new_token(),
            role: Role::Follower,
            version: None,
            next_poll: Instant::now(),
            store_failing: false,
        };
        // Subscribed before the first read, so no change between the two is missed.
        let mut changes = self.store.subscribe_documents();
        // Warm start: serve what the store already has, whatever the API does.
        self.follow_store(&mut env).await;
        let tick = self.settings.lease_ttl / 3;
        loop {
            self.lease_step(&mut env).await;
            if env.role == Role::Follower {
                self.follow_store(&mut env).await;
            } else if Instant::now() >= env.next_poll {
                let polled = tokio::select! {
                    _ = cancel.cancelled() => None,
                    outcome = self.poll(index, server_key) => Some(outcome),
                };
                let Some(outcome) = polled else { break };
                env.next_poll = Instant::now() + self.settings.poll_interval;
                self.after_poll(&mut env, outcome).await;
            }
            let wait = match env.role {
                Role::Follower => tick,
                Role::Holder | Role::Alone => {
                    tick.min(env.next_poll.saturating_duration_since(Instant::now()))
                }
            };
            if !wait_for_change(&mut changes, &env.id, wait, &cancel).await {
                break;
            }
        }
        self.give_up_lease(&env).await;
    }

    /// Takes or extends the poll lease and updates the role.
    async fn lease_step(&self, env: &mut ApiEnvironment<'_>) {
        let acquired = self
            .store
            .try_acquire(&env.lease, &env.token, self.settings.lease_ttl)
            .await;
        let role = match acquired {
            Ok(held) => {
                self.store_recovered(env);
                if held {
                    Role::Holder
                } else {
                    Role::Follower
                }
            }
            Err(error) => {
                self.store_failed(env, &error);
                Role::Alone
            }
        };
        let label = self.registry.label(env.index);
        if role != env.role {
            tracing::info!(environment = %label, role = ?role, "Flagsmith document poll role changed");
        }
        let held = if role == Role::Holder { 1.0 } else { 0.0 };
        metrics::gauge!(m::FLAGSMITH_LEASE_HELD, "environment" => label).set(held);
        env.role = role;
    }

    /// Releases the lease on shutdown, so another replica takes over at its next tick.
    async fn give_up_lease(&self, env: &ApiEnvironment<'_>) {
        if env.role != Role::Holder {
            return;
        }
        let release = self.store.release(&env.lease, &env.token);
        if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(1), release).await {
            tracing::warn!(environment = %self.registry.label(env.index), %error, "could not release the Flagsmith poll lease; it expires on its own");
        }
        let label = self.registry.label(env.index);
        metrics::gauge!(m::FLAGSMITH_LEASE_HELD, "environment" => label).set(0.0);
    }

    /// Records a poll's outcome; the holder also shares it through the store.
    async fn after_poll(&self, env: &mut ApiEnvironment<'_>, outcome: Result<Fetched, PollError>) {
        let label = self.registry.label(env.index);
        match outcome {
            Err(error) => {
                metrics::counter!(m::FLAGSMITH_DOCUMENT_FETCH, "environment" => label, "result" => "error").increment(1);
                tracing::error!(environment = %mask_key(env.server_key), %error, "error fetching Flagsmith environment document; serving the last-known-good one");
                self.registry.record_failure(env.index, error.to_string());
            }
            Ok(fetched) => {
                metrics::counter!(m::FLAGSMITH_DOCUMENT_FETCH, "environment" => label, "result" => fetched.label()).increment(1);
                if fetched == Fetched::Updated {
                    // Served but not (yet) in the store: the holder writes it below, and a
                    // replica polling alone writes it once it holds the lease.
                    env.version = None;
                }
                if env.role == Role::Holder {
                    self.publish(env).await;
                }
            }
        }
    }

    /// Writes the served document to the store, or only confirms it when the store already
    /// has it (then only a timestamp crosses the network).
    async fn publish(&self, env: &mut ApiEnvironment<'_>) {
        let now = now_millis();
        let mut result = Ok("confirmed");
        if env.version.is_some() {
            match self.store.confirm_document(&env.id, now).await {
                Ok(true) => {}
                // The store lost it (Redis restarted empty): write it again.
                Ok(false) => env.version = None,
                Err(error) => result = Err(error),
            }
        }
        if env.version.is_none() && result.is_ok() {
            if let Some(snapshot) = self.registry.snapshot(env.index) {
                let json = snapshot.document_json.clone();
                result = self
                    .store
                    .put_document(&env.id, json, now)
                    .await
                    .map(|version| {
                        env.version = Some(version);
                        "written"
                    });
            }
        }
        let label = self.registry.label(env.index);
        match result {
            Ok(outcome) => {
                metrics::counter!(m::FLAGSMITH_DOCUMENT_STORE, "environment" => label, "result" => outcome).increment(1);
                self.store_recovered(env);
            }
            Err(error) => {
                metrics::counter!(m::FLAGSMITH_DOCUMENT_STORE, "environment" => label, "result" => "write_error").increment(1);
                self.store_failed(env, &error);
            }
        }
    }

    /// Serves the stored document when its version differs from the served one, and takes the
    /// freshness of the holder's last confirmation.
    async fn follow_store(&self, env: &mut ApiEnvironment<'_>) {
        match self.load_from_store(env).await {
            Ok(()) => self.store_recovered(env),
            Err(error) => {
                let label = self.registry.label(env.index);
                metrics::counter!(m::FLAGSMITH_DOCUMENT_STORE, "environment" => label, "result" => "load_error").increment(1);
                self.store_failed(env, &error);
            }
        }
    }

    async fn load_from_store(&self, env: &mut ApiEnvironment<'_>) -> Result<(), StoreError> {
        let Some(status) = self.store.document_status(&env.id).await? else {
            return Ok(());
        };
        if env.version == Some(status.version) {
            self.registry
                .record_success_at(env.index, status.confirmed_at_millis);
            return Ok(());
        }
        let Some(stored) = self.store.get_document(&env.id).await? else {
            return Ok(());
        };
        env.version = Some(stored.version);
        let label = self.registry.label(env.index);
        match EnvironmentSnapshot::build(&stored.json) {
            Ok(snapshot) => {
                let current = self.registry.snapshot(env.index);
                let unchanged = current
                    .as_ref()
                    .is_some_and(|current| current.document_json == snapshot.document_json);
                // After a store outage, the store may hold an older document than the one
                // this replica fetched meanwhile; the holder soon overwrites it.
                let older = current
                    .as_ref()
                    .is_some_and(|current| is_older(&snapshot, current));
                if !unchanged && !older {
                    self.registry
                        .install_at(env.index, snapshot, stored.confirmed_at_millis);
                }
                self.registry
                    .record_success_at(env.index, stored.confirmed_at_millis);
                metrics::counter!(m::FLAGSMITH_DOCUMENT_STORE, "environment" => label, "result" => "loaded").increment(1);
            }
            Err(error) => {
                metrics::counter!(m::FLAGSMITH_DOCUMENT_STORE, "environment" => label, "result" => "load_error").increment(1);
                tracing::error!(environment = %self.registry.label(env.index), %error, "the shared store holds an unusable Flagsmith document; serving the last-known-good one");
                self.registry.record_failure(env.index, error.to_string());
            }
        }
        Ok(())
    }

    /// Logs the first of a run of store failures.
    fn store_failed(&self, env: &mut ApiEnvironment<'_>, error: &StoreError) {
        if !env.store_failing {
            tracing::warn!(environment = %self.registry.label(env.index), %error, "shared store unavailable for a Flagsmith document; this replica polls the API itself until it answers");
        }
        env.store_failing = true;
    }

    fn store_recovered(&self, env: &mut ApiEnvironment<'_>) {
        if env.store_failing {
            tracing::info!(environment = %self.registry.label(env.index), "shared store available again for a Flagsmith document");
        }
        env.store_failing = false;
    }

    /// One poll: 304 confirms the cached document, 200 installs a changed one.
    async fn poll(&self, index: usize, server_key: &str) -> Result<Fetched, PollError> {
        let current = self.registry.snapshot(index);
        let mut request = self
            .client
            .get(&self.settings.document_url)
            .header("X-Environment-Key", server_key);
        if let Some(since) = current
            .as_ref()
            .and_then(|s| s.document.updated_at.as_deref())
            .and_then(parse_iso8601)
        {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, http_date(since));
        }
        let response = request.send().await?;
        match response.status() {
            StatusCode::NOT_MODIFIED if current.is_some() => {
                self.registry.record_success(index);
                Ok(Fetched::NotModified)
            }
            StatusCode::NOT_MODIFIED => Err(PollError::NotModifiedWithoutDocument),
            StatusCode::OK => {
                let body = response.bytes().await?;
                self.accept(index, &body)
            }
            status => Err(PollError::Status(status)),
        }
    }

    /// Installs `body` unless it equals the cached document.
    fn accept(&self, index: usize, body: &[u8]) -> Result<Fetched, PollError> {
        let snapshot = EnvironmentSnapshot::build(body)?;
        let unchanged = self
            .registry
            .snapshot(index)
            .is_some_and(|current| current.document_json == snapshot.document_json);
        if unchanged {
            self.registry.record_success(index);
            Ok(Fetched::Unchanged)
        } else {
            self.registry.install(index, snapshot);
            Ok(Fetched::Updated)
        }
    }

    async fn file_loop(&self, index: usize, path: &Path, cancel: CancellationToken) {
        // (stamp, loaded fine) of the last read file version.
        let mut last_seen: Option<((SystemTime, u64), bool)> = None;
        loop {
            let stamp = tokio::fs::metadata(path)
                .await
                .ok()
                .and_then(|meta| Some((meta.modified().ok()?, meta.len())));
            match (stamp, last_seen) {
                (Some(stamp), Some((seen, ok))) if stamp == seen => {
                    // Unchanged file: still current if it loaded, still broken if not.
                    if ok {
                        self.registry.record_success(index);
                    }
                }
                _ => {
                    let result = match tokio::fs::read(path).await {
                        Ok(body) => self.accept(index, &body),
                        Err(e) => Err(PollError::File(path.to_owned(), e)),
                    };
                    last_seen = stamp.map(|s| (s, result.is_ok()));
                    let outcome = result.as_ref().map_or("error", Fetched::label);
                    let label = self.registry.label(index);
                    metrics::counter!(m::FLAGSMITH_DOCUMENT_FETCH, "environment" => label, "result" => outcome).increment(1);
                    if let Err(error) = result {
                        tracing::error!(file = %path.display(), %error, "cannot load Flagsmith environment document file; serving the last-known-good one");
                        self.registry.record_failure(index, error.to_string());
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.settings.file_poll_interval) => {}
            }
        }
    }
}

/// Whether `candidate`'s `updated_at` is strictly older than `current`'s (false when either
/// is missing or unparsable: then the store's version wins).
fn is_older(candidate: &EnvironmentSnapshot, current: &EnvironmentSnapshot) -> bool {
    let updated =
        |s: &EnvironmentSnapshot| s.document.updated_at.as_deref().and_then(parse_iso8601);
    matches!((updated(candidate), updated(current)), (Some(a), Some(b)) if a < b)
}

/// Waits up to `wait` for a change signal about environment `id` (or a lagged channel, which
/// may have dropped one); false when cancelled.
async fn wait_for_change(
    changes: &mut broadcast::Receiver<DocumentChange>,
    id: &str,
    wait: Duration,
    cancel: &CancellationToken,
) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = &mut deadline => return true,
            change = changes.recv() => match change {
                Ok(change) if change.environment != id => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Err(broadcast::error::RecvError::Closed) => {
                    return tokio::select! {
                        () = cancel.cancelled() => false,
                        () = &mut deadline => true,
                    };
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_ids_are_stable_hashes_that_hide_the_key() {
        let id = environment_id("ser.abc");
        assert_eq!(id, environment_id("ser.abc"));
        assert_ne!(id, environment_id("ser.abd"));
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!id.contains("abc"));
    }

    #[test]
    fn the_lease_outlives_a_renewal_tick_plus_a_whole_poll() {
        for secs in [1, 5, 30] {
            let timeout = Duration::from_secs(secs);
            let ttl = FlagsmithSyncSettings::lease_ttl_for(timeout);
            assert!(ttl / 3 + timeout < ttl, "{timeout:?} -> {ttl:?}");
        }
    }
}
