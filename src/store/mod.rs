//! The state replicas share, behind one trait.
//!
//! What several proxy replicas must agree on lives here, and nothing else:
//! - **flag configs** per deployment (the whole `/sdk/v2/flags` array), versioned;
//! - **cohorts**: description, members, the membership index `(groupType, member) -> cohort ids`
//!   and the gzip blob SDKs download;
//! - **dedup claims**: claim-once keys with a TTL (24 h for assignment events), in batches;
//! - **Flagsmith environment documents**, versioned, keyed by a hash of the server-side key;
//! - **coordination**: a lease with a random token, and change signals followers watch.
//!
//! Two implementations: [`MemoryStore`] (the default, one node) and [`RedisStore`] (shared by
//! replicas; key layout and migrations in [`redis`] and [`migrate`]). Writers (the sync loops)
//! put what they fetched; readers (the [`crate::amplitude::registry::Registry`]) learn about
//! changes through [`Store::subscribe`] / [`Store::subscribe_cohorts`] /
//! [`Store::subscribe_documents`] and load the new version.
//! The request path never calls the store for flags: it reads the registry's compiled snapshot.

mod cohort_mirror;
pub mod keys;
mod membership_cache;
pub mod memory;
pub mod migrate;
pub mod redis;
pub mod resilient;
mod sorted_members;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use self::memory::MemoryStore;
pub use self::redis::{RedisSettings, RedisStore};
pub use self::resilient::ResilientStore;

/// The flag configs of one deployment as the vendor served them (`/sdk/v2/flags` JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlags {
    /// Increases by one each time different flags are written for the deployment.
    pub version: u64,
    /// The JSON array, byte for byte as fetched or read from a flags file.
    pub json: Bytes,
}

/// What changed in the flag configs, sent to subscribers so they reload only what they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New flag configs were written for this deployment key.
    Flags { deployment: String, version: u64 },
    /// The deployment and its flags were removed.
    DeploymentRemoved { deployment: String },
}

/// What changed in the cohorts, on a channel of its own ([`Store::subscribe_cohorts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CohortChange {
    /// A new version of the cohort (members, index, blob, description) was written.
    Updated {
        cohort_id: String,
        last_modified: i64,
    },
    /// The cohort, its members, blob and index entries were removed.
    Removed { cohort_id: String },
}

/// A cohort's description, serialised with the vendor's field names and order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CohortDescription {
    /// The vendor's cohort id.
    pub cohort_id: String,
    /// `User` for user cohorts, otherwise the group type name (e.g. `org name`).
    pub group_type: String,
    /// Number of members.
    pub size: u64,
    /// Vendor timestamp (ms) of this version; a write older than the stored one is ignored.
    pub last_modified: i64,
}

/// A cohort description with the blob of that same version, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortBlob {
    /// The version the blob belongs to.
    pub description: CohortDescription,
    /// The bytes the writer stored (gzip JSON, or its base64 form; the store does not look).
    pub blob: Bytes,
}

/// What a cohort write ([`CohortWriter::finish`], [`Store::put_cohort`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CohortWrite {
    /// The new version is stored; the membership index changed by these counts.
    Written { added: u64, removed: u64 },
    /// The stored version is as new or newer (`lastModified`); nothing was written.
    Stale { stored: CohortDescription },
}

/// The fields of a cohort version known once its whole body was read (the vendor may send
/// them after the members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortVersion {
    /// See [`CohortDescription::group_type`].
    pub group_type: String,
    /// See [`CohortDescription::last_modified`].
    pub last_modified: i64,
}

/// A streamed write of one cohort version, from [`Store::begin_cohort`].
#[async_trait]
pub trait CohortWriter: Send {
    /// Adds members of the version (duplicates allowed, within a chunk and across chunks).
    /// May return before they are stored; errors surface here or from `finish`.
    async fn add(&mut self, members: Vec<String>) -> Result<(), StoreError>;

    /// Completes the write: ignored ([`CohortWrite::Stale`]) when the stored `lastModified` is
    /// the same or newer; otherwise the membership index is updated by difference with the
    /// stored version (the whole set when the group type changed), `blob` is fed the distinct
    /// members and its result stored, and the description (`size` = distinct members) is
    /// published last.
    async fn finish(
        self: Box<Self>,
        version: CohortVersion,
        blob: Box<dyn BlobBuilder>,
    ) -> Result<CohortWrite, StoreError>;
}

