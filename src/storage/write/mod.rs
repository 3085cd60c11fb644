//! Writes: stage the upload as sorted runs, then plan and commit a new version.
//!
//! ```text
//! prepare  settings, schema after evolution, key and range of the write
//! stage    input ─► chunks (memory budget) ─► sort, dedup ─► run files (invisible)
//! plan     runs ∪ the stored row groups they touch ─► merge ─► new files
//! commit   put-if-absent manifest v+1 (manifest::CommitRetry); a lost race deletes
//!          the plan's files and plans again on the new version
//! settle   files the committed version does not list are deleted; after a failure,
//!          everything this write put down (unless the latest version lists it)
//! ```
//!
//! The whole write runs on the engine's CPU runtime: the connection runtime only waits
//! for it. A write whose caller goes away is aborted, and its files are removed at once.

mod batch;
mod budget;
mod in_flight;
mod plan;
mod prepare;
mod stage;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{debug, info};

pub use batch::{BatchReceipt, ItemReceipt, MAX_BATCH_ITEMS};
pub(crate) use budget::{batch_bytes, MemoryBudget, Reservation};
pub(crate) use in_flight::{InFlight, InFlightGuard};
pub(crate) use prepare::write_key;

use super::catalog::merge_metadata;
use super::error::{Error, Result};
use super::manifest::{FileEntry, Keep, Manifest, RowGroupTarget, SchemaEvolution, WriteRecord};
use super::names::{CollectionName, ItemName};
use super::read::At;
use super::rules::{Preset, Rules, Shaper, Validation};
use super::schema::resolve;
use super::wal::Logged;
use super::Engine;
use plan::Planned;
use prepare::Prepared;
use stage::Run;

/// How a write combines with the stored data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
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

    pub(crate) fn replaces_all(&self) -> bool {
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
    /// Validation rules (become the item's rules).
    pub validation: Option<Validation>,
    /// A market-data preset: schema, key, checks and legacy column map (sticks to the
    /// item).
    pub preset: Option<Preset>,
    /// Incoming columns renamed before the schema check (sticks to the item).
    pub rename: Option<BTreeMap<String, String>>,
    /// Incoming columns left out (sticks to the item).
    pub drop: Option<Vec<String>>,
    /// The client's id of this write (at most [`MAX_WRITE_ID_BYTES`]): if a write with
    /// this id already committed on the item, nothing is written and its receipt comes
    /// back with `duplicate` set.
    pub write_id: Option<String>,
}

/// Longest `write_id`.
pub const MAX_WRITE_ID_BYTES: usize = 128;

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
    /// The write's `write_id` had committed already: this is that write's receipt, and
    /// nothing was written now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl WriteReceipt {
    /// The receipt of a write recorded under its id, as a retry gets it.
    fn duplicate_of(r: &WriteRecord) -> Self {
        Self {
            version: r.version,
            rows_received: r.rows_received,
            rows_written: r.rows_written,
            rows_deleted: r.rows_deleted,
            duplicate: true,
        }
    }
}

/// How a planned write ended.
enum Committed {
    /// A new version.
    New(Arc<Manifest>, Planned, u64),
    /// Its `write_id` had committed already: that write's receipt.
    Duplicate(WriteReceipt),
}

impl Engine {
    /// Write `input` (batches of `schema`) to an item in one commit.
    ///
    /// The upload is consumed as it arrives: it is sorted in chunks that share the
    /// engine's memory budget and staged as files that stay invisible until the commit.
    pub async fn write(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: WriteOptions,
        schema: SchemaRef,
        input: BoxStream<'static, Result<RecordBatch>>,
    ) -> Result<WriteReceipt> {
        self.on_cpu("write", c, i, |engine, c, i| async move {
            engine.write_here(&c, &i, opts, schema, input).await
        })
        .await
    }

