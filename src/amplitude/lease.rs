//! Which replica talks to the vendor for a project: the holder of the project's lease.
//!
//! Replicas that share a store take the lease `sync:<id>` per project, where `<id>` is a
//! SHA-256 of the project's management key (or of its sorted deployment keys), so the name is
//! stable across replicas and restarts but never reveals a key. The holder renews it every
//! third of its TTL and gives it up on shutdown; if it dies, the lease expires after one TTL
//! and another replica takes it at its next attempt (within a third of a TTL more).
//!
//! Each attempt yields a [`Role`]: the holder fetches from the vendor and writes the store,
//! followers load from the store, and a replica that cannot reach the store works
//! [`Role::Alone`] (fetches from the vendor itself, serves from memory) until it can again.
//! With the in-memory store the single replica always holds the lease.

use std::sync::Arc;
use std::time::Duration;

use ring::digest;

use crate::store::{new_token, Store};

/// What this replica does for a project right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The first lease attempt has not finished.
    Unknown,
    /// Holds the lease: fetches from the vendor and writes the store.
    Holder,
    /// Another replica holds it: loads flags from the store.
    Follower,
    /// The store is unreachable: fetches from the vendor itself and serves from memory.
    Alone,
}

/// The lease (and store id) of a project: from the management key when there is one, else
/// from the deployment keys, hashed so no key reaches Redis in a key name.
pub fn project_id(management_key: Option<&str>, deployments: &[String]) -> String {
    let material = match management_key {
        Some(key) => format!("management\n{key}"),
        None => {
            let mut keys: Vec<&str> = deployments.iter().map(String::as_str).collect();
            keys.sort_unstable();
            keys.dedup();
            format!("deployments\n{}", keys.join("\n"))
        }
    };
    let hash = digest::digest(&digest::SHA256, material.as_bytes());
    hash.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One replica's hold on one project's lease.
pub struct Lease {
    store: Arc<dyn Store>,
    name: String,
    token: String,
    ttl: Duration,
    held: bool,
}

impl Lease {
    /// A lease on `sync:<project_id>` with a fresh random token.
    pub fn new(store: Arc<dyn Store>, project_id: &str, ttl: Duration) -> Self {
        Self {
            store,
            name: format!("sync:{project_id}"),
            token: new_token(),
            ttl,
            held: false,
        }
    }

    /// How often [`Lease::step`] should run: a third of the TTL, so two renewals can fail
    /// before the lease expires.
    pub fn interval(&self) -> Duration {
        self.ttl / 3
    }

    /// Bound on one store call: a stuck call must not outlive the lease it is renewing.
    fn call_timeout(&self) -> Duration {
        self.interval().max(Duration::from_millis(50))
    }

    /// Renews the lease when held, otherwise tries to take it. Returns the resulting role and
    /// whether the lease was newly taken (the holder should then re-seed the store: it may have
    /// lost its data, or held someone else's older writes).
    pub async fn step(&mut self) -> (Role, bool) {
        let timeout = self.call_timeout();
        if self.held {
            let renewed =
                tokio::time::timeout(timeout, self.store.renew(&self.name, &self.token, self.ttl))
                    .await;
            match renewed {
                Ok(Ok(true)) => return (Role::Holder, false),
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %self.name, "the sync lease expired or was lost; trying to take it again");
                }
                // Unknown whether it is still ours; the next attempt (same token) tells.
                _ => {
                    self.held = false;
                    return (Role::Alone, false);
                }
            }
            self.held = false;
        }
        let acquired = tokio::time::timeout(
            timeout,
            self.store.try_acquire(&self.name, &self.token, self.ttl),
        )
        .await;
        match acquired {
            Ok(Ok(true)) => {
                self.held = true;
                (Role::Holder, true)
            }
            Ok(Ok(false)) => (Role::Follower, false),
            _ => (Role::Alone, false),
        }
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        let released = tokio::time::timeout(
            self.call_timeout(),
            self.store.release(&self.name, &self.token),
        )
        .await;
        match released {
            Ok(Ok(_)) => tracing::info!(lease = %self.name, "released the sync lease"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %self.name, %error, "could not release the sync lease; it expires by itself")
            }
            Err(_) => {
                tracing::warn!(lease = %self.name, "releasing the sync lease timed out; it expires by itself")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn project_ids_are_stable_hashes_that_hide_the_keys() {
        let a = project_id(Some("secret-management-key"), &[]);
        assert_eq!(a, project_id(Some("secret-management-key"), &[]));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("secret"));
        assert_ne!(a, project_id(Some("other"), &[]));
        let listed = project_id(None, &["b".into(), "a".into()]);
        assert_eq!(
            listed,
            project_id(None, &["a".into(), "b".into(), "a".into()])
        );
        assert_ne!(listed, project_id(None, &["a".into()]));
    }

    #[tokio::test]
    async fn one_holder_then_takeover_after_release() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ttl = Duration::from_secs(10);
        let mut first = Lease::new(Arc::clone(&store), "p", ttl);
        let mut second = Lease::new(Arc::clone(&store), "p", ttl);
        assert_eq!(first.step().await, (Role::Holder, true));
        assert_eq!(first.step().await, (Role::Holder, false), "a renewal");
        assert_eq!(second.step().await, (Role::Follower, false));
        first.release().await;
        assert_eq!(second.step().await, (Role::Holder, true));
        assert_eq!(first.step().await, (Role::Follower, false));
    }

    #[tokio::test]
    async fn an_expired_holder_is_replaced() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ttl = Duration::from_millis(90);
        let mut dead = Lease::new(Arc::clone(&store), "p", ttl);
        let mut other = Lease::new(Arc::clone(&store), "p", ttl);
        assert_eq!(dead.step().await, (Role::Holder, true));
        assert_eq!(other.step().await, (Role::Follower, false));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(other.step().await, (Role::Holder, true));
        assert_eq!(
            dead.step().await,
            (Role::Follower, false),
            "the old holder notices it lost the lease"
        );
    }
}
