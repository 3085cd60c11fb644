//! Files of writes that have not committed yet: vacuum never deletes them, and a write
//! that ends without committing removes them at once (settle, or the guard's drop).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::ObjectStoreExt;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tracing::warn;

use crate::storage::error::Error;
use crate::storage::manifest::Manifest;
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::Engine;

/// Every path registered by a live [`InFlightGuard`] of this engine.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    paths: Mutex<HashSet<Path>>,
}

impl InFlight {
    pub(crate) fn contains(&self, p: &Path) -> bool {
        self.paths
            .lock()
            .expect("in-flight set poisoned")
            .contains(p)
    }
}

/// The files one write (or compaction) of an item has put down so far.
///
/// They stay registered as in flight until the guard is dropped. The owner settles them
/// with [`Engine::settle`] once it knows what the item's latest version lists; a guard
/// dropped unsettled (its task was aborted: the client went away) removes them in a
/// task of its own, except those the latest version lists (a commit whose
/// acknowledgement was lost keeps its data).
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    engine: Engine,
    collection: CollectionName,
    item: ItemName,
    mine: Vec<Path>,
    /// Held (read) by every task writing one of `mine`: a cleanup waits (write) until
    /// none is left, so that no file lands after it.
    writers: Arc<RwLock<()>>,
}

impl InFlightGuard {
    pub(crate) fn new(engine: &Engine, c: &CollectionName, i: &ItemName) -> Self {
        Self {
            engine: engine.clone(),
            collection: c.clone(),
            item: i.clone(),
            mine: Vec::new(),
            writers: Arc::default(),
        }
    }

    /// A token for a task that writes one of this guard's files: hold it until the
    /// write ends (or is dropped).
    pub(crate) fn writer(&self) -> OwnedRwLockReadGuard<()> {
        Arc::clone(&self.writers)
            .try_read_owned()
            .expect("only a dropped guard's cleanup takes the write lock")
    }

    /// The item the files belong to.
    pub(crate) fn item(&self) -> (&CollectionName, &ItemName) {
        (&self.collection, &self.item)
    }

    /// The files registered by this guard.
    pub(crate) fn paths(&self) -> &[Path] {
        &self.mine
    }

    /// Take over the files of another guard (of the same write).
    pub(crate) fn absorb(&mut self, mut other: InFlightGuard) {
        self.mine.append(&mut other.mine);
    }

    /// Register a file about to be written.
    pub(crate) fn add(&mut self, p: Path) {
        self.engine
            .inner
            .in_flight
            .paths
            .lock()
            .expect("in-flight set poisoned")
            .insert(p.clone());
        self.mine.push(p);
    }

    /// Wait until no task writes one of these files any more (aborted writes included).
    pub(crate) async fn writes_ended(&self) {
        drop(self.writers.write().await);
    }

    /// Unregister every file: the caller has dealt with them.
    pub(crate) fn release(&mut self) {
        let mut set = self
            .engine
            .inner
            .in_flight
            .paths
            .lock()
            .expect("in-flight set poisoned");
        for p in self.mine.drain(..) {
            set.remove(&p);
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.mine.is_empty() {
            return;
        }
        let paths = self.mine.clone();
        self.release();
        // Dropped unsettled: the write was aborted. Clean up now rather than after
        // vacuum's grace period; with no runtime left, vacuum will.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (engine, c, i) = (
                self.engine.clone(),
                self.collection.clone(),
                self.item.clone(),
            );
            let writers = Arc::clone(&self.writers);
            // Fire and forget: nothing waits for a cleanup, and it must outlive the
            // aborted task that dropped this guard.
            #[allow(clippy::disallowed_methods)]
            drop(rt.spawn(async move {
                // Writes of these files still running (aborted tasks end at their next
                // poll) finish or give up first.
                let _no_writers = writers.write_owned().await;
                engine.delete_failed(&c, &i, &paths).await
            }));
        }
    }
}

impl Engine {
    /// Settle the files an operation put down: those `committed` lists stay, the rest
    /// are deleted. With `None` (the operation failed), those the item's latest version
    /// lists stay: a commit whose put reported an error may still have landed.
    pub(crate) async fn settle(&self, mut guard: InFlightGuard, committed: Option<&Manifest>) {
        // A failed merge drops its sink with an upload in flight: let it land (or not)
        // before deciding what is garbage.
        guard.writes_ended().await;
        match committed {
            Some(m) => self.delete_unlisted(guard.paths(), Some(m)).await,
            None => {
                let (c, i) = guard.item();
                self.delete_failed(c, i, guard.paths()).await;
            }
        }
        guard.release();
    }

    /// Log a failure of best-effort cleanup (the files are orphans vacuum will find).
    pub(crate) fn cleanup_failed(err: &Error) {
        warn!(cause = %err, "cleanup of unreferenced files failed; vacuum will remove them");
    }

    /// Delete files by name from an item's data folder, best effort.
    pub(crate) async fn delete_files(&self, c: &CollectionName, i: &ItemName, names: &[String]) {
        let paths: Vec<Path> = names
            .iter()
            .map(|n| self.layout().data_file(c, i, n))
            .collect();
        self.delete_paths(&paths).await;
    }

    /// Delete the files of an operation that failed, except those the item's latest
    /// version lists: a commit whose put reported an error may still have landed (say,
    /// the folder sync failed after the link). If the latest version cannot be read,
    /// nothing is deleted; vacuum removes orphans later.
    pub(crate) async fn delete_failed(&self, c: &CollectionName, i: &ItemName, paths: &[Path]) {
        match self.latest(c, i).await {
            Ok(latest) => self.delete_unlisted(paths, latest.as_deref()).await,
            Err(e) => Self::cleanup_failed(&e),
        }
    }

    /// Delete those of `paths` that `manifest` does not list (all of them without one).
    async fn delete_unlisted(&self, paths: &[Path], manifest: Option<&Manifest>) {
        let listed: HashSet<&str> = manifest
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

    pub(crate) async fn delete_paths(&self, paths: &[Path]) {
        for path in paths {
            match self.store().delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => Self::cleanup_failed(&e.into()),
            }
        }
    }
}
