//! Uploads built events to `{analyticsServerUrl}` as `{"api_key", "events"}` (spec §4.5).
//!
//! Events wait in one buffer per project API key until `eventUploadThreshold` of them are
//! there, or `eventUploadPeriodMillis` after the first one arrived. The threshold is a trigger,
//! not a batch size: while the worker's queue still holds assignments, a buffer past the
//! threshold keeps filling, and a request carries up to [`MAX_BATCH_EVENTS`] events and
//! [`MAX_BATCH_BYTES`] bytes (under the HTTP V2 API's 2000 events and 1 MB), so a deep queue
//! is uploaded in fewer, larger requests. A batch is retried with
//! backoff (100, 100, 200, … 3200 ms, then 3200 ms) on 429, 5xx and transport errors or
//! timeouts until it is delivered or the abort token fires (the end of the shutdown grace
//! period). A 413 splits the batch in halves; a 400 that names bad events (Amplitude's
//! `events_with_invalid_fields`, `events_with_missing_fields`, `events_with_invalid_id_lengths`
//! and `silenced_events`, all by index in the batch) drops those and resends the rest. Only
//! events Amplitude refuses for good are dropped, and each one is counted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// Most events one upload request carries (the HTTP V2 API takes fewer than 2000).
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Most event bytes one upload request carries (the HTTP V2 API takes less than 1 MB; the
/// envelope and separators stay within the margin).
pub const MAX_BATCH_BYTES: usize = 900_000;

/// How to reach the analytics endpoint and when to flush.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// The full upload URL (`https://api2.amplitude.com/2/httpapi` by default; http allowed).
    pub url: String,
    /// Buffered events that trigger an upload (sent at once unless more assignments are
    /// queued, see the module docs).
    pub threshold: usize,
    /// Longest time an event waits for its batch to fill.
    pub period: Duration,
    /// Timeout of one upload request.
    pub timeout: Duration,
}

/// Why an upload client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The HTTP client could not be created (TLS set-up).
    #[error("cannot create the analytics HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What one POST of a batch resulted in.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Amplitude took the batch.
    Delivered,
    /// 429, 5xx, transport error or timeout: send the same batch again later.
    Retry(String),
    /// 413: the batch is too large.
    TooLarge,
    /// 400 naming these event indices as bad.
    BadEvents(BTreeSet<usize>),
    /// Refused for good (another 4xx, or a 400 naming no event).
    Refused(String),
}

/// Backoff before retry `attempt` (1-based): the Java analytics SDK's 100, 100, 200, … 3200 ms.
fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(2).min(5);
    Duration::from_millis(100 << exponent)
}

/// Indices Amplitude's 400 body names as bad.
fn bad_indices(body: &str) -> BTreeSet<usize> {
    let mut indices = BTreeSet::new();
    let Ok(serde_json::Value::Object(body)) = serde_json::from_str::<serde_json::Value>(body)
    else {
        return indices;
    };
    let mut collect = |value: &serde_json::Value| {
        if let Some(items) = value.as_array() {
            indices.extend(
                items
                    .iter()
                    .filter_map(serde_json::Value::as_u64)
                    .filter_map(|i| usize::try_from(i).ok()),
            );
        }
    };
    for field in [
        "events_with_invalid_fields",
        "events_with_missing_fields",
        "events_with_invalid_id_lengths",
    ] {
        if let Some(by_field) = body.get(field).and_then(|v| v.as_object()) {
            by_field.values().for_each(&mut collect);
        }
    }
    if let Some(silenced) = body.get("silenced_events") {
        collect(silenced);
    }
    indices
}

/// A batch waiting for upload.
#[derive(Debug)]
struct Pending {
    /// Serialised events, oldest first.
    events: Vec<Vec<u8>>,
    /// Their total length.
    bytes: usize,
    since: Instant,
}