/// Builds a cohort's blob from the distinct members the store feeds it, so a store can build
/// it from wherever it keeps them (the format belongs to the caller, the store does not look).
pub trait BlobBuilder: Send {
    /// Called once first, with the description of the version (`size` = members to come).
    fn start(&mut self, description: &CohortDescription);

    /// Called once per distinct member, in whatever order the store keeps them.
    fn push(&mut self, member: &str);

    /// The finished blob.
    fn finish(self: Box<Self>) -> Bytes;
}

/// A [`BlobBuilder`] that stores bytes made beforehand ([`Store::put_cohort`]).
struct FixedBlob(Bytes);

impl BlobBuilder for FixedBlob {
    fn start(&mut self, _: &CohortDescription) {}

    fn push(&mut self, _: &str) {}

    fn finish(self: Box<Self>) -> Bytes {
        self.0
    }
}

/// Members per [`CohortWriter::add`] call of [`Store::put_cohort`].
const PUT_COHORT_CHUNK: usize = 10_000;

/// One Flagsmith environment document as the replica holding its lease stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    /// Increases by one each time a different document is written for the environment.
    pub version: u64,
    /// The document JSON, byte for byte as the writer passed it.
    pub json: Bytes,
    /// Unix ms of the last time the writer confirmed the document with the Flagsmith API.
    pub confirmed_at_millis: u64,
}

/// The version and confirmation time of a stored document, read without its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentStatus {
    /// See [`StoredDocument::version`].
    pub version: u64,
    /// See [`StoredDocument::confirmed_at_millis`].
    pub confirmed_at_millis: u64,
}

/// A new Flagsmith environment document was written (on a channel of its own,
/// [`Store::subscribe_documents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentChange {
    /// The environment id (a hash of its server-side key, never the key itself).
    pub environment: String,
    /// The version written.
    pub version: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backing service did not answer within the command timeout.
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    /// Stored data could not be decoded (written by something else, or corrupted).
    #[error("store holds invalid data at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The settings are unusable (bad URL, bad prefix).
    #[error("invalid store settings: {0}")]
    Config(String),
    /// The shared keyspace was written by a newer proxy; refusing to touch it.
    #[error(
        "the Redis keyspace under prefix {prefix:?} has schema version {found}, but this proxy only \
         understands up to version {supported}; upgrade the proxy (or use another prefix)"
    )]
    SchemaTooNew {
        prefix: String,
        found: u32,
        supported: u32,
    },
    /// Another replica held the migration lock for too long.
    #[error("timed out waiting for another replica to migrate the keyspace to version {0}")]
    MigrationLockTimeout(u32),
}

