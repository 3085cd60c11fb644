//! Tasks the engine spawns, and the runtime its CPU work runs on.
//!
//! A task you spawn is a task you own ([`SpawnedTask`]): dropping its handle aborts it,
//! and joining it turns a panic into an error. A dropped `JoinHandle` would turn a panic
//! while decoding one file into a silently shorter read; here it is
//! [`Error::TaskFailed`], which the Flight layer reports as `INTERNAL`.
//!
//! Writes (staging sorts, k-way merges, de-duplication, encoding) and compactions run on
//! [`CpuRuntime`], a tokio runtime of its own (InfluxDB's `DedicatedExecutor` pattern):
//! the runtime that serves connections is never held by a long unit of CPU work, so one
//! large upsert does not stall other clients' I/O. Blocking calls (file system, the sync
//! Parquet writer, chunk sorts) still go to `spawn_blocking` inside it. Reads decode on
//! the reader's runtime (see `read::scan`): pull-driven, one batch at a time.

use std::future::Future;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;
use tracing::debug;

use super::error::{Error, Result};

/// A spawned task that is aborted when this handle is dropped (DataFusion's
/// `SpawnedTask`).
#[derive(Debug)]
pub(crate) struct SpawnedTask<T> {
    what: &'static str,
    handle: JoinHandle<T>,
}

impl<T: Send + 'static> SpawnedTask<T> {
    /// Run `future` on the runtime `on`.
    pub(crate) fn spawn_on<F>(what: &'static str, on: &Handle, future: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        // The one place that spawns async tasks: the handle is owned by `Self`.
        #[allow(clippy::disallowed_methods)]
        let handle = on.spawn(future);
        Self { what, handle }
    }

    /// Run `future` on the current runtime.
    pub(crate) fn spawn<F>(what: &'static str, future: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        Self::spawn_on(what, &Handle::current(), future)
    }

    /// Run the blocking `work` on the current runtime's blocking pool.
    pub(crate) fn spawn_blocking<F>(what: &'static str, work: F) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        Self {
            what,
            handle: tokio::task::spawn_blocking(work),
        }
    }

    /// Wait for the task. A panic in it (or its cancellation by a runtime shutting
    /// down) is an error (the panic itself is on stderr; the Flight layer logs the error
    /// once, at `warn`).
    pub(crate) async fn join(mut self) -> Result<T> {
        let joined = (&mut self.handle).await;
        joined.map_err(|e| {
            let message = if e.is_panic() {
                let panic = e.into_panic();
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into())
            } else {
                "cancelled".into()
            };
            debug!(task = self.what, %message, "engine task failed");
            Error::TaskFailed {
                task: self.what,
                message,
            }
        })
    }
}

impl<T> Drop for SpawnedTask<T> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The runtime CPU-bound engine work runs on; shut down (without waiting) when dropped.
#[derive(Debug)]
pub(crate) struct CpuRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl CpuRuntime {
    /// A runtime of `threads` workers named `flightstore-cpu`.
    pub(crate) fn try_new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("flightstore-cpu")
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                what: "cannot start the CPU runtime",
                source: e,
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Start `future` on this runtime; it runs until done or until the handle is dropped.
    pub(crate) fn spawn<T, F>(&self, what: &'static str, future: F) -> SpawnedTask<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        SpawnedTask::spawn_on(what, &self.handle, future)
    }

    /// Run `future` on this runtime and wait for it (aborted if the caller is dropped).
    pub(crate) async fn run<T, F>(&self, what: &'static str, future: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        SpawnedTask::spawn_on(what, &self.handle, future)
            .join()
            .await?
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        // May run inside another runtime (or this one): never block here.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Threads for CPU work: one per core.
pub(crate) fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_an_error_and_a_dropped_one_is_aborted() {
        let cpu = CpuRuntime::try_new(1).unwrap();
        let err = cpu
            .run("test", async { panic!("boom") as Result<()> })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::TaskFailed { message, .. } if message == "boom"),
            "{err}"
        );

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = SpawnedTask::spawn_on("test", &cpu.handle, async move {
            let _tx = tx; // dropped when the task is aborted
            std::future::pending::<()>().await
        });
        drop(task);
        assert!(rx.await.is_err(), "the task still holds its sender");
    }
}
