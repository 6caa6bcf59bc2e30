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
/// `GET /sdk/v1/cohort/{id}` calls.
pub const GET_COHORT_REQUEST: &str = "amplitude_proxy_get_cohort_request_total";
/// `GET /sdk/v1/cohort/{id}` calls that returned a non-2xx status (401/404/413).
pub const GET_COHORT_REQUEST_ERROR: &str = "amplitude_proxy_get_cohort_request_error_total";
/// `GET /sdk/v2/memberships/..` calls.
pub const GET_MEMBERS_REQUEST: &str = "amplitude_proxy_get_members_request_total";
/// `GET /sdk/v2/memberships/..` calls that returned a non-2xx status.
pub const GET_MEMBERS_REQUEST_ERROR: &str = "amplitude_proxy_get_members_request_error_total";
/// Cohort downloads attempted (after the lease was taken).
pub const COHORT_DOWNLOAD: &str = "amplitude_proxy_cohort_download_total";
/// Cohort downloads or saves that failed (413 included).
pub const COHORT_DOWNLOAD_FAILURE: &str = "amplitude_proxy_cohort_download_failure_total";
/// Cohorts the cohort API refused as larger than `maxCohortSize` (413).
pub const COHORT_TOO_LARGE: &str = "amplitude_proxy_cohort_too_large_total";
/// Assignments handed to the tracker (`track()` called).
pub const ASSIGNMENT: &str = "amplitude_proxy_assignment_total";
/// Assignments deduped: the same one was sent within 24 hours (by this or another replica).
pub const ASSIGNMENT_FILTER: &str = "amplitude_proxy_assignment_filter_total";
/// Assignment events queued for upload.
pub const ASSIGNMENT_SEND: &str = "amplitude_proxy_assignment_send_total";
/// Assignments that could not become an event (queue full, no user_id/device_id, no API key).
pub const ASSIGNMENT_SEND_FAILURE: &str = "amplitude_proxy_assignment_send_failure_total";
/// Assignments dropped because the tracking queue was full (or closed at shutdown).
pub const ASSIGNMENT_DROPPED: &str = "amplitude_proxy_assignment_dropped_total";
/// Assignments whose user had neither a user_id nor a device_id.
pub const ASSIGNMENT_NO_IDENTITY: &str = "amplitude_proxy_assignment_no_identity_total";
/// Assignments deduped by the local filter alone because the shared store failed.
pub const ASSIGNMENT_DEDUP_FALLBACK: &str = "amplitude_proxy_assignment_dedup_fallback_total";
/// Assignments waiting in the tracking queue.
pub const ASSIGNMENT_QUEUE_DEPTH: &str = "amplitude_proxy_assignment_queue_depth";
/// Upload attempts retried (429, 5xx, timeouts, transport errors).
pub const ASSIGNMENT_RETRIED: &str = "amplitude_proxy_assignment_upload_retried_total";
/// Events the analytics endpoint accepted.
pub const ASSIGNMENT_UPLOADED: &str = "amplitude_proxy_assignment_uploaded_total";
/// Events the analytics endpoint refused for good (400 naming them, 413 alone, other 4xx).
pub const ASSIGNMENT_REJECTED: &str = "amplitude_proxy_assignment_rejected_total";
/// Events still unsent when the shutdown grace period ended.
pub const ASSIGNMENT_LOST: &str = "amplitude_proxy_assignment_lost_total";
/// HTTP request latency histogram, by method, route and status.
pub const HTTP_REQUESTS_SECONDS: &str = "amplitude_proxy_http_server_requests_seconds";
/// HTTP requests in flight.
pub const HTTP_REQUESTS_ACTIVE: &str = "amplitude_proxy_http_server_requests_active";
/// Seconds since each deployment's served flags were last confirmed by the vendor or file.
pub const SNAPSHOT_AGE_SECONDS: &str = "amplitude_proxy_flags_snapshot_age_seconds";
/// Number of flags served per deployment.
pub const SNAPSHOT_FLAGS: &str = "amplitude_proxy_flags_snapshot_flags";
/// Flagsmith SDK API calls, by `endpoint` (`flags`, `identities`, `environment-document`,
/// `health`, `liveness`).
pub const FLAGSMITH_REQUEST: &str = "flagsmith_proxy_request_total";
/// Flagsmith SDK API calls that returned a non-2xx status, by `endpoint`.
pub const FLAGSMITH_REQUEST_ERROR: &str = "flagsmith_proxy_request_error_total";
/// Flagsmith SDK API latency histogram, by `endpoint`.
pub const FLAGSMITH_REQUEST_SECONDS: &str = "flagsmith_proxy_request_seconds";
/// Environment document fetches from the Flagsmith API or a document file, by `environment`
/// (masked client-side key) and `result` (`updated`, `not_modified`, `unchanged`, `error`).
pub const FLAGSMITH_DOCUMENT_FETCH: &str = "flagsmith_proxy_document_fetch_total";
/// Shared-store operations on environment documents, by `environment` and `result` (`loaded`
/// and `load_error` when following the replica that polls; `written`, `confirmed` and
/// `write_error` when polling).
pub const FLAGSMITH_DOCUMENT_STORE: &str = "flagsmith_proxy_document_store_total";
/// Seconds since each environment's served document was last confirmed up to date (by this
/// replica's poll, a file check, or the polling replica's confirmation in the shared store).
pub const FLAGSMITH_DOCUMENT_AGE_SECONDS: &str = "flagsmith_proxy_document_age_seconds";
/// 1 while this replica holds an environment's poll lease (it polls the Flagsmith API for all
/// replicas), else 0; by `environment`.
pub const FLAGSMITH_LEASE_HELD: &str = "flagsmith_proxy_document_lease_held";

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
                .set_buckets_for_metric(
                    Matcher::Full(FLAGSMITH_REQUEST_SECONDS.to_owned()),
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
