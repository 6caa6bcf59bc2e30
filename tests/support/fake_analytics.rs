//! An in-process stand-in for Amplitude's HTTP V2 upload API (`POST /2/httpapi`), following
//! `../shared/spec/amplitude-apis-and-clients.md` §1.6: body `{"api_key", "events"}`, 200 with
//! `{"code":200,"events_ingested":N,..}`, 413 above a maximum number of events per request,
//! and, when asked, Amplitude's minimum id length check (5) answered with a 400 that names the
//! bad events by index in `events_with_invalid_id_lengths` (nothing of that batch is ingested).
//! Statuses can be queued to fail the next requests, and an answer can be delayed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct FakeState {
    failures: VecDeque<u16>,
    max_events: Option<usize>,
    check_id_lengths: bool,
    delay: Duration,
    /// Every request body, in arrival order (including failed ones).
    requests: Vec<Value>,
    /// Ingested events with the api_key they came with.
    ingested: Vec<(String, Value)>,
}

/// Handle to the running fake.
#[derive(Clone)]
pub struct FakeAnalytics {
    /// The full upload URL, e.g. `http://127.0.0.1:1234/2/httpapi`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl FakeAnalytics {
    /// Starts the fake on a free port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/2/httpapi", post(upload))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/2/httpapi"),
            state,
        }
    }

    /// The next requests are answered with these statuses, in order, ingesting nothing.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().failures.extend(statuses);
    }

    /// Requests with more events are answered 413.
    pub fn set_max_events(&self, max: usize) {
        self.state.lock().unwrap().max_events = Some(max);
    }

    /// Rejects events whose user_id or device_id is shorter than 5 characters (Amplitude's
    /// default `min_id_length`).
    pub fn check_id_lengths(&self) {
        self.state.lock().unwrap().check_id_lengths = true;
    }

    /// Delays every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Every request body received.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The events ingested (answered 200).
    pub fn events(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state.ingested.iter().map(|(_, e)| e.clone()).collect()
    }

    /// The api_key of every ingested event.
    pub fn api_keys(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.ingested.iter().map(|(k, _)| k.clone()).collect()
    }
}

fn too_short(event: &Value, field: &str) -> bool {
    event[field]
        .as_str()
        .is_some_and(|id| id.chars().count() < 5)
}

async fn upload(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = state.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
    };
    let mut state = state.lock().unwrap();
    state.requests.push(body.clone());
    if let Some(status) = state.failures.pop_front() {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    if content_type != "application/json" {
        return (
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json",
        )
            .into_response();
    }
    let Some(api_key) = body["api_key"].as_str().map(str::to_owned) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key"})),
        )
            .into_response();
    };
    let events = body["events"].as_array().cloned().unwrap_or_default();
    if state.max_events.is_some_and(|max| events.len() > max) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"code": 413, "error": "Payload too large"})),
        )
            .into_response();
    }
    if state.check_id_lengths {
        let indices = |field| {
            events
                .iter()
                .enumerate()
                .filter(|(_, e)| too_short(e, field))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let (user, device) = (indices("user_id"), indices("device_id"));
        if !user.is_empty() || !device.is_empty() {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"code": 400, "error": "Invalid id length for user_id or device_id",
                    "events_with_invalid_id_lengths": {"user_id": user, "device_id": device}}),
                ),
            )
                .into_response();
        }
    }
    let count = events.len();
    state
        .ingested
        .extend(events.into_iter().map(|e| (api_key.clone(), e)));
    axum::Json(json!({"code": 200, "events_ingested": count, "payload_size_bytes": 0, "server_upload_time": 0}))
        .into_response()
}
