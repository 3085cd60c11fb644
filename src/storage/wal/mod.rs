//! The write-ahead log: appends and upserts acknowledged after one log write and sync,
//! visible to readers at once, persisted as Parquet in the background (InfluxDB 3's
//! pattern).
//!
//! ```text
//! write ─► checks (rows only: append, or upsert keeping the last row; same schema;
//!          fits the budget) ─► sort, Arrow IPC ─► lock item: next version; after the
//!          item's end, or merging into place? queue the frame, tail entry
//!        ─► log thread: write + one fdatasync per group ─► acknowledged, visible
//!
//! tail of an item (in memory, in version order) ─► persist (background, or before any
//! other commit of the item), step by step: entries after the end as one Parquet file
//! whose row groups end at each entry; an entry that merges into place as the files an
//! ordinary write of it makes (files written without the item's lock); one manifest per
//! entry's version (under it) ─► entries dropped ─► segments whose records are all
//! persisted are deleted ─► a tail of many small appends is rewritten in the item's layout
//! ```
//!
//! Guarantees (tested in `tests/storage/wal.rs` and the model test):
//! - An acknowledged write is on disk (its frame is synced) before the reply; a crash
//!   replays it from the log at the next start, with the same version number.
//! - Readers see an item as its persisted manifest plus its tail entries that are
//!   durable: a whole version or nothing, in version order, immediately after the
//!   acknowledgement. Entries after the end read as in-memory files; entries that merge
//!   into place (upserts, late rows) are merged by the read exactly as the write will
//!   merge them (`read/piece.rs`).
//! - Every tail version becomes a manifest of that same version when persisted, so
//!   versions, snapshots, time travel and `changes_since` mean what they meant.
//! - Every other commit of the item (overwrites, deletes, metadata, compaction, writes
//!   the log declines) persists the tail first, holding the item's lock: it drafts on
//!   every acknowledged write.
//!
//! The log takes a write whose options leave it rows only: an append, or an upsert
//! (with its own `dedup_on` or the item's), keeping the last duplicate, with the item's
//! exact schema and no duplicate ordering keys inside the upload when a key applies. A
//! write that merges into place must also keep the last duplicate (with `keep = first`
//! the receipt must count the rows kept), must not need unique ordering checked against
//! stored rows, and finds fewer than [`MAX_TAIL_MERGES`] merges waiting. Everything else
//! takes the ordinary write path.

mod log;
mod overlay;
mod persist;
mod replay;

use overlay::overlay;
pub(crate) use overlay::scan_memory;
use persist::persist_loop;

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::error::{Error, Result};
use super::key::KeyRange;
use super::manifest::{
    put_json_if_absent, Delta, FileEntry, Keep, Manifest, MemoryRows, MANIFEST_FORMAT,
};
use super::merge::sort_batch;
use super::names::{CollectionName, ItemName};
use super::parquet::ParallelWriter;
use super::task::SpawnedTask;
use super::write::{
    batch_bytes, write_key, InFlightGuard, MemoryBudget, Reservation, WriteMode, WriteOptions,
};
use super::{Engine, Inner, ItemKey, Options, WriteReceipt, DEFAULT_ROW_GROUP_ROWS};
use log::{frame, Header, Log, Merge};

/// Largest upload (Arrow bytes) that goes through the log; larger ones are staged.
pub(crate) const WAL_WRITE_MAX: usize = 16 << 20;
/// At most this many entries of a tail merge into place (each is one more merge on
/// reads until persisted); a write past it takes the ordinary path.
const MAX_TAIL_MERGES: usize = 16;
/// A tail this large is persisted without waiting for its age.
const PERSIST_BYTES: usize = 32 << 20;

/// One acknowledged (or being synced) append, held until persisted.
#[derive(Debug)]
pub(crate) struct TailEntry {
    version: u64,
    committed_at: i64,
    lsn: u64,
    /// The rows, sorted, in the item's schema.
    batch: RecordBatch,
    min: i64,
    max: i64,
    /// The write's mode, recorded in its manifest.
    mode: WriteMode,
    /// Rows merged into place (not after the item's end), and on which key.
    merge: Option<Merge>,
    bytes: usize,
    added: Instant,
    _share: Reservation,
}

