//! The Amplitude SDK API: `/sdk/v2/flags` and the remote-evaluation (vardata) endpoints.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::request::{self, Query, TrackMode};
use super::AppState;
use crate::amplitude::assignment::Tracker;
use crate::amplitude::context::user_to_context;
use crate::amplitude::engine::{EvaluationResults, Map, Value};
use crate::amplitude::registry::{DeploymentSnapshot, Lookup};
use crate::metrics as m;

/// Which result shape a vardata endpoint returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// Every flag that produced a variant, defaults included.
    V2,
    /// V2 without defaults and undeployed flags (spec §2.7).
    V1,
}

/// Resolves the deployment key to its snapshot: 401 when missing or unknown, 503 while the
/// deployment's flags have not loaded yet.
fn snapshot(state: &AppState, headers: &HeaderMap) -> Result<Arc<DeploymentSnapshot>, ApiError> {
    let key = request::deployment_key(headers).ok_or_else(ApiError::invalid_deployment)?;
    match state.registry.lookup(key) {
        Lookup::Ready(snapshot) => Ok(snapshot),
        Lookup::Pending => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Flag configs for this deployment are not loaded yet",
        )),
        Lookup::Unknown => Err(ApiError::invalid_deployment()),
    }
}

/// `GET /sdk/v2/flags`: the deployment's flag configs, pre-serialised (and pre-compressed).
pub async fn get_flags(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snapshot = snapshot(&state, &headers)?;
    Ok(json_by_encoding(
        &headers,
        Body::from(snapshot.flags_json_gzip.clone()),
        || Body::from(snapshot.flags_json.clone()),
    ))
}

/// A JSON body kept gzip-compressed and plain (flag configs, cohort blobs): the gzip bytes
/// when the request's `Accept-Encoding` allows them, else `plain()`; `Vary: Accept-Encoding`
/// either way.
pub(super) fn json_by_encoding(
    headers: &HeaderMap,
    gzipped: Body,
    plain: impl FnOnce() -> Body,
) -> Response {
    let gzip = request::accepts_gzip(headers);
    let mut response = if gzip { gzipped } else { plain() }.into_response();
    let headers = response.headers_mut();
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// `GET /sdk/v2/vardata`.
pub async fn get_vardata_v2(
    state: State<AppState>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    evaluate_get(state, headers, query, Flavor::V2).await
}

/// `GET /sdk/vardata` and `GET /v1/vardata`.
pub async fn get_vardata_v1(
    state: State<AppState>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    evaluate_get(state, headers, query, Flavor::V1).await
}

/// `POST /sdk/v2/vardata`.
pub async fn post_vardata_v2(
    state: State<AppState>,
    headers: HeaderMap,
    query: RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    evaluate_post(state, headers, query, body, Flavor::V2).await
}

/// `POST /sdk/vardata` and `POST /v1/vardata`.
pub async fn post_vardata_v1(
    state: State<AppState>,
    headers: HeaderMap,
    query: RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    evaluate_post(state, headers, query, body, Flavor::V1).await
}

async fn evaluate_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    flavor: Flavor,
) -> Result<Response, ApiError> {
    let snapshot = snapshot(&state, &headers)?;
    let query = Query::parse(query.as_deref());
    let mut user = request::user_from_get(&headers, &query)?;
    enrich(&state, &snapshot, &mut user).await?;
    evaluate(&state, &snapshot, &headers, &query, user, flavor)
}

async fn evaluate_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
    flavor: Flavor,
) -> Result<Response, ApiError> {
    let snapshot = snapshot(&state, &headers)?;
    let body =
        body.map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let mut user = request::parse_user_object(&body, "request body")?;
    enrich(&state, &snapshot, &mut user).await?;
    let query = Query::parse(query.as_deref());
    evaluate(&state, &snapshot, &headers, &query, user, flavor)
}

/// Adds the user's and groups' cohort memberships, for the group types the flags target.
async fn enrich(
    state: &AppState,
    snapshot: &DeploymentSnapshot,
    user: &mut Map,
) -> Result<(), ApiError> {
    state
        .cohorts
        .enrich(&snapshot.flags, user)
        .await
        .map_err(|error| {
            tracing::error!(%error, "cohort membership lookup failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cohort membership lookup failed",
            )
        })
}

/// Evaluates the deployment's flags for a user and writes the JSON result.
fn evaluate(
    state: &AppState,
    snapshot: &DeploymentSnapshot,
    headers: &HeaderMap,
    query: &Query,
    user: Map,
    flavor: Flavor,
) -> Result<Response, ApiError> {
    let flag_keys = request::flag_keys(headers, query)?;
    let track = TrackMode::from_headers(headers);
    let context = user_to_context(user);
    metrics::counter!(m::EVALUATION).increment(1);
    let results = snapshot
        .flags
        .evaluate(&context, &flag_keys)
        .map_err(|error| {
            metrics::counter!(m::EVALUATION_FAILURE).increment(1);
            tracing::error!(%error, "evaluation failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("flag configuration error: {error}"),
            )
        })?;
    // Empty: `write_json` reserves the exact size (a guess here would be one more allocation
    // and a reallocation).
    let mut body = Vec::new();
    results.write_json(&mut body, flavor == Flavor::V1);
    if let Some(tracker) = state.tracker.as_ref().filter(|_| track.tracks()) {
        track_assignment(tracker, snapshot, headers, &flag_keys, context, results);
    }
    Ok(json_response(body))
}

/// Hands the assignment to the tracker (spec §7.5): only for a non-empty user and when some
/// flag was evaluated. Moves the context and results; the worker does the rest.
fn track_assignment(
    tracker: &Tracker,
    snapshot: &DeploymentSnapshot,
    headers: &HeaderMap,
    flag_keys: &[String],
    context: Value,
    results: EvaluationResults,
) {
    let evaluated_some =
        !results.is_empty() || (flag_keys.is_empty() && !snapshot.flags.is_empty());
    if context.get("user").is_none() || !evaluated_some {
        return;
    }
    if let Some(deployment) = request::deployment_key(headers) {
        tracker.track(deployment, context, results);
    }
}

fn json_response(body: Vec<u8>) -> Response {
    let mut response = Bytes::from(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
