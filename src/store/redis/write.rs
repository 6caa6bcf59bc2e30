//! The cohort write path of [`RedisStore`](super::RedisStore): a streamed write
//! ([`RedisCohortWriter`]) and the repair of an unfinished one ([`repair`]).
//!
//! While the vendor's body is read, members are staged into `temp:staged:<token>` (variadic
//! `SADD`, several pipelines in flight, with a TTL until the write is marked pending): Redis
//! de-duplicates them and the proxy holds only the chunks in flight. `finish` then:
//! 1. sets the pending marker (group type, token) and drops the staged set's TTL, atomically;
//! 2. walks the staged set page by page (`SSCAN`): each page goes, sorted, into the blob
//!    builder and, for members not in the stored set (`SMISMEMBER`), into the membership
//!    index (so the blob lists each member once, in Redis' order of pages);
//! 3. at the same time, walks the stored set the same way and removes the members that were
//!    not staged from the index (all of them, under the old group type, when the group type
//!    changed);
//! 4. writes the blob to a temp key and publishes with one script: the staged set replaces the
//!    members set, the temp blob the blob, the description is set and the marker deleted.
//!
//! No command works on a whole large set at once: there is no `SDIFFSTORE`, and the replaced
//! members set and blob are `UNLINK`ed (freed off Redis' main thread). A `SDIFFSTORE` of 10
//! million members and the synchronous free of the replaced set inside the publish script
//! blocked Redis for longer than the command timeout, which failed every other call.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{Inner, Pending, Pipelines, TEMP_TTL_MS};
use crate::store::{
    new_token, BlobBuilder, CohortDescription, CohortVersion, CohortWrite, CohortWriter, StoreError,
};

/// Members per staging `SADD` (one command; its cost is per member, so few large ones save
/// round trips: a 10,000-member chunk from the download is one pipeline of 10 commands).
const STAGE_SADD: usize = 1000;

/// A streamed cohort write into Redis; see the module documentation.
pub(super) struct RedisCohortWriter {
    inner: Arc<Inner>,
    cohort_id: String,
    token: String,
    /// The temp set the members are staged into.
    staged: String,
    /// Staging pipelines in flight (`None` once `finish` waited for them).
    pipes: Option<Pipelines>,
    /// Whether the pending marker may have been set: from then on the staged set belongs to
    /// the marker (a repair needs it and deletes it) and is not deleted when the writer drops.
    marked: bool,
    /// When the write began, for the phase timings logged when it completes.
    began: Instant,
}

impl RedisCohortWriter {
    /// A write of a new version of `cohort_id` with a fresh token.
    pub(super) fn new(inner: &Arc<Inner>, cohort_id: &str) -> Self {
        let token = new_token();
        Self {
            staged: inner.keys.cohort_temp(cohort_id, "staged", &token),
            inner: Arc::clone(inner),
            cohort_id: cohort_id.to_owned(),
            token,
            pipes: Some(Pipelines::new(inner)),
            marked: false,
            began: Instant::now(),
        }
    }

    /// Everything of `finish` but the cache clear.
    async fn write(
        &mut self,
        version: CohortVersion,
        blob: Box<dyn BlobBuilder>,
    ) -> Result<CohortWrite, StoreError> {
        if let Some(pipes) = self.pipes.take() {
            pipes.finish().await?;
        }
        let staged_ms = self.began.elapsed().as_millis();
        let previous = self.inner.cohort_description(&self.cohort_id).await?;
        if let Some(stored) = previous
            .as_ref()
            .filter(|p| p.last_modified >= version.last_modified)
        {
            return Ok(CohortWrite::Stale {
                stored: stored.clone(),
            });
        }
        repair(&self.inner, &self.cohort_id, previous.as_ref()).await?;
        self.marked = true;
        let written = self
            .publish(previous.as_ref(), version, blob, staged_ms)
            .await;
        if written.is_err() {
            if let Err(error) = repair(&self.inner, &self.cohort_id, previous.as_ref()).await {
                tracing::warn!(cohort_id = %self.cohort_id, %error, "could not undo a failed cohort write yet; the next write will");
            }
        }
        written
    }

