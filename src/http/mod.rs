//! The HTTP surface: the Amplitude SDK API and ops endpoints on the main port, Prometheus on
//! the metrics port.

pub mod amplitude;
pub mod cohort;
pub mod error;
pub mod flagsmith;
pub mod ops;
pub mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::amplitude::assignment::Tracker;
use crate::amplitude::cohort::Cohorts;
use crate::amplitude::registry::Registry;
use crate::flagsmith::registry::FlagsmithRegistry;
use crate::metrics as m;
use error::ApiError;

/// What handlers share: cheap to clone, immutable apart from atomics.
#[derive(Clone)]
pub struct AppState {
    /// Compiled snapshots per deployment.
    pub registry: Arc<Registry>,
    /// Flagsmith environment snapshots (empty when no environment is configured).
    pub flagsmith: Arc<FlagsmithRegistry>,
    /// Cohort store access, project credentials and cohort sync status.
    pub cohorts: Arc<Cohorts>,
    /// Set when shutdown starts, so readiness turns 503 at once.
    pub shutting_down: Arc<AtomicBool>,
    /// Renders the metrics page.
    pub metrics: Option<PrometheusHandle>,
    /// Assignment tracking; `None` when no project has an API key to upload with.
    pub tracker: Option<Tracker>,
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
        .route("/sdk/v1/cohort/{cohort_id}", get(cohort::get_cohort))
        .route(
            "/sdk/v2/memberships/{group_type}/{group_name}",
            get(cohort::get_memberships),
        )
        .route("/status", get(ops::status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(flagsmith_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(CorsIfOrigin::new(&settings.cors_allowed_origins))
        .layer(middleware::from_fn_with_state(
            Arc::new(RequestMetrics::resolve()),
            record_request,
        ))
        .with_state(state)
}

/// The Flagsmith Edge Proxy API, every path with and without its trailing slash.
fn flagsmith_routes() -> Router<AppState> {
    let mut router = Router::new();
    for base in ["/api/v1/flags", "/api/v1/environment-document"] {
        let handler = if base == "/api/v1/flags" {
            get(flagsmith::get_flags)
        } else {
            get(flagsmith::get_environment_document)
        };
        router = router
            .route(base, handler.clone())
            .route(&format!("{base}/"), handler);
    }
    let identities = get(flagsmith::get_identities).post(flagsmith::post_identities);
    router = router
        .route("/api/v1/identities", identities.clone())
        .route("/api/v1/identities/", identities);
    for path in ["/proxy/health", "/proxy/health/readiness", "/health"] {
        router = router
            .route(path, get(flagsmith::health))
            .route(&format!("{path}/"), get(flagsmith::health));
    }
    router
        .route("/proxy/health/liveness", get(flagsmith::liveness))
        .route("/proxy/health/liveness/", get(flagsmith::liveness))
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
            HeaderName::from_static(flagsmith::ENVIRONMENT_KEY_HEADER),
            HeaderName::from_static("flagsmith-application-name"),
            HeaderName::from_static("flagsmith-application-version"),
            HeaderName::from_static("flagsmith-sdk-user-agent"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Metric handles resolved once, when the router is built, so that recording a request does
/// not build label sets and look them up by hash every time (the Prometheus recorder is
/// installed before the router is built, see [`crate::app::start`]).
struct RequestMetrics {
    active: Gauge,
    request: Counter,
    request_error: Counter,
    get_flags: (Counter, Counter),
    evaluation: (Counter, Counter),
    get_cohort: (Counter, Counter),
    get_members: (Counter, Counter),
    /// Latency histograms of `200` responses, by route label index and [`HOT_METHODS`] index:
    /// the common case. Other combinations go through the `metrics` macros.
    ok_latency: Vec<[Histogram; 2]>,
    /// Flagsmith per-endpoint handles by [`FLAGSMITH_ENDPOINTS`] index, each resolved on
    /// first use (so a family only appears once its endpoint was called).
    flagsmith: [FlagsmithHandles; FLAGSMITH_ENDPOINTS.len()],
}

/// One Flagsmith endpoint's request counter, error counter and latency histogram.
#[derive(Default)]
struct FlagsmithHandles {
    total: OnceLock<Counter>,
    error: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
}

/// The Flagsmith endpoint labels.
const FLAGSMITH_ENDPOINTS: [&str; 5] = [
    "flags",
    "identities",
    "environment-document",
    "health",
    "liveness",
];

/// Methods whose `200` latency histograms are resolved in advance.
const HOT_METHODS: [Method; 2] = [Method::GET, Method::POST];

impl RequestMetrics {
    fn resolve() -> Self {
        let ok_latency = ROUTE_LABELS
            .iter()
            .map(|&route| HOT_METHODS.map(|method| latency(method_label(&method), route, "200")))
            .collect();
        Self {
            active: metrics::gauge!(m::HTTP_REQUESTS_ACTIVE),
            request: metrics::counter!(m::REQUEST),
            request_error: metrics::counter!(m::REQUEST_ERROR),
            get_flags: (
                metrics::counter!(m::GET_FLAGS_REQUEST),
                metrics::counter!(m::GET_FLAGS_REQUEST_ERROR),
            ),
            evaluation: (
                metrics::counter!(m::EVALUATION_REQUEST),
                metrics::counter!(m::EVALUATION_REQUEST_ERROR),
            ),
            get_cohort: (
                metrics::counter!(m::GET_COHORT_REQUEST),
                metrics::counter!(m::GET_COHORT_REQUEST_ERROR),
            ),
            get_members: (
                metrics::counter!(m::GET_MEMBERS_REQUEST),
                metrics::counter!(m::GET_MEMBERS_REQUEST_ERROR),
            ),
            ok_latency,
            flagsmith: Default::default(),
        }
    }

    /// Flagsmith per-endpoint counters and latency (the SDK API's own families, so
    /// dashboards need not know both spellings of each path).
    fn record_flagsmith(&self, endpoint: usize, status: StatusCode, seconds: f64) {
        let (Some(handles), Some(&label)) = (
            self.flagsmith.get(endpoint),
            FLAGSMITH_ENDPOINTS.get(endpoint),
        ) else {
            return;
        };
        handles
            .total
            .get_or_init(|| metrics::counter!(m::FLAGSMITH_REQUEST, "endpoint" => label))
            .increment(1);
        if !status.is_success() {
            handles
                .error
                .get_or_init(|| metrics::counter!(m::FLAGSMITH_REQUEST_ERROR, "endpoint" => label))
                .increment(1);
        }
        handles
            .seconds
            .get_or_init(|| metrics::histogram!(m::FLAGSMITH_REQUEST_SECONDS, "endpoint" => label))
            .record(seconds);
    }

    fn record_latency(&self, method: &Method, route: usize, status: StatusCode, seconds: f64) {
        let hot = HOT_METHODS.iter().position(|m| m == method);
        let resolved = match (hot, status) {
            (Some(i), StatusCode::OK) => self.ok_latency.get(route).map(|h| &h[i]),
            _ => None,
        };
        match resolved {
            Some(histogram) => histogram.record(seconds),
            None => {
                let label = ROUTE_LABELS.get(route).copied().unwrap_or("other");
                latency(method_label(method), label, status.as_str()).record(seconds);
            }
        }
    }
}

fn latency(method: &'static str, route: &'static str, status: &str) -> Histogram {
    metrics::histogram!(m::HTTP_REQUESTS_SECONDS, "method" => method, "route" => route, "status" => status.to_owned())
}

/// The method as a label; extension methods share one label so clients cannot create
/// unbounded label values.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::PATCH,
        Method::TRACE,
    ];
    const LABELS: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "CONNECT", "PATCH", "TRACE",
    ];
    KNOWN
        .iter()
        .position(|m| m == method)
        .map_or("other", |i| LABELS[i])
}

/// [`CorsLayer`] for requests that need it: those with an `Origin` header (browsers send it on
/// every cross-origin request) and every `OPTIONS` (preflights, which the layer answers).
///
/// Why: the layer clones itself and builds its `Vary` header for every request, ~15% of the
/// instructions of a small `/sdk/v2/flags` response, while server-side SDKs never send
/// `Origin`. Other requests get exactly the headers the layer would add without an `Origin`:
/// the same `Vary` (appended) and, when any origin is allowed, `Access-Control-Allow-Origin: *`.
#[derive(Clone)]
struct CorsIfOrigin {
    cors: Arc<CorsLayer>,
    any_origin: bool,
}

impl CorsIfOrigin {
    fn new(origins: &[String]) -> Self {
        Self {
            cors: Arc::new(cors(origins)),
            any_origin: origins.iter().any(|o| o == "*"),
        }
    }
}

impl<S: Clone> tower::Layer<S> for CorsIfOrigin {
    type Service = CorsIfOriginService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsIfOriginService {
            cors: Arc::clone(&self.cors),
            inner,
            any_origin: self.any_origin,
        }
    }
}

/// The service made by [`CorsIfOrigin`]. Axum clones a route's service for every request, so
/// the layer is shared and a `Cors` service is only built for requests that need one.
#[derive(Clone)]
struct CorsIfOriginService<S> {
    cors: Arc<CorsLayer>,
    inner: S,
    any_origin: bool,
}

/// `Vary` as `CorsLayer` writes it by default.
const CORS_VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

type AddHeaders<B, E> =
    fn(Result<axum::http::Response<B>, E>) -> Result<axum::http::Response<B>, E>;

fn cors_headers_any<B, E>(
    result: Result<axum::http::Response<B>, E>,
) -> Result<axum::http::Response<B>, E> {
    result.map(|mut response| {
        let headers = response.headers_mut();
        headers.append(header::VARY, CORS_VARY);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        response
    })
}

fn cors_headers_listed<B, E>(
    result: Result<axum::http::Response<B>, E>,
) -> Result<axum::http::Response<B>, E> {
    result.map(|mut response| {
        response.headers_mut().append(header::VARY, CORS_VARY);
        response
    })
}

impl<S, ReqBody, ResBody> tower::Service<axum::http::Request<ReqBody>> for CorsIfOriginService<S>
where
    S: tower::Service<axum::http::Request<ReqBody>, Response = axum::http::Response<ResBody>>
        + Clone,
    ResBody: Default,
{
    type Response = axum::http::Response<ResBody>;
    type Error = S::Error;
    type Future = futures::future::Either<
        tower_http::cors::ResponseFuture<S::Future>,
        futures::future::Map<S::Future, AddHeaders<ResBody, S::Error>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<ReqBody>) -> Self::Future {
        use futures::FutureExt;
        if request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN) {
            // `inner` was polled ready; the clone handed to `Cors` is swapped in so the
            // ready instance is the one that serves the request.
            let ready = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, ready);
            let mut cors = tower::Layer::layer(&*self.cors, inner);
            return futures::future::Either::Left(cors.call(request));
        }
        let add: AddHeaders<ResBody, S::Error> = if self.any_origin {
            cors_headers_any
        } else {
            cors_headers_listed
        };
        futures::future::Either::Right(self.inner.call(request).map(add))
    }
}

