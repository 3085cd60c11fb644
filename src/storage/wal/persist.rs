//! Persisting a log tail as Parquet, in steps: each run of entries after the end as one
//! file whose row groups end at each entry, each entry that merges into place as the
//! files an ordinary write of it would make. A step's files are written without the
//! item's lock; its manifests (one per entry's version) are committed under it. Also:
//! the background persister, and the re-layout of a tail of small appends.

use super::*;

/// A tail of at least this many rows is encoded on two threads.
const PARALLEL_PERSIST_ROWS: usize = 1 << 20;
/// How often the persister looks for due tails.
const PERSIST_TICK: Duration = Duration::from_millis(100);

/// A step of persisting a durable tail, written but not committed yet.
struct WrittenTail {
    /// The stored manifest the step follows.
    base: Arc<Manifest>,
    /// Entries after the end, or one entry that merges into place.
    entries: Vec<Arc<TailEntry>>,
    written: Result<Written>,
    guard: InFlightGuard,
}

/// What a step wrote.
enum Written {
    /// Entries after the end, as one file.
    Appended(TailFile),
    /// One entry merged into place: the item's files after it.
    Merged(Vec<FileEntry>),
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
        // Up to what is durable now: appends that go on meanwhile wait for the next round.
        let Some(target) = self
            .durable_tail(c, i)
            .await?
            .and_then(|(_, e)| e.last().cloned())
        else {
            return Ok(None);
        };
        let mut last = None;
        while last
            .as_ref()
            .is_none_or(|m: &Arc<Manifest>| m.version < target.version)
        {
            let Some(written) = self.write_durable_tail(c, i).await? else {
                break;
            };
            let _lock = self.item_lock(c, i).await;
            let unchanged = self
                .persisted_latest(c, i)
                .await?
                .is_some_and(|m| m.version == written.base.version);
            if !unchanged {
                // Another commit persisted the tail meanwhile: ours is not needed.
                self.settle(written.guard, None).await;
                return Ok(self.persist_locked(c, i).await?.or(last));
            }
            last = self.commit_tail_file(c, i, written).await?.or(last);
        }
        Ok(last)
    }

    /// Persist the item's tail; the caller holds the item's lock.
    pub(crate) async fn persist_locked(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<Arc<Manifest>>> {
        let mut last = None;
        while let Some(written) = self.write_durable_tail(c, i).await? {
            last = self.commit_tail_file(c, i, written).await?.or(last);
        }
        Ok(last)
    }

    /// The next step of the item's durable tail, written: its first entries after the
    /// end as one file, or its first entry merged into place. `None` if there is none.
    async fn write_durable_tail(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<WrittenTail>> {
        let Some((base, mut entries)) = self.durable_tail(c, i).await? else {
            return Ok(None);
        };
        let mut guard = InFlightGuard::new(self, c, i);
        let written = match entries[0].merge.clone() {
            Some(merge) => {
                entries.truncate(1);
                let e = &entries[0];
                self.merge_rows(
                    (c, i),
                    &base,
                    e.batch.clone(),
                    (e.min, e.max),
                    merge.key,
                    &mut guard,
                )
                .await
                .map(Written::Merged)
            }
            None => {
                let appends = entries.iter().take_while(|e| e.merge.is_none()).count();
                entries.truncate(appends);
                self.write_tail_file(c, i, &base, &entries, &mut guard)
                    .await
                    .map(Written::Appended)
            }
        };
        Ok(Some(WrittenTail {
            base,
            entries,
            written,
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
            written,
            guard,
        } = written;
        let result = match written {
            Ok(Written::Appended(file)) => self.commit_tail(c, i, &base, &entries, &file).await,
            Ok(Written::Merged(files)) => self.commit_merged(c, i, &base, &entries[0], files).await,
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
        // The tail first: entries persisted meanwhile (by another persist) are then in
        // the manifest read next, and left out.
        let mut entries = wal.entries(&key, true);
        let base = self.persisted_latest(c, i).await?;
        let persisted = base.as_ref().map_or(0, |m| m.version);
        entries.retain(|e| e.version > persisted);
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let base = base
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
            m.operation = e.mode.as_str().into();
            m.files.push(FileEntry {
                name: file.name.clone(),
                min: entries[0].min,
                max: e.max,
                rows,
                bytes: file.bytes,
                row_groups: (end < total).then_some([0, end]),
                memory: None,
            });
            last = Some(self.put_tail_manifest(c, i, m).await?);
        }
        Ok(last.expect("entries are not empty"))
    }
}

impl Engine {
    /// Commit the manifest of an entry merged into place: `base` with `files`.
    async fn commit_merged(
        &self,
        c: &CollectionName,
        i: &ItemName,
        base: &Manifest,
        entry: &TailEntry,
        files: Vec<FileEntry>,
    ) -> Result<Arc<Manifest>> {
        let mut m = base.clone();
        m.format = MANIFEST_FORMAT;
        m.version = entry.version;
        m.committed_at = entry.committed_at;
        m.operation = entry.mode.as_str().into();
        m.files = files;
        self.put_tail_manifest(c, i, m).await
    }

    /// Store a manifest made from the log; its version is the entry's, so it must be new.
    async fn put_tail_manifest(
        &self,
        c: &CollectionName,
        i: &ItemName,
        m: Manifest,
    ) -> Result<Arc<Manifest>> {
        let path = self.layout().manifest(c, i, m.version);
        if !put_json_if_absent(self.store().as_ref(), &path, &m).await? {
            return Err(Error::Wal {
                message: format!(
                    "version {} of {c}/{i} was committed by another process: one server per data folder",
                    m.version
                ),
            });
        }
        let m = Arc::new(m);
        self.remember_latest(c, i, &m);
        Ok(m)
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

/// The item's durable tail entries (rows of each), before a persist; none if some
/// merge into place (the persisted tail is then not one file).
fn wal_entries(engine: &Engine, c: &CollectionName, i: &ItemName) -> Vec<usize> {
    let Some(wal) = &engine.inner.wal else {
        return Vec::new();
    };
    let entries = wal.entries(&(c.clone(), i.clone()), true);
    if entries.iter().any(|e| e.merge.is_some()) {
        return Vec::new();
    }
    entries.iter().map(|e| e.batch.num_rows()).collect()
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