/// The log and the tails of all items.
#[derive(Debug)]
pub(crate) struct Wal {
    log: Log,
    tails: Mutex<HashMap<ItemKey, Vec<Arc<TailEntry>>>>,
    budget: MemoryBudget,
    persist_after: Duration,
    merges_after: Duration,
    wake: Arc<Notify>,
    persister: Mutex<Option<SpawnedTask<()>>>,
    /// Held (an exclusive `flock`) while this engine owns the folder.
    _lock: std::fs::File,
}

/// What the log did with a write.
pub(crate) enum Logged {
    /// Acknowledged through the log.
    Done(WriteReceipt),
    /// Not for the log: the upload (what was read of it first) goes the ordinary way.
    Declined(BoxStream<'static, Result<RecordBatch>>),
}

impl Wal {
    /// Open the log in `dir`; returns the records to replay.
    pub(crate) fn open(dir: &FsPath, o: &Options) -> Result<(Self, Vec<log::Recovered>)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Wal {
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let lock = lock_folder(dir)?;
        let (log, recovered) = Log::open(dir, o.wal_fail_sync)?;
        Ok((
            Self {
                log,
                tails: Mutex::new(HashMap::new()),
                budget: MemoryBudget::new(o.wal_bytes, Duration::ZERO),
                persist_after: o.wal_persist_after,
                merges_after: o.wal_merges_persist_after,
                wake: Arc::new(Notify::new()),
                persister: Mutex::new(None),
                _lock: lock,
            },
            recovered,
        ))
    }

    fn tails(&self) -> std::sync::MutexGuard<'_, HashMap<ItemKey, Vec<Arc<TailEntry>>>> {
        self.tails.lock().expect("tails poisoned")
    }