/// Request counters and the latency histogram, labelled by route template (never the raw
/// path, which would give unbounded label values).
async fn record_request(
    State(handles): State<Arc<RequestMetrics>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched
        .as_ref()
        .map_or(UNMATCHED, |p| route_index(p.as_str()));
    let flagsmith = matched
        .as_ref()
        .and_then(|p| flagsmith_endpoint(p.as_str()));
    let method = request.method().clone();
    let started = Instant::now();
    handles.active.increment(1.0);
    let response = next.run(request).await;
    handles.active.decrement(1.0);
    let status = response.status();
    let elapsed = started.elapsed().as_secs_f64();
    handles.record_latency(&method, route, status, elapsed);
    if let Some(endpoint) = flagsmith {
        handles.record_flagsmith(endpoint, status, elapsed);
    }
    let family = match ROUTE_LABELS.get(route).copied() {
        Some("/sdk/v2/flags") => Some(&handles.get_flags),
        Some("/sdk/v2/vardata" | "/sdk/vardata" | "/v1/vardata") => Some(&handles.evaluation),
        Some("/sdk/v1/cohort/{cohort_id}") => Some(&handles.get_cohort),
        Some("/sdk/v2/memberships/{group_type}/{group_name}") => Some(&handles.get_members),
        _ => None,
    };
    if let Some((total, errors)) = family {
        handles.request.increment(1);
        total.increment(1);
        if !status.is_success() {
            handles.request_error.increment(1);
            errors.increment(1);
        }
    }
    response
}

