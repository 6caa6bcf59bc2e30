//! Clients for the Amplitude APIs the proxy reads: the management API (deployments) and the
//! flags API, with the reference proxy's retry policy (spec §4.1).

use std::time::Duration;

use bytes::Bytes;
use reqwest::{header, Client, StatusCode};
use serde::Deserialize;

/// Sent as `X-Amp-Exp-Library` on flag (and cohort) requests, like the reference proxy does.
pub const LIBRARY: &str = concat!("evaluation-proxy/", env!("CARGO_PKG_VERSION"));

/// How failed upstream calls are retried: 8 attempts, 100 ms doubling to at most 10 s.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay after the first failure.
    pub initial_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 8,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `n` (0-based).
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt);
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// Why an upstream call failed, after retries.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server answered with a status that is not retried (4xx other than 429) or kept
    /// failing until the attempts ran out.
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    /// The request could not be sent or the response not read.
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The body was not what the API documents.
    #[error("{url}: unexpected response body: {message}")]
    Body { url: String, message: String },
}

/// One deployment as listed by the management API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Deployment id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// Project the deployment belongs to.
    #[serde(deserialize_with = "string_or_number")]
    pub project_id: String,
    /// Human-readable label.
    #[serde(default)]
    pub label: String,
    /// The deployment key SDKs authenticate with.
    pub key: String,
    /// Deleted deployments are dropped by [`AmplitudeClient::deployments`].
    #[serde(default)]
    pub deleted: bool,
}

/// The management API's ids are strings, but numeric ids are accepted like the reference's
/// lenient decoder does.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(serde_json::Number),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentsPage {
    deployments: Vec<Deployment>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Upper bound on management API pages followed in one listing, so a server that keeps
/// returning a cursor cannot loop us forever.
const MAX_DEPLOYMENT_PAGES: usize = 1000;

/// An HTTP client for the Amplitude APIs with the shared retry policy.
#[derive(Debug, Clone)]
pub struct AmplitudeClient {
    http: Client,
    retry: RetryPolicy,
}

impl AmplitudeClient {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration, retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .build()?;
        Ok(Self { http, retry })
    }

    /// Lists the non-deleted deployments of a project (`GET /api/1/deployments`, Bearer),
    /// following `nextCursor` until the last page.
    pub async fn deployments(
        &self,
        management_url: &str,
        management_key: &str,
    ) -> Result<Vec<Deployment>, UpstreamError> {
        let url = join_url(management_url, "/api/1/deployments");
        let mut cursor: Option<String> = None;
        let mut deployments = Vec::new();
        for _ in 0..MAX_DEPLOYMENT_PAGES {
            let mut request = self
                .http
                .get(&url)
                .bearer_auth(management_key)
                .header(header::ACCEPT, "application/json");
            if let Some(cursor) = &cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let body = self.send(&url, request).await?;
            let page: DeploymentsPage =
                serde_json::from_slice(&body).map_err(|e| UpstreamError::Body {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            deployments.extend(page.deployments.into_iter().filter(|d| !d.deleted));
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(next) => cursor = Some(next),
                None => return Ok(deployments),
            }
        }
        Err(UpstreamError::Body {
            url,
            message: format!("more than {MAX_DEPLOYMENT_PAGES} pages of deployments"),
        })
    }

    /// Fetches the flag configs of a deployment (`GET /sdk/v2/flags?v=0`, Api-Key). The body
    /// is returned as is; it is validated by whoever compiles it.
    pub async fn flags(
        &self,
        server_url: &str,
        deployment_key: &str,
    ) -> Result<Bytes, UpstreamError> {
        let url = join_url(server_url, "/sdk/v2/flags");
        let request = self
            .http
            .get(&url)
            .query(&[("v", "0")])
            .header(header::AUTHORIZATION, format!("Api-Key {deployment_key}"))
            .header("X-Amp-Exp-Library", LIBRARY);
        self.send(&url, request).await
    }

    /// Sends with retries: 429, 5xx and transport errors are retried with backoff; any other
    /// status of 400 or more fails at once.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Bytes, UpstreamError> {
        let mut attempt = 0;
        loop {
            let Some(this_try) = request.try_clone() else {
                return Err(UpstreamError::Body {
                    url: url.to_owned(),
                    message: "request cannot be retried".into(),
                });
            };
            let error = match this_try.send().await {
                Ok(response) if response.status().as_u16() < 400 => match response.bytes().await {
                    Ok(body) => return Ok(body),
                    Err(source) => UpstreamError::Transport {
                        url: url.to_owned(),
                        source,
                    },
                },
                Ok(response) => {
                    let status = response.status();
                    let error = UpstreamError::Status {
                        url: url.to_owned(),
                        status,
                    };
                    if !is_retryable(status) {
                        return Err(error);
                    }
                    error
                }
                Err(source) => UpstreamError::Transport {
                    url: url.to_owned(),
                    source,
                },
            };
            tracing::warn!(attempt = attempt + 1, error = %error, "upstream request failed");
            attempt += 1;
            if attempt >= self.retry.attempts {
                return Err(error);
            }
            tokio::time::sleep(self.retry.delay(attempt - 1)).await;
        }
    }
}

/// 429 and 5xx are worth retrying; other client errors will not change.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Appends a fixed API path to a configured base URL, keeping any path prefix of the base
/// (the reference drops it).
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (0..8).map(|n| policy.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10000]);
    }

    #[test]
    fn join_keeps_path_prefixes() {
        assert_eq!(
            join_url("https://h/prefix/", "/sdk/v2/flags"),
            "https://h/prefix/sdk/v2/flags"
        );
        assert_eq!(
            join_url("http://h:1", "/api/1/deployments"),
            "http://h:1/api/1/deployments"
        );
    }

    #[test]
    fn only_429_and_5xx_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable(StatusCode::BAD_GATEWAY));
        assert!(!is_retryable(StatusCode::UNAUTHORIZED));
        assert!(!is_retryable(StatusCode::NOT_FOUND));
    }

    #[test]
    fn deployments_accept_numeric_ids() {
        let page: DeploymentsPage = serde_json::from_str(
            r#"{"deployments":[{"id":1,"projectId":2,"label":"l","key":"k","deleted":false}],"nextCursor":"c"}"#,
        )
        .unwrap();
        assert_eq!(page.deployments[0].id, "1");
        assert_eq!(page.deployments[0].project_id, "2");
        assert_eq!(page.next_cursor.as_deref(), Some("c"));
    }
}