    /// Steps 1-4 of the module documentation.
    async fn publish(
        &self,
        previous: Option<&CohortDescription>,
        version: CohortVersion,
        mut blob: Box<dyn BlobBuilder>,
        staged_ms: u128,
    ) -> Result<CohortWrite, StoreError> {
        let inner = &self.inner;
        let keys = &inner.keys;
        let id = self.cohort_id.as_str();
        let current = keys.cohort_members(id);
        let marker = serde_json::json!({ "groupType": version.group_type, "token": self.token });
        let mut start = redis::pipe();
        start.atomic();
        start
            .cmd("SET")
            .arg(keys.cohort_pending(id))
            .arg(marker.to_string())
            .ignore();
        start.cmd("PERSIST").arg(&self.staged).ignore();
        start.cmd("SCARD").arg(&self.staged);
        start.cmd("SCARD").arg(&current);
        let (size, stored_size): (u64, u64) = inner.pipe(&start).await?;
        let description = CohortDescription {
            cohort_id: self.cohort_id.clone(),
            group_type: version.group_type,
            size,
            last_modified: version.last_modified,
        };
        blob.start(&description);
        let same_type = previous.is_some_and(|p| p.group_type == description.group_type);
        let compare = same_type && stored_size > 0;
        // Both walks at once: they write disjoint index entries (members that join, members
        // that leave), and each is a chain of page round trips.
        let walking = Instant::now();
        let group_type = description.group_type.clone();
        let index = self.index_staged(&current, compare, &group_type, &mut *blob);
        let unindex = async {
            match previous {
                Some(previous) if !same_type => {
                    inner
                        .index_members(&current, None, &previous.group_type, id, false)
                        .await
                }
                // The stored members that were not staged leave the index.
                Some(_) if stored_size > 0 => {
                    inner
                        .index_members(&current, Some(&self.staged), &group_type, id, false)
                        .await
                }
                _ => Ok(()),
            }
        };
        let (indexed, unindexed) = tokio::join!(index, unindex);
        let (read, added) = indexed?;
        unindexed?;
        let walks_ms = walking.elapsed().as_millis();
        if read != size {
            // SSCAN may repeat members of a set that shrinks; the staged set never does.
            return Err(StoreError::Corrupt {
                key: self.staged.clone(),
                reason: format!("read {read} members back from a set of {size}"),
            });
        }
        let removed = match previous {
            Some(_) if !same_type => stored_size,
            // Stored members that stay: the staged ones that were not added.
            Some(_) => stored_size.saturating_sub(size - added),
            None => 0,
        };
        let publishing = Instant::now();
        let new_blob = keys.cohort_temp(id, "blob", &self.token);
        let bytes = blob.finish();
        inner
            .query::<()>(
                redis::cmd("SET")
                    .arg(&new_blob)
                    .arg(bytes.as_ref())
                    .arg("PX")
                    .arg(TEMP_TTL_MS),
            )
            .await?;
        drop(bytes);
        let json = serde_json::to_string(&description)
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let mut publish = inner.scripts.publish_cohort.prepare_invoke();
        publish
            .key(keys.cohort_description(id))
            .key(&current)
            .key(keys.cohort_blob(id))
            .key(&self.staged)
            .key(keys.cohort_pending(id))
            .key(&new_blob)
            .arg(&json);
        inner.script::<()>(&publish).await?;
        let mut index = redis::pipe();
        index
            .cmd("HSET")
            .arg(keys.cohort_index())
            .arg(id)
            .arg(&json)
            .ignore();
        let signal = format!("cohort {} {id}", description.last_modified);
        index
            .cmd("PUBLISH")
            .arg(keys.changes_channel())
            .arg(signal)
            .ignore();
        inner.pipe::<()>(&index).await?;
        tracing::info!(
            cohort_id = id,
            size,
            staged_ms,
            walks_ms,
            publish_ms = publishing.elapsed().as_millis(),
            "cohort write phases (staged while downloading; walks: new members indexed and blob built, and old members unindexed, at once; published)"
        );
        Ok(CohortWrite::Written { added, removed })
    }

