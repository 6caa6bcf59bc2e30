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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

/// The events of one upload request, written straight into its request body (the worker
/// serialises each event there: no per-event buffer, no copy into a body at send time).
#[derive(Debug)]
struct Batch {
    /// `{"api_key":…,"events":[e0,e1,…` (the closing `]}` is added by [`Batch::seal`]).
    body: Vec<u8>,
    /// Where each event is in `body`.
    events: Vec<Range<usize>>,
    /// The events' total length (the byte cap counts events only).
    event_bytes: usize,
}

/// Most request bodies kept for reuse ([`Spares`]).
const SPARE_BODIES: usize = 4;

/// Request bodies of delivered batches, kept for the next batches. A body grows to about
/// [`MAX_BATCH_BYTES`] under load; a fresh one each time costs a regrowth, page faults on its
/// new pages and, for glibc's large allocations, an `munmap` when freed.
#[derive(Debug, Default)]
struct Spares(std::sync::Mutex<Vec<Vec<u8>>>);

impl Spares {
    /// An empty body, with room from an earlier batch when one is spare.
    fn body(&self) -> Vec<u8> {
        let spare = match self.0.lock() {
            Ok(mut spares) => spares.pop(),
            Err(_) => None,
        };
        spare.unwrap_or_default()
    }

    /// Keeps a sent body for reuse if nothing else holds it (the HTTP client has let go of it
    /// once the response arrived) and it is not oversized.
    fn recycle(&self, body: Bytes) {
        let Ok(body) = body.try_into_mut() else {
            return;
        };
        if body.capacity() > 2 * MAX_BATCH_BYTES {
            return;
        }
        let mut body = Vec::from(body);
        body.clear();
        if let Ok(mut spares) = self.0.lock() {
            if spares.len() < SPARE_BODIES {
                spares.push(body);
            }
        }
    }
}

impl Batch {
    /// An empty batch for `api_key`, written into `body` (cleared first).
    fn new(api_key: &str, mut body: Vec<u8>) -> Self {
        body.clear();
        body.reserve(api_key.len() + 32);
        body.extend_from_slice(b"{\"api_key\":");
        // Serialising a &str cannot fail.
        let _ = serde_json::to_writer(&mut body, api_key);
        body.extend_from_slice(b",\"events\":[");
        Self {
            body,
            events: Vec::new(),
            event_bytes: 0,
        }
    }

    /// Whether the batch reached [`MAX_BATCH_EVENTS`] or [`MAX_BATCH_BYTES`].
    fn is_full(&self) -> bool {
        self.events.len() >= MAX_BATCH_EVENTS || self.event_bytes >= MAX_BATCH_BYTES
    }

    /// Appends a serialised event.
    fn append(&mut self, event: &[u8]) {
        if !self.events.is_empty() {
            self.body.push(b',');
        }
        let start = self.body.len();
        self.body.extend_from_slice(event);
        self.events.push(start..self.body.len());
        self.event_bytes += event.len();
    }

    /// The request body and the events' places in it.
    fn seal(mut self) -> Sealed {
        self.body.extend_from_slice(b"]}");
        Sealed {
            body: Bytes::from(self.body),
            events: self.events,
        }
    }
}

/// A batch ready to send: its body is shared by every attempt (a reference count, no copy).
#[derive(Debug)]
struct Sealed {
    body: Bytes,
    events: Vec<Range<usize>>,
}

impl Sealed {
    /// The events in order.
    fn events(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.events
            .iter()
            .filter_map(|range| self.body.get(range.clone()))
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    /// A new batch of some of these events (a 413 half, or the good rest of a 400).
    fn rebuild<'a>(api_key: &str, events: impl Iterator<Item = &'a [u8]>) -> Sealed {
        let mut batch = Batch::new(api_key, Vec::new());
        for event in events {
            batch.append(event);
        }
        batch.seal()
    }
}

/// The events waiting for upload under one API key.
#[derive(Debug)]
struct Pending {
    /// Batches that reached a cap, oldest first.
    full: VecDeque<Sealed>,
    /// The batch new events go to.
    open: Batch,
    /// Events in `full` and `open`.
    count: usize,
    /// When the oldest event arrived.
    since: Instant,
}

impl Pending {
    fn new(api_key: &str, spares: &Spares) -> Self {
        Self {
            full: VecDeque::new(),
            open: Batch::new(api_key, spares.body()),
            count: 0,
            since: Instant::now(),
        }
    }

