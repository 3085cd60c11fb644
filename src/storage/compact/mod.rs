//! Compaction (merging small neighbouring files) and vacuum (removing what no version
//! needs any more).
//!
//! - [`policy`]: which files to merge (size-tiered after writes, every partial file on
//!   demand) and how a merge applies to a version committed meanwhile (pure).
//! - [`compactor`]: the one background thread that merges items after writes.
//! - this file: the merge itself and its commit; [`vacuum`]: old versions and orphans.

mod compactor;
mod policy;
mod vacuum;

use std::ops::Range;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use tracing::{debug, warn};

pub(crate) use compactor::Compactor;
pub use vacuum::VacuumReceipt;

use super::error::Result;
use super::manifest::{FileEntry, Manifest};
use super::merge::sort_batch;
use super::names::{CollectionName, ItemName};
use super::parquet::FileSink;
use super::write::InFlightGuard;
use super::Engine;
use policy::{plan_auto, plan_full, rebase};

/// What a compaction did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReceipt {
    /// Version after compaction (unchanged if nothing was done).
    pub version: u64,
    /// Files before.
    pub files_before: usize,
    /// Files after.
    pub files_after: usize,
}

impl Engine {
    /// After a commit: merge small files if the policy finds some to merge, inline or
    /// on the background compactor (see [`super::Options::compact_in_background`]).
    /// Best effort: failures are logged, the write stays committed.
    pub(crate) async fn after_write(&self, c: &CollectionName, i: &ItemName, m: &Manifest) {
        if !self.inner.options.auto_compact || m.deleted {
            return;
        }
        let target = m.live_settings().file_target_rows;
        if self.auto_plan(&m.files, target).is_empty() {
            return;
        }
        match &self.inner.compactor {
            Some(compactor) => compactor.enqueue(c, i),
            None => self.auto_compact(c, i).await,
        }
    }

    /// The merges automatic compaction makes: size-tiered, or every partial file when
    /// small files pile up (many tiny appends).
    fn auto_plan(&self, files: &[FileEntry], target: u64) -> Vec<Range<usize>> {
        let fanin = self.inner.options.compaction_fanin;
        if policy::small_files(files, target) > 4 * fanin {
            plan_full(files, target)
        } else {
            plan_auto(files, target, fanin)
        }
    }

    /// Merge small files as the automatic policy says; failures are logged.
    pub(crate) async fn auto_compact(&self, c: &CollectionName, i: &ItemName) {
        let planner = |files: &[FileEntry], target| self.auto_plan(files, target);
        if let Err(e) = self.compact_with(c, i, planner).await {
            warn!(collection = %c, item = %i, cause = %e, "automatic compaction failed");
        }
    }

    /// Merge every run of neighbouring files that are not full.
    pub async fn compact(&self, c: &CollectionName, i: &ItemName) -> Result<CompactReceipt> {
        self.on_cpu("compact", c, i, |engine, c, i| async move {
            engine.compact_with(&c, &i, plan_full).await
        })
        .await
    }

    /// Merge what `planner` picks and commit it as its own version.
    ///
    /// The first merge runs without the item's lock, so writers go on meanwhile, and is
    /// rebased onto what they committed if its inputs survived. Otherwise (or after a lost
    /// race) it merges again on the latest version, now holding the lock: compaction
    /// must make progress.
    pub(crate) async fn compact_with(
        &self,
        c: &CollectionName,
        i: &ItemName,
        planner: impl Fn(&[FileEntry], u64) -> Vec<Range<usize>>,
    ) -> Result<CompactReceipt> {
        let mut guard = InFlightGuard::new(self, c, i);
        // Merges pick among stored files: persist the log's tail first.
        self.persist_tail(c, i).await?;
        let persisted = self.persisted_latest(c, i).await?;
        let current = self.live_or_not_found(c, i, persisted).await?;
        let unchanged = |m: &Manifest| CompactReceipt {
            version: m.version,
            files_before: m.files.len(),
            files_after: m.files.len(),
        };
        let ranges = planner(&current.files, current.live_settings().file_target_rows);
        if ranges.is_empty() {
            return Ok(unchanged(&current));
        }
        let outputs = self
            .merge_ranges(c, i, &current, &ranges, &mut guard)
            .await?;
        let mut merged = Some((current, ranges, outputs));
        let mut retry = self.commit_retry(c, i).await?;
        loop {
            let latest = self.live_or_not_found(c, i, retry.latest().await?).await?;
            let rebased = merged
                .as_ref()
                .and_then(|(base, ranges, outputs)| rebase(&latest, base, ranges, outputs));
            let files = match rebased {
                Some(files) => files,
                None => {
                    // The inputs changed: what was merged is garbage; merge the latest.
                    self.delete_paths(guard.paths()).await;
                    guard.release();
                    let target = latest.live_settings().file_target_rows;
                    let ranges = planner(&latest.files, target);
                    if ranges.is_empty() {
                        return Ok(unchanged(&latest));
                    }
                    let outputs = self
                        .merge_ranges(c, i, &latest, &ranges, &mut guard)
                        .await?;
                    let files = rebase(&latest, &latest, &ranges, &outputs)
                        .expect("a merge of the latest version applies to it");
                    merged = Some((Arc::clone(&latest), ranges, outputs));
                    files
                }
            };
            let written: Vec<String> = merged
                .iter()
                .flat_map(|(_, _, outputs)| outputs.iter().flatten().map(|f| f.name.clone()))
                .collect();
            let mut next = (*latest).clone();
            next.operation = "compact".into();
            next.files = files;
            let files_after = next.files.len();
            match retry.commit(Some(&latest), next, &written).await? {
                Some(m) => {
                    guard.release();
                    debug!(collection = %c, item = %i, version = m.version, files_before = latest.files.len(), files_after, "compacted");
                    return Ok(CompactReceipt {
                        version: m.version,
                        files_before: latest.files.len(),
                        files_after,
                    });
                }
                // Lost the race: the merged files are deleted; merge again.
                None => {
                    guard.release();
                    merged = None;
                }
            }
        }
    }

    /// For each range of files, the files of their concatenation.
    async fn merge_ranges(
        &self,
        c: &CollectionName,
        i: &ItemName,
        current: &Manifest,
        ranges: &[Range<usize>],
        guard: &mut InFlightGuard,
    ) -> Result<Vec<Vec<FileEntry>>> {
        let settings = current.live_settings();
        let schema = current.live_schema();
        let target = self.file_target(c, i, settings, schema, &current.metadata);
        let mut outputs = Vec::with_capacity(ranges.len());
        for r in ranges {
            // A version's files are disjoint and in key order: concatenating them is
            // their merge. One file is open at a time, so memory stays flat however many
            // files a range holds.
            let mut batches = stream::iter(current.files[r.clone()].to_vec())
                .then(|f| async move {
                    self.scan_excluding(c, i, &f, schema, &settings.ordered_on, None)
                        .await
                })
                .try_flatten()
                .boxed();
            let mut sink = FileSink::new(target.clone(), guard).serial();
            while let Some(batch) = batches.try_next().await? {
                sink.push(&sort_batch(batch, &settings.ordered_on, false)?)
                    .await?;
            }
            outputs.push(sink.finish().await?);
        }
        Ok(outputs)
    }
}
