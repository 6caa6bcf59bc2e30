//! The HTTP surface: the Amplitude SDK API and ops endpoints on the main port, Prometheus on
//! the metrics port.

pub mod amplitude;
pub mod error;
pub mod ops;
pub mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::amplitude::registry::Registry;
use crate::metrics as m;
use error::ApiError;

/// What handlers share: cheap to clone, immutable apart from atomics.
#[derive(Clone)]
pub struct AppState {
    /// Compiled snapshots per deployment.
    pub registry: Arc<Registry>,
    /// Set when shutdown starts, so readiness turns 503 at once.
    pub shutting_down: Arc<AtomicBool>,
    /// Renders the metrics page.
    pub metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// Whether graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// HTTP settings that shape the router.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Origins browsers may call from; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
}

/// The main-port router.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    Router::new()
        .route("/sdk/v2/flags", get(amplitude::get_flags))
        .route(
            "/sdk/v2/vardata",
            get(amplitude::get_vardata_v2).post(amplitude::post_vardata_v2),
        )
        .route(
            "/sdk/vardata",
            get(amplitude::get_vardata_v1).post(amplitude::post_vardata_v1),
        )
        .route(
            "/v1/vardata",
            get(amplitude::get_vardata_v1).post(amplitude::post_vardata_v1),
        )
        .route("/status", get(ops::status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(cors(&settings.cors_allowed_origins))
        .layer(middleware::from_fn(record_request))
        .with_state(state)
}

/// Collapses repeated slashes in the request path before routing, so an SDK configured with a
/// trailing slash in its server URL (`http://proxy:3546/` gives `//sdk/v2/vardata` in the Node
/// SDK) still reaches the endpoint. Applied around the router (see [`crate::app`]), because
/// rewriting a URI inside the router would be too late for routing.
pub fn collapse_slashes(mut request: Request) -> Request {
    let path = request.uri().path();
    if !path.contains("//") {
        return request;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if let Some(query) = request.uri().query() {
        collapsed.push('?');
        collapsed.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = collapsed.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// The metrics-port router: `GET /{path}`.
pub fn metrics_router(state: AppState, path: &str) -> Router {
    let path = format!("/{}", path.trim_start_matches('/'));
    Router::new()
        .route(&path, get(ops::metrics_page))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
    )
}

/// CORS so browsers (the JS client) can call the SDK endpoints directly.
fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(request::USER_HEADER),
            HeaderName::from_static(request::FLAG_KEYS_HEADER),
            HeaderName::from_static(request::TRACK_HEADER),
            HeaderName::from_static("x-amp-exp-library"),
            HeaderName::from_static("x-amp-exp-exposure-track"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Request counters and the latency histogram, labelled by route template (never the raw
/// path, which would give unbounded label values).
async fn record_request(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or("unmatched", |p| route_label(p.as_str()));
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let active = metrics::gauge!(m::HTTP_REQUESTS_ACTIVE);
    active.increment(1.0);
    let response = next.run(request).await;
    active.decrement(1.0);
    let status = response.status();
    metrics::histogram!(m::HTTP_REQUESTS_SECONDS, "method" => method, "route" => route, "status" => status.as_str().to_owned())
        .record(started.elapsed().as_secs_f64());
    let family = match route {
        "/sdk/v2/flags" => Some((m::GET_FLAGS_REQUEST, m::GET_FLAGS_REQUEST_ERROR)),
        "/sdk/v2/vardata" | "/sdk/vardata" | "/v1/vardata" => {
            Some((m::EVALUATION_REQUEST, m::EVALUATION_REQUEST_ERROR))
        }
        _ => None,
    };
    if let Some((total, errors)) = family {
        metrics::counter!(m::REQUEST).increment(1);
        metrics::counter!(total).increment(1);
        if !status.is_success() {
            metrics::counter!(m::REQUEST_ERROR).increment(1);
            metrics::counter!(errors).increment(1);
        }
    }
    response
}

/// Route templates as `'static` labels.
fn route_label(path: &str) -> &'static str {
    const ROUTES: &[&str] = &[
        "/sdk/v2/flags",
        "/sdk/v2/vardata",
        "/sdk/vardata",
        "/v1/vardata",
        "/status",
        "/healthz",
        "/readyz",
    ];
    ROUTES
        .iter()
        .copied()
        .find(|r| *r == path)
        .unwrap_or("other")
}
