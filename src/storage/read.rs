//! Reads: a stream of batches in key order, pruned by the manifest, row group statistics
//! and the page index.
//!
//! The steps apply in the order of the wire contract: pick the version, take
//! `[start, end)`, apply the filter, prepend the `n_prev` rows before `start` that pass the
//! filter, keep the first `limit` or the last `last` rows, project `columns`.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::error::{Error, Result};
use super::files::{scan, KeyRange};
use super::manifest::{FileEntry, Manifest};
use super::names::{CollectionName, ItemName, SnapshotName};
use super::schema::project;
use super::Engine;

/// Files a forward read decodes ahead of the one being sent.
const FILES_AHEAD: usize = 2;

/// A row filter evaluated on batches (implemented with DataFusion in `sql`, so storage
/// stays free of it).
pub trait RowFilter: Send + Sync + std::fmt::Debug {
    /// Columns the filter reads.
    fn columns(&self) -> Vec<String>;
    /// Which rows pass (nulls count as false). The batch holds at least `columns()`.
    fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray>;
}

/// Which version to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum At {
    /// The latest committed version.
    #[default]
    Latest,
    /// A given version.
    Version(u64),
    /// The item's version in a snapshot.
    Snapshot(SnapshotName),
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Key range `[start, end)`.
    pub range: KeyRange,
    /// Columns to return (default: all), in this order.
    pub columns: Option<Vec<String>>,
    /// Row filter.
    pub filter: Option<Arc<dyn RowFilter>>,
    /// Keep the first `limit` rows.
    pub limit: Option<usize>,
    /// Keep the last `last` rows.
    pub last: Option<usize>,
    /// Prepend up to this many rows before `start` (that pass the filter).
    pub n_prev: usize,
    /// Version to read.
    pub at: At,
}

/// An open read.
pub struct ReadStream {
    /// Schema of the batches (after projection).
    pub schema: SchemaRef,
    /// The version being read.
    pub version: u64,
    /// Batches in key order.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
}

impl std::fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStream")
            .field("schema", &self.schema)
            .field("version", &self.version)
            .finish()
    }
}

/// Everything a file scan needs, cheap to clone into stream closures.
#[derive(Debug, Clone)]
struct ScanCtx {
    engine: Engine,
    collection: CollectionName,
    item: ItemName,
    /// Item schema restricted to what the read needs (projection + key + filter columns).
    read_schema: SchemaRef,
    ordered_on: String,
    filter: Option<Arc<dyn RowFilter>>,
}

