//! Writes: stage the upload as sorted runs, then plan and commit a new version.
//!
//! ```text
//! input ─► adapt to item schema ─► chunks of ~stage_bytes ─► stable sort ─► dedup (new rows)
//!        ─► run files (not yet visible)
//! plan:  pieces = stored files ∪ runs, swept in key order into connected components
//!        (a stored file a run touches takes part as its row groups);
//!        a component of one untouched piece is kept as is (an append after the end
//!        touches nothing, nor do the row groups of a file beside an upsert), every
//!        other one is merged (Merger ─► Dedup ─► FileSink)
//! commit: put-if-absent manifest v+1; on conflict delete the merge output and re-plan
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use futures::stream::{self, BoxStream, FuturesOrdered};
use futures::{StreamExt, TryStreamExt};
use parquet::file::metadata::KeyValue;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{debug, info};

use super::error::{Error, Result};
use super::files::{
    join_row_groups, scan, split_row_groups, FileSink, FileTarget, InFlightGuard, KeyRange,
    Layouting, READ_BATCH_ROWS,
};
use super::manifest::{FileEntry, Keep, Manifest, RowGroupTarget, SchemaEvolution, Settings};
use super::merge::{sort_batch, Dedup, Keyed, Merger, Source};
use super::names::{CollectionName, ItemName};
use super::schema::{adapt, resolve};
use super::time::key_scale;
use super::{merge_metadata, Engine};

/// How a write combines with the stored data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add rows (merged into place if they are not after the end). The item's `dedup_on`
    /// applies, if it has one.
    #[default]
    Append,
    /// Add rows; stored rows with the same key (`dedup_on`, or the ordering column alone)
    /// are replaced (`keep = last`) or win (`keep = first`).
    Upsert,
    /// Replace all rows (the schema may change too).
    Overwrite,
    /// Like overwrite, but fails with `AlreadyExists` if the item exists.
    Create,
    /// Delete `[start, end)`, then insert the rows (which must lie inside it).
    ReplaceRange,
    /// Delete `[start, end)` (no input).
    DeleteRange,
}

impl WriteMode {
    /// The name used in manifests and on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Upsert => "upsert",
            Self::Overwrite => "overwrite",
            Self::Create => "create",
            Self::ReplaceRange => "replace_range",
            Self::DeleteRange => "delete_range",
        }
    }

    /// Parse a mode name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "append" => Self::Append,
            "upsert" => Self::Upsert,
            "overwrite" => Self::Overwrite,
            "create" => Self::Create,
            "replace_range" => Self::ReplaceRange,
            "delete_range" => Self::DeleteRange,
            other => {
                return Err(Error::invalid(format!(
                    "unknown mode {other:?}: use append, upsert, overwrite, create or replace_range"
                )))
            }
        })
    }

    fn replaces_all(&self) -> bool {
        matches!(self, Self::Overwrite | Self::Create)
    }
}

/// Options of one write; `None` means "the item's setting" (or the default for a new item).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// How the rows combine with stored data.
    pub mode: WriteMode,
    /// Ordering column (fixed at creation; default: the first timestamp column).
    pub ordered_on: Option<String>,
    /// Key columns for de-duplication (item setting at creation, this write's key later).
    pub dedup_on: Option<Vec<String>>,
    /// Which duplicate wins.
    pub keep: Option<Keep>,
    /// Range start (ns or integer key), for `replace_range` / `delete_range`.
    pub start: Option<i64>,
    /// Range end (exclusive).
    pub end: Option<i64>,
    /// Row group target (becomes the item's setting).
    pub row_group_target: Option<RowGroupTarget>,
    /// Rows per file (becomes the item's setting).
    pub file_target_rows: Option<u64>,
    /// Metadata patch merged into the item's metadata (`null` removes a key).
    pub metadata: Option<Map<String, Value>>,
    /// Schema evolution policy (becomes the item's setting).
    pub schema_evolution: Option<SchemaEvolution>,
}

/// What a write committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WriteReceipt {
    /// The committed version.
    pub version: u64,
    /// Rows received in the upload.
    pub rows_received: u64,
    /// Uploaded rows now stored (received minus dropped duplicates).
    pub rows_written: u64,
    /// Stored rows removed (by a range or replaced duplicates).
    pub rows_deleted: u64,
}

