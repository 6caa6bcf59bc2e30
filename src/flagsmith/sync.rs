//! Background loops that keep each Flagsmith environment's document current.
//!
//! One loop per environment, so one environment's failure or slow upstream never stalls
//! the others. A loop either polls `{api_url}/environment-document/` with the server-side
//! key and `If-Modified-Since` (derived from the cached document's `updated_at`; a 304
//! keeps the cached document), or watches a document file and reloads it when it changes.
//! Any failure keeps the last-known-good document; the loops never die on bad input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::registry::{DocumentError, EnvironmentSnapshot, FlagsmithRegistry};
use super::time::{http_date, parse_iso8601};
use crate::metrics::mask_key;

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

/// Starts and runs the per-environment loops.
#[derive(Clone)]
pub struct FlagsmithSyncer {
    settings: Arc<FlagsmithSyncSettings>,
    client: reqwest::Client,
    registry: Arc<FlagsmithRegistry>,
}

impl FlagsmithSyncer {
    /// A syncer writing into `registry`.
    pub fn new(
        settings: FlagsmithSyncSettings,
        registry: Arc<FlagsmithRegistry>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("evaluation-proxy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            settings: Arc::new(settings),
            client,
            registry,
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
        loop {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = self.poll(index, server_key) => outcome,
            };
            if let Err(error) = outcome {
                tracing::error!(environment = %mask_key(server_key), %error, "error fetching Flagsmith environment document; serving the last-known-good one");
                self.registry.record_failure(index, error.to_string());
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// One poll: 304 confirms the cached document, 200 installs a changed one.
    async fn poll(&self, index: usize, server_key: &str) -> Result<(), PollError> {
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
                Ok(())
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
    fn accept(&self, index: usize, body: &[u8]) -> Result<(), PollError> {
        let snapshot = EnvironmentSnapshot::build(body)?;
        let unchanged = self
            .registry
            .snapshot(index)
            .is_some_and(|current| current.document_json == snapshot.document_json);
        if unchanged {
            self.registry.record_success(index);
        } else {
            self.registry.install(index, snapshot);
        }
        Ok(())
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