    /// Appends the event `write` serialises. Batches are cut greedily in arrival order: an
    /// event that would take the open batch past [`MAX_BATCH_BYTES`] starts the next one (a
    /// single event however large still goes, a 413 settles it), and a batch that reaches a
    /// cap is sealed at once.
    fn push<E>(
        &mut self,
        api_key: &str,
        spares: &Spares,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let open = &mut self.open;
        let mark = open.body.len();
        if !open.events.is_empty() {
            open.body.push(b',');
        }
        let start = open.body.len();
        if let Err(error) = write(&mut open.body) {
            open.body.truncate(mark);
            return Err(error);
        }
        let len = open.body.len() - start;
        if !open.events.is_empty() && open.event_bytes + len > MAX_BATCH_BYTES {
            let mut next = Batch::new(api_key, spares.body());
            next.append(&open.body[start..]);
            open.body.truncate(mark);
            let done = std::mem::replace(open, next);
            self.full.push_back(done.seal());
        } else {
            open.events.push(start..start + len);
            open.event_bytes += len;
        }
        if self.open.is_full() {
            let done = std::mem::replace(&mut self.open, Batch::new(api_key, spares.body()));
            self.full.push_back(done.seal());
        }
        self.count += 1;
        Ok(())
    }

    /// The oldest batch: a full one, else the open one (`None` when no event is left).
    fn take(&mut self, api_key: &str) -> Option<Sealed> {
        let batch = match self.full.pop_front() {
            Some(batch) => batch,
            None if self.open.events.is_empty() => return None,
            // The buffer is dropped or refilled after this: no spare body for the new open one.
            None => std::mem::replace(&mut self.open, Batch::new(api_key, Vec::new())).seal(),
        };
        self.count -= batch.len();
        Some(batch)
    }
}

