//! Writing: sorted batches into Parquet files near their target size.
//!
//! ```text
//! sorted batches ─► FileSink ─► ParallelWriter (blocking thread) ─► put _data/<uuid>.parquet
//!                   cuts row groups at the row target or at period boundaries,
//!                   rolls files at the file target
//! ```

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::encode::ParallelWriter;
use super::DATA_PAGE_ROW_LIMIT;
use crate::storage::error::Result;
use crate::storage::key::Period;
use crate::storage::manifest::FileEntry;
use crate::storage::merge::Keyed;
use crate::storage::task::SpawnedTask;
use crate::storage::write::InFlightGuard;

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
    /// How the item's files are encoded.
    pub(crate) fn properties(&self) -> WriterProperties {
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
    Busy(SpawnedTask<Result<Box<ParallelWriter>>>),
}

impl Encoder {
    /// The writer, once the segment in progress is encoded.
    async fn ready(self) -> Result<Box<ParallelWriter>> {
        match self {
            Self::Idle(w) => Ok(w),
            Self::Busy(task) => task.join().await?,
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
        self.encoder = Some(Encoder::Busy(SpawnedTask::spawn_blocking(
            "encode",
            move || {
                if new_row_group {
                    writer.flush()?;
                }
                writer.write(&segment)?;
                Ok(writer)
            },
        )));
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
    uploads: Vec<SpawnedTask<Result<FileEntry>>>,
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
        let bytes = SpawnedTask::spawn_blocking("encode", move || writer.into_inner())
            .join()
            .await??;
        let path = self.target.dir.clone().join(name.as_str());
        self.guard.add(path.clone());
        self.await_uploads(1).await?;
        let store = Arc::clone(&self.target.store);
        let writing = self.guard.writer();
        self.uploads.push(SpawnedTask::spawn("upload", async move {
            // Dropped last: a cleanup of the guard waits for this put to end.
            let _writing = writing;
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
                memory: None,
            })
        }));
        Ok(())
    }

    /// Wait for uploads until at most `left` are running.
    async fn await_uploads(&mut self, left: usize) -> Result<()> {
        while self.uploads.len() > left {
            let entry = self.uploads.remove(0).join().await??;
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