    /// Step 2: feeds every staged member to `blob` and adds the cohort to the membership sets
    /// of those not in `current` (of all of them unless `compare`). Returns how many members
    /// were read and how many of them were added.
    async fn index_staged(
        &self,
        current: &str,
        compare: bool,
        group_type: &str,
        blob: &mut dyn BlobBuilder,
    ) -> Result<(u64, u64), StoreError> {
        let inner = &self.inner;
        let mut pipes = Pipelines::new(inner);
        let (mut read, mut added) = (0u64, 0u64);
        let mut cursor = 0;
        loop {
            let (next, mut page) = inner
                .scan_page::<String>("SSCAN", &self.staged, cursor)
                .await?;
            // Sorted per page: a cohort that fits in one page (up to `scan_count` members) gets
            // the sorted blob it always had; larger ones compress better.
            page.sort_unstable();
            for member in &page {
                blob.push(member);
            }
            read += page.len() as u64;
            let new = if compare {
                inner.not_in(current, page).await?
            } else {
                page
            };
            added += new.len() as u64;
            for chunk in new.chunks(inner.batch) {
                pipes
                    .send(inner.index_pipe(chunk, group_type, &self.cohort_id, true))
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        pipes.finish().await?;
        Ok((read, added))
    }
}

#[async_trait]
impl CohortWriter for RedisCohortWriter {
    async fn add(&mut self, members: Vec<String>) -> Result<(), StoreError> {
        let Some(pipes) = self.pipes.as_mut() else {
            return Err(StoreError::Unavailable(
                "members added to a finished cohort write".into(),
            ));
        };
        // Up to `batch` commands per pipeline, each a variadic SADD of up to STAGE_SADD members.
        for chunk in members.chunks(STAGE_SADD.saturating_mul(self.inner.batch)) {
            let mut pipe = redis::pipe();
            for sadd in chunk.chunks(STAGE_SADD) {
                pipe.cmd("SADD").arg(&self.staged).arg(sadd).ignore();
            }
            // Until the pending marker takes it over, an abandoned staged set expires.
            pipe.cmd("PEXPIRE")
                .arg(&self.staged)
                .arg(TEMP_TTL_MS)
                .ignore();
            pipes.send(pipe).await?;
        }
        Ok(())
    }

    async fn finish(
        mut self: Box<Self>,
        version: CohortVersion,
        blob: Box<dyn BlobBuilder>,
    ) -> Result<CohortWrite, StoreError> {
        let last_modified = version.last_modified;
        let written = self.write(version, blob).await;
        // Read-your-writes on this replica, without waiting for the signal to come back (a
        // repair may have changed the index even when the write failed).
        self.inner.memberships.clear();
        if let Ok(CohortWrite::Written { .. }) = &written {
            // The mirror must not answer from the previous version once this write is stored.
            self.inner.mirror.expect(&self.cohort_id, last_modified);
        }
        written
    }
}

impl Drop for RedisCohortWriter {
    /// An abandoned write (a failed download, a stale version) deletes its staged set, unless
    /// the pending marker may point at it (then the next write's repair needs it).
    fn drop(&mut self) {
        // Stop the staging pipelines still queued (dropping their tasks aborts them).
        self.pipes = None;
        if self.marked {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the staged set expires by itself
        };
        let inner = Arc::clone(&self.inner);
        let staged = std::mem::take(&mut self.staged);
        runtime.spawn(async move {
            if let Err(error) = inner.query::<()>(redis::cmd("UNLINK").arg(&staged)).await {
                tracing::debug!(%error, "could not delete an abandoned staged cohort set; it expires");
            }
        });
    }
}

/// Undoes what an unfinished write (its pending marker) may have done to the membership
/// index: removes the cohort from the sets of the members it staged, except members of the
/// stored version, then re-adds every stored member (a removal may have been half done).
pub(super) async fn repair(
    inner: &Arc<Inner>,
    cohort_id: &str,
    stored: Option<&CohortDescription>,
) -> Result<(), StoreError> {
    let keys = &inner.keys;
    let pending_key = keys.cohort_pending(cohort_id);
    let marker: Option<String> = inner.query(redis::cmd("GET").arg(&pending_key)).await?;
    let Some(marker) = marker else {
        return Ok(());
    };
    let pending: Pending = serde_json::from_str(&marker).map_err(|error| StoreError::Corrupt {
        key: pending_key.clone(),
        reason: error.to_string(),
    })?;
    tracing::warn!(
        cohort_id,
        "repairing the membership index after an unfinished cohort write"
    );
    let staged = keys.cohort_temp(cohort_id, "staged", &pending.token);
    let current = keys.cohort_members(cohort_id);
    let keep = stored.is_some_and(|s| s.group_type == pending.group_type);
    inner
        .index_members(
            &staged,
            keep.then_some(current.as_str()),
            &pending.group_type,
            cohort_id,
            false,
        )
        .await?;
    if let Some(stored) = stored {
        inner
            .index_members(&current, None, &stored.group_type, cohort_id, true)
            .await?;
    }
    // UNLINK: the staged set may hold millions of members; free it off Redis' main thread.
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(&pending_key).arg(&staged);
    // `added`/`removed` are the diff sets of writes by earlier versions of the proxy.
    for kind in ["added", "removed", "blob"] {
        cmd.arg(keys.cohort_temp(cohort_id, kind, &pending.token));
    }
    inner.query::<()>(&cmd).await
}
