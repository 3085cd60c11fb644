//! Scanning the files of a version: decode ahead in order, filter, keep the tail.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::RowFilter;
use crate::storage::error::Result;
use crate::storage::key::KeyRange;
use crate::storage::manifest::FileEntry;
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::parquet::scan;
use crate::storage::task::SpawnedTask;
use crate::storage::wal::scan_memory;

use super::piece::{merge_delta, Piece};
use crate::storage::Engine;

/// Files a forward read decodes ahead of the one being sent.
const FILES_AHEAD: usize = 2;

/// Everything a file scan needs, cheap to clone into stream closures.
#[derive(Debug, Clone)]
pub(super) struct ScanCtx {
    pub(super) engine: Engine,
    pub(super) collection: CollectionName,
    pub(super) item: ItemName,
    /// Item schema restricted to what the read needs (projection + key + filter columns).
    pub(super) read_schema: SchemaRef,
    pub(super) ordered_on: String,
    pub(super) filter: Option<Arc<dyn RowFilter>>,
}

impl ScanCtx {
    /// The rows of one file (or log entry) inside `range`, in order, before the filter.
    async fn rows(
        &self,
        file: FileEntry,
        range: KeyRange,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        Ok(match &file.memory {
            Some(rows) => {
                let rows = scan_memory(&rows.0, &self.read_schema, &self.ordered_on, range)?;
                stream::iter(rows.map(Ok)).boxed()
            }
            None => {
                let path = self
                    .engine
                    .layout()
                    .data_file(&self.collection, &self.item, &file.name);
                scan(
                    Arc::clone(self.engine.store()),
                    self.engine.meta_cache(),
                    path,
                    &file,
                    Arc::clone(&self.read_schema),
                    &self.ordered_on,
                    range,
                )
                .await?
            }
        })
    }

    /// Matching rows of one piece, in order: its files, the log rows merged into them,
    /// then the filter (after the merge: a replaced row must not let its old values pass).
    async fn piece(&self, piece: Piece) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let range = piece.range;
        let mut s = match <[FileEntry; 1]>::try_from(piece.files) {
            Ok([file]) => self.rows(file, range).await?,
            Err(files) => {
                let ctx = self.clone();
                stream::iter(files)
                    .then(move |f| {
                        let ctx = ctx.clone();
                        async move { ctx.rows(f, range).await }
                    })
                    .try_flatten()
                    .boxed()
            }
        };
        for d in &piece.deltas {
            s = merge_delta(s, d, &self.read_schema, &self.ordered_on, range)?;
        }
        let Some(filter) = self.filter.clone() else {
            return Ok(s);
        };
        Ok(s.and_then(move |b| {
            let out = filter
                .evaluate(&b)
                .and_then(|mask| Ok(filter_record_batch(&b, &mask)?));
            futures::future::ready(out)
        })
        .try_filter(|b| futures::future::ready(b.num_rows() > 0))
        .boxed())
    }

    /// All matching rows of `pieces`, in order.
    ///
    /// Up to [`FILES_AHEAD`] files decode at once, each in its own task feeding a small
    /// channel: decoding uses every core while memory stays bounded by the channels.
    /// The tasks run on the reader's runtime, not the CPU runtime: decoding is pull-driven
    /// and yields after every batch, and handing each batch across runtimes made a full
    /// read ~35% slower (`cargo bench --bench storage`, read_all).
    pub(super) fn forward(&self, pieces: Vec<Piece>) -> BoxStream<'static, Result<RecordBatch>> {
        let ctx = self.clone();
        stream::iter(pieces)
            .map(move |f| {
                let ctx = ctx.clone();
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                let task = SpawnedTask::spawn("read", async move {
                    let mut batches = match ctx.piece(f).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    while let Some(b) = batches.next().await {
                        // A closed channel means the reader went away: stop decoding.
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                });
                futures::future::ready(task_stream(rx, task))
            })
            .buffered(FILES_AHEAD)
            .flatten()
            .boxed()
    }

    /// The last `n` matching rows of `pieces`, in order. Reads pieces from the end and
    /// holds at most `n` rows plus one piece's matches.
    pub(super) async fn tail(&self, pieces: &[Piece], n: usize) -> Result<Vec<RecordBatch>> {
        let mut out: VecDeque<RecordBatch> = VecDeque::new();
        let mut rows = 0;
        for p in pieces.iter().rev() {
            if rows >= n {
                break;
            }
            let batches: Vec<RecordBatch> = self.piece(p.clone()).await?.try_collect().await?;
            for b in batches.into_iter().rev() {
                rows += b.num_rows();
                out.push_front(b);
            }
            // Drop whole batches that are no longer needed.
            while let Some(front) = out.front() {
                if rows - front.num_rows() >= n {
                    rows -= front.num_rows();
                    out.pop_front();
                } else {
                    break;
                }
            }
        }
        if rows > n {
            let front = out.pop_front().expect("rows > n > 0");
            let skip = rows - n;
            out.push_front(front.slice(skip, front.num_rows() - skip));
        }
        Ok(out.into())
    }
}

/// The first `limit` rows of a stream; stops pulling once they are out.
pub(super) fn limit_stream(
    s: BoxStream<'static, Result<RecordBatch>>,
    limit: usize,
) -> BoxStream<'static, Result<RecordBatch>> {
    stream::unfold((s, limit), |(mut s, left)| async move {
        if left == 0 {
            return None;
        }
        match s.next().await? {
            Ok(b) if b.num_rows() > left => Some((Ok(b.slice(0, left)), (s, 0))),
            Ok(b) => {
                let n = b.num_rows();
                Some((Ok(b), (s, left - n)))
            }
            Err(e) => Some((Err(e), (s, 0))),
        }
    })
    .boxed()
}

/// What a file task sends, then how it ended: a task that failed (a panic while
/// decoding) ends the stream with its error, never silently early.
fn task_stream(
    rx: mpsc::Receiver<Result<RecordBatch>>,
    task: SpawnedTask<()>,
) -> BoxStream<'static, Result<RecordBatch>> {
    stream::unfold(Some((rx, task)), |state| async move {
        let (mut rx, task) = state?;
        match rx.recv().await {
            Some(item) => Some((item, Some((rx, task)))),
            None => match task.join().await {
                Ok(()) => None,
                Err(e) => Some((Err(e), None)),
            },
        }
    })
    .boxed()
}
