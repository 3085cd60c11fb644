//! The storage engine: ordered, versioned Parquet items on any `object_store`.
//!
//! ```text
//!            write(input stream)                         read(range, columns, filter)
//!                  │                                                │
//!   stage: sort chunks, dedup ─► run files (_data/)        manifest at version/snapshot
//!                  │                                                │
//!   plan: runs ∪ overlapping stored files ─► Merger ─► Dedup   prune files by range
//!                  │                  (only what overlaps)          │
//!   FileSink: row groups by rows/period, files by rows     prune row groups + pages
//!                  │                                                │
//!   commit: put-if-absent _manifest/<v+1>.json ◄─ retry    stream batches in key order
//!                  │      on conflict (re-plan)
//!   compact: merge runs of small neighbouring files (inline, size-tiered)
//! ```
//!
//! Every write is one atomic commit: data files are written first and become visible only
//! when the manifest that lists them wins the put-if-absent race for the next version.
//! A crash at any point leaves the last committed manifest intact; files of failed writes
//! are orphans that [`Engine::vacuum`] removes.
//!
//! # Layout
//! See [`names`] for the object layout. All I/O goes through [`object_store`]; blocking
//! Parquet encoding runs in `spawn_blocking`.

mod compact;
mod durable;
mod encode;
pub mod error;
pub mod files;
mod gaps;
pub mod manifest;
mod merge;
pub mod names;
mod read;
pub mod schema;
pub mod time;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

pub use error::{Error, Result};
pub use files::KeyRange;
pub use manifest::{FileEntry, Keep, Manifest, RowGroupTarget, SchemaEvolution, Settings};
pub use names::{CollectionName, ItemName, SnapshotName};
pub use read::{At, ReadOptions, ReadStream, RowFilter};
pub use time::{Clock, Period};
pub use write::{WriteMode, WriteOptions, WriteReceipt};

use files::{InFlight, MetaCache};
use manifest::{get_json, put_json_if_absent, Snapshot, MANIFEST_FORMAT};
use names::{parse_manifest_name, Layout, MANIFEST_DIR};

/// Default rows per row group.
pub const DEFAULT_ROW_GROUP_ROWS: u64 = 128 * 1024;
/// Default rows per file: small enough that an upsert rewrites little, large enough
/// that a 10M-row item is 40 files.
pub const DEFAULT_FILE_TARGET_ROWS: u64 = 256 * 1024;
/// How often a commit is re-planned after losing a race before giving up.
pub const DEFAULT_MAX_COMMIT_ATTEMPTS: u32 = 64;
/// Default time an old version stays readable before vacuum may remove it.
pub const DEFAULT_VACUUM_RETENTION: Duration = Duration::from_secs(3600);
/// Default age below which an unreferenced file may belong to a write still in flight
/// (in another engine instance) and is not vacuumed.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(3600);
/// Bytes of upload buffered before a chunk is sorted and staged.
pub const DEFAULT_STAGE_BYTES: usize = 64 * 1024 * 1024;
/// Number of neighbouring small files of one size tier that triggers compaction.
pub const DEFAULT_COMPACTION_FANIN: usize = 8;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Row group target of new items that do not set one.
    pub row_group_target: RowGroupTarget,
    /// Rows per file of new items that do not set it.
    pub file_target_rows: u64,
    /// Commit attempts before a write fails with [`Error::CommitConflict`].
    pub max_commit_attempts: u32,
    /// How long old versions stay readable (unless a snapshot holds them).
    pub vacuum_retention: Duration,
    /// Minimum age of an unreferenced file before vacuum deletes it.
    pub orphan_grace: Duration,
    /// Upload bytes buffered per sorted chunk.
    pub stage_bytes: usize,
    /// Neighbouring small files of one size tier that trigger an inline compaction.
    pub compaction_fanin: usize,
    /// Merge small files automatically after each write.
    pub auto_compact: bool,
    /// Run that merge in a background task (the write is acknowledged without waiting
    /// for it); otherwise the write waits for it. The server runs it in the background.
    pub compact_in_background: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            row_group_target: RowGroupTarget::Rows(DEFAULT_ROW_GROUP_ROWS),
            file_target_rows: DEFAULT_FILE_TARGET_ROWS,
            max_commit_attempts: DEFAULT_MAX_COMMIT_ATTEMPTS,
            vacuum_retention: DEFAULT_VACUUM_RETENTION,
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            stage_bytes: DEFAULT_STAGE_BYTES,
            compaction_fanin: DEFAULT_COMPACTION_FANIN,
            auto_compact: true,
            compact_in_background: false,
        }
    }
}

