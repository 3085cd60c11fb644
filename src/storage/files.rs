//! Parquet files of an item: the sink that writes sorted batches into files near their
//! target size, and the pruned scan that reads a key range back.
//!
//! ```text
//! write: sorted batches ─► FileSink ─► ParallelWriter (spawn_blocking) ─► put _data/<uuid>.parquet
//!                             cuts row groups at the row target or at period boundaries,
//!                             rolls files at the file target
//! read:  FileEntry + range ─► footer + page index ─► row groups by statistics
//!                             ─► pages by column index ─► decode ─► adapt schema ─► slice range
//! ```

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::FutureExt;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::metadata::{
    KeyValue, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, SortingColumn,
};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::encode::ParallelWriter;
use super::error::{Error, Result};
use super::manifest::FileEntry;
use super::merge::Keyed;
use super::schema::adapt;
use super::time::{stat_keys, Period};

/// Rows per data page: the granularity of page pruning for range reads.
pub const DATA_PAGE_ROW_LIMIT: usize = 16 * 1024;

/// Rows per batch when reading.
pub const READ_BATCH_ROWS: usize = 64 * 1024;

/// A half-open range of ordering keys `[start, end)`; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub start: Option<i64>,
    /// Exclusive upper bound.
    pub end: Option<i64>,
}

impl KeyRange {
    /// Everything.
    pub const ALL: KeyRange = KeyRange {
        start: None,
        end: None,
    };

    /// `[start, end)`.
    pub fn new(start: Option<i64>, end: Option<i64>) -> Self {
        Self { start, end }
    }

    /// True if some key in `[min, max]` is inside the range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min < e)
    }

    /// True if every key of `[min, max]` is inside the range.
    pub fn covers(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| min >= s) && self.end.is_none_or(|e| max < e)
    }

    /// True if the range holds no key at all.
    pub fn is_empty(&self) -> bool {
        matches!((self.start, self.end), (Some(s), Some(e)) if s >= e)
    }

    /// The rows of sorted `keys` inside the range, as `offset..end`.
    pub(crate) fn slice_of(&self, keys: &[i64]) -> std::ops::Range<usize> {
        let lo = self.start.map_or(0, |s| keys.partition_point(|&k| k < s));
        let hi = self
            .end
            .map_or(keys.len(), |e| keys.partition_point(|&k| k < e));
        lo..hi.max(lo)
    }
}

/// Files written by writes that have not committed yet; vacuum never deletes them.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    paths: Mutex<HashSet<Path>>,
}

impl InFlight {
    pub(crate) fn contains(&self, p: &Path) -> bool {
        self.paths
            .lock()
            .expect("in-flight set poisoned")
            .contains(p)
    }
}

/// Parsed footers (with page indexes) of recently read files. Data files never change
/// once written (their names are unique), so an entry never goes stale; the map is
/// bounded by emptying it when full.
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    map: Mutex<HashMap<Path, ArrowReaderMetadata>>,
}

/// Files whose metadata [`MetaCache`] keeps at most.
const META_CACHE_FILES: usize = 4096;

impl MetaCache {
    fn get(&self, path: &Path) -> Option<ArrowReaderMetadata> {
        self.map
            .lock()
            .expect("metadata cache poisoned")
            .get(path)
            .cloned()
    }

    fn insert(&self, path: Path, meta: ArrowReaderMetadata) {
        let mut map = self.map.lock().expect("metadata cache poisoned");
        if map.len() >= META_CACHE_FILES {
            map.clear();
        }
        map.insert(path, meta);
    }
}

/// Registers the files of one write as in flight; unregisters them when dropped.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    set: Arc<InFlight>,
    mine: Vec<Path>,
}

impl InFlightGuard {
    pub(crate) fn new(set: &Arc<InFlight>) -> Self {
        Self {
            set: Arc::clone(set),
            mine: Vec::new(),
        }
    }

    /// The files registered by this guard.
    pub(crate) fn paths(&self) -> &[Path] {
        &self.mine
    }

