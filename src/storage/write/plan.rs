//! Planning a write: which stored row groups and staged runs are merged, and which stay
//! as they are.
//!
//! ```text
//! pieces = stored files ∪ runs, swept in key order into connected components
//!          (a stored file a run touches takes part as its row groups);
//! a component of one untouched piece is kept as is (an append after the end touches
//! nothing, nor do the row groups of a file beside an upsert); every other one is merged:
//! Merger ─► Dedup ─► FileSink
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::stage::Run;
use super::InFlightGuard;
use crate::storage::error::Result;
use crate::storage::key::KeyRange;
use crate::storage::manifest::{FileEntry, Keep};
use crate::storage::merge::{sort_batch, Dedup, Merger, Source};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::parquet::{scan, split_row_groups, FileSink, FileTarget, READ_BATCH_ROWS};
use crate::storage::rules::unique_keys;
use crate::storage::Engine;

/// A piece of the plan: a stored file or a staged run.
#[derive(Debug, Clone)]
struct Piece {
    file: FileEntry,
    /// Order among equal keys: stored files (by position) before runs (by upload order).
    priority: (bool, usize),
    /// Must be rewritten (part of it is in the deleted range).
    dirty: bool,
    /// The rows of a run not written yet.
    memory: Option<Arc<Vec<RecordBatch>>>,
}

/// What a plan produced.
#[derive(Debug, Default)]
pub(super) struct Planned {
    pub(super) files: Vec<FileEntry>,
    /// Files this plan wrote (deleted again if the commit loses).
    pub(super) written: Vec<String>,
    pub(super) rows_new: u64,
}

