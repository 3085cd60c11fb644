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
//! key range gives the same rows as merging the whole item.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use crate::storage::error::Result;
use crate::storage::key::KeyRange;
use crate::storage::manifest::{Delta, FileEntry, Keep};
use crate::storage::merge::{Dedup, Merger, Source};
use crate::storage::parquet::READ_BATCH_ROWS;
use crate::storage::wal::scan_memory;

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
