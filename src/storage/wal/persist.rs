//! Persisting a log tail as Parquet: one file whose row groups end at each entry (written
//! without the item's lock), one manifest per entry's version (committed under it); the
//! background persister; the re-layout of a tail of small appends.

use super::*;

/// A tail of at least this many rows is encoded on two threads.
const PARALLEL_PERSIST_ROWS: usize = 1 << 20;
/// How often the persister looks for due tails.
const PERSIST_TICK: Duration = Duration::from_millis(100);

/// A durable tail written as one file, not committed yet.
struct WrittenTail {
    /// The stored manifest the tail follows.
    base: Arc<Manifest>,
    entries: Vec<Arc<TailEntry>>,
    file: Result<TailFile>,
    guard: InFlightGuard,
}

impl Engine {
    /// Persist the item's tail (the background persister); returns the manifest it
    /// committed. The file is encoded and written without the item's lock, so appends
    /// go on meanwhile; the manifests are committed under it.
    pub(crate) async fn persist_tail(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<Arc<Manifest>>> {
        let Some(written) = self.write_durable_tail(c, i).await? else {
            return Ok(None);
        };
        let _lock = self.item_lock(c, i).await;
        let unchanged = self
            .persisted_latest(c, i)
            .await?
            .is_some_and(|m| m.version == written.base.version);
        if !unchanged {
            // Another commit persisted the tail meanwhile: ours is not needed.
            self.settle(written.guard, None).await;
            return self.persist_locked(c, i).await;
        }
        self.commit_tail_file(c, i, written).await
    }

    /// Persist the item's tail; the caller holds the item's lock.
    pub(crate) async fn persist_locked(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<Arc<Manifest>>> {
        match self.write_durable_tail(c, i).await? {
            Some(written) => self.commit_tail_file(c, i, written).await,
            None => Ok(None),
        }
    }

    /// The item's durable tail written as one file, or `None` if there is none.
    async fn write_durable_tail(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<WrittenTail>> {
        let Some((base, entries)) = self.durable_tail(c, i).await? else {
            return Ok(None);
        };
        let mut guard = InFlightGuard::new(self, c, i);
        let file = self
            .write_tail_file(c, i, &base, &entries, &mut guard)
            .await;
        Ok(Some(WrittenTail {
            base,
            entries,
            file,
            guard,
        }))
    }

    /// Commit the manifests of a written tail file (the caller holds the item's lock),
    /// settle the file, and drop the persisted entries from the tail.
    async fn commit_tail_file(
        &self,
        c: &CollectionName,
        i: &ItemName,
        written: WrittenTail,
    ) -> Result<Option<Arc<Manifest>>> {
        let WrittenTail {
            base,
            entries,
            file,
            guard,
        } = written;
        let result = match file {
            Ok(file) => self.commit_tail(c, i, &base, &entries, &file).await,
            Err(e) => Err(e),
        };
        self.settle(guard, result.as_ref().ok().map(|m| m.as_ref()))
            .await;
        self.tail_persisted(c, i, &entries, result)
    }

    /// The item's stored manifest and its durable tail entries (waiting for those still
    /// syncing), or `None` if there is nothing to persist.
    async fn durable_tail(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<(Arc<Manifest>, Vec<Arc<TailEntry>>)>> {
        let Some(wal) = &self.inner.wal else {
            return Ok(None);
        };
        let key = (c.clone(), i.clone());
        let Some(last) = wal.entries(&key, false).pop() else {
            return Ok(None);
        };
        // An entry that fails to sync is its appender's error, not this one's.
        let _ = wal.log.wait(last.lsn).await;
        let entries = wal.entries(&key, true);
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let base = self
            .persisted_latest(c, i)
            .await?
            .filter(|m| !m.deleted && m.version + 1 == first.version)
            .ok_or_else(|| Error::Wal {
                message: format!(
                    "the tail of {c}/{i} starts at version {} but the item's latest version is not the one before it (another process wrote to this data folder?)",
                    first.version
                ),
            })?;
        Ok(Some((base, entries)))
    }

    /// Drop the persisted entries from the tail; log what was done.
    fn tail_persisted(
        &self,
        c: &CollectionName,
        i: &ItemName,
        entries: &[Arc<TailEntry>],
        result: Result<Arc<Manifest>>,
    ) -> Result<Option<Arc<Manifest>>> {
        let last = result?;
        let persisted = last.version;
        if let Some(wal) = &self.inner.wal {
            wal.remove(&(c.clone(), i.clone()), |e| e.version > persisted);
        }
        info!(
            collection = %c, item = %i, versions = entries.len(), version = persisted,
            "log tail persisted"
        );
        Ok(Some(last))
    }

    /// Write `entries` as one Parquet file, a row group boundary after each.
    async fn write_tail_file(
        &self,
        c: &CollectionName,
        i: &ItemName,
        base: &Manifest,
        entries: &[Arc<TailEntry>],
        guard: &mut InFlightGuard,
    ) -> Result<TailFile> {
        let target = self.file_target(
            c,
            i,
            base.live_settings(),
            base.live_schema(),
            &base.metadata,
        );
        let props = target.properties();
        let schema = Arc::clone(&target.schema);
        let batches: Vec<RecordBatch> = entries.iter().map(|e| e.batch.clone()).collect();
        // One thread: persisting is background work beside the requests; two once the
        // tail is large (writers are outpacing the persister and will soon be declined).
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let parallel = rows >= PARALLEL_PERSIST_ROWS;
        let (bytes, ends) = SpawnedTask::spawn_blocking("encode", move || {
            let mut w = ParallelWriter::try_new(schema, props, parallel)?;
            let mut ends = Vec::with_capacity(batches.len());
            for b in &batches {
                w.write(b)?;
                w.flush()?;
                ends.push(w.row_groups());
            }
            Ok::<_, Error>((w.into_inner()?, ends))
        })
        .join()
        .await??;
        let name = format!("{}.parquet", uuid::Uuid::new_v4().simple());
        let path = target.dir.clone().join(name.as_str());
        guard.add(path.clone());
        let bytes_len = bytes.len() as u64;
        let _writing = guard.writer();
        self.store()
            .put(&path, PutPayload::from(Bytes::from(bytes)))
            .await?;
        Ok(TailFile {
            name,
            bytes: bytes_len,
            ends,
        })
    }

    /// Commit one manifest per entry: `base`'s files and the rows of `file` up to it.
    async fn commit_tail(
        &self,
        c: &CollectionName,
        i: &ItemName,
        base: &Manifest,
        entries: &[Arc<TailEntry>],
        file: &TailFile,
    ) -> Result<Arc<Manifest>> {
        let total = *file.ends.last().expect("entries are not empty");
        let mut rows = 0;
        let mut last = None;
        for (e, &end) in entries.iter().zip(&file.ends) {
            rows += e.batch.num_rows() as u64;
            let mut m = base.clone();
            m.format = MANIFEST_FORMAT;
            m.version = e.version;
            m.committed_at = e.committed_at;
            m.operation = WriteMode::Append.as_str().into();
            m.files.push(FileEntry {
                name: file.name.clone(),
                min: entries[0].min,
                max: e.max,
                rows,
                bytes: file.bytes,
                row_groups: (end < total).then_some([0, end]),
                memory: None,
            });
            let path = self.layout().manifest(c, i, m.version);
            if !put_json_if_absent(self.store().as_ref(), &path, &m).await? {
                return Err(Error::Wal {
                    message: format!(
                        "version {} of {c}/{i} was committed by another process: one server per data folder",
                        m.version
                    ),
                });
            }
            last = Some(m);
        }
        let last = Arc::new(last.expect("entries are not empty"));
        self.remember_latest(c, i, &last);
        Ok(last)
    }
}

/// A Parquet file holding tail entries, row groups `[0, ends[k])` being entries `..=k`.
#[derive(Debug)]
struct TailFile {
    name: String,
    bytes: u64,
    ends: Vec<usize>,
}

/// The persister: every tick (or when woken), persist the tails that are due, then let
/// compaction fold the new small files in.
pub(super) async fn persist_loop(engine: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(PERSIST_TICK) => {}
        }
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine = Engine { inner };
        let due = match &engine.inner.wal {
            Some(wal) => wal.due(),
            None => return,
        };
        for (c, i) in due {
            let entries = wal_entries(&engine, &c, &i);
            match engine.persist_tail(&c, &i).await {
                Ok(Some(m)) => {
                    engine.relayout_small_entries(&c, &i, &m, &entries).await;
                    engine.after_write(&c, &i, &m).await
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(collection = %c, item = %i, cause = %e, "cannot persist the log tail; retrying")
                }
            }
        }
    }
}

/// The item's durable tail entries (rows of each), before a persist.
fn wal_entries(engine: &Engine, c: &CollectionName, i: &ItemName) -> Vec<usize> {
    engine.inner.wal.as_ref().map_or_else(Vec::new, |wal| {
        wal.entries(&(c.clone(), i.clone()), true)
            .iter()
            .map(|e| e.batch.num_rows())
            .collect()
    })
}

impl Engine {
    /// A persisted tail of small writes has a row group per write: rewrite its file in
    /// the item's layout (one compaction; older versions keep the file as it was), so
    /// reads of the latest version do not decode hundreds of tiny row groups.
    async fn relayout_small_entries(
        &self,
        c: &CollectionName,
        i: &ItemName,
        m: &Manifest,
        entries: &[usize],
    ) {
        let (Some(file), false) = (m.files.last(), entries.is_empty()) else {
            return;
        };
        let average = entries.iter().sum::<usize>() / entries.len();
        let row_group_rows = match &m.live_settings().row_group_target {
            crate::storage::manifest::RowGroupTarget::Rows(n) => *n as usize,
            crate::storage::manifest::RowGroupTarget::Period(_) => DEFAULT_ROW_GROUP_ROWS as usize,
        };
        if entries.len() < SMALL_ENTRIES_RELAYOUT || average * 8 >= row_group_rows {
            return;
        }
        let name = file.name.clone();
        let planner = move |files: &[FileEntry], _target: u64| {
            let at = files.iter().position(|f| f.name == name);
            at.map(|k| std::iter::once(k..k + 1).collect())
                .unwrap_or_default()
        };
        if let Err(e) = self.compact_with(c, i, planner).await {
            warn!(collection = %c, item = %i, cause = %e, "cannot re-lay out the persisted log tail");
        }
    }
}

/// A persisted tail of at least this many writes of under an eighth of a row group
/// each is rewritten in the item's layout.
const SMALL_ENTRIES_RELAYOUT: usize = 8;
