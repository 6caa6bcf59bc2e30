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
    reasons.extend(state.cohorts.not_ready_reasons(&state.registry));
    reasons.extend(state.flagsmith.not_ready_reasons());
    // Failed cohorts do not block readiness (their flags are served), but are shown.
    let cohort_errors = state.cohorts.failures();
    if state.is_shutting_down() {
        reasons.insert(0, "shutting down".to_owned());
    }
    // A degraded shared store does not make the proxy unready (it serves from memory and
    // syncs from the vendor itself), but the operator should see it.
    let store = state.registry.store_health();
    let (status, mut body) = if reasons.is_empty() {
        (StatusCode::OK, serde_json::json!({ "status": "ready" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not ready", "reasons": reasons }),
        )
    };
    if let Some(store) = store {
        body["store"] = serde_json::Value::String(store);
    }
    if !cohort_errors.is_empty() {
        body["cohort_errors"] = serde_json::json!(cohort_errors);
    }
    (status, Json(body)).into_response()
}

/// The metrics page: refreshes per-deployment gauges, then renders Prometheus text.
pub async fn metrics_page(State(state): State<AppState>) -> Response {
    for (key, snapshot) in state.registry.snapshots() {
        let label = m::mask_key(&key);
        metrics::gauge!(m::SNAPSHOT_AGE_SECONDS, "deployment" => label.clone())
            .set(snapshot.age_seconds());
        metrics::gauge!(m::SNAPSHOT_FLAGS, "deployment" => label).set(snapshot.flags.len() as f64);
    }
    for (label, age) in state.flagsmith.document_ages() {
        if let Some(age) = age {
            metrics::gauge!(m::FLAGSMITH_DOCUMENT_AGE_SECONDS, "environment" => label).set(age);
        }
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
