//! Compaction (merging small neighbouring files) and vacuum (removing what no version
//! needs any more).
//!
//! Automatic compaction is size-tiered: a file's tier is `log_fanin(rows)`; when
//! `fanin` neighbouring small files share a tier they are merged into one file of the next
//! tier. Each row is therefore rewritten about `log_fanin(file_target / append_size)`
//! times, and an item of appends keeps at most `fanin - 1` small files per tier.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

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

/// The file list of `latest` with each range of `base`'s files replaced by its merged
/// `outputs`. `None` if a range's files are no longer all there, next to each other (a
/// write rewrote one, or put a file between them): the merge no longer applies. Where
/// they are, the outputs span exactly what they replace, so order and disjointness hold.
fn rebase(
    latest: &Manifest,
    base: &Manifest,
    ranges: &[Range<usize>],
    outputs: &[Vec<FileEntry>],
) -> Option<Vec<FileEntry>> {
    let mut files = Vec::with_capacity(latest.files.len());
    let mut k = 0;
    for (r, out) in ranges.iter().zip(outputs) {
        let inputs = &base.files[r.clone()];
        let start = k + latest.files[k..].iter().position(|f| f == &inputs[0])?;
        let block = latest.files.get(start..start + inputs.len())?;
        if block != inputs {
            return None;
        }
        files.extend_from_slice(&latest.files[k..start]);
        files.extend_from_slice(out);
        k = start + inputs.len();
    }
    files.extend_from_slice(&latest.files[k..]);
    Some(files)
}

/// Lower the CPU priority of the calling thread (and of the threads it starts) to nice
/// 10, so that background work yields to requests. Linux keeps a nice value per thread.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0) only changes its scheduling.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

impl Engine {
    /// Merge small files after a write, inline or on a background thread (see
    /// [`super::Options::compact_in_background`]). Best effort: failures are logged, the
    /// write stays committed.
    pub(crate) async fn after_write(&self, c: &CollectionName, i: &ItemName) {
        if !self.inner.options.auto_compact {
            return;
        }
        if !self.inner.options.compact_in_background {
            return self.auto_compact(c, i).await;
        }
        let key = (c.clone(), i.clone());
        let started = self
            .inner
            .compacting
            .lock()
            .expect("compacting set poisoned")
            .insert(key.clone());
        if !started {
            return; // the running one will see this write's files, or the next write will
        }
        // A thread of its own at a lower priority, with its own runtime: the merge uses
        // what CPU the requests leave (on 2 cores it otherwise slows every append while
        // it runs).
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("flightstore-compact".into())
            .spawn({
                let key = key.clone();
                move || {
                    lower_thread_priority();
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(engine.auto_compact(&key.0, &key.1)),
                        Err(e) => warn!(cause = %e, "no runtime for a background compaction"),
                    }
                    engine.compaction_done(&key);
                }
            });
        if let Err(e) = spawned {
            warn!(cause = %e, "no thread for a background compaction");
            self.compaction_done(&key);
        }
    }

    /// The background compaction of an item ended: the next write may start one.
    fn compaction_done(&self, key: &(CollectionName, ItemName)) {
        self.inner
            .compacting
            .lock()
            .expect("compacting set poisoned")
            .remove(key);
    }

    async fn auto_compact(&self, c: &CollectionName, i: &ItemName) {
        let fanin = self.inner.options.compaction_fanin;
        let result = self
            .compact_with(c, i, "compact", |files, target| {
                let many_small = files.iter().filter(|f| is_small(f, target)).count() > 4 * fanin;
                if many_small {
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
        for attempt in 0..self.inner.options.max_commit_attempts {
            // The first try merges without the item's lock, so writers go on meanwhile,
            // and rebases onto what they committed if its inputs survived. After losing
            // that race, hold the lock throughout: compaction must make progress.
            let early = if attempt > 0 {
                Some(Arc::clone(&lock).lock_owned().await)
            } else {
                None
            };
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
            let outputs = match self.merge_ranges(c, i, &current, &ranges, &mut guard).await {
                Ok(f) => f,
                Err(e) => {
                    self.delete_paths(guard.paths()).await;
                    return Err(e);
                }
            };
            let held = match early {
                Some(held) => held,
                None => Arc::clone(&lock).lock_owned().await,
            };
            let latest = self.manifest_at(c, i, &super::At::Latest).await;
            let next = latest.as_ref().ok().and_then(|latest| {
                rebase(latest, &current, &ranges, &outputs).map(|files| {
                    let mut next = (**latest).clone();
                    next.operation = operation.to_string();
                    next.files = files;
                    next
                })
            });
            let committed = match (&latest, next) {
                (Ok(latest), Some(next)) => {
                    let files_before = latest.files.len();
                    let files_after = next.files.len();
                    match self.try_commit(c, i, Some(latest), next).await {
                        Ok(m) => m.map(|m| (m, files_before, files_after)),
                        Err(e) => {
                            drop(held);
                            self.delete_failed(c, i, guard.paths()).await;
                            return Err(e);
                        }
                    }
                }
                _ => None,
            };
            drop(held);
            match committed {
                Some((m, files_before, files_after)) => {
                    debug!(collection = %c, item = %i, version = m.version, files_before, files_after, "compacted");
                    return Ok(CompactReceipt {
                        version: m.version,
                        files_before,
                        files_after,
                    });
                }
                None => {
                    self.delete_paths(guard.paths()).await;
                    latest?; // the item went away: report it
                    Self::backoff(attempt).await;
                }
            }
        }
        Err(self.conflict(c, i))
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
                row_groups: None,
            })
            .collect()
    }

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        Manifest {
            format: 0,
            version: 1,
            committed_at: 0,
            operation: "append".into(),
            deleted: false,
            settings: None,
            schema: None,
            metadata: Default::default(),
            files,
        }
    }

    fn names(files: &[FileEntry]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn a_merge_rebases_only_where_its_inputs_are_intact() {
        let base = manifest(files(&[1, 1, 1, 1]));
        let out = |name: &str| FileEntry {
            name: name.into(),
            ..base.files[1].clone()
        };
        let outputs = vec![vec![out("m")]];
        // Nothing changed: the merge applies as planned.
        let same = rebase(&base, &base, &[1..3], &outputs).unwrap();
        assert_eq!(names(&same), ["0", "m", "3"]);
        // A file added after the inputs: kept, after the merged file.
        let mut grown = base.files.clone();
        grown.push(FileEntry {
            name: "new".into(),
            ..grown[3].clone()
        });
        let r = rebase(&manifest(grown), &base, &[1..3], &outputs).unwrap();
        assert_eq!(names(&r), ["0", "m", "3", "new"]);
        // An input rewritten by a write: the merge no longer applies.
        let mut rewritten = base.files.clone();
        rewritten[2].name = "rewritten".into();
        assert!(rebase(&manifest(rewritten), &base, &[1..3], &outputs).is_none());
        // A file put between the inputs: no longer applies either.
        let mut split = base.files.clone();
        split.insert(
            2,
            FileEntry {
                name: "between".into(),
                ..split[1].clone()
            },
        );
        assert!(rebase(&manifest(split), &base, &[1..3], &outputs).is_none());
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
