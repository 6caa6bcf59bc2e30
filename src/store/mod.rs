//! The state replicas share, behind one trait.
//!
//! Today the proxy keeps flag configs per deployment here; the Redis implementation, cohorts,
//! dedup claims and leases arrive with their own issues and extend this trait. Writers (the sync
//! loops) put what they fetched; readers (the [`crate::amplitude::registry::Registry`]) learn about
//! changes through [`Store::subscribe`] and load the new version. The request path never calls
//! the store for flags: it reads the registry's compiled snapshot.

pub mod memory;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

pub use memory::MemoryStore;

/// The flag configs of one deployment as the vendor served them (`/sdk/v2/flags` JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlags {
    /// Increases by one each time different flags are written for the deployment.
    pub version: u64,
    /// The JSON array, byte for byte as fetched or read from a flags file.
    pub json: Bytes,
}

/// What changed in the store, sent to subscribers so they reload only what they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New flag configs were written for this deployment key.
    Flags { deployment: String, version: u64 },
    /// The deployment and its flags were removed.
    DeploymentRemoved { deployment: String },
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
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

    /// Subscribes to changes made after this call.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
}
