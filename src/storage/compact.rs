//! Compaction (merging small neighbouring files) and vacuum (removing what no version
//! needs any more).
//!
//! Automatic compaction is size-tiered: a file's tier is `log_fanin(rows)`; when
//! `fanin` neighbouring small files share a tier they are merged into one file of the next
//! tier. Each row is therefore rewritten about `log_fanin(file_target / append_size)`
//! times, and an item of appends keeps at most `fanin - 1` small files per tier.

use std::collections::HashSet;
use std::ops::Range;

use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use tracing::{debug, info, warn};

use super::error::{Error, Result};
use super::files::{FileSink, InFlightGuard};
use super::manifest::{FileEntry, Manifest};
use super::merge::sort_batch;
use super::names::{CollectionName, ItemName, DATA_DIR};
use super::{CompactReceipt, Engine, VacuumReceipt};

/// A file is small if it holds less than this fraction of the file target.
const SMALL_FRACTION: u64 = 2;

fn is_small(f: &FileEntry, target: u64) -> bool {
    f.rows < target / SMALL_FRACTION
}

fn tier(rows: u64, fanin: usize) -> u32 {
    let fanin = fanin.max(2) as u64;
    let mut t = 0;
    let mut r = rows.max(1);
    while r >= fanin {
        r /= fanin;
        t += 1;
    }
    t
}

/// Ranges of neighbouring files to merge, size-tiered (see the module docs).
pub(crate) fn plan_auto(files: &[FileEntry], target: u64, fanin: usize) -> Vec<Range<usize>> {
    // Virtual files: (range of original files, rows); merge until nothing changes.
    let mut virt: Vec<(Range<usize>, u64)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (i..i + 1, f.rows))
        .collect();
    loop {
        let mut merged = false;
        let mut out: Vec<(Range<usize>, u64)> = Vec::with_capacity(virt.len());
        let mut k = 0;
        while k < virt.len() {
            let small = |v: &(Range<usize>, u64)| v.1 < target / SMALL_FRACTION;
            let t = tier(virt[k].1, fanin);
            let mut j = k;
            while j < virt.len() && small(&virt[j]) && tier(virt[j].1, fanin) == t {
                j += 1;
            }
            if j - k >= fanin {
                let range = virt[k].0.start..virt[j - 1].0.end;
                let rows = virt[k..j].iter().map(|v| v.1).sum();
                out.push((range, rows));
                merged = true;
                k = j;
            } else {
                out.push(virt[k].clone());
                k += 1;
            }
        }
        virt = out;
        if !merged {
            break;
        }
    }
    virt.into_iter()
        .filter(|(r, _)| r.len() > 1)
        .map(|(r, _)| r)
        .collect()
}

/// Ranges of neighbouring files to merge for a manual compaction: every run of two or
/// more files that are not full.
pub(crate) fn plan_full(files: &[FileEntry], target: u64) -> Vec<Range<usize>> {
    let full = |f: &FileEntry| f.rows * 10 >= target * 9;
    let mut out = Vec::new();
    let mut k = 0;
    while k < files.len() {
        let mut j = k;
        while j < files.len() && !full(&files[j]) {
            j += 1;
        }
        if j - k >= 2 {
            out.push(k..j);
        }
        k = j.max(k + 1);
    }
    out
}

impl Engine {
    /// Merge small files after a write (best effort: failures are logged, the write
    /// stays committed).
    pub(crate) async fn auto_compact(&self, c: &CollectionName, i: &ItemName) {
        if !self.inner.options.auto_compact {
            return;
        }
        let fanin = self.inner.options.compaction_fanin;
        let result = self
            .compact_with(c, i, "compact", |files, target| {
                let many_small = files.iter().filter(|f| is_small(f, target)).count() > 4 * fanin;
                if many_small {
                    // Fragmented by scattered rewrites: fall back to merging all runs.
                    plan_full(files, target)
                } else {
                    plan_auto(files, target, fanin)
                }
            })
            .await;
        if let Err(e) = result {
            warn!(collection = %c, item = %i, cause = %e, "automatic compaction failed");
        }
    }