impl Engine {
    /// Combine stored files and runs into the file list of the next version.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn plan(
        &self,
        c: &CollectionName,
        i: &ItemName,
        target: &FileTarget,
        stored: &[FileEntry],
        runs: &[Run],
        key: Option<&(Vec<String>, Keep)>,
        unique: bool,
        deleted: Option<KeyRange>,
        guard: &mut InFlightGuard,
    ) -> Result<Planned> {
        // A stored file that a run or the deleted range touches is split into its row
        // groups, so that only the row groups touched are merged and rewritten.
        let touches = |f: &FileEntry| {
            runs.iter()
                .any(|r| f.min <= r.file.max && r.file.min <= f.max)
                || deleted.is_some_and(|r| r.overlaps(f.min, f.max))
        };
        let mut row_group_counts = HashMap::new();
        let mut split = Vec::with_capacity(stored.len());
        for f in stored {
            if !touches(f) {
                split.push(f.clone());
                continue;
            }
            let (parts, count) = split_row_groups(
                Arc::clone(self.store()),
                self.meta_cache(),
                self.layout().data_file(c, i, &f.name),
                f,
                &target.ordered_on,
            )
            .await?;
            row_group_counts.insert(f.name.clone(), count);
            split.extend(parts);
        }
        let mut pieces: Vec<Piece> = Vec::with_capacity(split.len() + runs.len());
        for (n, f) in split.iter().enumerate() {
            let dirty = deleted.is_some_and(|r| r.overlaps(f.min, f.max));
            if dirty && deleted.is_some_and(|r| r.covers(f.min, f.max)) {
                continue; // wholly deleted
            }
            pieces.push(Piece {
                file: f.clone(),
                priority: (false, n),
                dirty,
                memory: None,
            });
        }
        for (n, r) in runs.iter().enumerate() {
            pieces.push(Piece {
                file: r.file.clone(),
                priority: (true, n),
                dirty: false,
                memory: r.memory.clone(),
            });
        }
        pieces.sort_by_key(|p| (p.file.min, p.priority));
        // Pieces that share a boundary key merge when equal keys may meet: to be
        // de-duplicated, or refused under unique ordering.
        let dedup = key.is_some() || unique;
        // Sweep into components of pieces that must be merged together.
        let mut components: Vec<Vec<Piece>> = Vec::new();
        let mut comp_max = i64::MIN;
        let mut tail_priority = (false, 0);
        for piece in pieces {
            let joins = !components.is_empty()
                && (comp_max > piece.file.min
                    || (comp_max == piece.file.min && (dedup || tail_priority > piece.priority)));
            if !joins {
                components.push(Vec::new());
                comp_max = i64::MIN;
            }
            if piece.file.max > comp_max {
                comp_max = piece.file.max;
                tail_priority = piece.priority;
            } else if piece.file.max == comp_max {
                tail_priority = tail_priority.max(piece.priority);
            }
            components.last_mut().expect("pushed above").push(piece);
        }
        let mut planned = Planned::default();
        for comp in components {
            if comp.len() == 1 && !comp[0].dirty {
                let p = &comp[0];
                if p.priority.0 {
                    planned.rows_new += p.file.rows;
                }
                match &p.memory {
                    None => planned.files.push(p.file.clone()),
                    Some(batches) => {
                        // A run that touches nothing: written as it is.
                        let mut sink = FileSink::new(target.clone(), guard);
                        for b in batches.iter() {
                            sink.push(&sort_batch(b.clone(), &target.ordered_on, true)?)
                                .await?;
                        }
                        let files = sink.finish().await?;
                        planned.written.extend(files.iter().map(|f| f.name.clone()));
                        planned.files.extend(files);
                    }
                }
                continue;
            }
            let out = self
                .merge_component(c, i, target, comp, key, unique, deleted, guard)
                .await?;
            planned.rows_new += out.1;
            planned.written.extend(out.0.iter().map(|f| f.name.clone()));
            planned.files.extend(out.0);
        }
        planned.files.sort_by_key(|f| (f.min, f.max));
        planned.files = join_row_groups(std::mem::take(&mut planned.files), &row_group_counts);
        Ok(planned)
    }

    /// Merge the pieces of one component into new files; returns them and the number of
    /// new rows they hold.
    #[allow(clippy::too_many_arguments)]
    async fn merge_component(
        &self,
        c: &CollectionName,
        i: &ItemName,
        target: &FileTarget,
        mut comp: Vec<Piece>,
        key: Option<&(Vec<String>, Keep)>,
        unique: bool,
        deleted: Option<KeyRange>,
        guard: &mut InFlightGuard,
    ) -> Result<(Vec<FileEntry>, u64)> {
        comp.sort_by_key(|p| p.priority);
        // Stored files are disjoint and in key order: chained, they are one sorted
        // source with one file open at a time. Each run is a source of its own (upload
        // chunks may overlap). Stored rows come first among equal keys, as before.
        let split = comp.partition_point(|p| !p.priority.0);
        let runs = comp.split_off(split);
        let mut sources = Vec::with_capacity(1 + runs.len());
        if !comp.is_empty() {
            let engine = self.clone();
            let (c, i) = (c.clone(), i.clone());
            let (schema, on) = (Arc::clone(&target.schema), target.ordered_on.clone());
            let stream = stream::iter(comp)
                .then(move |p| {
                    let (engine, c, i) = (engine.clone(), c.clone(), i.clone());
                    let (schema, on) = (Arc::clone(&schema), on.clone());
                    async move {
                        engine
                            .scan_excluding(&c, &i, &p.file, &schema, &on, deleted)
                            .await
                    }
                })
                .try_flatten()
                .boxed();
            sources.push(Source {
                stream,
                is_new: false,
            });
        }
        for p in &runs {
            let stream = match &p.memory {
                Some(batches) => stream::iter(batches.as_ref().clone().into_iter().map(Ok)).boxed(),
                None => {
                    self.scan_excluding(c, i, &p.file, &target.schema, &target.ordered_on, None)
                        .await?
                }
            };
            sources.push(Source {
                stream,
                is_new: true,
            });
        }
        let mut merger = Merger::new(&target.ordered_on, sources, READ_BATCH_ROWS);
        let mut dedup = match key {
            Some((cols, keep)) => Some(Dedup::new(
                Arc::clone(&target.schema),
                &target.ordered_on,
                cols,
                *keep,
            )?),
            None => None,
        };
        let mut sink = FileSink::new(target.clone(), guard);
        let mut rows_new = 0u64;
        let mut last_key = None;
        loop {
            let next = merger.next().await?;
            let done = next.is_none();
            let out = match (&mut dedup, next) {
                (Some(d), Some(k)) => d.push(k)?,
                (Some(d), None) => d.finish()?,
                (None, k) => k,
            };
            if let Some(k) = &out {
                if unique {
                    unique_keys(&target.ordered_on, &k.batch, &k.keys, &mut last_key)?;
                }
                rows_new += k.is_new.iter().filter(|&&n| n).count() as u64;
                sink.push(k).await?;
            }
            if done {
                break;
            }
        }
        Ok((sink.finish().await?, rows_new))
    }

    /// Stream a stored file in `schema`, without the keys of `deleted`.
    pub(crate) async fn scan_excluding(
        &self,
        c: &CollectionName,
        i: &ItemName,
        file: &FileEntry,
        schema: &SchemaRef,
        ordered_on: &str,
        deleted: Option<KeyRange>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let path = self.layout().data_file(c, i, &file.name);
        let ranges = match deleted {
            None => vec![KeyRange::ALL],
            Some(d) => vec![KeyRange::new(None, d.start), KeyRange::new(d.end, None)],
        };
        let mut streams = Vec::new();
        for r in ranges {
            streams.push(
                scan(
                    Arc::clone(self.store()),
                    self.meta_cache(),
                    path.clone(),
                    file,
                    Arc::clone(schema),
                    ordered_on,
                    r,
                )
                .await?,
            );
        }
        Ok(stream::iter(streams).flatten().boxed())
    }
}

/// Join neighbouring entries that are consecutive row groups of one file (the inverse of
/// [`split_row_groups`] for what a write left untouched). `row_group_counts` gives the
/// number of row groups of each split file, so that a file whole again is listed plainly.
pub(crate) fn join_row_groups(
    files: Vec<FileEntry>,
    row_group_counts: &HashMap<String, usize>,
) -> Vec<FileEntry> {
    let mut out: Vec<FileEntry> = Vec::with_capacity(files.len());
    for f in files {
        if let Some(last) = out.last_mut() {
            if let (true, Some([first, end]), Some([next, next_end])) =
                (last.name == f.name, last.row_groups, f.row_groups)
            {
                if end == next {
                    last.row_groups = Some([first, next_end]);
                    last.max = f.max;
                    last.rows += f.rows;
                    continue;
                }
            }
        }
        out.push(f);
    }
    for f in &mut out {
        if let Some([0, end]) = f.row_groups {
            if row_group_counts.get(&f.name) == Some(&end) {
                f.row_groups = None;
            }
        }
    }
    out
}
