//! Files in and out of the command line, with arrow's and parquet's own readers and
//! writers: CSV, Parquet, Arrow IPC (file or stream) and JSON lines, by extension or
//! `--format`. Readers and writers are blocking: they run on a blocking thread and talk
//! to the async side through a channel of two batches, so memory stays bounded.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use futures::Stream;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// A file format (or, for output, a table for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A table for people (output only).
    Table,
    /// CSV with a header row.
    Csv,
    /// Parquet.
    Parquet,
    /// Arrow IPC: the file format (`.arrow`, `.feather`, `.ipc`) or the stream format
    /// (`.arrows`; input: either is recognised by its first bytes).
    Arrow,
    /// JSON lines: one object a row.
    Json,
}

impl Format {
    /// The format a file's extension says, if any.
    pub(crate) fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" | "txt" => Format::Csv,
            "parquet" | "pq" => Format::Parquet,
            "arrow" | "arrows" | "feather" | "ipc" => Format::Arrow,
            "json" | "jsonl" | "ndjson" => Format::Json,
            _ => return None,
        })
    }

    /// The format to use for `path`: `given`, else the extension's.
    pub(crate) fn for_path(given: Option<Format>, path: &Path) -> anyhow::Result<Format> {
        match given.or_else(|| Format::of(path)) {
            Some(f) => Ok(f),
            None => bail!(
                "cannot tell the format of {} from its extension: give --format (csv, parquet, arrow or json)",
                path.display()
            ),
        }
    }
}

/// Rows per batch read from CSV, JSON and Parquet (arrow's default of 1024 made 10,000
/// messages of a 10M-row upload).
const BATCH_ROWS: usize = 64 * 1024;

/// Bytes read from the input files so far (for the progress bar).
pub(crate) type Counter = Arc<AtomicU64>;

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Counter,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counted<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The schema of the first file, checked to be readable; every later file must match it.
pub(crate) fn schema_of(path: &Path, format: Format) -> anyhow::Result<SchemaRef> {
    let mut batches = open(path, format, Counter::default())?;
    Ok(batches.schema())
}

/// A file's batches.
trait Batches: Iterator<Item = Result<RecordBatch, ArrowError>> + Send {
    fn schema(&mut self) -> SchemaRef;
}

struct Reader<I> {
    schema: SchemaRef,
    batches: I,
}

impl<I: Iterator<Item = Result<RecordBatch, ArrowError>> + Send> Iterator for Reader<I> {
    type Item = Result<RecordBatch, ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next()
    }
}

impl<I: Iterator<Item = Result<RecordBatch, ArrowError>> + Send> Batches for Reader<I> {
    fn schema(&mut self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

fn reader<I: Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static>(
    schema: SchemaRef,
    batches: I,
) -> Box<dyn Batches> {
    Box::new(Reader { schema, batches })
}

/// Open one input file.
fn open(path: &Path, format: Format, count: Counter) -> anyhow::Result<Box<dyn Batches>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file = Counted { inner: file, count };
    let context = || format!("cannot read {} as {format:?}", path.display());
    Ok(match format {
        Format::Csv => {
            let mut buf = BufReader::new(file);
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut buf, Some(1000))
                .with_context(context)?;
            buf.rewind()?;
            let schema = Arc::new(csv_times(schema, &mut buf).with_context(context)?);
            buf.rewind()?;
            let csv = arrow::csv::ReaderBuilder::new(Arc::clone(&schema))
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build(buf)
                .with_context(context)?;
            reader(schema, csv)
        }
        Format::Json => {
            let mut buf = BufReader::new(file);
            let (schema, _) = arrow::json::reader::infer_json_schema(&mut buf, Some(1000))
                .with_context(context)?;
            buf.rewind()?;
            let mut first = String::new();
            buf.read_line(&mut first)?;
            buf.rewind()?;
            let schema = Arc::new(json_times(schema, &first));
            let json = arrow::json::ReaderBuilder::new(Arc::clone(&schema))
                .with_batch_size(BATCH_ROWS)
                .build(buf)
                .with_context(context)?;
            reader(schema, json)
        }
        Format::Parquet => {
            // Parquet reads by seeking: count its bytes in proportion to the rows read.
            let len = file.inner.metadata()?.len();
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file.inner).with_context(context)?;
            let schema = Arc::clone(builder.schema());
            let rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
            let count = file.count;
            let parquet = builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .with_context(context)?
                .inspect(move |b| {
                    if let Ok(b) = b {
                        count.fetch_add(b.num_rows() as u64 * len / rows, Ordering::Relaxed);
                    }
                });
            reader(schema, parquet)
        }
        Format::Arrow => {
            let mut buf = BufReader::new(file);
            let mut magic = [0u8; 6];
            let is_file = buf.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
            buf.rewind()?;
            if is_file {
                let ipc =
                    arrow::ipc::reader::FileReader::try_new(buf, None).with_context(context)?;
                reader(ipc.schema(), ipc)
            } else {
                let ipc =
                    arrow::ipc::reader::StreamReader::try_new(buf, None).with_context(context)?;
                reader(ipc.schema(), ipc)
            }
        }
        Format::Table => bail!("table is an output format: give csv, parquet, arrow or json"),
    })
}

