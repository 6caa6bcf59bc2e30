//! The tracker handle the request path uses, and the worker task behind its bounded queue.
//!
//! Shutdown: `stop` (cancelled by the app once the HTTP servers have drained) makes the worker
//! close the queue, process what is left and flush every buffered event with retries; `abort`
//! (the end of the grace period) ends retrying, and what is still unsent is counted as lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::event::{digest_with, EventWriter, Identity, DAY_MILLIS};
use super::filter::{Clock, LocalFilter};
use super::upload::{UploadError, UploadSettings, Uploader};
use super::{ApiKeys, Assignment};
use crate::amplitude::engine::{EvaluationResults, Value};
use crate::metrics as m;
use crate::store::Store;

/// How long a dedup claim lasts: the reference's 24-hour window.
const CLAIM_TTL: Duration = Duration::from_millis(DAY_MILLIS as u64);
/// How long the worker lets assignments gather after it drained the queue: at most one
/// wake-up per this period instead of one per request under load. Events are delayed by it at
/// most (they wait up to `eventUploadPeriodMillis` for their batch anyway).
const GATHER: Duration = Duration::from_millis(5);

/// Where "seen in the last 24 hours" is decided.
#[derive(Clone)]
pub enum Dedup {
    /// This process only (memory mode): the local filter.
    Local,
    /// Every replica sharing this store: claim-once keys (Redis `SET NX PX`, pipelined), with
    /// the local filter in front and as the fallback when the store fails.
    Shared(Arc<dyn Store>),
}

/// Tracker settings from `configuration.assignment` and `analyticsServerUrl`.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// Upload endpoint, batching and timeout.
    pub upload: UploadSettings,
    /// Entries in the local dedup filter.
    pub filter_capacity: usize,
    /// Assignments the queue holds before new ones are dropped.
    pub queue_capacity: usize,
}

/// The cheap, cloneable handle handlers call.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

struct Inner {
    queue: mpsc::Sender<Assignment>,
    keys: Arc<ApiKeys>,
    clock: Arc<dyn Clock>,
    assignments: metrics::Counter,
    dropped: metrics::Counter,
    send_failures: metrics::Counter,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").finish_non_exhaustive()
    }
}

impl Tracker {
    /// Starts the worker on `tasks`. It stops taking new work when `stop` fires, flushes, and
    /// gives up retrying when `abort` fires.
    pub fn start(
        settings: TrackerSettings,
        keys: Arc<ApiKeys>,
        dedup: Dedup,
        clock: Arc<dyn Clock>,
        tasks: &TaskTracker,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<Self, UploadError> {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let batch_limit = settings.upload.threshold.clamp(1, 1000);
        let worker = Worker {
            receiver,
            dedup,
            filter: LocalFilter::new(settings.filter_capacity, DAY_MILLIS),
            uploader: Uploader::new(settings.upload, abort.clone())?,
            batch_limit,
            abort,
            writer: EventWriter::new(),
            scratch: Vec::with_capacity(256),
            metrics: WorkerMetrics::new(),
        };
        tasks.spawn(worker.run(stop));
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                keys,
                clock,
                assignments: metrics::counter!(m::ASSIGNMENT),
                dropped: metrics::counter!(m::ASSIGNMENT_DROPPED),
                send_failures: metrics::counter!(m::ASSIGNMENT_SEND_FAILURE),
            }),
        })
    }

    /// Queues an assignment without waiting. Never fails the request: a full queue or an
    /// unknown project drops the assignment and counts it.
    pub fn track(&self, deployment: &str, context: Value, results: EvaluationResults) {
        let inner = &self.inner;
        inner.assignments.increment(1);
        let Some(api_key) = inner.keys.for_deployment(deployment) else {
            inner.send_failures.increment(1);
            return;
        };
        let assignment = Assignment {
            api_key,
            context,
            results,
            timestamp_millis: inner.clock.now_millis(),
        };
        if let Err(error) = inner.queue.try_send(assignment) {
            inner.dropped.increment(1);
            inner.send_failures.increment(1);
            if matches!(error, TrySendError::Closed(_)) {
                tracing::debug!("assignment after shutdown dropped");
            }
        }
    }
}

/// The store key of a claim (the store adds its prefix).
fn claim_key(digest: u128) -> String {
    format!("assignment-{digest:032x}")
}

/// An assignment that passed the local filter.
struct Fresh {
    digest: u128,
    assignment: Assignment,
}

/// The worker's metric handles, resolved once instead of per assignment.
struct WorkerMetrics {
    queue_depth: metrics::Gauge,
    no_identity: metrics::Counter,
    send_failure: metrics::Counter,
    filtered: metrics::Counter,
    dedup_fallback: metrics::Counter,
    sent: metrics::Counter,
    lost: metrics::Counter,
}