/// The batching, retrying uploader; owned by the worker task.
pub struct Uploader {
    client: reqwest::Client,
    settings: UploadSettings,
    pending: HashMap<Arc<str>, Pending>,
    abort: CancellationToken,
    spares: Spares,
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
            spares: Spares::default(),
        })
    }

    /// Events buffered and not yet sent.
    pub fn buffered(&self) -> usize {
        self.pending.values().map(|p| p.count).sum()
    }

    /// When the oldest buffer is due, if any event is buffered.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.since + self.settings.period)
            .min()
    }

    /// Buffers one event, which `write` serialises straight into its upload body (and appends
    /// nothing when it fails); [`Uploader::flush_ready`] sends it.
    pub fn push_with<E>(
        &mut self,
        api_key: &Arc<str>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let pending = match self.pending.get_mut(api_key) {
            Some(pending) => pending,
            None => self
                .pending
                .entry(Arc::clone(api_key))
                .or_insert_with(|| Pending::new(api_key, &self.spares)),
        };
        let result = pending.push(api_key, &self.spares, write);
        if pending.count == 0 {
            // The first event failed: no deadline for an empty buffer.
            self.pending.remove(api_key);
        }
        result
    }

    /// Sends full batches: every buffer at the threshold when `queue_empty`, and otherwise
    /// only what fills a whole request ([`MAX_BATCH_EVENTS`] or [`MAX_BATCH_BYTES`]), so a deep
    /// queue is uploaded in fewer, larger requests.
    pub async fn flush_ready(&mut self, queue_empty: bool) {
        let threshold = self.settings.threshold.max(1);
        let ready: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.full.is_empty() || (queue_empty && p.count >= threshold))
            .map(|(key, _)| Arc::clone(key))
            .collect();
        for key in ready {
            let Some(mut pending) = self.pending.remove(&key) else {
                continue;
            };
            while !pending.full.is_empty() || (queue_empty && pending.count >= threshold) {
                let Some(batch) = pending.take(&key) else {
                    break;
                };
                self.deliver(&key, batch).await;
            }
            if pending.count > 0 {
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
                while let Some(batch) = pending.take(&key) {
                    self.deliver(&key, batch).await;
                }
            }
        }
    }

    /// Sends everything buffered (shutdown), in batches as large as one request takes.
    pub async fn flush_all(&mut self) {
        let all: Vec<(Arc<str>, Pending)> = self.pending.drain().collect();
        for (key, mut pending) in all {
            while let Some(batch) = pending.take(&key) {
                self.deliver(&key, batch).await;
            }
        }
    }

    /// Delivers one batch: retries, splits on 413, drops what Amplitude names as bad. Returns
    /// when every event was delivered, refused for good, or (on abort) counted as lost.
    async fn deliver(&self, api_key: &str, batch: Sealed) {
        let mut work = vec![batch];
        while let Some(batch) = work.pop() {
            if batch.len() == 0 {
                continue;
            }
            if let Some(parts) = self.deliver_one(api_key, batch).await {
                work.extend(parts);
            }
            if self.abort.is_cancelled() {
                let lost: usize = work.iter().map(Sealed::len).sum();
                metrics::counter!(m::ASSIGNMENT_LOST).increment(lost as u64);
                return;
            }
        }
    }

    /// Sends one batch until it is settled; returns the batches still to send (413 halves, or
    /// the good rest of a 400).
    async fn deliver_one(&self, api_key: &str, batch: Sealed) -> Option<Vec<Sealed>> {
        let mut attempt = 0u32;
        loop {
            let outcome = tokio::select! {
                outcome = self.post(&batch) => outcome,
                () = self.abort.cancelled() => Outcome::Retry("aborted".to_owned()),
            };
            match outcome {
                Outcome::Delivered => {
                    metrics::counter!(m::ASSIGNMENT_UPLOADED).increment(batch.len() as u64);
                    self.spares.recycle(batch.body);
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
                    let half = batch.len() / 2;
                    let first = Sealed::rebuild(api_key, batch.events().take(half));
                    let second = Sealed::rebuild(api_key, batch.events().skip(half));
                    return Some(vec![second, first]);
                }
                Outcome::TooLarge => {
                    tracing::error!("analytics refused a single assignment event as too large");
                    metrics::counter!(m::ASSIGNMENT_REJECTED).increment(1);
                    return None;
                }
                Outcome::BadEvents(bad) => {
                    let (good, dropped) = split_bad(batch.events().collect::<Vec<_>>(), &bad);
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
                    return Some(vec![Sealed::rebuild(api_key, good.into_iter())]);
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
    async fn post(&self, batch: &Sealed) -> Outcome {
        let response = self
            .client
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(batch.body.clone())
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
        let body = Sealed::rebuild("k\"1", [&b"{\"a\":1}"[..], b"{\"b\":2}"].into_iter()).body;
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

    /// Pushes `events` into a fresh buffer and returns its batches, oldest first, checking
    /// that each body is the JSON envelope of its events.
    fn batches(events: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        let spares = Spares::default();
        let mut pending = Pending::new("k", &spares);
        for event in events {
            let written: Result<(), ()> = pending.push("k", &spares, |out| {
                out.extend_from_slice(event);
                Ok(())
            });
            written.unwrap();
        }
        assert_eq!(pending.count, events.len());
        let mut out = Vec::new();
        while let Some(batch) = pending.take("k") {
            let inner: Vec<Vec<u8>> = batch.events().map(<[u8]>::to_vec).collect();
            assert_eq!(batch.body, Sealed::rebuild("k", batch.events()).body);
            out.push(inner);
        }
        assert_eq!(pending.count, 0);
        out
    }

    #[test]
    fn batches_stop_at_the_event_and_byte_caps() {
        let events: Vec<Vec<u8>> = vec![b"\"xxxxxxxx\"".to_vec(); MAX_BATCH_EVENTS + 5];
        let sizes: Vec<usize> = batches(&events).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH_EVENTS, 5]);
        let big = MAX_BATCH_BYTES / 3 + 1;
        let events: Vec<Vec<u8>> = vec![vec![b'1'; big]; 4];
        let sizes: Vec<usize> = batches(&events).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2], "a third would pass the byte cap");
        let events = vec![vec![b'1'; MAX_BATCH_BYTES * 2], b"2".to_vec()];
        assert_eq!(
            batches(&events),
            [vec![vec![b'1'; MAX_BATCH_BYTES * 2]], vec![b"2".to_vec()]],
            "one oversized event still goes"
        );
        assert!(batches(&[]).is_empty());
        let exact = vec![vec![b'1'; MAX_BATCH_BYTES / 2]; 2];
        let spares = Spares::default();
        let mut pending = Pending::new("k", &spares);
        for event in &exact {
            let written: Result<(), ()> = pending.push("k", &spares, |out| {
                out.extend_from_slice(event);
                Ok(())
            });
            written.unwrap();
        }
        assert_eq!(
            pending.full.len(),
            1,
            "a batch at the byte cap is full at once"
        );
    }

    #[test]
    fn a_failed_write_appends_nothing() {
        let spares = Spares::default();
        let mut pending = Pending::new("k", &spares);
        let ok: Result<(), ()> = pending.push("k", &spares, |out| {
            out.extend_from_slice(b"1");
            Ok(())
        });
        ok.unwrap();
        let failed: Result<(), &str> = pending.push("k", &spares, |out| {
            out.extend_from_slice(b"garbage");
            Err("no identity")
        });
        assert_eq!(failed, Err("no identity"));
        let batch = pending.take("k").unwrap();
        assert_eq!(&batch.body[..], br#"{"api_key":"k","events":[1]}"#);
        assert!(pending.take("k").is_none());
    }

    #[test]
    fn delivered_bodies_are_reused_only_when_unshared() {
        let spares = Spares::default();
        let mut body = Vec::with_capacity(1000);
        body.extend_from_slice(b"old");
        let body = Bytes::from(body);
        let held = body.clone();
        spares.recycle(body);
        assert!(
            spares.body().capacity() < 1000,
            "still held elsewhere: not reused"
        );
        spares.recycle(held);
        let reused = spares.body();
        assert!(reused.capacity() >= 1000 && reused.is_empty());
        let batch = Batch::new("k", reused).seal();
        assert_eq!(&batch.body[..], br#"{"api_key":"k","events":[]}"#);
        spares.recycle(Bytes::from(vec![0u8; 2 * MAX_BATCH_BYTES + 1]));
        assert_eq!(spares.body().capacity(), 0, "oversized bodies are not kept");
    }
}