/// The resolved plan inputs of a write, fixed before the upload is consumed.
#[derive(Debug)]
struct Prepared {
    settings: Settings,
    schema: SchemaRef,
    /// De-duplication key and policy of this write, if any.
    key: Option<(Vec<String>, Keep)>,
    range: Option<KeyRange>,
    /// The item's metadata as this write leaves it (written into the files' provenance).
    metadata: Map<String, Value>,
}

/// Upload chunks sorted and written at once (one per core here).
const STAGE_TASKS: usize = 2;

/// What a staging task hands back: its files (to clean up or commit) and its runs.
type StageOutcome = (InFlightGuard, Result<Vec<FileEntry>>);

/// A staged run of the upload: written files, or the sorted rows of a small upload's
/// only chunk, kept in memory until the plan decides (merged straight from memory, or
/// written as they are). Memory runs are bounded by the stage size.
#[derive(Debug, Clone)]
struct Run {
    file: FileEntry,
    memory: Option<Arc<Vec<RecordBatch>>>,
}

impl Run {
    fn written(file: FileEntry) -> Self {
        Self { file, memory: None }
    }
}

/// Sort (and de-duplicate) one chunk of an upload.
async fn sort_chunk(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    ordered_on: String,
    key: Option<(Vec<String>, Keep)>,
) -> Result<Vec<Keyed>> {
    tokio::task::spawn_blocking(move || -> Result<Vec<Keyed>> {
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        drop(batches);
        let sorted = sort_batch(batch, &ordered_on, true)?;
        if let Some((cols, keep)) = key {
            let mut d = Dedup::new(Arc::clone(&schema), &ordered_on, &cols, keep)?;
            let mut out = Vec::new();
            out.extend(d.push(sorted)?);
            out.extend(d.finish()?);
            return Ok(out);
        }
        Ok(vec![sorted])
    })
    .await?
}

/// Sort (and de-duplicate) one chunk of an upload and write it as run files.
async fn stage_chunk(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    ordered_on: String,
    key: Option<(Vec<String>, Keep)>,
    target: FileTarget,
    guard: &mut InFlightGuard,
) -> Result<Vec<FileEntry>> {
    let keyed = sort_chunk(batches, schema, ordered_on, key).await?;
    // Staging tasks run side by side: each encodes on one thread.
    let mut sink = FileSink::new(target, guard).serial();
    for k in &keyed {
        sink.push(k).await?;
    }
    sink.finish().await
}

/// A run held in memory: the sorted rows of an upload's only chunk.
fn memory_run(keyed: Vec<Keyed>) -> Option<Run> {
    let keyed: Vec<Keyed> = keyed.into_iter().filter(|k| k.num_rows() > 0).collect();
    let min = *keyed.first()?.keys.first()?;
    let max = *keyed.last()?.keys.last()?;
    let rows = keyed.iter().map(|k| k.num_rows() as u64).sum();
    Some(Run {
        file: FileEntry {
            name: String::new(),
            min,
            max,
            rows,
            bytes: 0,
            row_groups: None,
        },
        memory: Some(Arc::new(keyed.into_iter().map(|k| k.batch).collect())),
    })
}

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
struct Planned {
    files: Vec<FileEntry>,
    /// Files this plan wrote (deleted again if the commit loses).
    written: Vec<String>,
    rows_new: u64,
}