    /// Merge every run of neighbouring files that are not full.
    pub async fn compact(&self, c: &CollectionName, i: &ItemName) -> Result<CompactReceipt> {
        self.compact_with(c, i, "compact", plan_full).await
    }

    async fn compact_with(
        &self,
        c: &CollectionName,
        i: &ItemName,
        operation: &str,
        planner: impl Fn(&[FileEntry], u64) -> Vec<Range<usize>>,
    ) -> Result<CompactReceipt> {
        let lock = self.item_lock(c, i);
        let _held = lock.lock().await;
        for attempt in 0..self.inner.options.max_commit_attempts {
            let current = self.manifest_at(c, i, &super::At::Latest).await?;
            let settings = current.live_settings().clone();
            let ranges = planner(&current.files, settings.file_target_rows);
            let files_before = current.files.len();
            if ranges.is_empty() {
                return Ok(CompactReceipt {
                    version: current.version,
                    files_before,
                    files_after: files_before,
                });
            }
            let mut guard = InFlightGuard::new(&self.inner.in_flight);
            let files = match self.merge_ranges(c, i, &current, &ranges, &mut guard).await {
                Ok(f) => f,
                Err(e) => {
                    self.delete_paths(guard.paths()).await;
                    return Err(e);
                }
            };
            let mut next = (*current).clone();
            next.operation = operation.to_string();
            next.files = files;
            let files_after = next.files.len();
            match self.try_commit(c, i, Some(&current), next).await? {
                Some(m) => {
                    debug!(collection = %c, item = %i, version = m.version, files_before, files_after, "compacted");
                    return Ok(CompactReceipt {
                        version: m.version,
                        files_before,
                        files_after,
                    });
                }
                None => {
                    self.delete_paths(guard.paths()).await;
                    Self::backoff(attempt).await;
                }
            }
        }
        Err(self.conflict(c, i))
    }

    /// The file list with each range of files replaced by their concatenation.
    async fn merge_ranges(
        &self,
        c: &CollectionName,
        i: &ItemName,
        current: &Manifest,
        ranges: &[Range<usize>],
        guard: &mut InFlightGuard,
    ) -> Result<Vec<FileEntry>> {
        let settings = current.live_settings();
        let schema = current.live_schema();
        let target = self.file_target(c, i, settings, schema, &current.metadata);
        let mut out = Vec::with_capacity(current.files.len());
        let mut k = 0;
        for r in ranges {
            out.extend_from_slice(&current.files[k..r.start]);
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
            let mut sink = FileSink::new(target.clone(), guard);
            while let Some(batch) = batches.try_next().await? {
                sink.push(&sort_batch(batch, &settings.ordered_on, false)?)
                    .await?;
            }
            out.extend(sink.finish().await?);
            k = r.end;
        }
        out.extend_from_slice(&current.files[k..]);
        Ok(out)
    }

    /// Remove versions older than the retention that no snapshot holds (never an item's
    /// latest version), and data files that no remaining version references and that are
    /// older than the orphan grace period (files of failed writes).
    pub async fn vacuum(
        &self,
        collection: Option<&CollectionName>,
        item: Option<&ItemName>,
    ) -> Result<VacuumReceipt> {
        let collections = match collection {
            Some(c) => {
                self.check_collection(c).await?;
                vec![c.clone()]
            }
            None if item.is_some() => {
                return Err(Error::invalid("vacuum of an item needs its collection"))
            }
            None => self
                .list_collections()
                .await?
                .into_iter()
                .filter_map(|c| CollectionName::new(c).ok())
                .collect(),
        };
        let mut receipt = VacuumReceipt::default();
        for c in &collections {
            let held: Vec<(String, u64)> = self
                .snapshots(c)
                .await?
                .into_iter()
                .flat_map(|s| s.items.into_iter())
                .collect();
            let items = match item {
                Some(i) => vec![i.clone()],
                None => self.item_names(c).await?,
            };
            for i in &items {
                let held: HashSet<u64> = held
                    .iter()
                    .filter(|(name, _)| name == i.as_str())
                    .map(|(_, v)| *v)
                    .collect();
                self.vacuum_item(c, i, &held, &mut receipt).await?;
            }
        }
        info!(
            files_removed = receipt.files_removed,
            bytes_removed = receipt.bytes_removed,
            "vacuum done"
        );
        Ok(receipt)
    }

