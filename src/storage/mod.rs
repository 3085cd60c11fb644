//! The storage engine: ordered, versioned Parquet items on any `object_store`.
//!
//! ```text
//!  write(input stream)                                read(ReadOptions)
//!        │                                                  │
//!  write/prepare  settings, schema, key of the write   read/plan   version, schema after
//!        │                                                  │      projection, files, splits
//!  write/stage    chunks (memory budget) ─► merge/sort      │
//!                 ─► parquet/sink: run files (invisible)   read/scan  files decode ahead on
//!        │                                                  │      the CPU runtime
//!  write/plan     runs ∪ touched row groups ─► merge/kway   parquet/scan  prune row groups
//!                 ─► merge/dedup ─► parquet/sink            │      and pages by statistics
//!        │                                                  │
//!  manifest/commit  put-if-absent _manifest/<v+1>.json,    filter, n_prev, limit/last,
//!                   the one retry loop                     projection ─► batches in order
//!        │
//!  wal   plain appends after the end: acknowledged after one log sync, read from
//!        memory, persisted by the background persister (one manifest per version)
//!  compact/compactor  one background thread merges small files (compact/policy)
//!  compact/vacuum     removes versions past retention and orphan files
//! ```
//!
//! Every write is one atomic commit: data files are written first and become visible only
//! when the manifest that lists them wins the put-if-absent race for the next version.
//! A crash at any point leaves the last committed manifest intact; files of failed writes
//! are removed when the write ends, or are orphans that [`Engine::vacuum`] removes.
//!
//! # Threads and memory
//! Writes and compactions (sorting, merging, encoding) run on a runtime of its own
//! ([`task`]), never on the one that serves connections; reads decode batch by batch
//! where they are consumed. Upload chunks being sorted hold
//! a share of one engine-wide memory budget ([`Options::stage_bytes`]); a writer waits
//! for its share, never grows the heap past it.
//!
//! # Layout
//! - [`backend`]: a data root (path or URL) as an `ObjectStore`, the durable local folder.
//! - [`catalog`]: collections, items, metadata, versions, snapshots.
//! - [`manifest`]: the version format, loading, commits.
//! - [`write`], [`read`]: the write and read paths; [`merge`] and [`parquet`] under them.
//! - [`compact`]: the compaction policy, the background compactor, vacuum.
//! - [`wal`]: the write-ahead log of appends.
//! - [`names`] (validated names, the object layout), [`key`] (ordering keys, ranges,
//!   periods), [`schema`] (evolution), [`gaps`] (missing intervals).

mod backend;
mod catalog;
mod compact;
mod error;
mod gaps;
mod key;
mod manifest;
mod merge;
mod names;
mod parquet;
mod read;
mod rules;
mod schema;
mod task;
pub(crate) use task::SpawnedTask;
mod wal;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use object_store::path::Path;
use object_store::ObjectStore;

pub use catalog::{merge_metadata, Change, ItemInfo, SnapshotInfo, VersionInfo};
pub use compact::{CompactReceipt, VacuumReceipt};
pub use error::{Error, Result};
pub use key::{key_scale, system_clock, Clock, KeyRange, Period, SystemClock};
pub use manifest::{
    FileEntry, Keep, Manifest, RowGroupTarget, SchemaEvolution, Settings, WriteRecord,
};
pub use names::{CollectionName, ItemName, SnapshotName};
pub use read::{
    many_schema, At, Fill, Grid, ReadOptions, ReadPlan, ReadSplit, ReadStream, RowFilter,
    ITEM_COLUMN, MAX_GRID_SLOTS,
};
pub use rules::{CheckCompiler, Preset, Validation};
pub use write::{
    BatchReceipt, ItemReceipt, WriteMode, WriteOptions, WriteReceipt, MAX_BATCH_ITEMS,
    MAX_WRITE_ID_BYTES,
};