/// The storage contract; see the module documentation.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes the flags of a deployment. Returns the stored version: unchanged when `json` equals
    /// what is already stored (no change is signalled then), otherwise the previous version + 1.
    async fn put_flags(&self, deployment: &str, json: Bytes) -> Result<u64, StoreError>;

    /// Reads the flags of a deployment, if any were written.
    async fn get_flags(&self, deployment: &str) -> Result<Option<StoredFlags>, StoreError>;

    /// Removes a deployment's flags and signals [`Change::DeploymentRemoved`].
    async fn remove_deployment(&self, deployment: &str) -> Result<(), StoreError>;

    /// The stored deployments and their flag versions, sorted by key.
    async fn list_deployments(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Subscribes to flag changes made after this call (by this replica or, for Redis, others).
    fn subscribe(&self) -> broadcast::Receiver<Change>;

    /// Records the deployment keys the management API listed for `project` (a stable, non-secret
    /// project id), so replicas that do not hold the project's lease know which deployments to
    /// serve without asking the vendor. Replaces the previous list.
    async fn put_project_deployments(
        &self,
        project: &str,
        deployments: &[String],
    ) -> Result<(), StoreError>;

    /// The deployment keys last recorded for `project`, if any were.
    async fn get_project_deployments(
        &self,
        project: &str,
    ) -> Result<Option<Vec<String>>, StoreError>;

    /// Starts writing a new version of `cohort_id`, streamed: members go in by chunks
    /// ([`CohortWriter::add`]) while the vendor's body is read, so a store that keeps them
    /// elsewhere (Redis) never holds them all; [`CohortWriter::finish`] then diffs, indexes,
    /// builds the blob and publishes. Callers must not write the same cohort concurrently
    /// (hold the lease). A writer dropped before `finish` leaves the stored version as it was.
    async fn begin_cohort(&self, cohort_id: &str) -> Result<Box<dyn CohortWriter>, StoreError>;

    /// Writes a whole new version of a cohort at once (small cohorts, tests): `members` is the
    /// complete member list (duplicates allowed) and `blob` is stored as given. The stored
    /// `size` is the number of distinct members. See [`Store::begin_cohort`].
    async fn put_cohort(
        &self,
        description: &CohortDescription,
        members: &[String],
        blob: Bytes,
    ) -> Result<CohortWrite, StoreError> {
        let mut writer = self.begin_cohort(&description.cohort_id).await?;
        for chunk in members.chunks(PUT_COHORT_CHUNK) {
            writer.add(chunk.to_vec()).await?;
        }
        let version = CohortVersion {
            group_type: description.group_type.clone(),
            last_modified: description.last_modified,
        };
        writer.finish(version, Box::new(FixedBlob(blob))).await
    }

    /// The stored description of a cohort.
    async fn get_cohort(&self, cohort_id: &str) -> Result<Option<CohortDescription>, StoreError>;

    /// Every stored cohort description, sorted by id (a sync-path read, scanned in pages).
    async fn list_cohorts(&self) -> Result<Vec<CohortDescription>, StoreError>;

    /// The members of the stored version, sorted (a sync-path read, scanned in pages).
    async fn get_cohort_members(&self, cohort_id: &str) -> Result<Option<Vec<String>>, StoreError>;

    /// The description and blob of the stored version, read atomically.
    async fn get_cohort_blob(&self, cohort_id: &str) -> Result<Option<CohortBlob>, StoreError>;

    /// The ids of the cohorts of `group_type` that contain `member`, sorted (request path; the
    /// answer is bounded by the number of cohorts).
    async fn get_memberships(
        &self,
        group_type: &str,
        member: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Removes a cohort, its members, blob and membership index entries.
    async fn remove_cohort(&self, cohort_id: &str) -> Result<(), StoreError>;

    /// Subscribes to cohort changes made after this call.
    fn subscribe_cohorts(&self) -> broadcast::Receiver<CohortChange>;

    /// Claims each key for `ttl`: `true` where the key was not claimed (or its claim expired),
    /// `false` where it is still claimed. Answers in the order of `keys`; a key repeated in one
    /// call is claimed by its first occurrence.
    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<bool>, StoreError>;

    /// Writes a Flagsmith environment document and its confirmation time. Returns the stored
    /// version: unchanged when `json` equals the stored document (only the confirmation time
    /// is updated and no change is signalled), otherwise the previous version + 1. `environment`
    /// is an opaque id; callers pass a hash of the server-side key so no key reaches the store.
    async fn put_document(
        &self,
        environment: &str,
        json: Bytes,
        confirmed_at_millis: u64,
    ) -> Result<u64, StoreError>;

    /// Records that the stored document was confirmed (a `304` from the API) without sending
    /// it again. Returns false when no document is stored for `environment`.
    async fn confirm_document(
        &self,
        environment: &str,
        confirmed_at_millis: u64,
    ) -> Result<bool, StoreError>;

    /// Reads a stored Flagsmith environment document.
    async fn get_document(&self, environment: &str) -> Result<Option<StoredDocument>, StoreError>;

    /// Reads the version and confirmation time of a stored document (cheap: no body).
    async fn document_status(
        &self,
        environment: &str,
    ) -> Result<Option<DocumentStatus>, StoreError>;

    /// Subscribes to document changes made after this call.
    fn subscribe_documents(&self) -> broadcast::Receiver<DocumentChange>;

    /// Takes the lease `name` for `ttl` if nobody holds it (or it expired). Holding it already
    /// with the same `token` also succeeds and extends it.
    async fn try_acquire(&self, name: &str, token: &str, ttl: Duration)
        -> Result<bool, StoreError>;

    /// Extends the lease to `ttl` from now if `token` still holds it.
    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease up if `token` holds it; returns whether it did.
    async fn release(&self, name: &str, token: &str) -> Result<bool, StoreError>;

    /// Why the shared store is degraded right now (e.g. Redis unreachable), for readiness and
    /// logs; `None` when it works (always, for stores that cannot fail).
    fn health(&self) -> Option<String> {
        None
    }
}

/// The store the configuration asks for: Redis when settings are given (connecting and migrating
/// its keyspace), otherwise process memory.
pub async fn open(redis: Option<&RedisSettings>) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match redis {
        Some(settings) => std::sync::Arc::new(RedisStore::connect(settings).await?),
        None => std::sync::Arc::new(MemoryStore::new()),
    })
}

/// A fresh random lease token (128 bits, hex), so replicas never share one.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}