/// Takes the longest prefix of `events` within [`MAX_BATCH_EVENTS`] and [`MAX_BATCH_BYTES`]
/// (at least one event, however large: a 413 settles that one).
fn take_batch(events: &mut Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut bytes = 0;
    let mut count = 0;
    for event in events.iter().take(MAX_BATCH_EVENTS) {
        if count > 0 && bytes + event.len() > MAX_BATCH_BYTES {
            break;
        }
        bytes += event.len();
        count += 1;
    }
    let rest = events.split_off(count);
    std::mem::replace(events, rest)
}

/// The batching, retrying uploader; owned by the worker task.
pub struct Uploader {
    client: reqwest::Client,
    settings: UploadSettings,
    pending: HashMap<Arc<str>, Pending>,
    abort: CancellationToken,
}

impl Uploader {
    /// An uploader that gives up retrying when `abort` fires.
    pub fn new(settings: UploadSettings, abort: CancellationToken) -> Result<Self, UploadError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()?;
        Ok(Self {
            client,
            settings,
            pending: HashMap::new(),
            abort,
        })
    }

    /// Events buffered and not yet sent.
    pub fn buffered(&self) -> usize {
        self.pending.values().map(|p| p.events.len()).sum()
    }

    /// When the oldest buffer is due, if any event is buffered.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.since + self.settings.period)
            .min()
    }

    /// Buffers one serialised event; [`Uploader::flush_ready`] sends it.
    pub fn push(&mut self, api_key: &Arc<str>, event: Vec<u8>) {
        let pending = match self.pending.get_mut(api_key) {
            Some(pending) => pending,
            None => self
                .pending
                .entry(Arc::clone(api_key))
                .or_insert_with(|| Pending {
                    events: Vec::new(),
                    bytes: 0,
                    since: Instant::now(),
                }),
        };
        pending.bytes += event.len();
        pending.events.push(event);
    }

    /// Sends full batches: every buffer at the threshold when `queue_empty`, and otherwise
    /// only what fills a whole request ([`MAX_BATCH_EVENTS`] or [`MAX_BATCH_BYTES`]), so a deep
    /// queue is uploaded in fewer, larger requests.
    pub async fn flush_ready(&mut self, queue_empty: bool) {
        let threshold = self.settings.threshold.max(1);
        let ready: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                let full = p.events.len() >= MAX_BATCH_EVENTS || p.bytes >= MAX_BATCH_BYTES;
                full || (queue_empty && p.events.len() >= threshold)
            })
            .map(|(key, _)| Arc::clone(key))
            .collect();
        for key in ready {
            let Some(mut pending) = self.pending.remove(&key) else {
                continue;
            };
            loop {
                let batch = take_batch(&mut pending.events);
                pending.bytes -= batch.iter().map(Vec::len).sum::<usize>();
                self.deliver(&key, batch).await;
                let full =
                    pending.events.len() >= MAX_BATCH_EVENTS || pending.bytes >= MAX_BATCH_BYTES;
                if pending.events.is_empty()
                    || !(full || (queue_empty && pending.events.len() >= threshold))
                {
                    break;
                }
            }
            if !pending.events.is_empty() {
                // The rest keeps its first event's deadline.
                self.pending.insert(key, pending);
            }
        }
    }

    /// Sends every buffer whose period has passed.
    pub async fn flush_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, p)| p.since + self.settings.period <= now)
            .map(|(key, _)| Arc::clone(key))
            .collect();
        for key in due {
            if let Some(mut pending) = self.pending.remove(&key) {
                while !pending.events.is_empty() {
                    let batch = take_batch(&mut pending.events);
                    self.deliver(&key, batch).await;
                }
            }
        }
    }

    /// Sends everything buffered (shutdown), in batches as large as one request takes.
    pub async fn flush_all(&mut self) {
        let all: Vec<(Arc<str>, Pending)> = self.pending.drain().collect();
        for (key, mut pending) in all {
            while !pending.events.is_empty() {
                let batch = take_batch(&mut pending.events);
                self.deliver(&key, batch).await;
            }
        }
    }

    /// Delivers one batch: retries, splits on 413, drops what Amplitude names as bad. Returns
    /// when every event was delivered, refused for good, or (on abort) counted as lost.
    async fn deliver(&self, api_key: &str, events: Vec<Vec<u8>>) {
        let mut work = vec![events];
        while let Some(batch) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            if let Some(parts) = self.deliver_one(api_key, batch).await {
                work.extend(parts);
            }
            if self.abort.is_cancelled() {
                let lost: usize = work.iter().map(Vec::len).sum();
                metrics::counter!(m::ASSIGNMENT_LOST).increment(lost as u64);
                return;
            }
        }
    }

    /// Sends one batch until it is settled; returns the batches still to send (413 halves, or
    /// the good rest of a 400).
    async fn deliver_one(&self, api_key: &str, batch: Vec<Vec<u8>>) -> Option<Vec<Vec<Vec<u8>>>> {
        let mut attempt = 0u32;
        loop {
            let outcome = tokio::select! {
                outcome = self.post(api_key, &batch) => outcome,
                () = self.abort.cancelled() => Outcome::Retry("aborted".to_owned()),
            };
            match outcome {
                Outcome::Delivered => {
                    metrics::counter!(m::ASSIGNMENT_UPLOADED).increment(batch.len() as u64);
                    return None;
                }
                Outcome::Retry(reason) => {
                    attempt += 1;
                    if self.abort.is_cancelled() {
                        tracing::error!(events = batch.len(), %reason, "assignment events lost: shutdown grace period over");
                        metrics::counter!(m::ASSIGNMENT_LOST).increment(batch.len() as u64);
                        return None;
                    }
                    metrics::counter!(m::ASSIGNMENT_RETRIED).increment(1);
                    tracing::warn!(events = batch.len(), attempt, %reason, "assignment upload failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff(attempt)) => {}
                        () = self.abort.cancelled() => {}
                    }
                }
                Outcome::TooLarge if batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    return Some(vec![second, first]);
                }
                Outcome::TooLarge => {
                    tracing::error!("analytics refused a single assignment event as too large");
                    metrics::counter!(m::ASSIGNMENT_REJECTED).increment(1);
                    return None;
                }
                Outcome::BadEvents(bad) => {
                    let (good, dropped) = split_bad(batch, &bad);
                    if dropped == 0 {
                        // The indices name no event of this batch: resending would loop.
                        tracing::error!(
                            events = good.len(),
                            "analytics refused an assignment batch (400 naming no event of it)"
                        );
                        metrics::counter!(m::ASSIGNMENT_REJECTED).increment(good.len() as u64);
                        return None;
                    }
                    tracing::error!(
                        dropped,
                        kept = good.len(),
                        "analytics refused some assignment events"
                    );
                    metrics::counter!(m::ASSIGNMENT_REJECTED).increment(dropped as u64);
                    return Some(vec![good]);
                }
                Outcome::Refused(reason) => {
                    tracing::error!(events = batch.len(), %reason, "analytics refused an assignment batch");
                    metrics::counter!(m::ASSIGNMENT_REJECTED).increment(batch.len() as u64);
                    return None;
                }
            }
        }
    }

    /// One POST.
    async fn post(&self, api_key: &str, batch: &[Vec<u8>]) -> Outcome {
        let body = batch_body(api_key, batch);
        let response = self
            .client
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Outcome::Retry(transport_reason(error)),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let text = response.text().await.unwrap_or_default();
        classify(status.as_u16(), &text)
    }
}

