//! Commits: a draft of the next version, put-if-absent, and the one retry loop.
//!
//! ```text
//! lock item (this engine) ─► latest ─► draft next ─► put _manifest/<v+1>.json if absent
//!                               ▲                          │ lost the race
//!                               └── delete the draft's files, back off ◄─┘
//! ```
//!
//! Every operation that makes a version (writes, range deletes, item deletes, metadata
//! updates, compaction) goes through [`CommitRetry`], so the attempt budget, the backoff
//! and the cleanup after a lost race live here once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tracing::debug;

use super::store::put_json_if_absent;
use super::{Manifest, MANIFEST_FORMAT};
use crate::storage::error::{Error, Result};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::Engine;

/// The retry loop of one commit. Holds the item's lock (within this engine; other
/// engines are kept out by the conditional put) from creation to drop.
///
/// ```text
/// let mut retry = engine.commit_retry(c, i).await?;
/// loop {
///     let latest = retry.latest().await?;          // CommitConflict once spent
///     let (next, written) = draft(latest)?;
///     if let Some(m) = retry.commit(latest, next, &written).await? { break m }
/// }
/// ```
#[derive(Debug)]
pub(crate) struct CommitRetry {
    engine: Engine,
    collection: CollectionName,
    item: ItemName,
    attempt: u32,
    _lock: OwnedMutexGuard<()>,
}

impl CommitRetry {
    /// The item's latest manifest (tombstones included; `None` if it never existed) to
    /// draft the next version on, or [`Error::CommitConflict`] once every attempt lost.
    pub(crate) async fn latest(&self) -> Result<Option<Arc<Manifest>>> {
        if self.attempt >= self.engine.inner.options.max_commit_attempts {
            return Err(Error::CommitConflict {
                collection: self.collection.to_string(),
                item: self.item.to_string(),
                attempts: self.attempt,
            });
        }
        self.engine
            .persisted_latest(&self.collection, &self.item)
            .await
    }

    /// Commit `next` as the version after `latest`. `Ok(None)` if another writer took
    /// that version first: the data files `written` for this draft are deleted and the
    /// caller drafts again on a new [`CommitRetry::latest`].
    pub(crate) async fn commit(
        &mut self,
        latest: Option<&Manifest>,
        next: Manifest,
        written: &[String],
    ) -> Result<Option<Arc<Manifest>>> {
        let (c, i) = (&self.collection, &self.item);
        if let Some(m) = self.engine.try_commit(c, i, latest, next).await? {
            return Ok(Some(m));
        }
        self.engine.delete_files(c, i, written).await;
        backoff(self.attempt).await;
        self.attempt += 1;
        Ok(None)
    }
}

/// Pause before drafting again after a lost race (jittered, growing).
async fn backoff(attempt: u32) {
    let base = 1u64 << attempt.min(6);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % base.max(1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

impl Engine {
    /// Start the commit loop of an item: waits for the item's lock, then persists the
    /// item's write-ahead log tail, so that the loop drafts on every acknowledged write.
    pub(crate) async fn commit_retry(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<CommitRetry> {
        let lock = self.item_lock(c, i).await;
        self.persist_locked(c, i).await?;
        Ok(CommitRetry {
            engine: self.clone(),
            collection: c.clone(),
            item: i.clone(),
            attempt: 0,
            _lock: lock,
        })
    }

    /// The item's lock within this engine: commits and log appends of one item take
    /// their version numbers under it.
    pub(crate) async fn item_lock(&self, c: &CollectionName, i: &ItemName) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.inner.locks.lock().expect("locks poisoned");
            Arc::clone(locks.entry((c.clone(), i.clone())).or_default())
        };
        lock.lock_owned().await
    }

    /// Cache `m` as the item's latest stored manifest.
    pub(crate) fn remember_latest(&self, c: &CollectionName, i: &ItemName, m: &Arc<Manifest>) {
        self.inner
            .cache
            .lock()
            .expect("cache poisoned")
            .insert((c.clone(), i.clone()), Arc::clone(m));
    }

    /// Commit `next` as the version after `current`; `Ok(None)` if another writer took
    /// that version first.
    async fn try_commit(
        &self,
        c: &CollectionName,
        i: &ItemName,
        current: Option<&Manifest>,
        mut next: Manifest,
    ) -> Result<Option<Arc<Manifest>>> {
        next.format = MANIFEST_FORMAT;
        next.version = current.map_or(1, |m| m.version + 1);
        next.committed_at = self.now().max(current.map_or(i64::MIN, |m| m.committed_at));
        // The record of this commit's own write_id is drafted with version 0.
        if let Some(r) = next.write_ids.last_mut().filter(|r| r.version == 0) {
            r.version = next.version;
            r.committed_at = next.committed_at;
        }
        let path = self.layout().manifest(c, i, next.version);
        if !put_json_if_absent(self.store().as_ref(), &path, &next).await? {
            debug!(collection = %c, item = %i, version = next.version, "commit lost a race");
            return Ok(None);
        }
        let next = Arc::new(next);
        self.remember_latest(c, i, &next);
        Ok(Some(next))
    }
}