impl Engine {
    /// Write `input` (batches of `schema`) to an item in one commit.
    ///
    /// The upload is consumed as it arrives: it is sorted in chunks of about
    /// `stage_bytes` and staged as files that stay invisible until the commit.
    pub async fn write(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: WriteOptions,
        schema: SchemaRef,
        input: BoxStream<'static, Result<RecordBatch>>,
    ) -> Result<WriteReceipt> {
        let started = std::time::Instant::now();
        if opts.mode == WriteMode::DeleteRange {
            return Err(Error::invalid(
                "delete_range takes no data: use delete_range",
            ));
        }
        let current = self.live(c, i).await?;
        if opts.mode == WriteMode::Create && current.is_some() {
            return Err(Error::AlreadyExists {
                what: format!("item {c}/{i}"),
            });
        }
        let prepared = self.prepare(c, i, &opts, current.as_deref(), &schema)?;
        let mut guard = InFlightGuard::new(&self.inner.in_flight);
        let mut staged_ms = 0;
        let result = async {
            let (runs, rows_received) = self.stage(c, i, &prepared, input, &mut guard).await?;
            staged_ms = started.elapsed().as_millis() as u64;
            self.ensure_collection(c).await?;
            let committed = self
                .commit_plan(c, i, &opts, &prepared, runs, &mut guard)
                .await?;
            Ok::<_, Error>((committed, rows_received))
        }
        .await;
        // Whatever this write put down and the committed version does not list (merged
        // runs, or everything after a failure) is garbage now.
        match &result {
            Ok(((m, _, _), _)) => {
                let garbage: Vec<_> = guard
                    .paths()
                    .iter()
                    .filter(|p| {
                        !p.filename()
                            .is_some_and(|n| m.files.iter().any(|f| f.name == n))
                    })
                    .cloned()
                    .collect();
                self.delete_paths(&garbage).await;
            }
            Err(_) => self.delete_failed(c, i, guard.paths()).await,
        }
        drop(guard);
        let ((manifest, planned, rows_deleted), rows_received) = result?;
        info!(
            collection = %c, item = %i, mode = opts.mode.as_str(),
            version = manifest.version, rows_received, rows_written = planned.rows_new,
            staged_ms, elapsed_ms = started.elapsed().as_millis() as u64, "write committed"
        );
        self.after_write(c, i).await;
        Ok(WriteReceipt {
            version: manifest.version,
            rows_received,
            rows_written: planned.rows_new,
            rows_deleted,
        })
    }

    /// Delete the rows in `[start, end)` as one commit.
    pub async fn delete_range(
        &self,
        c: &CollectionName,
        i: &ItemName,
        start: i64,
        end: i64,
    ) -> Result<WriteReceipt> {
        let current = self.manifest_at(c, i, &super::At::Latest).await?;
        let opts = WriteOptions {
            mode: WriteMode::DeleteRange,
            start: Some(start),
            end: Some(end),
            ..Default::default()
        };
        let prepared = self.prepare(c, i, &opts, Some(&current), current.live_schema())?;
        let mut guard = InFlightGuard::new(&self.inner.in_flight);
        let (manifest, _, rows_deleted) = self
            .commit_plan(c, i, &opts, &prepared, Vec::new(), &mut guard)
            .await?;
        drop(guard);
        self.after_write(c, i).await;
        Ok(WriteReceipt {
            version: manifest.version,
            rows_received: 0,
            rows_written: 0,
            rows_deleted,
        })
    }