/// Maps a non-2xx answer to what to do with the batch.
fn classify(status: u16, body: &str) -> Outcome {
    match status {
        429 | 500..=599 => Outcome::Retry(format!("status {status}")),
        413 => Outcome::TooLarge,
        400 => {
            let bad = bad_indices(body);
            if bad.is_empty() {
                Outcome::Refused(format!("status 400: {}", truncate(body)))
            } else {
                Outcome::BadEvents(bad)
            }
        }
        _ => Outcome::Refused(format!("status {status}: {}", truncate(body))),
    }
}

/// A transport error without the URL (it may carry credentials).
fn transport_reason(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    format!("{kind}: {}", error.without_url())
}

fn truncate(body: &str) -> &str {
    let end = body
        .char_indices()
        .nth(200)
        .map_or(body.len(), |(index, _)| index);
    &body[..end]
}

/// Drops the events at the `bad` indices; returns the rest and how many were dropped.
fn split_bad<T>(batch: Vec<T>, bad: &BTreeSet<usize>) -> (Vec<T>, usize) {
    let total = batch.len();
    let good: Vec<T> = batch
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !bad.contains(index))
        .map(|(_, event)| event)
        .collect();
    let dropped = total - good.len();
    (good, dropped)
}

/// `{"api_key":"…","events":[…]}` from pre-serialised events.
fn batch_body(api_key: &str, events: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut body = Vec::with_capacity(size + api_key.len() + 32);
    body.extend_from_slice(b"{\"api_key\":");
    // Serialising a &str cannot fail.
    let _ = serde_json::to_writer(&mut body, api_key);
    body.extend_from_slice(b",\"events\":[");
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_java_sdk() {
        let delays: Vec<u64> = (1..=9).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(delays, [100, 100, 200, 400, 800, 1600, 3200, 3200, 3200]);
    }

    #[test]
    fn body_wraps_events() {
        let body = batch_body("k\"1", &[b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"api_key": "k\"1", "events": [{"a": 1}, {"b": 2}]})
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(classify(429, ""), Outcome::Retry(_)));
        assert!(matches!(classify(503, ""), Outcome::Retry(_)));
        assert_eq!(classify(413, ""), Outcome::TooLarge);
        assert!(matches!(classify(401, "bad key"), Outcome::Refused(_)));
        assert!(matches!(
            classify(400, r#"{"code":400,"missing_field":"api_key"}"#),
            Outcome::Refused(_)
        ));
        let body = r#"{"code":400,"error":"Request missing required field",
            "events_with_invalid_fields":{"time":[3,5]},
            "events_with_missing_fields":{"event_type":[1]},
            "events_with_invalid_id_lengths":{"user_id":[5]},
            "silenced_events":[7]}"#;
        assert_eq!(
            classify(400, body),
            Outcome::BadEvents([1, 3, 5, 7].into_iter().collect())
        );
    }

    #[test]
    fn bad_events_are_split_out() {
        let batch: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let (good, dropped) = split_bad(batch, &[1, 3, 9].into_iter().collect());
        assert_eq!((good, dropped), (vec!["0".to_owned(), "2".to_owned()], 2));
    }

    #[test]
    fn batches_stop_at_the_event_and_byte_caps() {
        let mut events: Vec<Vec<u8>> = vec![vec![b'x'; 10]; MAX_BATCH_EVENTS + 5];
        assert_eq!(take_batch(&mut events).len(), MAX_BATCH_EVENTS);
        assert_eq!(events.len(), 5);
        let big = MAX_BATCH_BYTES / 3 + 1;
        let mut events: Vec<Vec<u8>> = vec![vec![b'x'; big]; 4];
        assert_eq!(
            take_batch(&mut events).len(),
            2,
            "a third would pass the byte cap"
        );
        assert_eq!(events.len(), 2);
        let mut events = vec![vec![b'x'; MAX_BATCH_BYTES * 2], vec![b'y'; 1]];
        assert_eq!(
            take_batch(&mut events).len(),
            1,
            "one oversized event still goes"
        );
        assert_eq!(take_batch(&mut events), vec![vec![b'y'; 1]]);
        assert!(take_batch(&mut events).is_empty());
    }
}
