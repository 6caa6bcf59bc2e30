//! Cohorts: which ones the flags target, keeping them synced from the cohort API, adding
//! memberships to the user before evaluation, and what readiness and the SDK endpoints need.
//!
//! - [`parse`] reads a cohort body as a stream, [`upstream`] downloads it, [`blob`] builds the
//!   gzip SDKs download;
//! - [`sync`] is the loop that keeps the targeted cohorts in the [`Store`];
//! - [`Cohorts`] is the shared handle: the store, the project credentials the
//!   `/sdk/v1/cohort` endpoint accepts, the per-cohort sync status for readiness, and
//!   [`Cohorts::enrich`] for the request path.

pub mod blob;
pub mod parse;
pub mod sync;
pub mod upstream;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::amplitude::context::first_group_name;
use crate::amplitude::engine::{CompiledFlags, Map, Value};
use crate::amplitude::registry::Registry;
use crate::metrics::mask_key;
use crate::store::{Store, StoreError};
pub use upstream::Credentials;

/// The group type of user cohorts.
pub const USER_GROUP_TYPE: &str = "User";

/// How the last sync of a targeted cohort ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// The cohort is in the store (downloaded here or by another replica).
    Loaded,
    /// The last attempt failed; the reason is shown in readiness. Flags are served anyway.
    Failed(String),
}

/// Shared cohort state; see the module documentation.
pub struct Cohorts {
    store: Arc<dyn Store>,
    credentials: Vec<Credentials>,
    status: Mutex<HashMap<String, SyncStatus>>,
}

impl std::fmt::Debug for Cohorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cohorts")
            .field("projects", &self.credentials.len())
            .finish_non_exhaustive()
    }
}

impl Cohorts {
    /// Cohort state over `store`; `credentials` are the configured projects' keys, in order.
    pub fn new(store: Arc<dyn Store>, credentials: Vec<Credentials>) -> Self {
        Self {
            store,
            credentials,
            status: Mutex::new(HashMap::new()),
        }
    }

    /// The store cohorts live in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configured projects' credentials.
    pub fn credentials(&self) -> &[Credentials] {
        &self.credentials
    }