type ItemKey = (CollectionName, ItemName);

/// The storage engine. Cheap to clone; clones share caches and locks.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    options: Options,
    clock: Arc<dyn Clock>,
    /// Latest manifest seen per item (validated on every use, see `latest`).
    cache: Mutex<HashMap<ItemKey, Arc<Manifest>>>,
    /// Serializes commits to one item within this engine (other engines are handled by
    /// the conditional put).
    locks: Mutex<HashMap<ItemKey, Arc<tokio::sync::Mutex<()>>>>,
    in_flight: Arc<InFlight>,
    /// Footers of recently read data files.
    meta_cache: MetaCache,
    /// Items with a background compaction running (at most one each).
    compacting: Mutex<std::collections::HashSet<ItemKey>>,
}

/// Summary of an item (the `item_info` action).
#[derive(Debug, Clone, Serialize)]
pub struct ItemInfo {
    /// Rows.
    pub rows: u64,
    /// Smallest ordering key.
    pub start: Option<i64>,
    /// Largest ordering key.
    pub end: Option<i64>,
    /// Version described.
    pub version: u64,
    /// Number of files.
    pub files: usize,
    /// Bytes of the files.
    pub bytes: u64,
    /// User metadata.
    pub metadata: Map<String, Value>,
    /// Arrow schema.
    #[serde(skip)]
    pub schema: arrow::datatypes::SchemaRef,
    /// Settings.
    pub settings: Settings,
}

/// One entry of [`Engine::list_versions`].
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Version number.
    pub version: u64,
    /// Commit time (ns).
    pub committed_at: i64,
    /// Rows at that version.
    pub rows: u64,
    /// Operation that made it.
    pub operation: String,
}

/// One entry of [`Engine::list_snapshots`].
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// Snapshot name.
    pub snapshot: String,
    /// Creation time (ns).
    pub created_at: i64,
    /// Items it holds.
    pub items: usize,
}

/// One entry of [`Engine::changes_since`].
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Item name.
    pub item: String,
    /// Latest version.
    pub version: u64,
    /// Commit time of that version (ns).
    pub updated_at: i64,
    /// Whether the latest version deleted the item.
    pub deleted: bool,
}

/// What a compaction did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReceipt {
    /// Version after compaction (unchanged if nothing was done).
    pub version: u64,
    /// Files before.
    pub files_before: usize,
    /// Files after.
    pub files_after: usize,
}

/// What a vacuum removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VacuumReceipt {
    /// Objects deleted (data files and manifests).
    pub files_removed: u64,
    /// Bytes deleted.
    pub bytes_removed: u64,
}

impl Engine {
    /// Open the store at `location`: `memory://`, `file:///abs/path`, or a plain path
    /// (created if missing).
    pub fn open(location: &str, options: Options) -> Result<Self> {
        let store: Arc<dyn ObjectStore> = if location == "memory://" || location == "memory:" {
            Arc::new(InMemory::new())
        } else {
            let path = match location.strip_prefix("file://") {
                Some(p) => p,
                None if location.contains("://") => {
                    return Err(Error::invalid(format!(
                    "unsupported storage URL {location:?}: use a path, file:///path or memory://"
                )))
                }
                None => location,
            };
            // The root folder must exist before the store can be rooted there.
            std::fs::create_dir_all(path)
                .map_err(|e| Error::invalid(format!("cannot create data folder {path:?}: {e}")))?;
            Arc::new(durable::DurableLocal::new(std::path::Path::new(path))?)
        };
        Ok(Self::with_store(
            store,
            Path::default(),
            options,
            time::system_clock(),
        ))
    }