/// CSV timestamps are read in ns (the unit of pandas and of most items), and in UTC
/// when the first row's value has a zone (`Z`, `+00:00`: what `get` writes for a zoned
/// column), so a CSV written by `get` goes back into its item.
fn csv_times(schema: Schema, file: &mut (impl Read + Seek)) -> Result<Schema, ArrowError> {
    let text = Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let first = arrow::csv::ReaderBuilder::new(Arc::new(text))
        .with_header(true)
        .with_batch_size(1)
        .build(BufReader::new(file))?
        .next()
        .transpose()?;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match f.data_type() {
            DataType::Timestamp(..) => {
                let value = first
                    .as_ref()
                    .map(|b| b.column(i).as_string::<i32>().value(0));
                let tz = value.is_some_and(has_zone).then(|| Arc::from("UTC"));
                Field::new(
                    f.name(),
                    DataType::Timestamp(TimeUnit::Nanosecond, tz),
                    f.is_nullable(),
                )
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Ok(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Whether an ISO-8601 time names its zone (`Z`, `+01:00`, `-0500`).
fn has_zone(text: &str) -> bool {
    text.ends_with('Z') || text.get(19..).is_some_and(|t| t.contains(['+', '-']))
}

/// JSON has no time type: a string column whose first value is an ISO-8601 time (with a
/// date and a clock time) is read as a timestamp in ns, in UTC if the value has a zone.
///
/// arrow infers JSON columns in name order: they are put back in the first line's order.
fn json_times(schema: Schema, first_line: &str) -> Schema {
    let Ok(Row(row)) = serde_json::from_str::<Row>(first_line) else {
        return schema;
    };
    let position = |name: &str| {
        row.iter()
            .position(|(k, _)| k == name)
            .unwrap_or(usize::MAX)
    };
    let mut ordered: Vec<_> = schema.fields().iter().collect();
    ordered.sort_by_key(|f| position(f.name()));
    let fields: Vec<Field> = ordered
        .into_iter()
        .map(|f| {
            let value = row.iter().find(|(k, _)| k == f.name()).map(|(_, v)| v);
            let text = value.and_then(|v| v.as_str()).unwrap_or_default();
            let looks_like_time = f.data_type() == &DataType::Utf8
                && text.len() >= 19
                && text.as_bytes()[10] == b'T'
                && flightstore_client::time::parse_time(text).is_ok();
            if !looks_like_time {
                return f.as_ref().clone();
            }
            let tz = has_zone(text).then(|| Arc::from("UTC"));
            Field::new(
                f.name(),
                DataType::Timestamp(TimeUnit::Nanosecond, tz),
                f.is_nullable(),
            )
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A JSON object's entries in their order (serde_json's map sorts them).
struct Row(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Row;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Row(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// The batches of `paths`, one after the other, read on a blocking thread; `count` counts
/// the bytes read. A file whose schema differs from the first's is an error.
pub(crate) fn read_files(
    paths: Vec<PathBuf>,
    format: Option<Format>,
    schema: SchemaRef,
    count: Counter,
) -> impl Stream<Item = Result<RecordBatch, ArrowError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let send = |item| tx.blocking_send(item).is_ok();
        for path in paths {
            let batches =
                Format::for_path(format, &path).and_then(|f| open(&path, f, Arc::clone(&count)));
            let mut batches = match batches {
                Ok(b) => b,
                Err(e) => {
                    send(Err(ArrowError::ExternalError(e.into())));
                    return;
                }
            };
            if batches.schema().fields() != schema.fields() {
                send(Err(ArrowError::SchemaError(format!(
                    "{} has columns {:?}, unlike the first file's {:?}",
                    path.display(),
                    batches.schema().fields(),
                    schema.fields()
                ))));
                return;
            }
            for batch in batches {
                let failed = batch.is_err();
                if !send(batch) || failed {
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Where output goes: a file (`-o`) or stdout.
pub(crate) fn output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    })
}

/// A writer of batches in one format.
pub(crate) enum Writer {
    Table(Box<dyn Write + Send>),
    Csv(arrow::csv::Writer<Box<dyn Write + Send>>),
    Json(arrow::json::LineDelimitedWriter<Box<dyn Write + Send>>),
    ArrowFile(arrow::ipc::writer::FileWriter<Box<dyn Write + Send>>),
    ArrowStream(arrow::ipc::writer::StreamWriter<Box<dyn Write + Send>>),
    Parquet(ArrowWriter<Box<dyn Write + Send>>),
}

impl Writer {
    /// A writer of `format` to `out`; `stream`: Arrow IPC in the stream format (stdout,
    /// or a `.arrows` file).
    pub(crate) fn new(
        format: Format,
        out: Box<dyn Write + Send>,
        schema: &SchemaRef,
        stream: bool,
    ) -> anyhow::Result<Writer> {
        Ok(match format {
            Format::Table => Writer::Table(out),
            Format::Csv => Writer::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            ),
            Format::Json => Writer::Json(arrow::json::LineDelimitedWriter::new(out)),
            Format::Arrow if stream => {
                Writer::ArrowStream(arrow::ipc::writer::StreamWriter::try_new(out, schema)?)
            }
            Format::Arrow => {
                Writer::ArrowFile(arrow::ipc::writer::FileWriter::try_new(out, schema)?)
            }
            Format::Parquet => {
                // Snappy, as pyarrow and pandas write by default.
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                Writer::Parquet(ArrowWriter::try_new(out, Arc::clone(schema), Some(props))?)
            }
        })
    }

    /// Write one batch.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match self {
            Writer::Table(out) => {
                if batch.num_rows() > 0 {
                    writeln!(
                        out,
                        "{}",
                        arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))?
                    )?;
                }
            }
            Writer::Csv(w) => w.write(batch)?,
            Writer::Json(w) => w.write(batch)?,
            Writer::ArrowFile(w) => w.write(batch)?,
            Writer::ArrowStream(w) => w.write(batch)?,
            Writer::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Finish the file (footers) and flush.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self {
            Writer::Table(mut out) => out.flush()?,
            Writer::Csv(w) => w.into_inner().flush()?,
            Writer::Json(mut w) => {
                w.finish()?;
                w.into_inner().flush()?
            }
            Writer::ArrowFile(mut w) => {
                w.finish()?;
                w.into_inner()?.flush()?
            }
            Writer::ArrowStream(mut w) => {
                w.finish()?;
                w.into_inner()?.flush()?
            }
            Writer::Parquet(w) => w.into_inner()?.flush()?,
        }
        Ok(())
    }
}
