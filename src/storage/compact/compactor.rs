//! The background compactor: one long-lived thread that merges the small files of items
//! after writes, so a write is acknowledged without waiting for it.
//!
//! ```text
//! write committed ─► policy finds work? ─► enqueue (once per item) ─► compactor thread
//!                                                                    (nice 10, own runtime)
//! ```
//!
//! The thread runs at a lower CPU priority with a runtime of its own: merges use what
//! CPU requests leave (on 2 cores a merge otherwise slows every append while it runs).
//! An item is queued at most once; a write during its merge queues it again. The thread
//! holds the engine only while it merges, so dropping the last engine stops it; the
//! server stops it explicitly on shutdown ([`Compactor::shutdown`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::storage::names::{CollectionName, ItemName};
use crate::storage::{Engine, Inner, ItemKey};

/// Handle of the compactor thread, owned by the engine.
#[derive(Debug)]
pub(crate) struct Compactor {
    /// Items to merge; `None` once shut down.
    queue: Mutex<Option<mpsc::UnboundedSender<ItemKey>>>,
    /// Items queued and not yet taken: each is queued at most once.
    queued: Arc<Mutex<HashSet<ItemKey>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Compactor {
    /// Start the thread. It reaches the engine through `engine` (weak: the engine owns
    /// the compactor).
    pub(crate) fn new(engine: Weak<Inner>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(Mutex::new(HashSet::new()));
        let thread = std::thread::Builder::new()
            .name("flightstore-compact".into())
            .spawn({
                let queued = Arc::clone(&queued);
                move || run(engine, rx, queued)
            })
            .map_err(|e| warn!(cause = %e, "no thread for background compaction"))
            .ok();
        Self {
            queue: Mutex::new(thread.is_some().then_some(tx)),
            queued,
            thread: Mutex::new(thread),
        }
    }

    /// Ask for a merge of the item's small files (no-op if it is queued already).
    pub(crate) fn enqueue(&self, c: &CollectionName, i: &ItemName) {
        let key = (c.clone(), i.clone());
        if !self
            .queued
            .lock()
            .expect("queue poisoned")
            .insert(key.clone())
        {
            return;
        }
        let sent = match &*self.queue.lock().expect("queue poisoned") {
            Some(tx) => tx.send(key.clone()).is_ok(),
            None => false,
        };
        if !sent {
            self.queued.lock().expect("queue poisoned").remove(&key);
        }
    }

    /// Stop taking work, let the merge in progress finish, and wait for the thread.
    pub(crate) async fn shutdown(&self) {
        self.queue.lock().expect("queue poisoned").take();
        let thread = self.thread.lock().expect("thread poisoned").take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                warn!("the compactor thread ended abnormally");
            }
        }
    }
}

/// The compactor thread: merge queued items until the queue closes.
fn run(
    engine: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<ItemKey>,
    queued: Arc<Mutex<HashSet<ItemKey>>>,
) {
    lower_thread_priority();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return warn!(cause = %e, "no runtime for background compaction"),
    };
    runtime.block_on(async move {
        while let Some(key) = rx.recv().await {
            // Taken: a write from now on queues the item again.
            queued.lock().expect("queue poisoned").remove(&key);
            let Some(inner) = engine.upgrade() else {
                break;
            };
            let engine = Engine { inner };
            engine.auto_compact(&key.0, &key.1).await;
        }
        debug!("compactor stopped");
    });
}

/// Lower the CPU priority of the calling thread (and of the threads it starts) to nice
/// 10, so that background work yields to requests. Linux keeps a nice value per thread.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0) only changes its scheduling.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}