    /// An engine over an existing object store, rooted at `root`.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        root: Path,
        options: Options,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                layout: Layout::new(root),
                options,
                clock,
                cache: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                in_flight: Arc::new(InFlight::default()),
                meta_cache: MetaCache::default(),
                compacting: Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    /// The engine's options.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    fn meta_cache(&self) -> &MetaCache {
        &self.inner.meta_cache
    }

    fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    // ----- collections -------------------------------------------------------------

    /// Create a collection; [`Error::AlreadyExists`] if it exists.
    pub async fn create_collection(&self, c: &CollectionName) -> Result<()> {
        let marker = self.layout().collection_marker(c);
        let body = serde_json::json!({ "created_at": self.now() });
        if put_json_if_absent(self.store().as_ref(), &marker, &body).await? {
            info!(collection = %c, "collection created");
            Ok(())
        } else {
            Err(Error::AlreadyExists {
                what: format!("collection {c}"),
            })
        }
    }

    /// Create the collection unless it exists (first write into it).
    async fn ensure_collection(&self, c: &CollectionName) -> Result<()> {
        let marker = self.layout().collection_marker(c);
        // A look first: a conditional put writes (and syncs) the marker before it finds
        // out that it exists, on every write.
        match self.store().head(&marker).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let body = serde_json::json!({ "created_at": self.now() });
        put_json_if_absent(self.store().as_ref(), &marker, &body).await?;
        Ok(())
    }

    async fn check_collection(&self, c: &CollectionName) -> Result<()> {
        match self.store().head(&self.layout().collection_marker(c)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(Error::CollectionNotFound {
                collection: c.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of all collections, sorted.
    pub async fn list_collections(&self) -> Result<Vec<String>> {
        let listing = self
            .store()
            .list_with_delimiter(Some(self.layout().root()))
            .await?;
        let mut out = Vec::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            let Ok(c) = CollectionName::new(name) else {
                continue;
            };
            if self.check_collection(&c).await.is_ok() {
                out.push(c.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delete a collection with all its items, versions and snapshots.
    pub async fn delete_collection(&self, c: &CollectionName) -> Result<()> {
        self.check_collection(c).await?;
        // The marker goes first: from then on the collection is not found, even if the
        // rest of the deletion is interrupted (a later delete finishes it).
        self.store()
            .delete(&self.layout().collection_marker(c))
            .await?;
        let prefix = self.layout().collection(c);
        let locations = self
            .store()
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        self.store()
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        self.inner
            .cache
            .lock()
            .expect("cache poisoned")
            .retain(|(col, _), _| col != c);
        info!(collection = %c, "collection deleted");
        Ok(())
    }

    // ----- items -------------------------------------------------------------------

    /// Every item folder of a collection (live or deleted), sorted.
    async fn item_names(&self, c: &CollectionName) -> Result<Vec<ItemName>> {
        let mut out = Vec::new();
        let mut pending = vec![(self.layout().collection(c), String::new())];
        while let Some((dir, name)) = pending.pop() {
            let listing = self.store().list_with_delimiter(Some(&dir)).await?;
            for prefix in listing.common_prefixes {
                let Some(seg) = prefix.filename() else {
                    continue;
                };
                if seg == MANIFEST_DIR && !name.is_empty() {
                    if let Ok(item) = ItemName::new(name.clone()) {
                        out.push(item);
                    }
                } else if !seg.starts_with('_') {
                    let child = if name.is_empty() {
                        seg.to_string()
                    } else {
                        format!("{name}/{seg}")
                    };
                    pending.push((prefix.clone(), child));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Live items of a collection, optionally with a name prefix and matching metadata
    /// (every given key must have the given value).
    pub async fn list_items(
        &self,
        c: &CollectionName,
        prefix: Option<&str>,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Vec<String>> {
        self.check_collection(c).await?;
        let mut out = Vec::new();
        for item in self.item_names(c).await? {
            if prefix.is_some_and(|p| !item.as_str().starts_with(p)) {
                continue;
            }
            let Some(m) = self.live(c, &item).await? else {
                continue;
            };
            if let Some(want) = metadata {
                if !want.iter().all(|(k, v)| m.metadata.get(k) == Some(v)) {
                    continue;
                }
            }
            out.push(item.to_string());
        }
        Ok(out)
    }

    /// The latest manifest of an item, tombstones included; `None` if it never existed.
    ///
    /// A cached manifest `v` is current iff `v + 1` does not exist and `v` still does
    /// (vacuum never removes the latest version), so two cheap lookups validate the cache.
    pub async fn latest(&self, c: &CollectionName, i: &ItemName) -> Result<Option<Arc<Manifest>>> {
        let key = (c.clone(), i.clone());
        let cached = self
            .inner
            .cache
            .lock()
            .expect("cache poisoned")
            .get(&key)
            .cloned();
        let mut current = match cached {
            Some(m) => {
                let still_there = self
                    .store()
                    .head(&self.layout().manifest(c, i, m.version))
                    .await;
                match still_there {
                    Ok(_) => Some(m),
                    Err(object_store::Error::NotFound { .. }) => self.list_latest(c, i).await?,
                    Err(e) => return Err(e.into()),
                }
            }
            None => self.list_latest(c, i).await?,
        };
        if let Some(m) = current.clone() {
            let mut v = m.version;
            loop {
                let path = self.layout().manifest(c, i, v + 1);
                match manifest::load(self.store().as_ref(), &path).await {
                    Ok(next) => {
                        current = Some(Arc::new(next));
                        v += 1;
                    }
                    Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut cache = self.inner.cache.lock().expect("cache poisoned");
        match &current {
            Some(m) => {
                cache.insert(key, Arc::clone(m));
            }
            None => {
                cache.remove(&key);
            }
        }
        Ok(current)
    }

    async fn list_versions_raw(&self, c: &CollectionName, i: &ItemName) -> Result<Vec<u64>> {
        let dir = self.layout().manifest_dir(c, i);
        let mut versions: Vec<u64> = self
            .store()
            .list(Some(&dir))
            .try_filter_map(
                |m| async move { Ok(m.location.filename().and_then(parse_manifest_name)) },
            )
            .try_collect()
            .await?;
        versions.sort_unstable();
        Ok(versions)
    }

    async fn list_latest(&self, c: &CollectionName, i: &ItemName) -> Result<Option<Arc<Manifest>>> {
        let Some(&v) = self.list_versions_raw(c, i).await?.last() else {
            return Ok(None);
        };
        let m = manifest::load(self.store().as_ref(), &self.layout().manifest(c, i, v)).await?;
        Ok(Some(Arc::new(m)))
    }

    /// The latest manifest if the item is live.
    async fn live(&self, c: &CollectionName, i: &ItemName) -> Result<Option<Arc<Manifest>>> {
        Ok(self.latest(c, i).await?.filter(|m| !m.deleted))
    }

    /// The manifest a read at `at` sees.
    pub async fn manifest_at(
        &self,
        c: &CollectionName,
        i: &ItemName,
        at: &At,
    ) -> Result<Arc<Manifest>> {
        let not_found = || Error::ItemNotFound {
            collection: c.to_string(),
            item: i.to_string(),
        };
        let version = match at {
            At::Latest => {
                return match self.live(c, i).await? {
                    Some(m) => Ok(m),
                    None => {
                        self.check_collection(c).await?;
                        Err(not_found())
                    }
                }
            }
            At::Version(v) => *v,
            At::Snapshot(s) => {
                let snap = self.load_snapshot(c, s).await?;
                *snap
                    .items
                    .get(i.as_str())
                    .ok_or_else(|| Error::SnapshotNotFound {
                        collection: c.to_string(),
                        snapshot: s.as_str().to_string(),
                        detail: format!(" for item {i} (the item did not exist when it was taken)"),
                    })?
            }
        };
        let path = self.layout().manifest(c, i, version);
        match manifest::load(self.store().as_ref(), &path).await {
            Ok(m) if m.deleted => Err(not_found()),
            Ok(m) => Ok(Arc::new(m)),
            Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => {
                if self.latest(c, i).await?.is_none() {
                    self.check_collection(c).await?;
                    return Err(not_found());
                }
                Err(Error::VersionNotFound {
                    collection: c.to_string(),
                    item: i.to_string(),
                    version,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Summary of an item at a version.
    pub async fn item_info(&self, c: &CollectionName, i: &ItemName, at: &At) -> Result<ItemInfo> {
        let m = self.manifest_at(c, i, at).await?;
        let range = m.range();
        Ok(ItemInfo {
            rows: m.rows(),
            start: range.map(|r| r.0),
            end: range.map(|r| r.1),
            version: m.version,
            files: m.files.len(),
            bytes: m.bytes(),
            metadata: m.metadata.clone(),
            schema: Arc::clone(m.live_schema()),
            settings: m.live_settings().clone(),
        })
    }

    fn item_lock(&self, c: &CollectionName, i: &ItemName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().expect("locks poisoned");
        Arc::clone(locks.entry((c.clone(), i.clone())).or_default())
    }

    /// Commit `next` as the version after `current`; `Ok(None)` if another writer took
    /// that version first.
    async fn try_commit(
        &self,
        c: &CollectionName,
        i: &ItemName,
        current: Option<&Manifest>,
        mut next: Manifest,
    ) -> Result<Option<Arc<Manifest>>> {
        next.format = MANIFEST_FORMAT;
        next.version = current.map_or(1, |m| m.version + 1);
        next.committed_at = self.now().max(current.map_or(i64::MIN, |m| m.committed_at));
        let path = self.layout().manifest(c, i, next.version);
        if !put_json_if_absent(self.store().as_ref(), &path, &next).await? {
            debug!(collection = %c, item = %i, version = next.version, "commit lost a race");
            return Ok(None);
        }
        let next = Arc::new(next);
        self.inner
            .cache
            .lock()
            .expect("cache poisoned")
            .insert((c.clone(), i.clone()), Arc::clone(&next));
        Ok(Some(next))
    }

    /// Pause before re-planning a lost commit (jittered, growing).
    async fn backoff(attempt: u32) {
        let base = 1u64 << attempt.min(6);
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % base.max(1);
        tokio::time::sleep(Duration::from_millis(base + jitter)).await;
    }

    fn conflict(&self, c: &CollectionName, i: &ItemName) -> Error {
        Error::CommitConflict {
            collection: c.to_string(),
            item: i.to_string(),
            attempts: self.inner.options.max_commit_attempts,
        }
    }

    /// Delete an item: a tombstone version. Its history stays readable at older
    /// versions and snapshots until vacuumed.
    pub async fn delete_item(&self, c: &CollectionName, i: &ItemName) -> Result<u64> {
        let lock = self.item_lock(c, i);
        let _guard = lock.lock().await;
        for attempt in 0..self.inner.options.max_commit_attempts {
            let Some(current) = self.live(c, i).await? else {
                self.check_collection(c).await?;
                return Err(Error::ItemNotFound {
                    collection: c.to_string(),
                    item: i.to_string(),
                });
            };
            let tombstone = Manifest {
                format: MANIFEST_FORMAT,
                version: 0,
                committed_at: 0,
                operation: "delete".into(),
                deleted: true,
                settings: None,
                schema: None,
                metadata: Map::new(),
                files: Vec::new(),
            };
            if let Some(m) = self.try_commit(c, i, Some(&current), tombstone).await? {
                info!(collection = %c, item = %i, version = m.version, "item deleted");
                return Ok(m.version);
            }
            Self::backoff(attempt).await;
        }
        Err(self.conflict(c, i))
    }

    /// Metadata of an item.
    pub async fn get_metadata(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Map<String, Value>> {
        Ok(self.manifest_at(c, i, &At::Latest).await?.metadata.clone())
    }

    /// Merge `patch` into the item's metadata (a `null` value removes the key) as a new
    /// version; returns the new metadata.
    pub async fn update_metadata(
        &self,
        c: &CollectionName,
        i: &ItemName,
        patch: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let lock = self.item_lock(c, i);
        let _guard = lock.lock().await;
        for attempt in 0..self.inner.options.max_commit_attempts {
            let current = self.manifest_at(c, i, &At::Latest).await?;
            let mut next = (*current).clone();
            next.operation = "metadata".into();
            merge_metadata(&mut next.metadata, patch);
            if let Some(m) = self.try_commit(c, i, Some(&current), next).await? {
                return Ok(m.metadata.clone());
            }
            Self::backoff(attempt).await;
        }
        Err(self.conflict(c, i))
    }

    /// Versions of an item still stored, oldest first.
    pub async fn list_versions(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Vec<VersionInfo>> {
        // Fails with NotFound for unknown items.
        if self.latest(c, i).await?.is_none() {
            self.check_collection(c).await?;
            return Err(Error::ItemNotFound {
                collection: c.to_string(),
                item: i.to_string(),
            });
        }
        let mut out = Vec::new();
        for v in self.list_versions_raw(c, i).await? {
            let path = self.layout().manifest(c, i, v);
            match manifest::load(self.store().as_ref(), &path).await {
                Ok(m) => out.push(VersionInfo {
                    version: m.version,
                    committed_at: m.committed_at,
                    rows: m.rows(),
                    operation: m.operation,
                }),
                // Vacuumed between the listing and the read.
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    // ----- snapshots ---------------------------------------------------------------

    async fn load_snapshot(&self, c: &CollectionName, s: &SnapshotName) -> Result<Snapshot> {
        match get_json(self.store().as_ref(), &self.layout().snapshot(c, s)).await {
            Ok(snap) => Ok(snap),
            Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => {
                self.check_collection(c).await?;
                Err(Error::SnapshotNotFound {
                    collection: c.to_string(),
                    snapshot: s.as_str().to_string(),
                    detail: String::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Record every live item's current version under `name`.
    pub async fn create_snapshot(
        &self,
        c: &CollectionName,
        s: &SnapshotName,
    ) -> Result<SnapshotInfo> {
        self.check_collection(c).await?;
        let mut items = BTreeMap::new();
        for item in self.item_names(c).await? {
            if let Some(m) = self.live(c, &item).await? {
                items.insert(item.to_string(), m.version);
            }
        }
        let snap = Snapshot {
            name: s.as_str().to_string(),
            created_at: self.now(),
            items,
        };
        if !put_json_if_absent(self.store().as_ref(), &self.layout().snapshot(c, s), &snap).await? {
            return Err(Error::AlreadyExists {
                what: format!("snapshot {} of collection {c}", s.as_str()),
            });
        }
        info!(collection = %c, snapshot = s.as_str(), items = snap.items.len(), "snapshot created");
        Ok(SnapshotInfo {
            snapshot: snap.name,
            created_at: snap.created_at,
            items: snap.items.len(),
        })
    }

    async fn snapshots(&self, c: &CollectionName) -> Result<Vec<Snapshot>> {
        let dir = self.layout().snapshot_dir(c);
        let metas: Vec<_> = self.store().list(Some(&dir)).try_collect().await?;
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            match get_json::<Snapshot>(self.store().as_ref(), &meta.location).await {
                Ok(s) => out.push(s),
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(out)
    }

    /// Snapshots of a collection, oldest first.
    pub async fn list_snapshots(&self, c: &CollectionName) -> Result<Vec<SnapshotInfo>> {
        self.check_collection(c).await?;
        Ok(self
            .snapshots(c)
            .await?
            .into_iter()
            .map(|s| SnapshotInfo {
                snapshot: s.name,
                created_at: s.created_at,
                items: s.items.len(),
            })
            .collect())
    }

    /// Delete a snapshot (the versions it held become eligible for vacuum).
    pub async fn delete_snapshot(&self, c: &CollectionName, s: &SnapshotName) -> Result<()> {
        self.load_snapshot(c, s).await?;
        self.store().delete(&self.layout().snapshot(c, s)).await?;
        Ok(())
    }

    /// Items committed or deleted at or after `since` (ns), for sync.
    pub async fn changes_since(&self, c: &CollectionName, since: i64) -> Result<Vec<Change>> {
        self.check_collection(c).await?;
        let mut out = Vec::new();
        for item in self.item_names(c).await? {
            let Some(m) = self.latest(c, &item).await? else {
                continue;
            };
            if m.committed_at >= since {
                out.push(Change {
                    item: item.to_string(),
                    version: m.version,
                    updated_at: m.committed_at,
                    deleted: m.deleted,
                });
            }
        }
        Ok(out)
    }

    /// Log a failure of best-effort cleanup (the files are orphans vacuum will find).
    fn cleanup_failed(err: &Error) {
        warn!(cause = %err, "cleanup of unreferenced files failed; vacuum will remove them");
    }

    /// Delete files by name from an item's data folder, best effort.
    async fn delete_files(&self, c: &CollectionName, i: &ItemName, names: &[String]) {
        let paths: Vec<Path> = names
            .iter()
            .map(|n| self.layout().data_file(c, i, n))
            .collect();
        self.delete_paths(&paths).await;
    }

    /// Delete objects, best effort.
    /// Delete the files of an operation that failed, except those the item's latest
    /// version lists: a commit whose put reported an error may still have landed (say,
    /// the folder sync failed after the link). If the latest version cannot be read,
    /// nothing is deleted; vacuum removes orphans later.
    async fn delete_failed(&self, c: &CollectionName, i: &ItemName, paths: &[Path]) {
        let latest = match self.latest(c, i).await {
            Ok(m) => m,
            Err(e) => return Self::cleanup_failed(&e),
        };
        let listed: std::collections::HashSet<&str> = latest
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.name.as_str()))
            .collect();
        let garbage: Vec<Path> = paths
            .iter()
            .filter(|p| !p.filename().is_some_and(|n| listed.contains(n)))
            .cloned()
            .collect();
        self.delete_paths(&garbage).await;
    }

    async fn delete_paths(&self, paths: &[Path]) {
        for path in paths {
            match self.store().delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => Self::cleanup_failed(&e.into()),
            }
        }
    }
}

/// Merge `patch` into `metadata`: keys are set, a `null` value removes the key.
pub fn merge_metadata(metadata: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            metadata.remove(k);
        } else {
            metadata.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests;
