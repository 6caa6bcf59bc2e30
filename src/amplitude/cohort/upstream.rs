//! Downloads one cohort from the cohort API (`GET {cohortServerUrl}/sdk/v1/cohort/{id}`,
//! spec §4.4) and streams the body through [`super::parse`] on a blocking thread into a
//! store's cohort writer ([`Store::begin_cohort`]), in chunks of [`MEMBER_CHUNK`] members: only
//! a few network chunks and member chunks are in flight at any time, never the whole cohort
//! (the Redis store keeps the members in Redis, not in the proxy).
//!
//! 200 is parsed; 204 means unchanged; 413 means too large (not retried); 202 ("still
//! computing"), 429, 5xx and transport errors are retried with the shared backoff; any other
//! 4xx fails at once.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::{header, Client, StatusCode};
use tokio::sync::mpsc;

use super::parse::{parse_cohort, MemberSink, ParseError, Parsed};
use crate::amplitude::upstream::{join_url, RetryPolicy, LIBRARY};
use crate::store::{CohortWriter, Store, StoreError};

/// Network chunks buffered between the download and the parser.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Members the parser hands to the store at once.
pub const MEMBER_CHUNK: usize = 10_000;

/// Member chunks buffered between the parser and the store writer.
const MEMBER_CHUNKS_IN_FLIGHT: usize = 4;

/// Project credentials for the cohort API (Basic `apiKey:secretKey`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Project API key.
    pub api_key: String,
    /// Project secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &crate::metrics::mask_key(&self.api_key))
            .finish_non_exhaustive()
    }
}

/// A downloaded cohort: its description fields and a store write holding its members, to be
/// finished by the caller.
pub struct Downloaded {
    /// `cohortId` from the body.
    pub cohort_id: String,
    /// `groupType` from the body.
    pub group_type: String,
    /// `lastModified` from the body.
    pub last_modified: i64,
    /// Member ids read (duplicates included).
    pub members_read: u64,
    /// The store write every member went into; dropping it abandons the write.
    pub writer: Box<dyn CohortWriter>,
}

impl std::fmt::Debug for Downloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloaded")
            .field("cohort_id", &self.cohort_id)
            .field("group_type", &self.group_type)
            .field("last_modified", &self.last_modified)
            .field("members_read", &self.members_read)
            .finish_non_exhaustive()
    }
}

