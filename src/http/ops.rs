//! Operational endpoints: `/status`, liveness, readiness, and the Prometheus metrics page.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;
use crate::metrics as m;

/// `GET /status`: 200 `OK`, like the reference (no dependency checks).
pub async fn status() -> &'static str {
    "OK"
}

/// `GET /healthz`: the process is alive and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once every configured deployment has flags and every Flagsmith
/// environment its document; 503 with the
/// reasons before that and while shutting down.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut reasons = state.registry.not_ready_reasons();
    reasons.extend(state.flagsmith.not_ready_reasons());
    if state.is_shutting_down() {
        reasons.insert(0, "shutting down".to_owned());
    }
    if reasons.is_empty() {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        let body = serde_json::json!({ "status": "not ready", "reasons": reasons });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// The metrics page: refreshes per-deployment gauges, then renders Prometheus text.
pub async fn metrics_page(State(state): State<AppState>) -> Response {
    for (key, snapshot) in state.registry.snapshots() {
        let label = m::mask_key(&key);
        metrics::gauge!(m::SNAPSHOT_AGE_SECONDS, "deployment" => label.clone())
            .set(snapshot.age_seconds());
        metrics::gauge!(m::SNAPSHOT_FLAGS, "deployment" => label).set(snapshot.flags.len() as f64);
    }
    let text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