    async fn vacuum_item(
        &self,
        c: &CollectionName,
        i: &ItemName,
        held: &HashSet<u64>,
        receipt: &mut VacuumReceipt,
    ) -> Result<()> {
        // Hold the item lock so this engine's writers are not racing the file listing.
        let lock = self.item_lock(c, i);
        let _held = lock.lock().await;
        let versions = self.list_versions_raw(c, i).await?;
        let Some(&latest) = versions.last() else {
            return Ok(());
        };
        let now = self.now();
        let retention = self.inner.options.vacuum_retention.as_nanos() as i64;
        let mut live_files: HashSet<String> = HashSet::new();
        for &v in &versions {
            let path = self.layout().manifest(c, i, v);
            let m = match super::manifest::load(self.store().as_ref(), &path).await {
                Ok(m) => m,
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            };
            let keep =
                v == latest || held.contains(&v) || now.saturating_sub(m.committed_at) < retention;
            if keep {
                live_files.extend(m.files.iter().map(|f| f.name.clone()));
            } else {
                let size = self.store().head(&path).await.map(|h| h.size).unwrap_or(0);
                self.store().delete(&path).await?;
                receipt.files_removed += 1;
                receipt.bytes_removed += size;
            }
        }
        let grace = self.inner.options.orphan_grace.as_nanos() as i64;
        let data_dir = self.layout().item(c, i).clone().join(DATA_DIR);
        let objects: Vec<_> = self.store().list(Some(&data_dir)).try_collect().await?;
        for meta in objects {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if live_files.contains(name) || self.inner.in_flight.contains(&meta.location) {
                continue;
            }
            let age = now.saturating_sub(meta.last_modified.timestamp_nanos_opt().unwrap_or(now));
            if age < grace {
                continue;
            }
            match self.store().delete(&meta.location).await {
                Ok(()) => {
                    receipt.files_removed += 1;
                    receipt.bytes_removed += meta.size;
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(rows: &[u64]) -> Vec<FileEntry> {
        rows.iter()
            .enumerate()
            .map(|(i, &r)| FileEntry {
                name: format!("{i}"),
                min: i as i64,
                max: i as i64,
                rows: r,
                bytes: 0,
            })
            .collect()
    }

    #[test]
    fn auto_plan_merges_a_full_tier_only() {
        assert!(plan_auto(&files(&[100; 7]), 1_000_000, 8).is_empty());
        assert_eq!(plan_auto(&files(&[100; 8]), 1_000_000, 8), vec![0..8]);
        // A big file in front is left alone.
        assert_eq!(
            plan_auto(
                &files(&[900_000, 100, 100, 100, 100, 100, 100, 100, 100]),
                1_000_000,
                8
            ),
            vec![1..9]
        );
        // Cascades: seven tier-3 files plus eight tier-2 ones become one file.
        let mut rows = vec![800; 7];
        rows.extend([100; 8]);
        assert_eq!(plan_auto(&files(&rows), 1_000_000, 8), vec![0..15]);
    }

    #[test]
    fn full_plan_merges_runs_of_partial_files() {
        assert_eq!(plan_full(&files(&[10, 10, 100, 10]), 100), vec![0..2]);
        assert!(plan_full(&files(&[100, 100]), 100).is_empty());
    }
}