    /// Take over the files of another guard (of the same write).
    pub(crate) fn absorb(&mut self, mut other: InFlightGuard) {
        self.mine.append(&mut other.mine);
    }

    fn add(&mut self, p: Path) {
        self.set
            .paths
            .lock()
            .expect("in-flight set poisoned")
            .insert(p.clone());
        self.mine.push(p);
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut set = self.set.paths.lock().expect("in-flight set poisoned");
        for p in &self.mine {
            set.remove(p);
        }
    }
}

/// How files are cut.
#[derive(Debug, Clone)]
pub(crate) struct Layouting {
    /// Rows per row group (also the cap for period row groups).
    pub(crate) row_group_rows: usize,
    /// One row group per period, if set.
    pub(crate) period: Option<Period>,
    /// Rows per file.
    pub(crate) file_rows: usize,
}

/// Where and how an item's files are written.
#[derive(Debug, Clone)]
pub(crate) struct FileTarget {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) dir: Path,
    pub(crate) schema: SchemaRef,
    pub(crate) ordered_on: String,
    pub(crate) layout: Layouting,
    /// Key/value metadata written into every file (provenance).
    pub(crate) provenance: Vec<KeyValue>,
}

impl FileTarget {
    fn properties(&self) -> WriterProperties {
        let column_idx = self
            .schema
            .index_of(&self.ordered_on)
            .expect("ordering column is in the schema") as i32;
        // Dictionaries pay off for strings and categoricals; for numbers and times
        // (mostly distinct in time series) building one is wasted encode time.
        let mut builder = WriterProperties::builder().set_dictionary_enabled(false);
        for f in self.schema.fields() {
            if matches!(
                f.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::Dictionary(_, _)
            ) {
                builder = builder
                    .set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
            }
        }
        builder
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::LZ4_RAW)
            .set_max_row_group_row_count(Some(self.layout.row_group_rows))
            .set_data_page_row_count_limit(DATA_PAGE_ROW_LIMIT)
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx,
                descending: false,
                nulls_first: false,
            }]))
            .set_key_value_metadata(Some(self.provenance.clone()))
            .build()
    }
}

/// The encoder of the file being written: idle, or busy with a segment on a blocking
/// thread while the caller prepares the next one.
enum Encoder {
    Idle(Box<ParallelWriter>),
    Busy(tokio::task::JoinHandle<Result<Box<ParallelWriter>>>),
}

impl Encoder {
    /// The writer, once the segment in progress is encoded.
    async fn ready(self) -> Result<Box<ParallelWriter>> {
        match self {
            Self::Idle(w) => Ok(w),
            Self::Busy(task) => task.await?,
        }
    }
}

struct OpenFile {
    name: String,
    /// Always set between calls (taken while a segment is handed over).
    encoder: Option<Encoder>,
    rows: usize,
    min: i64,
    max: i64,
    bucket: Option<i64>,
}

impl OpenFile {
    /// The writer, once the segment in progress is encoded.
    async fn writer(&mut self) -> Result<Box<ParallelWriter>> {
        self.encoder.take().expect("encoder is set").ready().await
    }

    /// Encode `segment` in the background, after the segment in progress.
    async fn encode(&mut self, segment: RecordBatch, new_row_group: bool) -> Result<()> {
        let mut writer = self.writer().await?;
        self.encoder = Some(Encoder::Busy(tokio::task::spawn_blocking(move || {
            if new_row_group {
                writer.flush()?;
            }
            writer.write(&segment)?;
            Ok(writer)
        })));
        Ok(())
    }
}

/// Writes sorted batches into files near the target size.
///
/// Encoding is pipelined: a pushed segment is encoded on a blocking thread while the
/// caller produces the next (decoding and merging overlap with encoding), and a full
/// file is uploaded in the background while the next one is encoded. At most two files'
/// encoded bytes are held in memory.
pub(crate) struct FileSink<'a> {
    target: FileTarget,
    props: WriterProperties,
    guard: &'a mut InFlightGuard,
    current: Option<OpenFile>,
    /// Encode each batch's columns on two threads (see [`ParallelWriter`]).
    parallel: bool,
    /// Uploads of closed files, in key order; at most one runs while a file is encoded.
    uploads: Vec<tokio::task::JoinHandle<Result<FileEntry>>>,
    written: Vec<FileEntry>,
}