/// The [`FLAGSMITH_ENDPOINTS`] index of a route template (with or without its trailing
/// slash).
fn flagsmith_endpoint(path: &str) -> Option<usize> {
    match path.trim_end_matches('/') {
        "/api/v1/flags" => Some(0),
        "/api/v1/identities" => Some(1),
        "/api/v1/environment-document" => Some(2),
        "/proxy/health" | "/proxy/health/readiness" | "/health" => Some(3),
        "/proxy/health/liveness" => Some(4),
        _ => None,
    }
}

/// Route templates as `'static` labels; the last two are for other matched routes and for
/// requests that matched no route.
const ROUTE_LABELS: [&str; 14] = [
    "/sdk/v2/flags",
    "/sdk/v2/vardata",
    "/sdk/vardata",
    "/v1/vardata",
    "/status",
    "/healthz",
    "/readyz",
    "/sdk/v1/cohort/{cohort_id}",
    "/sdk/v2/memberships/{group_type}/{group_name}",
    "/api/v1/flags/",
    "/api/v1/identities/",
    "/api/v1/environment-document/",
    "other",
    "unmatched",
];
const OTHER: usize = ROUTE_LABELS.len() - 2;
const UNMATCHED: usize = ROUTE_LABELS.len() - 1;

/// Index of a matched route template in [`ROUTE_LABELS`] (`other` when not listed).
fn route_index(path: &str) -> usize {
    ROUTE_LABELS[..OTHER]
        .iter()
        .position(|r| *r == path)
        .unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::{Layer, ServiceExt};

    /// A handler that sets its own `Vary`, like `/sdk/v2/flags`.
    fn inner() -> impl tower::Service<
        axum::http::Request<Body>,
        Response = axum::http::Response<Body>,
        Error = std::convert::Infallible,
    > + Clone {
        tower::service_fn(|_req: axum::http::Request<Body>| async {
            let mut response = axum::http::Response::new(Body::empty());
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            Ok::<_, std::convert::Infallible>(response)
        })
    }

    async fn headers_of(origins: &[&str], method: Method, origin: Option<&str>) -> Vec<String> {
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri("/sdk/v2/flags");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response = CorsIfOrigin::new(&origins)
            .layer(inner())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        sorted_headers(&response)
    }

    fn sorted_headers(response: &Response) -> Vec<String> {
        let mut out: Vec<String> = response
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        out.sort();
        out
    }

    /// Without `Origin` the shortcut adds exactly what `CorsLayer` adds.
    #[tokio::test]
    async fn requests_without_origin_get_the_same_headers_as_through_cors() {
        for origins in [&["*"][..], &["https://app.example.com"][..]] {
            let shortcut = headers_of(origins, Method::GET, None).await;
            let origins_owned: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
            let through_cors = cors(&origins_owned)
                .layer(inner())
                .oneshot(
                    axum::http::Request::builder()
                        .uri("/sdk/v2/flags")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let expected = sorted_headers(&through_cors);
            assert_eq!(shortcut, expected, "{origins:?}");
            assert!(shortcut.contains(&"vary: Accept-Encoding".to_string()));
        }
    }

    #[tokio::test]
    async fn origin_requests_and_preflights_go_through_cors() {
        let with_origin = headers_of(&["*"], Method::GET, Some("https://a.example")).await;
        assert!(with_origin.contains(&"access-control-allow-origin: *".to_string()));
        let listed = headers_of(
            &["https://a.example"],
            Method::GET,
            Some("https://a.example"),
        )
        .await;
        assert!(listed.contains(&"access-control-allow-origin: https://a.example".to_string()));
        // A preflight is answered by the layer even without an Origin header.
        let preflight = headers_of(&["*"], Method::OPTIONS, None).await;
        assert!(preflight
            .iter()
            .any(|h| h.starts_with("access-control-allow-methods:")));
        assert!(!preflight.contains(&"vary: Accept-Encoding".to_string()));
    }
}
