//! What a scan reads in one go: one file, or, where the write-ahead log holds rows that
//! merge into place (upserts, rows inside the stored range), a key range of files with
//! those rows merged in exactly as the write will merge them when it is persisted.
//!
//! ```text
//! files   |----f0----|----f1----|     |----f2----|
//! deltas        ·  ·     ·                 ·          (rows of log entries, by version)
//! pieces  [f0.min, f1.min) [f1.min, f2.min) [f2.min, end)   (cut at file starts)
//! piece   files cut to its keys ─► merge each delta in version order (stable: stored
//!         rows first; de-dup on the delta's key, keep last) ─► filter
//! ```
//!
//! De-duplication only compares rows with equal ordering keys, so merging key range by
//! key range gives the same rows as merging the whole item. How many stored rows a delta
//! replaces is counted when it is logged ([`Engine::rows_replaced`]), so row counts stay
//! exact without a scan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use crate::storage::error::Result;
use crate::storage::key::KeyRange;
use crate::storage::manifest::{Delta, FileEntry, Keep, Manifest};
use crate::storage::merge::{Dedup, Merger, Source};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::parquet::READ_BATCH_ROWS;
use crate::storage::schema::project;
use crate::storage::wal::scan_memory;
use crate::storage::Engine;

use super::scan::ScanCtx;

/// A part of a scan, in key order with the others; its files and log rows are read
/// only inside `range`.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    pub(super) range: KeyRange,
    pub(super) files: Vec<FileEntry>,
    /// Log rows merged over the files, in version order.
    pub(super) deltas: Vec<Arc<Delta>>,
}

/// The pieces of a read of `range`: one per file it overlaps when no log rows merge into
/// it, else key ranges cut at the files' first keys.
pub(super) fn pieces(files: &[FileEntry], deltas: &[Arc<Delta>], range: KeyRange) -> Vec<Piece> {
    let deltas: Vec<Arc<Delta>> = deltas
        .iter()
        .filter(|d| range.overlaps(d.min, d.max))
        .cloned()
        .collect();
    if deltas.is_empty() {
        return files
            .iter()
            .filter(|f| range.overlaps(f.min, f.max))
            .map(|f| Piece {
                range,
                files: vec![f.clone()],
                deltas: Vec::new(),
            })
            .collect();
    }
    let mut bounds: Vec<Option<i64>> = vec![range.start];
    bounds.extend(
        files
            .iter()
            .map(|f| f.min)
            .filter(|&k| range.start.is_none_or(|s| k > s) && range.end.is_none_or(|e| k < e))
            .map(Some),
    );
    bounds.dedup();
    bounds.push(range.end);
    bounds
        .windows(2)
        .map(|w| {
            let r = KeyRange::new(w[0], w[1]);
            Piece {
                range: r,
                files: files
                    .iter()
                    .filter(|f| r.overlaps(f.min, f.max))
                    .cloned()
                    .collect(),
                deltas: deltas
                    .iter()
                    .filter(|d| r.overlaps(d.min, d.max))
                    .cloned()
                    .collect(),
            }
        })
        .filter(|p| !p.files.is_empty() || !p.deltas.is_empty())
        .collect()
}

/// `base` (sorted batches of `schema`) with the rows of `delta` inside `range` merged in:
/// stored rows first among equal keys, then with the delta's key, a stored row equal to
/// a delta row on it dropped.
pub(super) fn merge_delta(
    base: BoxStream<'static, Result<RecordBatch>>,
    delta: &Delta,
    schema: &SchemaRef,
    ordered_on: &str,
    range: KeyRange,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let Some(rows) = scan_memory(&delta.rows, schema, ordered_on, range)? else {
        return Ok(base);
    };
    let sources = vec![
        Source {
            stream: base,
            is_new: false,
        },
        Source {
            stream: stream::iter([Ok(rows)]).boxed(),
            is_new: true,
        },
    ];
    let merger = Merger::new(ordered_on, sources, READ_BATCH_ROWS);
    let dedup = delta
        .key
        .as_ref()
        .map(|key| Dedup::new(Arc::clone(schema), ordered_on, key, Keep::Last))
        .transpose()?;
    let state = Some((merger, dedup));
    Ok(stream::unfold(state, |state| async move {
        let (mut merger, mut dedup) = state?;
        loop {
            let next = match merger.next().await {
                Ok(Some(k)) => match dedup.as_mut() {
                    Some(d) => d.push(k),
                    None => Ok(Some(k)),
                },
                Ok(None) => match dedup.as_mut() {
                    Some(d) => match d.finish() {
                        Ok(Some(k)) => return Some((Ok(k.batch), None)),
                        Ok(None) => return None,
                        Err(e) => Err(e),
                    },
                    None => return None,
                },
                Err(e) => Err(e),
            };
            match next {
                Ok(Some(k)) if k.num_rows() > 0 => {
                    return Some((Ok(k.batch), Some((merger, dedup))))
                }
                Ok(_) => continue,
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed())
}

impl Engine {
    /// How many rows of `view` (an item as readers see it) the sorted `rows`, with keys
    /// from `min` to `max`, replace when merged on `key` keeping the last: the rows
    /// equal to one of them on it. Reads only the key columns of that key range.
    pub(crate) async fn rows_replaced(
        &self,
        (c, i): (&CollectionName, &ItemName),
        view: &Manifest,
        rows: &RecordBatch,
        (min, max): (i64, i64),
        key: &[String],
    ) -> Result<u64> {
        let on = view.live_settings().ordered_on.clone();
        let item_schema = view.live_schema();
        let columns: Vec<String> = item_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| *n == on || key.contains(n))
            .collect();
        let read_schema = project(item_schema, Some(&columns))?;
        let ctx = ScanCtx {
            engine: self.clone(),
            collection: c.clone(),
            item: i.clone(),
            read_schema: Arc::clone(&read_schema),
            ordered_on: on.clone(),
            filter: None,
        };
        let range = KeyRange::new(Some(min), max.checked_add(1));
        let stored = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&stored);
        let before = ctx
            .forward(pieces(&view.files, &view.deltas, range))
            .inspect_ok(move |b| {
                counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            })
            .boxed();
        let delta = Delta {
            rows: rows.clone(),
            min,
            max,
            key: Some(key.to_vec()),
            replaced: 0,
        };
        let after = merge_delta(before, &delta, &read_schema, &on, range)?
            .try_fold(0u64, |n, b| {
                futures::future::ready(Ok(n + b.num_rows() as u64))
            })
            .await?;
        Ok(stored.load(Ordering::Relaxed) + rows.num_rows() as u64 - after)
    }
}