    /// [`Engine::write`], on the runtime of the caller.
    async fn write_here(
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
        let mut opts = opts;
        let latest = self.latest(c, i).await?;
        if let Some(id) = &opts.write_id {
            if id.is_empty() || id.len() > MAX_WRITE_ID_BYTES {
                return Err(Error::invalid(format!(
                    "write_id is 1 to {MAX_WRITE_ID_BYTES} bytes, got {}",
                    id.len()
                )));
            }
            // A retry of a write that committed: its receipt, without staging the
            // upload again (it is still read to its end, so the client's stream ends
            // cleanly). A retry racing the first write is caught at the commit.
            if let Some(r) = latest.as_ref().and_then(|m| m.write_record(id)) {
                let receipt = WriteReceipt::duplicate_of(r);
                input.try_for_each(|_| async { Ok(()) }).await?;
                return Ok(receipt);
            }
        }
        let current = latest.filter(|m| !m.deleted);
        let rules = Rules::of_write(&mut opts, current.as_ref().map(|m| m.live_settings()))?;
        let checks = self.inner.options.checks.as_ref();
        let (schema, shaper) = Shaper::new(&rules, &opts, current.as_deref(), checks, schema)?;
        let input = Shaper::stream(shaper, input);
        let logged = self
            .append_to_log((c, i), current.as_deref(), &opts, &schema, input)
            .await?;
        let input = match logged {
            Logged::Done(receipt) => return Ok(receipt),
            Logged::Declined(input) => input,
        };
        // Planned on `current`: the commit checks it against the latest version again.
        if opts.mode == WriteMode::Create && current.is_some() {
            return Err(Error::AlreadyExists {
                what: format!("item {c}/{i}"),
            });
        }
        let prepared = self.prepare(c, i, &opts, current.as_deref(), &schema)?;
        let mut guard = InFlightGuard::new(self, c, i);
        let mut staged_ms = 0;
        let result = async {
            let staged = self.stage(c, i, &prepared, input, &mut guard).await?;
            staged_ms = started.elapsed().as_millis() as u64;
            self.ensure_collection(c).await?;
            let committed = self
                .commit_plan(
                    c,
                    i,
                    &opts,
                    &prepared,
                    staged.runs,
                    staged.rows_received,
                    &mut guard,
                )
                .await?;
            drop(staged.held);
            Ok::<_, Error>((committed, staged.rows_received))
        }
        .await;
        let manifest = match &result {
            Ok((Committed::New(m, ..), _)) => Some(m.as_ref()),
            _ => None,
        };
        self.settle(guard, manifest).await;
        let ((manifest, planned, rows_deleted), rows_received) = match result? {
            (Committed::New(m, planned, deleted), received) => ((m, planned, deleted), received),
            (Committed::Duplicate(receipt), _) => return Ok(receipt),
        };
        info!(
            collection = %c, item = %i, mode = opts.mode.as_str(),
            version = manifest.version, rows_received, rows_written = planned.rows_new,
            staged_ms, elapsed_ms = started.elapsed().as_millis() as u64, "write committed"
        );
        self.after_write(c, i, &manifest).await;
        Ok(WriteReceipt {
            version: manifest.version,
            rows_received,
            rows_written: planned.rows_new,
            rows_deleted,
            duplicate: false,
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
        self.on_cpu("delete_range", c, i, |engine, c, i| async move {
            let current = engine.manifest_at(&c, &i, &At::Latest).await?;
            let opts = WriteOptions {
                mode: WriteMode::DeleteRange,
                start: Some(start),
                end: Some(end),
                ..Default::default()
            };
            let prepared = engine.prepare(&c, &i, &opts, Some(&current), current.live_schema())?;
            let mut guard = InFlightGuard::new(&engine, &c, &i);
            let result = engine
                .commit_plan(&c, &i, &opts, &prepared, Vec::new(), 0, &mut guard)
                .await;
            let manifest = match &result {
                Ok(Committed::New(m, ..)) => Some(m.as_ref()),
                _ => None,
            };
            engine.settle(guard, manifest).await;
            let Committed::New(manifest, _, rows_deleted) = result? else {
                unreachable!("a range deletion carries no write_id");
            };
            engine.after_write(&c, &i, &manifest).await;
            Ok(WriteReceipt {
                version: manifest.version,
                rows_received: 0,
                rows_written: 0,
                rows_deleted,
                duplicate: false,
            })
        })
        .await
    }

    /// The files of `base` with sorted `rows` (between `min` and `max`) merged into place
    /// as a write would merge them (de-dup on `key`, keep last), written but not
    /// committed: the persisting of a write-ahead log entry.
    pub(crate) async fn merge_rows(
        &self,
        (c, i): (&CollectionName, &ItemName),
        base: &Manifest,
        rows: RecordBatch,
        (min, max): (i64, i64),
        key: Option<Vec<String>>,
        guard: &mut InFlightGuard,
    ) -> Result<Vec<FileEntry>> {
        let settings = base.live_settings();
        let target = self.file_target(c, i, settings, base.live_schema(), &base.metadata);
        let run = stage::memory_run(min, max, vec![rows]);
        let key = key.map(|k| (k, Keep::Last));
        let _slot = self.merge_slot().await;
        let unique = settings.validation.unique_ordering;
        let planned = self
            .plan(
                c,
                i,
                &target,
                &base.files,
                &[run],
                key.as_ref(),
                unique,
                None,
                guard,
            )
            .await?;
        Ok(planned.files)
    }

    /// A turn to merge: at most one merge per CPU thread at once. A merge holds up to
    /// two encoded files, so this bounds their memory across all writers too.
    async fn merge_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .merge_slots
            .acquire()
            .await
            .expect("the merge semaphore is never closed")
    }

    /// Plan against the latest version and commit, re-planning after lost races.
    #[allow(clippy::too_many_arguments)] // the write's parts, each used once
    async fn commit_plan(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: &WriteOptions,
        p: &Prepared,
        runs: Vec<Run>,
        rows_received: u64,
        guard: &mut InFlightGuard,
    ) -> Result<Committed> {
        let mut retry = self.commit_retry(c, i).await?;
        loop {
            // The next version follows the latest one, a deletion's tombstone included.
            let latest = retry.latest().await?;
            // Under the item's lock, and checked again by the put-if-absent: of two
            // retries racing, one commits and the other finds its record here.
            let recorded = opts
                .write_id
                .as_deref()
                .and_then(|id| latest.as_ref()?.write_record(id));
            if let Some(r) = recorded {
                return Ok(Committed::Duplicate(WriteReceipt::duplicate_of(r)));
            }
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
            let retention = self.inner.options.vacuum_retention.as_nanos() as i64;
            let mut write_ids = latest
                .as_ref()
                .map(|m| m.write_ids_since(self.now().saturating_sub(retention)))
                .unwrap_or_default();
            let target = self.file_target(c, i, &settings, &schema, &metadata);
            let plan_started = std::time::Instant::now();
            let _slot = self.merge_slot().await;
            let planned = self
                .plan(
                    c,
                    i,
                    &target,
                    &stored,
                    &runs,
                    p.key.as_ref(),
                    settings.validation.unique_ordering,
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
                write_ids: Vec::new(),
                deltas: Vec::new(),
            };
            let rows_after = next.rows();
            let rows_deleted = (rows_before + planned.rows_new).saturating_sub(rows_after);
            if let Some(id) = &opts.write_id {
                // Version and time are the commit's own (filled in by the commit).
                write_ids.push(WriteRecord {
                    id: id.clone(),
                    version: 0,
                    committed_at: 0,
                    rows_received,
                    rows_written: planned.rows_new,
                    rows_deleted,
                });
            }
            let next = Manifest { write_ids, ..next };
            let planned_at = std::time::Instant::now();
            let committed = retry
                .commit(latest.as_deref(), next, &planned.written)
                .await?;
            debug!(
                collection = %c, item = %i,
                plan_ms = (planned_at - plan_started).as_secs_f64() * 1e3,
                commit_ms = planned_at.elapsed().as_secs_f64() * 1e3,
                files_written = planned.written.len(), "planned and committed"
            );
            if let Some(m) = committed {
                return Ok(Committed::New(m, planned, rows_deleted));
            }
        }
    }
}