    /// Resolve settings, schema and key of a write against the current item.
    fn prepare(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: &WriteOptions,
        current: Option<&Manifest>,
        input: &SchemaRef,
    ) -> Result<Prepared> {
        let existing = current.map(|m| m.live_settings());
        let ordered_on = match (&opts.ordered_on, existing) {
            (Some(o), Some(s)) if o != &s.ordered_on => {
                return Err(Error::FailedPrecondition {
                    collection: c.to_string(),
                    item: i.to_string(),
                    message: format!(
                        "the item is ordered on {:?}, not {o:?} (the ordering column is fixed at creation)",
                        s.ordered_on
                    ),
                })
            }
            (_, Some(s)) => s.ordered_on.clone(),
            (Some(o), None) => o.clone(),
            (None, None) => input
                .fields()
                .iter()
                .find(|f| matches!(f.data_type(), DataType::Timestamp(..)))
                .map(|f| f.name().clone())
                .ok_or_else(|| {
                    Error::invalid(
                        "the data has no timestamp column: name the ordering column with ordered_on",
                    )
                })?,
        };
        let field = input
            .field_with_name(&ordered_on)
            .map_err(|_| Error::OrderingColumn {
                column: ordered_on.clone(),
                message: "is not in the data".into(),
            })?;
        if key_scale(field.data_type()).is_none() {
            return Err(Error::OrderingColumn {
                column: ordered_on,
                message: format!(
                    "has type {}, which cannot order an item (use a timestamp, date or integer column)",
                    field.data_type()
                ),
            });
        }
        let row_group_target = opts
            .row_group_target
            .clone()
            .or_else(|| existing.map(|s| s.row_group_target.clone()))
            .unwrap_or_else(|| self.inner.options.row_group_target.clone());
        row_group_target.period()?;
        let file_target_rows = opts
            .file_target_rows
            .or(existing.map(|s| s.file_target_rows))
            .unwrap_or(self.inner.options.file_target_rows);
        if file_target_rows == 0 {
            return Err(Error::invalid("file_target_rows must be at least 1"));
        }
        let schema_evolution = opts
            .schema_evolution
            .or(existing.map(|s| s.schema_evolution))
            .unwrap_or_default();
        let settings = match existing {
            Some(s) => Settings {
                ordered_on: ordered_on.clone(),
                dedup_on: s.dedup_on.clone(),
                keep: s.keep,
                row_group_target,
                file_target_rows,
                schema_evolution,
            },
            None => Settings {
                ordered_on: ordered_on.clone(),
                dedup_on: opts.dedup_on.clone().unwrap_or_default(),
                keep: opts.keep.unwrap_or_default(),
                row_group_target,
                file_target_rows,
                schema_evolution,
            },
        };
        let base = if opts.mode.replaces_all() {
            None
        } else {
            current.map(|m| m.live_schema())
        };
        let schema = resolve(base, input, schema_evolution, &ordered_on, |message| {
            Error::SchemaMismatch {
                collection: c.to_string(),
                item: i.to_string(),
                message,
            }
        })?;
        let key_columns = opts
            .dedup_on
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| (!settings.dedup_on.is_empty()).then(|| settings.dedup_on.clone()))
            .or_else(|| (opts.mode == WriteMode::Upsert).then(|| vec![ordered_on.clone()]));
        let keep = opts.keep.unwrap_or(settings.keep);
        if let Some(cols) = &key_columns {
            let unknown: Vec<&String> = cols
                .iter()
                .filter(|c| schema.field_with_name(c).is_err())
                .collect();
            if !unknown.is_empty() {
                return Err(Error::invalid(format!(
                    "dedup_on names unknown column(s) {unknown:?}"
                )));
            }
        }
        let range = match opts.mode {
            WriteMode::ReplaceRange | WriteMode::DeleteRange => match (opts.start, opts.end) {
                (Some(s), Some(e)) if s < e => Some(KeyRange::new(Some(s), Some(e))),
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        "the range is empty: start must be before end",
                    ))
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{} needs both start and end",
                        opts.mode.as_str()
                    )))
                }
            },
            _ => None,
        };
        let mut metadata = current.map(|m| m.metadata.clone()).unwrap_or_default();
        if let Some(patch) = &opts.metadata {
            merge_metadata(&mut metadata, patch);
        }
        Ok(Prepared {
            settings,
            schema,
            key: key_columns.map(|k| (k, keep)),
            range,
            metadata,
        })
    }

    pub(crate) fn file_target(
        &self,
        c: &CollectionName,
        i: &ItemName,
        settings: &Settings,
        schema: &SchemaRef,
        metadata: &Map<String, Value>,
    ) -> FileTarget {
        let period = settings
            .row_group_target
            .period()
            .expect("row group target validated at prepare");
        let row_group_rows = match &settings.row_group_target {
            RowGroupTarget::Rows(n) => *n as usize,
            RowGroupTarget::Period(_) => settings.file_target_rows as usize,
        };
        let mut provenance = vec![
            KeyValue::new("flightstore.collection".into(), c.to_string()),
            KeyValue::new("flightstore.item".into(), i.to_string()),
            KeyValue::new("flightstore.ordered_on".into(), settings.ordered_on.clone()),
            KeyValue::new(
                "flightstore.written_at".into(),
                super::time::format_time(self.now()),
            ),
        ];
        if !metadata.is_empty() {
            provenance.push(KeyValue::new(
                "flightstore.metadata".into(),
                Value::Object(metadata.clone()).to_string(),
            ));
        }
        FileTarget {
            store: Arc::clone(self.store()),
            dir: self.layout().data_dir(c, i),
            schema: Arc::clone(schema),
            ordered_on: settings.ordered_on.clone(),
            layout: Layouting {
                row_group_rows: row_group_rows.max(1),
                period,
                file_rows: settings.file_target_rows as usize,
            },
            provenance,
        }
    }

    /// Consume the upload into sorted, de-duplicated run files.
    async fn stage(
        &self,
        c: &CollectionName,
        i: &ItemName,
        p: &Prepared,
        mut input: BoxStream<'static, Result<RecordBatch>>,
        guard: &mut InFlightGuard,
    ) -> Result<(Vec<Run>, u64)> {
        let target = self.file_target(c, i, &p.settings, &p.schema, &p.metadata);
        let ordered_on = p.settings.ordered_on.clone();
        let mut runs = Vec::new();
        let mut rows_received = 0u64;
        let mut chunk: Vec<RecordBatch> = Vec::new();
        let mut chunk_bytes = 0usize;
        let limit_bytes = self.inner.options.stage_bytes;
        let limit_rows = p.settings.file_target_rows as usize;
        let mut chunk_rows = 0usize;
        let mut staging = FuturesOrdered::new();
        let received: Result<()> = async {
            loop {
                let next = input.try_next().await?;
                if let Some(batch) = &next {
                    let batch = adapt(batch, &p.schema)?;
                    if let Some(range) = p.range {
                        let col = batch.column_by_name(&ordered_on).expect("adapted");
                        let keys = super::time::order_keys(&ordered_on, col.as_ref())?;
                        if let Some(k) = keys.iter().find(|&&k| !range.overlaps(k, k)) {
                            return Err(Error::invalid(format!(
                                "replace_range: a row with ordering key {k} is outside [start, end)"
                            )));
                        }
                    } else if batch.num_rows() > 0 {
                        // Validate the ordering column (type, nulls) as data arrives.
                        let col = batch.column_by_name(&ordered_on).expect("adapted");
                        if col.null_count() > 0 {
                            return Err(Error::OrderingColumn {
                                column: ordered_on.clone(),
                                message: format!(
                                    "holds {} null value(s); every row needs an ordering value",
                                    col.null_count()
                                ),
                            });
                        }
                    }
                    rows_received += batch.num_rows() as u64;
                    chunk_rows += batch.num_rows();
                    chunk_bytes += batch.get_array_memory_size();
                    chunk.push(batch);
                }
                let full = chunk_bytes >= limit_bytes || chunk_rows >= limit_rows;
                if (full || next.is_none()) && chunk_rows > 0 {
                    // Stage the chunk in its own task while the next one arrives; runs keep
                    // upload order (it decides ties between equal keys).
                    if staging.len() >= STAGE_TASKS {
                        let staged = Self::staged(staging.next().await, guard)?;
                        runs.extend(staged.into_iter().map(Run::written));
                    }
                    let batches = std::mem::take(&mut chunk);
                    let (schema, on, key) =
                        (Arc::clone(&p.schema), ordered_on.clone(), p.key.clone());
                    if next.is_none() && runs.is_empty() && staging.is_empty() {
                        // The whole upload is this one chunk: keep it in memory.
                        runs.extend(memory_run(sort_chunk(batches, schema, on, key).await?));
                        break;
                    }
                    let target = target.clone();
                    let mut task_guard = InFlightGuard::new(&self.inner.in_flight);
                    staging.push_back(tokio::spawn(async move {
                        let staged =
                            stage_chunk(batches, schema, on, key, target, &mut task_guard).await;
                        (task_guard, staged)
                    }));
                    chunk_rows = 0;
                    chunk_bytes = 0;
                }
                if next.is_none() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // Wait for every staging task, even after an error, so that all staged files
        // are in the guard (and removed by the caller if the write fails).
        let mut outcome = received;
        while let Some(done) = staging.next().await {
            match Self::staged(Some(done), guard) {
                Ok(r) => runs.extend(r.into_iter().map(Run::written)),
                Err(e) => outcome = outcome.and(Err(e)),
            }
        }
        outcome?;
        debug!(collection = %c, item = %i, runs = runs.len(), rows_received, "upload staged");
        Ok((runs, rows_received))
    }

    /// The runs of a finished staging task; its files join the write's guard either way.
    fn staged(
        done: Option<std::result::Result<StageOutcome, tokio::task::JoinError>>,
        guard: &mut InFlightGuard,
    ) -> Result<Vec<FileEntry>> {
        let (task_guard, staged) = done.expect("a staging task is pending")?;
        guard.absorb(task_guard);
        staged
    }

    /// Plan against the latest version and commit, re-planning after lost races.
    async fn commit_plan(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: &WriteOptions,
        p: &Prepared,
        runs: Vec<Run>,
        guard: &mut InFlightGuard,
    ) -> Result<(Arc<Manifest>, Planned, u64)> {
        let lock = self.item_lock(c, i);
        let _held = lock.lock().await;
        for attempt in 0..self.inner.options.max_commit_attempts {
            // The next version follows the latest one, a deletion's tombstone included.
            let latest = self.latest(c, i).await?;
            let current = latest.clone().filter(|m| !m.deleted);
            if opts.mode == WriteMode::Create && current.is_some() {
                return Err(Error::AlreadyExists {
                    what: format!("item {c}/{i}"),
                });
            }
            if opts.mode == WriteMode::DeleteRange && current.is_none() {
                return Err(Error::ItemNotFound {
                    collection: c.to_string(),
                    item: i.to_string(),
                });
            }
            // Another writer may have changed the item since `prepare`: re-check.
            let (settings, schema) = match current.as_deref() {
                Some(m) if !opts.mode.replaces_all() => {
                    let current_settings = m.live_settings();
                    if current_settings.ordered_on != p.settings.ordered_on {
                        return Err(Error::FailedPrecondition {
                            collection: c.to_string(),
                            item: i.to_string(),
                            message: "the ordering column changed during the write".into(),
                        });
                    }
                    let schema = if m.live_schema() == &p.schema {
                        Arc::clone(&p.schema)
                    } else {
                        resolve(
                            Some(m.live_schema()),
                            &p.schema,
                            p.settings.schema_evolution,
                            &p.settings.ordered_on,
                            |message| Error::SchemaMismatch {
                                collection: c.to_string(),
                                item: i.to_string(),
                                message,
                            },
                        )?
                    };
                    let mut settings = p.settings.clone();
                    settings.dedup_on = current_settings.dedup_on.clone();
                    settings.keep = current_settings.keep;
                    (settings, schema)
                }
                _ => (p.settings.clone(), Arc::clone(&p.schema)),
            };
            let mut metadata = current
                .as_ref()
                .map(|m| m.metadata.clone())
                .unwrap_or_default();
            if let Some(patch) = &opts.metadata {
                merge_metadata(&mut metadata, patch);
            }
            let stored: Vec<FileEntry> = match (&current, opts.mode.replaces_all()) {
                (Some(m), false) => m.files.clone(),
                _ => Vec::new(),
            };
            let rows_before = current.as_ref().map_or(0, |m| m.rows());
            let target = self.file_target(c, i, &settings, &schema, &metadata);
            let plan_started = std::time::Instant::now();
            let planned = self
                .plan(
                    c,
                    i,
                    &target,
                    &stored,
                    &runs,
                    p.key.as_ref(),
                    p.range,
                    guard,
                )
                .await?;
            let next = Manifest {
                format: 0,
                version: 0,
                committed_at: 0,
                operation: opts.mode.as_str().to_string(),
                deleted: false,
                settings: Some(settings),
                schema: Some(schema),
                metadata,
                files: planned.files.clone(),
            };
            let rows_after = next.rows();
            let planned_at = std::time::Instant::now();
            let committed = self.try_commit(c, i, latest.as_deref(), next).await?;
            debug!(
                collection = %c, item = %i, attempt,
                plan_ms = (planned_at - plan_started).as_secs_f64() * 1e3,
                commit_ms = planned_at.elapsed().as_secs_f64() * 1e3,
                files_written = planned.written.len(), "planned and committed"
            );
            match committed {
                Some(m) => {
                    let rows_deleted = (rows_before + planned.rows_new).saturating_sub(rows_after);
                    return Ok((m, planned, rows_deleted));
                }
                None => {
                    self.delete_files(c, i, &planned.written).await;
                    Self::backoff(attempt).await;
                }
            }
        }
        Err(self.conflict(c, i))
    }

    /// Combine stored files and runs into the file list of the next version.
    #[allow(clippy::too_many_arguments)]
    async fn plan(
        &self,
        c: &CollectionName,
        i: &ItemName,
        target: &FileTarget,
        stored: &[FileEntry],
        runs: &[Run],
        key: Option<&(Vec<String>, Keep)>,
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
        let dedup = key.is_some();
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
                .merge_component(c, i, target, comp, key, deleted, guard)
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
        loop {
            let next = merger.next().await?;
            let done = next.is_none();
            let out = match (&mut dedup, next) {
                (Some(d), Some(k)) => d.push(k)?,
                (Some(d), None) => d.finish()?,
                (None, k) => k,
            };
            if let Some(k) = &out {
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