    /// The item's tail entries: all of them, or only the durable ones (what readers see).
    fn entries(&self, key: &ItemKey, durable_only: bool) -> Vec<Arc<TailEntry>> {
        let synced = self.log.synced();
        self.tails()
            .get(key)
            .map(|t| {
                t.iter()
                    .filter(|e| !durable_only || e.lsn <= synced)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keep only the entries of `key` that `keep` says (the others were persisted, or
    /// failed), then delete the log segments nothing needs any more.
    fn remove(&self, key: &ItemKey, keep: impl Fn(&TailEntry) -> bool) {
        {
            let mut tails = self.tails();
            if let Some(t) = tails.get_mut(key) {
                t.retain(|e| keep(e));
                if t.is_empty() {
                    tails.remove(key);
                }
            }
        }
        self.delete_segments();
    }

    /// Delete the closed segments below the oldest record not yet persisted.
    fn delete_segments(&self) {
        let oldest = self
            .tails()
            .values()
            .flat_map(|t| t.first())
            .map(|e| e.lsn)
            .min();
        self.log
            .delete_segments_before(oldest.unwrap_or(self.log.synced() + 1));
    }

    /// Items whose tail is due for persisting (old, large, the budget is short, or it
    /// holds merges: each one is more work for every read and for the next merge's
    /// count, so they are persisted sooner, by default at once).
    fn due(&self) -> Vec<ItemKey> {
        let short = self.budget.try_reserve(self.budget.bytes() / 2).is_none();
        self.tails()
            .iter()
            .filter(|(_, t)| {
                short
                    || t.iter()
                        .any(|e| e.merge.is_some() && e.added.elapsed() >= self.merges_after)
                    || t.first()
                        .is_some_and(|e| e.added.elapsed() >= self.persist_after)
                    || t.iter().map(|e| e.bytes).sum::<usize>() >= PERSIST_BYTES
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn items(&self) -> Vec<ItemKey> {
        self.tails().keys().cloned().collect()
    }
}

/// Take the folder for this engine alone: a second server on the same data folder
/// would append to the same log.
fn lock_folder(dir: &FsPath) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Wal {
            message: format!("cannot open {}: {e}", path.display()),
        })?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when it closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::Wal {
                message: format!(
                    "the data folder is in use by another Flightstore process ({} is locked)",
                    path.display()
                ),
            });
        }
    }
    Ok(file)
}

/// Whether the options leave a write rows to add (an append, or an upsert whose
/// duplicates keep the last row) and nothing else.
fn rows_only(opts: &WriteOptions) -> bool {
    let WriteOptions {
        mode,
        ordered_on,
        dedup_on: _,
        keep,
        start,
        end,
        row_group_target,
        file_target_rows,
        metadata,
        schema_evolution,
        validation,
        preset,
        rename,
        drop,
        write_id,
    } = opts;
    // An idempotent write takes the commit path: its id is checked and recorded in the
    // version it commits.
    matches!(mode, WriteMode::Append | WriteMode::Upsert)
        && ordered_on.is_none()
        && keep.is_none_or(|k| k == Keep::Last)
        && start.is_none()
        && end.is_none()
        && row_group_target.is_none()
        && file_target_rows.is_none()
        && metadata.is_none()
        && schema_evolution.is_none()
        && validation.is_none()
        && preset.is_none()
        && rename.is_none()
        && drop.is_none()
        && write_id.is_none()
}

impl Engine {
    /// Start the background persister (the engine owns it; it holds the engine weakly).
    pub(crate) fn start_persister(&self) {
        let Some(wal) = &self.inner.wal else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let wake = Arc::clone(&wal.wake);
        let task = self.inner.cpu.spawn("persist", persist_loop(weak, wake));
        *wal.persister.lock().expect("persister poisoned") = Some(task);
    }

    /// Persist every tail and close the log (a clean shutdown replays nothing).
    pub(crate) async fn close_wal(&self) {
        let Some(wal) = &self.inner.wal else {
            return;
        };
        wal.persister.lock().expect("persister poisoned").take();
        for (c, i) in wal.items() {
            if let Err(e) = self.persist_tail(&c, &i).await {
                warn!(collection = %c, item = %i, cause = %e, "cannot persist the log tail at shutdown: it is replayed at the next start");
            }
        }
        wal.log.close();
    }

    /// Write through the log if the write is rows only (see the module's notes) to the
    /// item `current` (its latest version as the caller read it; checked again under
    /// the item's lock); otherwise hand the upload back.
    pub(crate) async fn append_to_log(
        &self,
        (c, i): (&CollectionName, &ItemName),
        current: Option<&Manifest>,
        opts: &WriteOptions,
        schema: &SchemaRef,
        mut input: BoxStream<'static, Result<RecordBatch>>,
    ) -> Result<Logged> {
        let Some(wal) = &self.inner.wal else {
            return Ok(Logged::Declined(input));
        };
        if !rows_only(opts) {
            return Ok(Logged::Declined(input));
        }
        let Some(current) = current else {
            return Ok(Logged::Declined(input));
        };
        let settings = current.live_settings().clone();
        let item_schema = Arc::clone(current.live_schema());
        // A key must name columns (the ordinary path says which do not).
        let merge_key = write_key(opts, &settings);
        let known = |k: &Vec<String>| k.iter().all(|c| item_schema.field_with_name(c).is_ok());
        if item_schema.fields() != schema.fields() || !merge_key.as_ref().is_none_or(known) {
            return Ok(Logged::Declined(input));
        }
        // Read the upload while it fits the log.
        let mut batches = Vec::new();
        let mut bytes = 0;
        let mut share = Reservation::none();
        while let Some(b) = input.next().await {
            let b = b?;
            let size = batch_bytes(&b);
            bytes += size;
            batches.push(b);
            let reserved = (bytes <= WAL_WRITE_MAX)
                .then(|| wal.budget.try_reserve(size))
                .flatten();
            match reserved {
                Some(r) => share.merge(r),
                None => {
                    wal.wake.notify_one();
                    let read = holding(batches, share);
                    return Ok(Logged::Declined(read.chain(input).boxed()));
                }
            }
        }
        let declined = |batches: Vec<RecordBatch>| {
            Ok(Logged::Declined(
                stream::iter(batches.into_iter().map(Ok)).boxed(),
            ))
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return declined(batches);
        }
        let batch = concat_batches(&item_schema, &batches)?;
        let Ok(sorted) = sort_batch(batch, &settings.ordered_on, true) else {
            return declined(batches); // the ordinary path says what is wrong
        };
        // With a key, rows equal on the ordering column might be duplicates; with unique
        // ordering they are an error: either way the ordinary path merges them.
        let unique = settings.validation.unique_ordering;
        let dedup = merge_key.is_some() || unique;
        if dedup && sorted.keys.windows(2).any(|w| w[0] == w[1]) {
            return declined(batches);
        }
        let (min, max) = (sorted.keys[0], sorted.keys[rows - 1]);
        let ipc = encode(&sorted.batch)?;

        let lock = self.item_lock(c, i).await;
        let Some(base) = self.persisted_latest(c, i).await?.filter(|m| !m.deleted) else {
            return declined(batches);
        };
        let key = (c.clone(), i.clone());
        let tail = wal.entries(&key, false);
        let view = overlay(Arc::clone(&base), &tail);
        // Rows at the end merge too once log rows merge: equal keys keep version order.
        let strict = dedup || !view.deltas.is_empty();
        let after_end = view
            .range()
            .is_none_or(|(_, end)| if strict { min > end } else { min >= end });
        // Rows that merge into place: with `keep = first` some may not be stored, which
        // the receipt must say; unique ordering is checked against the stored rows; and
        // each is one more merge on reads until persisted. The ordinary path does those.
        let mut merge = (!after_end).then(|| Merge {
            key: merge_key.clone(),
            replaced: 0,
        });
        let keep_last = opts.keep.unwrap_or(settings.keep) == Keep::Last;
        let mergeable = keep_last && !unique && view.deltas.len() < MAX_TAIL_MERGES;
        if base.live_schema().fields() != item_schema.fields()
            || base.live_settings() != &settings
            || (merge.is_some() && !mergeable)
        {
            drop(lock);
            return declined(batches);
        }
        // Counted now, so that receipts and row counts stay exact without a scan.
        if let Some(Merge {
            key: Some(key),
            replaced,
        }) = &mut merge
        {
            let keys = (min, max);
            *replaced = self
                .rows_replaced((c, i), &view, &sorted.batch, keys, key)
                .await?;
        }
        let rows_deleted = merge.as_ref().map_or(0, |m| m.replaced);
        let version = view.version + 1;
        let committed_at = self.now().max(view.committed_at);
        let header = Header {
            collection: c.to_string(),
            item: i.to_string(),
            version,
            committed_at,
            min,
            max,
            mode: opts.mode,
            merge: merge.clone(),
            dropped: false,
        };
        let Ok(lsn) = wal.log.append(frame(&header, &ipc)) else {
            // The log failed earlier: acknowledge through a Parquet commit instead.
            drop(lock);
            return declined(batches);
        };
        wal.tails()
            .entry(key.clone())
            .or_default()
            .push(Arc::new(TailEntry {
                version,
                committed_at,
                lsn,
                bytes: sorted.batch.get_array_memory_size(),
                batch: sorted.batch,
                min,
                max,
                mode: opts.mode,
                merge,
                added: Instant::now(),
                _share: share,
            }));
        drop(lock);
        if let Err(e) = wal.log.wait(lsn).await {
            wal.remove(&key, |entry| entry.lsn < lsn);
            return Err(e);
        }
        if !after_end {
            wal.wake.notify_one(); // a merge: persist it now
        }
        debug!(collection = %c, item = %i, version, rows, "write acknowledged through the log");
        Ok(Logged::Done(WriteReceipt {
            version,
            rows_received: rows as u64,
            rows_written: rows as u64,
            rows_deleted,
            duplicate: false,
        }))
    }
}

/// `batches` as a stream that keeps `share` of the log's budget until they are taken:
/// an upload read ahead and then declined stays counted until the write path has it.
fn holding(
    batches: Vec<RecordBatch>,
    share: Reservation,
) -> BoxStream<'static, Result<RecordBatch>> {
    let mut share = Some(share);
    let mut batches = batches.into_iter();
    stream::poll_fn(move |_| {
        let next = batches.next();
        if next.is_none() {
            share.take();
        }
        std::task::Poll::Ready(next.map(Ok))
    })
    .boxed()
}

/// Arrow IPC stream of one batch.
fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}