use compact::Compactor;
use names::Layout;
use parquet::MetaCache;
use task::CpuRuntime;
use wal::Wal;
use write::{InFlight, MemoryBudget};

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
/// Default memory budget of upload chunks being sorted, all uploads together.
pub const DEFAULT_STAGE_BYTES: usize = 256 * 1024 * 1024;
/// Default time an upload waits for its share of the memory budget before it fails
/// with [`Error::Busy`].
pub const DEFAULT_STAGE_WAIT: Duration = Duration::from_secs(60);
/// Default memory of the write-ahead log's tails (acknowledged, not yet persisted).
pub const DEFAULT_WAL_BYTES: usize = 128 * 1024 * 1024;
/// Default age at which a tail of the write-ahead log is persisted as Parquet.
pub const DEFAULT_WAL_PERSIST_AFTER: Duration = Duration::from_secs(1);
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
    /// Memory budget of upload chunks being sorted, all uploads together (bytes). One
    /// upload's chunks are a quarter of it, so it sorts one chunk while the next arrives.
    pub stage_bytes: usize,
    /// How long an upload waits for its share of `stage_bytes`.
    pub stage_wait: Duration,
    /// Neighbouring small files of one size tier that trigger an inline compaction.
    pub compaction_fanin: usize,
    /// Merge small files automatically after each write.
    pub auto_compact: bool,
    /// Run that merge on the background compactor (the write is acknowledged without
    /// waiting for it); otherwise the write waits for it. The server runs it in the
    /// background.
    pub compact_in_background: bool,
    /// Worker threads of the CPU runtime (default: one per core).
    pub cpu_threads: usize,
    /// Acknowledge plain appends through a write-ahead log in the data folder
    /// (`<data>/_wal`; local folders only). Off by default in the library (several
    /// engines may then share a folder); the server turns it on.
    pub wal: bool,
    /// Memory of acknowledged appends not yet persisted, all items together (bytes); an
    /// append that does not fit takes the ordinary path.
    pub wal_bytes: usize,
    /// Age at which acknowledged appends are persisted as Parquet.
    pub wal_persist_after: Duration,
    /// Age at which acknowledged writes that merge into place (upserts, late rows) are
    /// persisted (default: at once, in the background).
    pub wal_merges_persist_after: Duration,
    /// Fault injection for tests: the log's sync of that group of writes (1-based)
    /// fails as a failing disk's would.
    #[doc(hidden)]
    pub wal_fail_sync: Option<u64>,
    /// Compiles the SQL of validation checks; without it, a write with checks fails.
    /// The server gives DataFusion's.
    pub checks: Option<Arc<dyn CheckCompiler>>,
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
            stage_wait: DEFAULT_STAGE_WAIT,
            compaction_fanin: DEFAULT_COMPACTION_FANIN,
            auto_compact: true,
            compact_in_background: false,
            cpu_threads: task::cpu_threads(),
            wal: false,
            wal_bytes: DEFAULT_WAL_BYTES,
            wal_persist_after: DEFAULT_WAL_PERSIST_AFTER,
            wal_merges_persist_after: Duration::ZERO,
            wal_fail_sync: None,
            checks: None,
        }
    }
}

type ItemKey = (CollectionName, ItemName);

/// The storage engine. Cheap to clone; clones share caches, locks and runtimes.
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
    /// Files of writes not committed yet (vacuum leaves them alone).
    in_flight: InFlight,
    /// Footers of recently read data files.
    meta_cache: MetaCache,
    /// Where CPU-bound work runs.
    cpu: CpuRuntime,
    /// Memory of upload chunks being sorted, all uploads together.
    budget: MemoryBudget,
    /// Writes merging at once (one per CPU thread).
    merge_slots: tokio::sync::Semaphore,
    /// The background compactor, when compaction runs in the background.
    compactor: Option<Compactor>,
    /// The write-ahead log (local folders with [`Options::wal`]).
    wal: Option<Wal>,
    /// The data folder, when the store is one (vacuum sweeps its staging files).
    local_root: Option<std::path::PathBuf>,
}

impl Engine {
    /// Open the store at `location`: `memory://`, `file:///abs/path`, or a plain path
    /// (created if missing).
    ///
    /// With [`Options::wal`] on a local folder, acknowledged appends the log holds are
    /// replayed, and the folder is locked against other processes.
    pub fn open(location: &str, options: Options) -> Result<Self> {
        let store = backend::open(location)?;
        let layout = Layout::new(Path::default());
        let local = backend::local_folder(location);
        let wal = match &local {
            Some(root) if options.wal => Some(Wal::recover(root, &layout, &options)?),
            _ => None,
        };
        let engine = Self::build(store, layout, options, system_clock(), (wal, local))?;
        engine.start_persister();
        Ok(engine)
    }

    /// An engine over an existing object store, rooted at `root`.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        root: Path,
        options: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        Self::build(store, Layout::new(root), options, clock, (None, None))
    }

    fn build(
        store: Arc<dyn ObjectStore>,
        layout: Layout,
        options: Options,
        clock: Arc<dyn Clock>,
        (wal, local_root): (Option<Wal>, Option<std::path::PathBuf>),
    ) -> Result<Self> {
        let background = options.auto_compact && options.compact_in_background;
        let cpu = CpuRuntime::try_new(options.cpu_threads)?;
        let budget = MemoryBudget::new(options.stage_bytes, options.stage_wait);
        let inner = Arc::new_cyclic(|weak| Inner {
            store,
            layout,
            clock,
            cache: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            in_flight: InFlight::default(),
            meta_cache: MetaCache::default(),
            merge_slots: tokio::sync::Semaphore::new(options.cpu_threads.max(1)),
            cpu,
            budget,
            compactor: background.then(|| Compactor::new(Weak::clone(weak))),
            wal,
            local_root,
            options,
        });
        Ok(Self { inner })
    }

    /// The engine's options.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Stop background work: persist the write-ahead log's tails and close it; the
    /// compactor finishes the item it is merging. The server calls this once it has
    /// stopped serving.
    pub async fn shutdown(&self) {
        self.close_wal().await;
        if let Some(compactor) = &self.inner.compactor {
            compactor.shutdown().await;
        }
    }

    /// Most bytes upload chunks being sorted held at once, all uploads together (never
    /// more than [`Options::stage_bytes`]).
    pub fn stage_high_water_bytes(&self) -> usize {
        self.inner.budget.high_water_bytes()
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

    /// Run an operation on an item on the CPU runtime: `op` gets its own engine and
    /// names, since the task may outlive the caller's borrows (it is aborted with the
    /// caller all the same).
    async fn on_cpu<T, F, Fut>(
        &self,
        what: &'static str,
        c: &CollectionName,
        i: &ItemName,
        op: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Engine, CollectionName, ItemName) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let task = op(self.clone(), c.clone(), i.clone());
        self.inner.cpu.run(what, task).await
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }
}