/// What a download gave.
#[derive(Debug)]
pub enum Download {
    /// A newer version.
    Modified(Downloaded),
    /// 204, or a body whose `lastModified` is not newer than the stored one.
    NotModified,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    /// 413: the cohort has more members than `maxCohortSize`.
    #[error("cohort {cohort_id} exceeds the maximum cohort size {max_cohort_size}")]
    TooLarge {
        cohort_id: String,
        max_cohort_size: u64,
    },
    /// A status that is not retried, or the last status once the attempts ran out.
    #[error("cohort API answered {0}")]
    Status(StatusCode),
    /// The request could not be sent or the body not read.
    #[error("cohort API request failed: {0}")]
    Transport(String),
    /// The body is not a cohort.
    #[error(transparent)]
    Body(#[from] ParseError),
    /// The body describes another cohort than the one asked for.
    #[error("asked for cohort {asked}, got {got}")]
    WrongCohort { asked: String, got: String },
    /// The store did not take the members (they are streamed into it while downloading).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CohortError {
    /// Whether another attempt might succeed.
    fn retryable(&self) -> bool {
        match self {
            CohortError::Status(status) => {
                *status == StatusCode::ACCEPTED
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            CohortError::Transport(_) => true,
            _ => false,
        }
    }

    /// Whether the credentials do not give access to the cohort (try another project's).
    pub fn is_access_denied(&self) -> bool {
        matches!(self, CohortError::Status(s)
            if *s == StatusCode::UNAUTHORIZED || *s == StatusCode::FORBIDDEN || *s == StatusCode::NOT_FOUND)
    }
}

/// A client for the cohort API.
#[derive(Debug, Clone)]
pub struct CohortClient {
    http: Client,
    base_url: String,
    max_cohort_size: u64,
    retry: RetryPolicy,
}

impl CohortClient {
    /// A client for `base_url`. Large cohorts take a while, so only connecting and each read
    /// are timed out, not the whole download.
    pub fn new(
        base_url: &str,
        max_cohort_size: u64,
        retry: RetryPolicy,
    ) -> Result<Self, reqwest::Error> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.to_owned(),
            max_cohort_size,
            retry,
        })
    }

    /// Downloads `cohort_id` unless `stored_last_modified` is current, with retries, streaming
    /// the members into a write of `store` (a fresh one per attempt).
    pub async fn download(
        &self,
        cohort_id: &str,
        credentials: &Credentials,
        stored_last_modified: Option<i64>,
        store: &dyn Store,
    ) -> Result<Download, CohortError> {
        let mut attempt = 0u32;
        loop {
            match self
                .attempt(cohort_id, credentials, stored_last_modified, store)
                .await
            {
                Err(error) if error.retryable() && attempt + 1 < self.retry.attempts => {
                    tracing::warn!(cohort = cohort_id, attempt = attempt + 1, %error, "cohort download failed; retrying");
                    tokio::time::sleep(delay(&self.retry, attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        cohort_id: &str,
        credentials: &Credentials,
        stored_last_modified: Option<i64>,
        store: &dyn Store,
    ) -> Result<Download, CohortError> {
        let url = join_url(
            &self.base_url,
            &format!("/sdk/v1/cohort/{}", encode_segment(cohort_id)),
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.api_key, credentials.secret_key
        ));
        let mut request = self
            .http
            .get(&url)
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header("X-Amp-Exp-Library", LIBRARY)
            .query(&[("maxCohortSize", self.max_cohort_size.to_string())]);
        if let Some(lm) = stored_last_modified {
            request = request.query(&[("lastModified", lm.to_string())]);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CohortError::Transport(e.without_url().to_string()))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Ok(Download::NotModified),
            StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(CohortError::TooLarge {
                    cohort_id: cohort_id.to_owned(),
                    max_cohort_size: self.max_cohort_size,
                })
            }
            status => return Err(CohortError::Status(status)),
        }
        let writer = store.begin_cohort(cohort_id).await?;
        let downloaded = self
            .stream_body(response, stored_last_modified, writer)
            .await?;
        match downloaded {
            Download::Modified(ref d) if d.cohort_id != cohort_id => {
                Err(CohortError::WrongCohort {
                    asked: cohort_id.to_owned(),
                    got: d.cohort_id.clone(),
                })
            }
            other => Ok(other),
        }
    }

    /// Feeds the body chunk by chunk to the parser running on a blocking thread, and the
    /// members it reads, chunk by chunk, to `writer`.
    async fn stream_body(
        &self,
        mut response: reqwest::Response,
        stored_last_modified: Option<i64>,
        mut writer: Box<dyn CohortWriter>,
    ) -> Result<Download, CohortError> {
        let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(CHUNKS_IN_FLIGHT);
        let (members_tx, mut members_rx) = mpsc::channel::<Vec<String>>(MEMBER_CHUNKS_IN_FLIGHT);
        let limit = self.max_cohort_size;
        let parser = tokio::task::spawn_blocking(move || {
            let mut sink = Chunks::new(members_tx, limit);
            let reader = ChannelReader {
                rx,
                current: Bytes::new(),
            };
            let parsed = parse_cohort(reader, stored_last_modified, &mut sink)?;
            if matches!(parsed, Parsed::Cohort(_)) {
                sink.flush().map_err(ParseError::Invalid)?;
            }
            Ok::<_, ParseError>(parsed)
        });
        // Both run until the body ends; when one side stops early, dropping its channel end
        // stops the parser, which stops the other side.
        let pump = async move {
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            return None; // the parser stopped early (short-circuit or bad body)
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        let message = e.without_url().to_string();
                        let _ = tx.send(Err(message.clone())).await;
                        return Some(message);
                    }
                }
            }
        };
        let writing = &mut writer;
        let store = async move {
            // Owns the receiver: dropping it on an error stops the parser.
            while let Some(members) = members_rx.recv().await {
                writing.add(members).await?;
            }
            Ok::<_, StoreError>(())
        };
        let (transport_error, stored) = tokio::join!(pump, store);
        let parsed = parser
            .await
            .map_err(|e| CohortError::Transport(format!("parser stopped: {e}")))?;
        // A store failure stops the parser too; report the cause.
        stored?;
        if let Some(message) = transport_error {
            return Err(CohortError::Transport(message));
        }
        Ok(match parsed? {
            Parsed::NotModified => Download::NotModified,
            Parsed::Cohort(header) => Download::Modified(Downloaded {
                cohort_id: header.cohort_id,
                group_type: header.group_type,
                last_modified: header.last_modified,
                members_read: header.members_read,
                writer,
            }),
        })
    }
}

/// A [`MemberSink`] handing members to the async side in chunks of [`MEMBER_CHUNK`], refusing
/// more than `limit` of them so a lying server cannot make the store take without end.
struct Chunks {
    chunk: Vec<String>,
    tx: mpsc::Sender<Vec<String>>,
    limit: u64,
    read: u64,
}

impl Chunks {
    fn new(tx: mpsc::Sender<Vec<String>>, limit: u64) -> Self {
        Self {
            chunk: Vec::new(),
            tx,
            limit,
            read: 0,
        }
    }

    /// Sends the members gathered so far (blocking while the store is behind).
    fn flush(&mut self) -> Result<(), String> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| "the store stopped taking members".to_owned())
    }
}

impl MemberSink for Chunks {
    fn push(&mut self, member: String) -> Result<(), String> {
        if self.read >= self.limit {
            return Err(format!("more than {} members", self.limit));
        }
        self.read += 1;
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(MEMBER_CHUNK);
        }
        self.chunk.push(member);
        if self.chunk.len() >= MEMBER_CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// The retry delay after failed attempt `n` (0-based): doubling, capped.
fn delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    policy
        .initial_delay
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(policy.max_delay)
}

/// Percent-encodes a path segment (cohort ids are alphanumeric, but never trust that).
fn encode_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A blocking [`Read`] over the chunks the async side sends.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(message)) => return Err(std::io::Error::other(message)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_202_429_5xx_and_transport_are_retried() {
        assert!(CohortError::Status(StatusCode::ACCEPTED).retryable());
        assert!(CohortError::Status(StatusCode::TOO_MANY_REQUESTS).retryable());
        assert!(CohortError::Status(StatusCode::BAD_GATEWAY).retryable());
        assert!(CohortError::Transport("reset".into()).retryable());
        assert!(!CohortError::Status(StatusCode::UNAUTHORIZED).retryable());
        assert!(!CohortError::TooLarge {
            cohort_id: "c".into(),
            max_cohort_size: 1
        }
        .retryable());
    }

    #[test]
    fn ids_are_encoded_in_the_path() {
        assert_eq!(encode_segment("abc123"), "abc123");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