impl WorkerMetrics {
    fn new() -> Self {
        Self {
            queue_depth: metrics::gauge!(m::ASSIGNMENT_QUEUE_DEPTH),
            no_identity: metrics::counter!(m::ASSIGNMENT_NO_IDENTITY),
            send_failure: metrics::counter!(m::ASSIGNMENT_SEND_FAILURE),
            filtered: metrics::counter!(m::ASSIGNMENT_FILTER),
            dedup_fallback: metrics::counter!(m::ASSIGNMENT_DEDUP_FALLBACK),
            sent: metrics::counter!(m::ASSIGNMENT_SEND),
            lost: metrics::counter!(m::ASSIGNMENT_LOST),
        }
    }
}

struct Worker {
    receiver: mpsc::Receiver<Assignment>,
    dedup: Dedup,
    filter: LocalFilter,
    uploader: Uploader,
    batch_limit: usize,
    abort: CancellationToken,
    /// Serialises events; its scratch buffers live as long as the worker.
    writer: EventWriter,
    /// Scratch buffer of the dedup digest.
    scratch: Vec<u8>,
    metrics: WorkerMetrics,
}

impl Worker {
    async fn run(mut self, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(self.batch_limit);
        loop {
            let deadline = self.uploader.deadline();
            let due = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                received = self.receiver.recv_many(&mut batch, self.batch_limit) => {
                    if received == 0 {
                        break;
                    }
                    self.process(&mut batch).await;
                    if received < self.batch_limit {
                        // The queue is drained: let assignments gather for a moment instead of
                        // waking this task for each one. While it sleeps, the request path's
                        // `try_send` wakes nothing (no receiver is waiting).
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(GATHER) => {}
                        }
                    }
                }
                () = due => self.uploader.flush_due().await,
            }
        }
        self.drain(&mut batch).await;
    }

    /// Shutdown: no new assignments; everything queued is processed and flushed.
    async fn drain(&mut self, batch: &mut Vec<Assignment>) {
        self.receiver.close();
        while self.receiver.recv_many(batch, self.batch_limit).await > 0 {
            if self.abort.is_cancelled() {
                self.metrics.lost.increment(batch.len() as u64);
                batch.clear();
                continue;
            }
            self.process(batch).await;
        }
        let buffered = self.uploader.buffered();
        self.uploader.flush_all().await;
        tracing::info!(
            events = buffered,
            "assignment tracking stopped after the final flush"
        );
    }

    /// Dedups a batch of assignments, hands the new ones to the uploader, and uploads what is
    /// ready (larger batches while more assignments wait in the queue).
    async fn process(&mut self, batch: &mut Vec<Assignment>) {
        self.metrics.queue_depth.set(self.receiver.len() as f64);
        let mut fresh = Vec::new();
        let mut filtered = 0;
        for assignment in batch.drain(..) {
            let identity = Identity::of(&assignment.context);
            if !identity.is_present() {
                self.metrics.no_identity.increment(1);
                self.metrics.send_failure.increment(1);
                continue;
            }
            let digest = digest_with(
                &assignment.api_key,
                &assignment,
                &identity,
                &mut self.scratch,
            );
            if self
                .filter
                .should_track(digest, assignment.timestamp_millis)
            {
                fresh.push(Fresh { digest, assignment });
            } else {
                filtered += 1;
            }
        }
        if filtered > 0 {
            self.metrics.filtered.increment(filtered);
        }
        let fresh = self.claim(fresh).await;
        for item in fresh {
            self.send(item);
        }
        self.uploader.flush_ready(self.receiver.is_empty()).await;
    }

    /// Keeps the assignments no other replica sent in the last 24 hours. On a store error the
    /// local filter's answer stands (duplicates across replicas possible, and counted).
    async fn claim(&self, fresh: Vec<Fresh>) -> Vec<Fresh> {
        let Dedup::Shared(store) = &self.dedup else {
            return fresh;
        };
        if fresh.is_empty() {
            return fresh;
        }
        let keys: Vec<String> = fresh.iter().map(|f| claim_key(f.digest)).collect();
        match store.claim(&keys, CLAIM_TTL).await {
            Ok(claimed) => {
                let mut kept = Vec::with_capacity(fresh.len());
                for (index, item) in fresh.into_iter().enumerate() {
                    if claimed.get(index).copied().unwrap_or(true) {
                        kept.push(item);
                    } else {
                        self.metrics.filtered.increment(1);
                    }
                }
                kept
            }
            Err(error) => {
                self.metrics.dedup_fallback.increment(fresh.len() as u64);
                tracing::warn!(%error, assignments = fresh.len(), "shared dedup unavailable; using this replica's filter");
                fresh
            }
        }
    }

    /// Serialises the event straight into its upload batch.
    fn send(&mut self, item: Fresh) {
        let assignment = &item.assignment;
        let identity = Identity::of(&assignment.context);
        let writer = &mut self.writer;
        let written = self.uploader.push_with(&assignment.api_key, |out| {
            writer.write_into(out, assignment, &identity)
        });
        match written {
            Ok(()) => self.metrics.sent.increment(1),
            Err(error) => {
                tracing::debug!(%error, "assignment not sent");
                self.metrics.send_failure.increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_keys_are_fixed_length_hex() {
        assert_eq!(claim_key(0xff), format!("assignment-{}ff", "0".repeat(30)));
    }
}