impl ScanCtx {
    /// Matching rows of one file, in order.
    async fn file(
        &self,
        file: FileEntry,
        range: KeyRange,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let path = self
            .engine
            .layout()
            .data_file(&self.collection, &self.item, &file.name);
        let s = scan(
            Arc::clone(self.engine.store()),
            self.engine.meta_cache(),
            path,
            &file,
            Arc::clone(&self.read_schema),
            &self.ordered_on,
            range,
        )
        .await?;
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

    /// All matching rows of `files` in `range`, in order.
    ///
    /// Up to [`FILES_AHEAD`] files decode at once, each in its own task feeding a small
    /// channel: decoding uses every core while memory stays bounded by the channels.
    fn forward(
        &self,
        files: Vec<FileEntry>,
        range: KeyRange,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let ctx = self.clone();
        stream::iter(files)
            .filter(move |f| futures::future::ready(range.overlaps(f.min, f.max)))
            .map(move |f| {
                let ctx = ctx.clone();
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                tokio::spawn(async move {
                    let mut batches = match ctx.file(f, range).await {
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
                futures::future::ready(tokio_stream::wrappers::ReceiverStream::new(rx))
            })
            .buffered(FILES_AHEAD)
            .flatten()
            .boxed()
    }

    /// The last `n` matching rows of `files` in `range`, in order. Reads files from the
    /// end and holds at most `n` rows plus one file's matches.
    async fn tail(
        &self,
        files: &[FileEntry],
        range: KeyRange,
        n: usize,
    ) -> Result<Vec<RecordBatch>> {
        let mut out: VecDeque<RecordBatch> = VecDeque::new();
        let mut rows = 0;
        for f in files.iter().rev() {
            if rows >= n {
                break;
            }
            if !range.overlaps(f.min, f.max) {
                continue;
            }
            let batches: Vec<RecordBatch> =
                self.file(f.clone(), range).await?.try_collect().await?;
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

impl Engine {
    /// Read an item (see [`ReadOptions`]).
    pub async fn read(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: ReadOptions,
    ) -> Result<ReadStream> {
        let manifest = self.manifest_at(c, i, &opts.at).await?;
        self.read_manifest(c, i, manifest, opts).await
    }

    /// Read the version `manifest` describes (as returned by [`Engine::manifest_at`]);
    /// `opts.at` is not looked at. Saves loading the manifest twice when the caller
    /// already resolved it.
    pub async fn read_manifest(
        &self,
        c: &CollectionName,
        i: &ItemName,
        manifest: Arc<Manifest>,
        opts: ReadOptions,
    ) -> Result<ReadStream> {
        if opts.limit.is_some() && opts.last.is_some() {
            return Err(Error::invalid("limit and last exclude each other"));
        }
        if manifest.deleted {
            return Err(Error::ItemNotFound {
                collection: c.to_string(),
                item: i.to_string(),
            });
        }
        let item_schema = Arc::clone(manifest.live_schema());
        let ordered_on = manifest.live_settings().ordered_on.clone();
        let out_schema = project(&item_schema, opts.columns.as_deref())?;
        // Columns the read needs, in item order.
        let mut needed: Vec<String> = out_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        needed.push(ordered_on.clone());
        if let Some(f) = &opts.filter {
            needed.extend(f.columns());
        }
        let read_cols: Vec<String> = item_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| needed.contains(n))
            .collect();
        let read_schema = project(&item_schema, Some(&read_cols))?;
        let ctx = ScanCtx {
            engine: self.clone(),
            collection: c.clone(),
            item: i.clone(),
            read_schema,
            ordered_on,
            filter: opts.filter.clone(),
        };
        let files = manifest.files.clone();
        let range = opts.range;
        let empty = range.is_empty();
        let prev_range = KeyRange::new(None, range.start);
        let stream: BoxStream<'static, Result<RecordBatch>> = if let Some(last) = opts.last {
            let mut batches = if empty {
                Vec::new()
            } else {
                ctx.tail(&files, range, last).await?
            };
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if rows < last && opts.n_prev > 0 && range.start.is_some() {
                let mut prev = ctx
                    .tail(&files, prev_range, opts.n_prev.min(last - rows))
                    .await?;
                prev.append(&mut batches);
                batches = prev;
            }
            stream::iter(batches.into_iter().map(Ok)).boxed()
        } else {
            let prev = if opts.n_prev > 0 && range.start.is_some() {
                ctx.tail(&files, prev_range, opts.n_prev).await?
            } else {
                Vec::new()
            };
            let main = if empty {
                stream::empty().boxed()
            } else {
                ctx.forward(files, range)
            };
            let s = stream::iter(prev.into_iter().map(Ok)).chain(main).boxed();
            match opts.limit {
                Some(limit) => limit_stream(s, limit),
                None => s,
            }
        };
        let out = Arc::clone(&out_schema);
        let stream = stream
            .map(move |b| {
                let b = b?;
                let indices = out
                    .fields()
                    .iter()
                    .map(|f| b.schema().index_of(f.name()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(b.project(&indices)?)
            })
            .boxed();
        Ok(ReadStream {
            schema: out_schema,
            version: manifest.version,
            stream,
        })
    }
}

/// The first `limit` rows of a stream; stops pulling once they are out.
fn limit_stream(
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
