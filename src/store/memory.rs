//! The default store: process memory, for a single node.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use super::{Change, Store, StoreError, StoredFlags};

/// Capacity of the change channel; a subscriber that lags further re-reads everything it serves.
const CHANGE_CHANNEL_CAPACITY: usize = 1024;

/// Keeps everything in a mutex-guarded map. Only sync loops and snapshot rebuilds touch it,
/// never the request path, so a plain mutex is enough.
#[derive(Debug)]
pub struct MemoryStore {
    flags: Mutex<HashMap<String, StoredFlags>>,
    changes: broadcast::Sender<Change>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        Self {
            flags: Mutex::new(HashMap::new()),
            changes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredFlags>> {
        // A panic while holding this lock cannot leave the map half-written (every update is a
        // single insert or remove), so a poisoned lock is safe to keep using.
        self.flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_flags(&self, deployment: &str, json: Bytes) -> Result<u64, StoreError> {
        let version = {
            let mut flags = self.lock();
            let previous = flags.get(deployment);
            if let Some(previous) = previous.filter(|p| p.json == json) {
                return Ok(previous.version);
            }
            let version = previous.map_or(1, |p| p.version + 1);
            flags.insert(deployment.to_owned(), StoredFlags { version, json });
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
        Ok(self.lock().get(deployment).cloned())
    }

    async fn remove_deployment(&self, deployment: &str) -> Result<(), StoreError> {
        let removed = self.lock().remove(deployment).is_some();
        if removed {
            let _ = self.changes.send(Change::DeploymentRemoved {
                deployment: deployment.to_owned(),
            });
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_increase_only_on_change_and_changes_are_signalled() {
        let store = MemoryStore::new();
        let mut changes = store.subscribe();
        assert_eq!(
            store
                .put_flags("d", Bytes::from_static(b"[]"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .put_flags("d", Bytes::from_static(b"[]"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .put_flags("d", Bytes::from_static(b"[1]"))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            changes.recv().await.unwrap(),
            Change::Flags {
                deployment: "d".into(),
                version: 1
            }
        );
        assert_eq!(
            changes.recv().await.unwrap(),
            Change::Flags {
                deployment: "d".into(),
                version: 2
            }
        );
        let stored = store.get_flags("d").await.unwrap().unwrap();
        assert_eq!(stored.json, Bytes::from_static(b"[1]"));
        store.remove_deployment("d").await.unwrap();
        assert_eq!(store.get_flags("d").await.unwrap(), None);
        assert_eq!(
            changes.recv().await.unwrap(),
            Change::DeploymentRemoved {
                deployment: "d".into()
            }
        );
    }
}
