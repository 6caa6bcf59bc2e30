//! An in-process stand-in for Amplitude's management and flags APIs, following
//! `../shared/spec/amplitude-apis-and-clients.md` §1.2-1.3: Bearer auth and `nextCursor`
//! pages on `/api/1/deployments`, `Api-Key` auth on `/sdk/v2/flags`, and the cohort API
//! (§1.4: Basic auth, `maxCohortSize` -> 413, `lastModified` -> 204) on `/sdk/v1/cohort/{id}`. Failures can be queued
//! per path to exercise the retry policy, and every request is recorded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
    pub library: Option<String>,
}

#[derive(Default)]
struct FakeState {
    management_key: String,
    /// (deployment key, deleted)
    deployments: Vec<(String, bool)>,
    page_size: usize,
    flags: HashMap<String, String>,
    failures: HashMap<String, VecDeque<StatusCode>>,
    /// Basic credentials the cohort API accepts (`api:secret`).
    cohort_credentials: Vec<String>,
    /// Cohort id -> body served with 200 and its lastModified and size.
    cohorts: HashMap<String, FakeCohort>,
    requests: Vec<Recorded>,
}

/// A cohort the fake serves.
#[derive(Debug, Clone)]
pub struct FakeCohort {
    pub last_modified: i64,
    pub size: usize,
    pub body: String,
}

/// Handle to the running fake.
#[derive(Clone)]
pub struct FakeAmplitude {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeAmplitude {
    /// Starts the fake on a free port; `management_key` is the only Bearer token it accepts.
    pub async fn start(management_key: &str) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            management_key: management_key.to_owned(),
            page_size: 100,
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/api/1/deployments", get(deployments))
            .route("/sdk/v2/flags", get(flags))
            .route("/sdk/v1/cohort/{id}", get(cohort))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}"),
            state,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Sets the project's deployments (key, deleted).
    pub fn set_deployments(&self, deployments: &[(&str, bool)]) {
        self.with(|s| {
            s.deployments = deployments
                .iter()
                .map(|(k, d)| (k.to_string(), *d))
                .collect()
        });
    }

    /// Deployments per management API page.
    pub fn set_page_size(&self, size: usize) {
        self.with(|s| s.page_size = size);
    }

    /// Sets the flags JSON served for a deployment key.
    pub fn set_flags(&self, deployment: &str, json: &str) {
        self.with(|s| s.flags.insert(deployment.to_owned(), json.to_owned()));
    }

    /// Makes `api:secret` valid Basic credentials for the cohort API.
    pub fn allow_cohort_credentials(&self, api: &str, secret: &str) {
        self.with(|s| s.cohort_credentials.push(format!("{api}:{secret}")));
    }

    /// Serves a cohort in the documented shape (field order of the Node SDK's type).
    pub fn set_cohort(&self, id: &str, group_type: &str, last_modified: i64, members: &[&str]) {
        let body = serde_json::json!({
            "cohortId": id, "groupType": group_type, "groupTypeId": 1, "lastComputed": last_modified,
            "lastModified": last_modified, "size": members.len(), "memberIds": members,
        })
        .to_string();
        self.set_cohort_body(id, last_modified, members.len(), &body);
    }

    /// Serves a cohort with a hand-written body (field order, odd shapes).
    pub fn set_cohort_body(&self, id: &str, last_modified: i64, size: usize, body: &str) {
        self.with(|s| {
            s.cohorts.insert(
                id.to_owned(),
                FakeCohort {
                    last_modified,
                    size,
                    body: body.to_owned(),
                },
            )
        });
    }

    /// Requests to the cohort API for one cohort id.
    pub fn cohort_requests(&self, id: &str) -> Vec<Recorded> {
        self.requests(&format!("/sdk/v1/cohort/{id}"))
    }

    /// The next requests to `path` fail with these statuses, in order.
    pub fn fail_next(&self, path: &str, statuses: &[u16]) {
        self.with(|s| {
            let queue = s.failures.entry(path.to_owned()).or_default();
            queue.extend(statuses.iter().map(|c| StatusCode::from_u16(*c).unwrap()));
        });
    }

    /// Requests received so far for `path`.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.path == path)
                .cloned()
                .collect()
        })
    }
}

fn record(
    state: &mut FakeState,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<StatusCode> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.requests.push(Recorded {
        path: path.to_owned(),
        query: query.clone(),
        authorization: header("authorization"),
        library: header("x-amp-exp-library"),
    });
    state.failures.get_mut(path).and_then(VecDeque::pop_front)
}

async fn deployments(
    State(state): State<Arc<Mutex<FakeState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap();
    if let Some(status) = record(&mut state, "/api/1/deployments", &query, &headers) {
        return status.into_response();
    }
    let expected = format!("Bearer {}", state.management_key);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let start: usize = query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let end = (start + state.page_size).min(state.deployments.len());
    let page: Vec<serde_json::Value> = state.deployments[start..end]
        .iter()
        .enumerate()
        .map(|(i, (key, deleted))| {
            serde_json::json!({"id": format!("{}", start + i), "projectId": "12345", "label": key, "key": key, "deleted": deleted})
        })
        .collect();
    let mut body = serde_json::json!({ "deployments": page });
    if end < state.deployments.len() {
        body["nextCursor"] = serde_json::json!(end.to_string());
    }
    axum::Json(body).into_response()
}

async fn flags(
    State(state): State<Arc<Mutex<FakeState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap();
    if let Some(status) = record(&mut state, "/sdk/v2/flags", &query, &headers) {
        return status.into_response();
    }
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Api-Key "));
    match key.and_then(|k| state.flags.get(k)) {
        Some(json) => ([("content-type", "application/json")], json.clone()).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn cohort(
    State(state): State<Arc<Mutex<FakeState>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    use base64::Engine;
    let mut state = state.lock().unwrap();
    let path = format!("/sdk/v1/cohort/{id}");
    if let Some(status) = record(&mut state, &path, &query, &headers) {
        return status.into_response();
    }
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    if !credentials.is_some_and(|c| state.cohort_credentials.contains(&c)) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(cohort) = state.cohorts.get(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let max: usize = query
        .get("maxCohortSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    if cohort.size > max {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let since: Option<i64> = query.get("lastModified").and_then(|v| v.parse().ok());
    if since.is_some_and(|since| since >= cohort.last_modified) {
        return StatusCode::NO_CONTENT.into_response();
    }
    ([("content-type", "application/json")], cohort.body.clone()).into_response()
}
