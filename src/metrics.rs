//! Prometheus metrics: the names of the reference proxy (spec §8.1) and the exporter.
//!
//! Counters are recorded through the `metrics` facade; [`install`] sets up one process-wide
//! Prometheus recorder whose text the metrics server renders.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Every API call (flags, cohort, memberships, v1/v2 evaluate).
pub const REQUEST: &str = "amplitude_proxy_request_total";
/// API calls that returned a non-2xx status.
pub const REQUEST_ERROR: &str = "amplitude_proxy_request_error_total";
/// `GET /sdk/v2/flags` calls.
pub const GET_FLAGS_REQUEST: &str = "amplitude_proxy_get_flags_request_total";
/// `GET /sdk/v2/flags` calls that returned a non-2xx status.
pub const GET_FLAGS_REQUEST_ERROR: &str = "amplitude_proxy_get_flags_request_error_total";
/// Calls of any vardata endpoint.
pub const EVALUATION_REQUEST: &str = "amplitude_proxy_evaluation_request_total";
/// Vardata calls that returned a non-2xx status.
pub const EVALUATION_REQUEST_ERROR: &str = "amplitude_proxy_evaluation_request_error_total";
/// Evaluations started (after authentication).
pub const EVALUATION: &str = "amplitude_proxy_evaluation_total";
/// Evaluations that failed (dependency cycle, invalid regex in a reached condition).
pub const EVALUATION_FAILURE: &str = "amplitude_proxy_evaluation_failure_total";
/// Management API listings.
pub const DEPLOYMENTS_FETCH: &str = "amplitude_proxy_deployments_fetch_total";
/// Management API listings that failed after retries.
pub const DEPLOYMENTS_FETCH_FAILURE: &str = "amplitude_proxy_deployments_fetch_failure_total";
/// Flag config fetches (from the flags API or a flags file).
pub const FLAGS_FETCH: &str = "amplitude_proxy_flags_fetch_total";
/// Flag config fetches that failed after retries, or files that could not be read or parsed.
pub const FLAGS_FETCH_FAILURE: &str = "amplitude_proxy_flags_fetch_failure_total";
/// HTTP request latency histogram, by method, route and status.
pub const HTTP_REQUESTS_SECONDS: &str = "amplitude_proxy_http_server_requests_seconds";
/// HTTP requests in flight.
pub const HTTP_REQUESTS_ACTIVE: &str = "amplitude_proxy_http_server_requests_active";
/// Seconds since each deployment's served flags were last confirmed by the vendor or file.
pub const SNAPSHOT_AGE_SECONDS: &str = "amplitude_proxy_flags_snapshot_age_seconds";
/// Number of flags served per deployment.
pub const SNAPSHOT_FLAGS: &str = "amplitude_proxy_flags_snapshot_flags";

/// Latency buckets in seconds: fine-grained below a millisecond, where this proxy lives.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets. The recorder keeps every raw
/// sample until then, so without upkeep an unscraped proxy grows by ~17 bytes per request.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] until `stop` is cancelled, so memory
/// stays flat whether or not anyone scrapes the metrics page.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// Installs the process-wide Prometheus recorder once and returns its handle. Returns `None`
/// only if another recorder was installed first (for example by an embedding program).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUESTS_SECONDS.to_owned()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Masks a deployment key for metric labels and logs: `client-…Rk3x` (its first 7 and last 4
/// characters), or `…` for short keys. Deployment keys authenticate SDKs, so they are never
/// printed whole, but operators still need to tell deployments apart.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "…".to_owned();
    }
    let head: String = chars[..7].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_keys_show_only_a_prefix() {
        assert_eq!(mask_key("client-abcdefghijklmnop"), "client-…mnop");
        assert_eq!(mask_key("short-key"), "…");
    }
}
