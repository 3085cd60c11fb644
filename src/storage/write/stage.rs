//! Staging an upload: chunks of the incoming batches, each sorted (and de-duplicated) and
//! written as run files that stay invisible until the commit.
//!
//! ```text
//! input ─► adapt to the item schema ─► chunk (shares of the memory budget)
//!       ─► staging task: stable sort, dedup ─► FileSink ─► run files
//! ```
//!
//! Up to [`STAGE_TASKS`] chunks are sorted and written while the next one arrives. A
//! small upload's only chunk stays in memory until the plan decides (merged straight from
//! memory, or written as it is).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::{BoxStream, FuturesOrdered};
use futures::{StreamExt, TryStreamExt};
use tracing::debug;

use super::budget::Reservation;
use super::prepare::Prepared;
use super::InFlightGuard;
use crate::storage::error::{Error, Result};
use crate::storage::key::order_keys;
use crate::storage::manifest::{FileEntry, Keep};
use crate::storage::merge::{sort_batch, Dedup, Keyed};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::parquet::{FileSink, FileTarget};
use crate::storage::rules::unique_keys;
use crate::storage::schema::adapt;
use crate::storage::task::SpawnedTask;
use crate::storage::Engine;

/// Upload chunks sorted and written at once per upload.
const STAGE_TASKS: usize = 2;

/// One upload's chunk is at most this fraction of the memory budget, so an upload can
/// sort [`STAGE_TASKS`] chunks while it receives the next.
const CHUNKS_PER_BUDGET: usize = STAGE_TASKS + 2;

/// A staged run of the upload: written files, or the sorted rows of a small upload's
/// only chunk, kept in memory until the plan decides.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub(super) file: FileEntry,
    pub(super) memory: Option<Arc<Vec<RecordBatch>>>,
}

impl Run {
    fn written(file: FileEntry) -> Self {
        Self { file, memory: None }
    }
}

/// What staging produced.
#[derive(Debug)]
pub(super) struct Staged {
    /// Runs in upload order (it decides ties between equal keys).
    pub(super) runs: Vec<Run>,
    pub(super) rows_received: u64,
    /// The budget share of a run kept in memory, held until the write ends.
    pub(super) held: Reservation,
}

/// The batches of a chunk being received, with their share of the budget.
#[derive(Debug)]
struct Chunk {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    share: Reservation,
}

impl Chunk {
    fn new() -> Self {
        Self {
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            share: Reservation::none(),
        }
    }
}

/// What a staging task hands back: its files (to settle with the write) and its runs.
type StageOutcome = (InFlightGuard, Result<Vec<FileEntry>>);

/// How a write sorts its rows: the de-duplication `(key columns, keep)`, if any, and
/// whether ordering values must be unique.
#[derive(Debug, Clone)]
struct Key {
    dedup: Option<(Vec<String>, Keep)>,
    unique: bool,
}

impl Key {
    fn of(p: &Prepared) -> Self {
        Self {
            dedup: p.key.clone(),
            unique: p.settings.validation.unique_ordering,
        }
    }
}

/// Sort (and de-duplicate) one chunk of an upload, on a blocking thread.
async fn sort_chunk(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    ordered_on: String,
    key: Key,
) -> Result<Vec<Keyed>> {
    SpawnedTask::spawn_blocking("sort", move || -> Result<Vec<Keyed>> {
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        drop(batches);
        let sorted = sort_batch(batch, &ordered_on, true)?;
        let out = match key.dedup {
            Some((cols, keep)) => {
                let mut d = Dedup::new(Arc::clone(&schema), &ordered_on, &cols, keep)?;
                let mut out = Vec::new();
                out.extend(d.push(sorted)?);
                out.extend(d.finish()?);
                out
            }
            None => vec![sorted],
        };
        if key.unique {
            let mut last = None;
            for k in &out {
                unique_keys(&ordered_on, &k.batch, &k.keys, &mut last)?;
            }
        }
        Ok(out)
    })
    .join()
    .await?
}

/// Sort (and de-duplicate) one chunk of an upload and write it as run files.
async fn stage_chunk(
    batches: Vec<RecordBatch>,
    target: FileTarget,
    key: Key,
    guard: &mut InFlightGuard,
) -> Result<Vec<FileEntry>> {
    let (schema, on) = (Arc::clone(&target.schema), target.ordered_on.clone());
    let keyed = sort_chunk(batches, schema, on, key).await?;
    // Staging tasks run side by side: each encodes on one thread.
    let mut sink = FileSink::new(target, guard).serial();
    for k in &keyed {
        sink.push(k).await?;
    }
    sink.finish().await
}

/// A run held in memory: the sorted rows of an upload's only chunk.
fn keyed_run(keyed: Vec<Keyed>) -> Option<Run> {
    let keyed: Vec<Keyed> = keyed.into_iter().filter(|k| k.num_rows() > 0).collect();
    let min = *keyed.first()?.keys.first()?;
    let max = *keyed.last()?.keys.last()?;
    Some(memory_run(
        min,
        max,
        keyed.into_iter().map(|k| k.batch).collect(),
    ))
}

/// A run of sorted `batches` in memory, keys from `min` to `max`.
pub(super) fn memory_run(min: i64, max: i64, batches: Vec<RecordBatch>) -> Run {
    Run {
        file: FileEntry {
            name: String::new(),
            min,
            max,
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            bytes: 0,
            row_groups: None,
            memory: None,
        },
        memory: Some(Arc::new(batches)),
    }
}

