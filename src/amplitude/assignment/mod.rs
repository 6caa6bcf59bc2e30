//! Assignment tracking: one `[Experiment] Assignment` event per distinct assignment per 24 hours
//! (spec §4.5, §7.5, §7.6).
//!
//! The request path only stamps the time and `try_send`s the evaluation context and results
//! (moved, not copied) onto a bounded queue ([`Tracker::track`]); a full queue drops the
//! assignment and counts it. One worker task ([`worker`]) takes assignments in batches,
//! computes a 128-bit digest of the canonical key's content, dedups (the local [`filter`] first, then, when replicas share
//! Redis, a batched claim-once in the [`Store`](crate::store::Store); a Redis error falls back
//! to the local answer), builds the events ([`event`]) and hands them to the [`upload`]er, which
//! batches, retries and flushes on shutdown.

pub mod event;
pub mod filter;
pub mod upload;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::amplitude::engine::{EvaluationResults, Value};

pub use filter::{Clock, LocalFilter, ManualClock, SystemClock};
pub use upload::{UploadError, UploadSettings};
pub use worker::{Dedup, Tracker, TrackerSettings};

/// What one remote evaluation assigned to a user, as queued by the request path.
#[derive(Debug)]
pub struct Assignment {
    /// The project API key the event is uploaded with.
    pub api_key: Arc<str>,
    /// The evaluation context (`{"user":{..},"groups"?:{..}}`).
    pub context: Value,
    /// Every result of the evaluation, defaults included.
    pub results: EvaluationResults,
    /// When the assignment was made (epoch ms): the event `time` and the `insert_id` day.
    pub timestamp_millis: i64,
}

/// Which project API key the events of a deployment are uploaded with.
///
/// Deployments listed in the configuration are known at start-up; deployments a management key
/// lists are registered by the sync as they appear. When exactly one project has an API key it
/// is used for any deployment not registered otherwise.
#[derive(Debug, Default)]
pub struct ApiKeys {
    /// Per configured project (by index): its API key, if it has one.
    projects: Vec<Option<Arc<str>>>,
    by_deployment: ArcSwap<HashMap<String, Arc<str>>>,
    only: Option<Arc<str>>,
}

impl ApiKeys {
    /// Keys per project index; `None` for a project without an API key (local mode).
    pub fn new(projects: Vec<Option<String>>) -> Self {
        let projects: Vec<Option<Arc<str>>> =
            projects.into_iter().map(|key| key.map(Arc::from)).collect();
        let mut with_key = projects.iter().flatten();
        let only = match (with_key.next(), with_key.next()) {
            (Some(key), None) => Some(Arc::clone(key)),
            _ => None,
        };
        Self {
            projects,
            by_deployment: ArcSwap::from_pointee(HashMap::new()),
            only,
        }
    }

    /// True when no project has an API key, so nothing can be uploaded.
    pub fn is_empty(&self) -> bool {
        self.projects.iter().all(Option::is_none)
    }

    /// Records that `deployment` belongs to project `project`.
    pub fn register(&self, deployment: &str, project: usize) {
        let Some(Some(key)) = self.projects.get(project) else {
            return;
        };
        if self.by_deployment.load().get(deployment) == Some(key) {
            return;
        }
        self.by_deployment.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(deployment.to_owned(), Arc::clone(key));
            map
        });
    }

    /// The API key for a deployment's events (a map lookup and an `Arc` clone).
    pub fn for_deployment(&self, deployment: &str) -> Option<Arc<str>> {
        if let Some(key) = self.by_deployment.load().get(deployment) {
            return Some(Arc::clone(key));
        }
        self.only.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_project_key_serves_every_deployment() {
        let keys = ApiKeys::new(vec![None, Some("k1".into())]);
        assert_eq!(keys.for_deployment("any").as_deref(), Some("k1"));
        assert!(!keys.is_empty());
        assert!(ApiKeys::new(vec![None]).is_empty());
    }

    #[test]
    fn several_projects_need_registered_deployments() {
        let keys = ApiKeys::new(vec![Some("k0".into()), Some("k1".into())]);
        assert_eq!(keys.for_deployment("d"), None);
        keys.register("d", 1);
        keys.register("e", 0);
        keys.register("x", 7);
        assert_eq!(keys.for_deployment("d").as_deref(), Some("k1"));
        assert_eq!(keys.for_deployment("e").as_deref(), Some("k0"));
        assert_eq!(keys.for_deployment("x"), None);
    }
}
