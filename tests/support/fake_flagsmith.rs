//! An in-process stand-in for the Flagsmith API's `GET /api/v1/environment-document/`:
//! `X-Environment-Key` auth with server-side keys, `Last-Modified` on 200, and `304 Not
//! Modified` when the request carries `If-Modified-Since` and the document did not change
//! since it was last served to that key. Failures can be set per key; requests are recorded.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub key: Option<String>,
    pub if_modified_since: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct FakeState {
    documents: HashMap<String, String>,
    /// Keys whose current document was already served (so a conditional request gets 304).
    served: HashSet<String>,
    failures: HashMap<String, StatusCode>,
    requests: Vec<Recorded>,
}

/// Handle to the running fake.
#[derive(Clone)]
pub struct FakeFlagsmith {
    /// Base URL including `/api/v1` (what the proxy's `apiUrl` is set to).
    pub api_url: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeFlagsmith {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/api/v1/environment-document/", get(document))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            api_url: format!("http://{addr}/api/v1"),
            state,
        }
    }

    /// Sets (or replaces) the document served for a server-side key.
    pub fn set_document(&self, server_key: &str, document: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .documents
            .insert(server_key.to_owned(), document.to_owned());
        state.served.remove(server_key);
    }

    /// Makes every request with `server_key` fail with `status` (None: stop failing).
    pub fn set_failure(&self, server_key: &str, status: Option<StatusCode>) {
        let mut state = self.state.lock().unwrap();
        match status {
            Some(status) => state.failures.insert(server_key.to_owned(), status),
            None => state.failures.remove(server_key),
        };
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn document(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let key = header("x-environment-key");
    let if_modified_since = header("if-modified-since");
    let mut state = state.lock().unwrap();
    let k = key.clone().unwrap_or_default();
    let response = if let Some(status) = state.failures.get(&k) {
        (*status, "{\"detail\":\"failing\"}").into_response()
    } else if let Some(doc) = state.documents.get(&k).cloned() {
        if if_modified_since.is_some() && state.served.contains(&k) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            state.served.insert(k.clone());
            (
                StatusCode::OK,
                [
                    ("content-type", "application/json"),
                    ("last-modified", "Wed, 01 May 2024 10:20:30 GMT"),
                ],
                doc,
            )
                .into_response()
        }
    } else {
        (StatusCode::UNAUTHORIZED, "{\"detail\":\"Invalid key\"}").into_response()
    };
    state.requests.push(Recorded {
        key,
        if_modified_since,
        status: response.status().as_u16(),
    });
    response
}