/// Check an incoming batch against the write: the ordering column holds no nulls, and
/// rows of a `replace_range` lie inside its range.
pub(super) fn check_batch(p: &Prepared, batch: &RecordBatch) -> Result<()> {
    let ordered_on = &p.settings.ordered_on;
    let col = batch.column_by_name(ordered_on).expect("adapted");
    if let Some(range) = p.range {
        let keys = order_keys(ordered_on, col.as_ref())?;
        if let Some(k) = keys.iter().find(|&&k| !range.overlaps(k, k)) {
            return Err(Error::invalid(format!(
                "replace_range: a row with ordering key {k} is outside [start, end)"
            )));
        }
    } else if col.null_count() > 0 {
        return Err(Error::OrderingColumn {
            column: ordered_on.clone(),
            message: format!(
                "holds {} null value(s); every row needs an ordering value",
                col.null_count()
            ),
        });
    }
    Ok(())
}

/// The staging tasks of one upload, in upload order.
struct Stager<'a> {
    engine: &'a Engine,
    collection: &'a CollectionName,
    item: &'a ItemName,
    target: FileTarget,
    key: Key,
    tasks: FuturesOrdered<futures::future::BoxFuture<'static, Result<StageOutcome>>>,
    runs: Vec<Run>,
}

impl Stager<'_> {
    /// Sort and write `chunk` in a task of its own (after waiting for a free one).
    async fn spawn(&mut self, chunk: Chunk, guard: &mut InFlightGuard) -> Result<()> {
        if self.tasks.len() >= STAGE_TASKS {
            self.collect_one(guard).await?;
        }
        let mut task_guard = InFlightGuard::new(self.engine, self.collection, self.item);
        let (target, key) = (self.target.clone(), self.key.clone());
        let task = SpawnedTask::spawn("stage", async move {
            let Chunk { batches, share, .. } = chunk;
            let staged = stage_chunk(batches, target, key, &mut task_guard).await;
            drop(share); // sorted and written: the memory is free
            (task_guard, staged)
        });
        self.tasks.push_back(Box::pin(task.join()));
        Ok(())
    }

    /// Wait for the oldest staging task; its files join the write's guard either way.
    async fn collect_one(&mut self, guard: &mut InFlightGuard) -> Result<()> {
        let Some(done) = self.tasks.next().await else {
            return Ok(());
        };
        let (task_guard, staged) = done?;
        guard.absorb(task_guard);
        self.runs.extend(staged?.into_iter().map(Run::written));
        Ok(())
    }
}

impl Engine {
    /// Consume the upload into sorted, de-duplicated runs.
    pub(super) async fn stage(
        &self,
        c: &CollectionName,
        i: &ItemName,
        p: &Prepared,
        mut input: BoxStream<'static, Result<RecordBatch>>,
        guard: &mut InFlightGuard,
    ) -> Result<Staged> {
        let budget = &self.inner.budget;
        let chunk_bytes = budget.bytes() / CHUNKS_PER_BUDGET;
        let chunk_rows = p.settings.file_target_rows as usize;
        let mut stager = Stager {
            engine: self,
            collection: c,
            item: i,
            target: self.file_target(c, i, &p.settings, &p.schema, &p.metadata),
            key: Key::of(p),
            tasks: FuturesOrdered::new(),
            runs: Vec::new(),
        };
        let mut rows_received = 0u64;
        let mut held = Reservation::none();
        let mut chunk = Chunk::new();
        let received: Result<()> = async {
            loop {
                let next = input.try_next().await?;
                if let Some(batch) = &next {
                    let batch = adapt(batch, &p.schema)?;
                    check_batch(p, &batch)?;
                    // What the batch's buffers occupy (columns decoded from one Flight
                    // message each count the whole message: conservative).
                    let bytes = batch.get_array_memory_size();
                    let share = match budget.try_reserve(bytes) {
                        Some(share) => share,
                        None => {
                            // The budget is spent: stage what this upload holds (freeing
                            // its share once written), then wait for room, holding none.
                            if chunk.rows > 0 {
                                let full = std::mem::replace(&mut chunk, Chunk::new());
                                stager.spawn(full, guard).await?;
                            }
                            budget.reserve(bytes).await?
                        }
                    };
                    rows_received += batch.num_rows() as u64;
                    chunk.rows += batch.num_rows();
                    chunk.bytes += bytes;
                    chunk.share.merge(share);
                    chunk.batches.push(batch);
                }
                let full = chunk.bytes >= chunk_bytes || chunk.rows >= chunk_rows;
                if (full || next.is_none()) && chunk.rows > 0 {
                    let done = std::mem::replace(&mut chunk, Chunk::new());
                    if next.is_none() && stager.runs.is_empty() && stager.tasks.is_empty() {
                        // The whole upload is this one chunk: keep it in memory.
                        let schema = Arc::clone(&p.schema);
                        let on = p.settings.ordered_on.clone();
                        let sorted = sort_chunk(done.batches, schema, on, Key::of(p)).await?;
                        stager.runs.extend(keyed_run(sorted));
                        held = done.share;
                        break;
                    }
                    stager.spawn(done, guard).await?;
                }
                if next.is_none() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // Wait for every staging task, even after an error, so that all staged files
        // are in the guard (and settled by the caller).
        let mut outcome = received;
        while !stager.tasks.is_empty() {
            if let Err(e) = stager.collect_one(guard).await {
                outcome = outcome.and(Err(e));
            }
        }
        outcome?;
        let runs = stager.runs;
        debug!(collection = %c, item = %i, runs = runs.len(), rows_received, "upload staged");
        Ok(Staged {
            runs,
            rows_received,
            held,
        })
    }
}