impl std::fmt::Debug for FileSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.target.dir)
            .field("written", &self.written.len())
            .finish()
    }
}

impl<'a> FileSink<'a> {
    pub(crate) fn new(target: FileTarget, guard: &'a mut InFlightGuard) -> Self {
        let props = target.properties();
        Self {
            target,
            props,
            guard,
            current: None,
            parallel: true,
            uploads: Vec::new(),
            written: Vec::new(),
        }
    }

    /// Encode on one thread: for sinks that run beside others (upload staging) or in the
    /// background (compaction), where a second thread would only compete for the cores.
    pub(crate) fn serial(mut self) -> Self {
        self.parallel = false;
        self
    }

    /// Append sorted rows (keys not smaller than anything pushed before).
    pub(crate) async fn push(&mut self, keyed: &Keyed) -> Result<()> {
        let n = keyed.num_rows();
        let mut offset = 0;
        while offset < n {
            // A segment: rows of one period bucket (or all), capped by the file's room.
            let bucket = self
                .target
                .layout
                .period
                .map(|p| p.bucket(keyed.keys[offset]));
            let mut end = match (self.target.layout.period, bucket) {
                (Some(p), Some(b)) => {
                    offset + keyed.keys[offset..].partition_point(|&k| p.bucket(k) == b)
                }
                _ => n,
            };
            let file_full = self
                .current
                .as_ref()
                .is_some_and(|f| f.rows >= self.target.layout.file_rows);
            let bucket_changed = self.current.as_ref().is_some_and(|f| f.bucket != bucket);
            if file_full && (self.target.layout.period.is_none() || bucket_changed) {
                self.close_current().await?;
            }
            if self.target.layout.period.is_none() {
                let room =
                    self.target.layout.file_rows - self.current.as_ref().map_or(0, |f| f.rows);
                end = end.min(offset + room.max(1));
            }
            let mut file = match self.current.take() {
                Some(f) => f,
                None => self.open()?,
            };
            let segment = keyed.batch.slice(offset, end - offset);
            let new_bucket = bucket_changed && file.rows > 0;
            file.bucket = bucket;
            file.min = file.min.min(keyed.keys[offset]);
            file.max = file.max.max(keyed.keys[end - 1]);
            file.rows += end - offset;
            // A new period closes the row group at its boundary.
            file.encode(segment, new_bucket).await?;
            self.current = Some(file);
            offset = end;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<OpenFile> {
        let name = format!("{}.parquet", uuid::Uuid::new_v4().simple());
        let writer = ParallelWriter::try_new(
            Arc::clone(&self.target.schema),
            self.props.clone(),
            self.parallel,
        )?;
        Ok(OpenFile {
            name,
            encoder: Some(Encoder::Idle(Box::new(writer))),
            rows: 0,
            min: i64::MAX,
            max: i64::MIN,
            bucket: None,
        })
    }

    /// Finish the current file and start its upload (after the previous one's).
    async fn close_current(&mut self) -> Result<()> {
        let Some(mut file) = self.current.take() else {
            return Ok(());
        };
        let writer = file.writer().await?;
        let OpenFile {
            name,
            rows,
            min,
            max,
            ..
        } = file;
        let bytes = tokio::task::spawn_blocking(move || writer.into_inner()).await??;
        let path = self.target.dir.clone().join(name.as_str());
        self.guard.add(path.clone());
        self.await_uploads(1).await?;
        let store = Arc::clone(&self.target.store);
        self.uploads.push(tokio::spawn(async move {
            let len = bytes.len() as u64;
            store
                .put(&path, PutPayload::from(Bytes::from(bytes)))
                .await?;
            Ok(FileEntry {
                name,
                min,
                max,
                rows: rows as u64,
                bytes: len,
                row_groups: None,
            })
        }));
        Ok(())
    }

    /// Wait for uploads until at most `left` are running.
    async fn await_uploads(&mut self, left: usize) -> Result<()> {
        while self.uploads.len() > left {
            let entry = self.uploads.remove(0).await??;
            self.written.push(entry);
        }
        Ok(())
    }

    /// Flush the last file and return every file written, in key order.
    pub(crate) async fn finish(mut self) -> Result<Vec<FileEntry>> {
        self.close_current().await?;
        self.await_uploads(0).await?;
        Ok(std::mem::take(&mut self.written))
    }
}

impl Drop for FileSink<'_> {
    fn drop(&mut self) {
        // A failed write: stop what still uploads (its paths are in the guard).
        for task in &self.uploads {
            task.abort();
        }
    }
}

/// Reads a Parquet file of known size through `object_store`.
#[derive(Debug, Clone)]
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn to_parquet_err(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The footer and page index of a data file, from the cache or read once.
async fn load_metadata(reader: &mut ObjectReader, meta: &MetaCache) -> Result<ArrowReaderMetadata> {
    if let Some(m) = meta.get(&reader.path) {
        return Ok(m);
    }
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let m = ArrowReaderMetadata::load_async(reader, options)
        .await
        .map_err(|e| Error::corrupt(&reader.path, e))?;
    meta.insert(reader.path.clone(), m.clone());
    Ok(m)
}

/// The row groups of `file` an entry covers.
fn entry_row_groups(file: &FileEntry, metadata: &ArrowReaderMetadata) -> Range<usize> {
    match file.row_groups {
        Some([first, end]) => first..end,
        None => 0..metadata.metadata().num_row_groups(),
    }
}

/// `file` as one entry per row group, with the key range of each from the statistics
/// (the entry itself if it has a single row group or statistics are missing), and the
/// number of row groups of the whole file.
pub(crate) async fn split_row_groups(
    store: Arc<dyn ObjectStore>,
    meta: &MetaCache,
    path: Path,
    file: &FileEntry,
    ordered_on: &str,
) -> Result<(Vec<FileEntry>, usize)> {
    let mut reader = ObjectReader {
        store,
        path,
        size: file.bytes,
    };
    let metadata = load_metadata(&mut reader, meta).await?;
    let count = metadata.metadata().num_row_groups();
    let groups = entry_row_groups(file, &metadata);
    if groups.len() < 2 {
        return Ok((vec![file.clone()], count));
    }
    let converter =
        StatisticsConverter::try_new(ordered_on, metadata.schema(), metadata.parquet_schema())?;
    let keys = row_group_keys(&converter, metadata.metadata(), groups.clone())?;
    let mut out = Vec::with_capacity(groups.len());
    for (g, key_range) in groups.zip(keys) {
        let Some((min, max)) = key_range else {
            return Ok((vec![file.clone()], count));
        };
        out.push(FileEntry {
            name: file.name.clone(),
            min,
            max,
            rows: metadata.metadata().row_group(g).num_rows() as u64,
            bytes: file.bytes,
            row_groups: Some([g, g + 1]),
        });
    }
    Ok((out, count))
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

/// Read the rows of `file` inside `range`, adapted to `target` (the item schema,
/// projected; it must contain the ordering column), in key order.
pub(crate) async fn scan(
    store: Arc<dyn ObjectStore>,
    meta: &MetaCache,
    path: Path,
    file: &FileEntry,
    target: SchemaRef,
    ordered_on: &str,
    range: KeyRange,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if !range.overlaps(file.min, file.max) {
        return Ok(stream::empty().boxed());
    }
    let mut reader = ObjectReader {
        store,
        path,
        size: file.bytes,
    };
    let covers = range.covers(file.min, file.max);
    let metadata = load_metadata(&mut reader, meta).await?;
    let groups = entry_row_groups(file, &metadata);
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata);
    let file_schema = Arc::clone(builder.schema());
    let roots: Vec<usize> = target
        .fields()
        .iter()
        .filter_map(|f| file_schema.index_of(f.name()).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS);
    if !covers {
        let (row_groups, selection) = prune(&builder, &file_schema, ordered_on, groups, range)?;
        if row_groups.is_empty() {
            return Ok(stream::empty().boxed());
        }
        builder = builder.with_row_groups(row_groups);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
    } else if file.row_groups.is_some() {
        builder = builder.with_row_groups(groups.collect());
    }
    let stream = builder.build()?;
    let ordered_on = ordered_on.to_string();
    Ok(stream
        .map_err(Error::from)
        .and_then(move |batch| {
            let out = adapt(&batch, &target).and_then(|b| {
                if covers {
                    return Ok(b);
                }
                let column = b.column_by_name(&ordered_on).expect("projected");
                let keys = super::time::order_keys(&ordered_on, column.as_ref())?;
                let r = range.slice_of(&keys);
                Ok(b.slice(r.start, r.len()))
            });
            futures::future::ready(out)
        })
        .try_filter(|b| futures::future::ready(b.num_rows() > 0))
        .boxed())
}

/// The smallest and largest key of each row group of `groups`, where the statistics have
/// both.
fn row_group_keys(
    converter: &StatisticsConverter<'_>,
    metadata: &ParquetMetaData,
    groups: Range<usize>,
) -> Result<Vec<Option<(i64, i64)>>> {
    let row_groups = &metadata.row_groups()[groups];
    let mins = stat_keys(&converter.row_group_mins(row_groups.iter())?);
    let maxes = stat_keys(&converter.row_group_maxes(row_groups.iter())?);
    Ok(mins
        .into_iter()
        .zip(maxes)
        .map(|(lo, hi)| lo.zip(hi))
        .collect())
}

/// Row groups (by statistics) and a page selection (by the column index) that may hold
/// keys of `range`. Everything is kept where statistics are missing.
fn prune<T>(
    builder: &parquet::arrow::arrow_reader::ArrowReaderBuilder<T>,
    file_schema: &SchemaRef,
    ordered_on: &str,
    candidates: Range<usize>,
    range: KeyRange,
) -> Result<(Vec<usize>, Option<RowSelection>)> {
    let metadata = builder.metadata();
    let converter =
        StatisticsConverter::try_new(ordered_on, file_schema, builder.parquet_schema())?;
    let row_groups_meta = metadata.row_groups();
    let keys = row_group_keys(&converter, metadata, candidates.clone())?;
    let row_groups: Vec<usize> = candidates
        .zip(keys)
        .filter(|(_, key_range)| key_range.is_none_or(|(lo, hi)| range.overlaps(lo, hi)))
        .map(|(i, _)| i)
        .collect();
    let (Some(column_index), Some(offset_index)) =
        (metadata.column_index(), metadata.offset_index())
    else {
        return Ok((row_groups, None));
    };
    let page_mins =
        stat_keys(&converter.data_page_mins(column_index, offset_index, &row_groups)?);
    let page_maxes =
        stat_keys(&converter.data_page_maxes(column_index, offset_index, &row_groups)?);
    let Some(counts) =
        converter.data_page_row_counts(offset_index, row_groups_meta, &row_groups)?
    else {
        return Ok((row_groups, None));
    };
    if counts.len() != page_mins.len() || counts.null_count() > 0 {
        return Ok((row_groups, None));
    }
    let mut selectors: Vec<RowSelector> = Vec::with_capacity(counts.len());
    for (i, count) in counts.values().iter().enumerate() {
        let keep = match (page_mins[i], page_maxes[i]) {
            (Some(lo), Some(hi)) => range.overlaps(lo, hi),
            _ => true,
        };
        let count = *count as usize;
        selectors.push(if keep {
            RowSelector::select(count)
        } else {
            RowSelector::skip(count)
        });
    }
    Ok((row_groups, Some(RowSelection::from(selectors))))
}