    /// Whether `api_key:secret_key` belong to one configured project.
    pub fn authenticate(&self, api_key: &str, secret_key: &str) -> bool {
        self.credentials.iter().any(|c| {
            constant_time_eq(c.api_key.as_bytes(), api_key.as_bytes())
                & constant_time_eq(c.secret_key.as_bytes(), secret_key.as_bytes())
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SyncStatus>> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how the sync of `cohort_id` ended.
    pub fn set_status(&self, cohort_id: &str, status: SyncStatus) {
        self.lock().insert(cohort_id.to_owned(), status);
    }

    /// The recorded status of a cohort; `None` while it was never synced.
    pub fn status(&self, cohort_id: &str) -> Option<SyncStatus> {
        self.lock().get(cohort_id).cloned()
    }

    /// Forgets statuses of cohorts no longer targeted, so the map stays bounded.
    pub fn retain(&self, targeted: &BTreeSet<String>) {
        self.lock().retain(|id, _| targeted.contains(id));
    }

    /// Deployments waiting for a targeted cohort that has neither loaded nor failed yet; the
    /// readiness endpoint adds these to the registry's reasons.
    pub fn not_ready_reasons(&self, registry: &Registry) -> Vec<String> {
        let status = self.lock();
        let mut reasons: Vec<String> = registry
            .snapshots()
            .iter()
            .flat_map(|(key, snapshot)| {
                targeted_ids(&snapshot.flags)
                    .into_iter()
                    .filter(|id| !status.contains_key(id))
                    .map(move |id| {
                        format!("deployment {}: cohort {id} not loaded yet", mask_key(key))
                    })
            })
            .collect();
        reasons.sort();
        reasons
    }

    /// Cohorts whose last sync failed, with the reason (readiness detail; flags are served).
    pub fn failures(&self) -> Vec<String> {
        let mut failures: Vec<String> = self
            .lock()
            .iter()
            .filter_map(|(id, status)| match status {
                SyncStatus::Failed(reason) => Some(format!("cohort {id}: {reason}")),
                SyncStatus::Loaded => None,
            })
            .collect();
        failures.sort();
        failures
    }

    /// Adds memberships to the user before evaluation, only for the group types the flags
    /// target (spec §7.3, with the reference's group bug fixed):
    /// - `User` targeted and `user_id` a string: `cohort_ids` = the user's cohorts (replacing
    ///   any the client sent);
    /// - a group type targeted and named in `groups`: `group_cohort_ids[type][name]` = the
    ///   group's cohorts, which the context builder attaches to the group.
    pub async fn enrich(&self, flags: &CompiledFlags, user: &mut Map) -> Result<(), StoreError> {
        let targeted = flags.cohort_ids_by_group_type();
        if targeted.is_empty() {
            return Ok(());
        }
        if targeted.contains_key(USER_GROUP_TYPE) {
            if let Some(Value::String(user_id)) = user.get("user_id") {
                let ids = self.store.get_memberships(USER_GROUP_TYPE, user_id).await?;
                user.insert("cohort_ids".to_owned(), string_array(ids));
            }
        }
        let lookups: Vec<(String, String)> = match user.get("groups") {
            Some(Value::Object(groups)) => groups
                .iter()
                .filter(|(group_type, _)| targeted.contains_key(group_type.as_str()))
                .filter_map(|(group_type, names)| {
                    first_group_name(names).map(|name| (group_type.clone(), name.to_owned()))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (group_type, name) in lookups {
            let ids = self.store.get_memberships(&group_type, &name).await?;
            set_group_cohorts(user, group_type, name, string_array(ids));
        }
        Ok(())
    }
}

/// Every cohort id the flags target, whatever the group type.
pub fn targeted_ids(flags: &CompiledFlags) -> BTreeSet<String> {
    flags
        .cohort_ids_by_group_type()
        .values()
        .flatten()
        .cloned()
        .collect()
}

fn string_array(ids: Vec<String>) -> Value {
    Value::Array(ids.into_iter().map(Value::String).collect())
}

/// `user.group_cohort_ids[group_type][name] = ids`, creating (or replacing non-object) levels.
fn set_group_cohorts(user: &mut Map, group_type: String, name: String, ids: Value) {
    let all = user
        .entry("group_cohort_ids".to_owned())
        .or_insert_with(|| Value::Object(Map::default()));
    if !matches!(all, Value::Object(_)) {
        *all = Value::Object(Map::default());
    }
    let Value::Object(all) = all else { return };
    let of_type = all
        .entry(group_type)
        .or_insert_with(|| Value::Object(Map::default()));
    if !matches!(of_type, Value::Object(_)) {
        *of_type = Value::Object(Map::default());
    }
    if let Value::Object(of_type) = of_type {
        of_type.insert(name, ids);
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amplitude::engine::parse_flags;
    use crate::store::{CohortDescription, MemoryStore};

    fn flags(selectors: &[(&str, &str)]) -> CompiledFlags {
        let conditions: Vec<String> = selectors
            .iter()
            .map(|(selector, id)| {
                format!(r#"[{{"selector":{selector},"op":"set contains any","values":["{id}"]}}]"#)
            })
            .collect();
        let json = format!(
            r#"[{{"key":"f","variants":{{"on":{{"key":"on"}}}},"segments":[{{"conditions":[{}],"variant":"on"}}]}}]"#,
            conditions.join(",")
        );
        CompiledFlags::compile(parse_flags(json.as_bytes()).unwrap())
    }

    async fn cohorts_with(members: &[(&str, &str, &[&str])]) -> Cohorts {
        let store = Arc::new(MemoryStore::new());
        for (id, group_type, ids) in members {
            let description = CohortDescription {
                cohort_id: (*id).into(),
                group_type: (*group_type).into(),
                size: ids.len() as u64,
                last_modified: 1,
            };
            let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            store
                .put_cohort(&description, &ids, bytes::Bytes::new())
                .await
                .unwrap();
        }
        Cohorts::new(store, Vec::new())
    }

    fn user(json: &str) -> Map {
        match Value::from_json_slice(json.as_bytes()).unwrap() {
            Value::Object(map) => map,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn users_and_groups_get_their_cohorts_when_targeted() {
        let cohorts = cohorts_with(&[("c1", "User", &["u1"]), ("g1", "org", &["acme"])]).await;
        let flags = flags(&[
            (r#"["context","user","cohort_ids"]"#, "c1"),
            (r#"["context","groups","org","cohort_ids"]"#, "g1"),
        ]);
        let mut u = user(
            r#"{"user_id":"u1","cohort_ids":["forged"],"groups":{"org":["acme"],"team":["x"]}}"#,
        );
        cohorts.enrich(&flags, &mut u).await.unwrap();
        assert_eq!(
            Value::Object(u).to_json_string(),
            r#"{"user_id":"u1","cohort_ids":["c1"],"groups":{"org":["acme"],"team":["x"]},"group_cohort_ids":{"org":{"acme":["g1"]}}}"#
        );
    }

    #[tokio::test]
    async fn nothing_is_looked_up_when_not_targeted() {
        let cohorts = cohorts_with(&[("c1", "User", &["u1"])]).await;
        let flags = flags(&[(r#"["context","groups","org","cohort_ids"]"#, "g1")]);
        let mut u = user(r#"{"user_id":"u1","cohort_ids":["client"]}"#);
        cohorts.enrich(&flags, &mut u).await.unwrap();
        assert_eq!(
            Value::Object(u).to_json_string(),
            r#"{"user_id":"u1","cohort_ids":["client"]}"#
        );
        let mut numeric = user(r#"{"user_id":5}"#);
        let user_flags = self::flags(&[(r#"["context","user","cohort_ids"]"#, "c1")]);
        cohorts.enrich(&user_flags, &mut numeric).await.unwrap();
        assert_eq!(Value::Object(numeric).to_json_string(), r#"{"user_id":5}"#);
    }

    #[test]
    fn credentials_must_match_one_project() {
        let store = Arc::new(MemoryStore::new());
        let c = |a: &str, s: &str| Credentials {
            api_key: a.into(),
            secret_key: s.into(),
        };
        let cohorts = Cohorts::new(store, vec![c("a1", "s1"), c("a2", "s2")]);
        assert!(cohorts.authenticate("a1", "s1"));
        assert!(cohorts.authenticate("a2", "s2"));
        assert!(!cohorts.authenticate("a1", "s2"));
        assert!(!cohorts.authenticate("a1", ""));
    }
}
