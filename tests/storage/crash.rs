//! Crash safety: a store that fails every I/O call from the n-th on (a crash at that
//! instant), for every n a write goes through. After each, the last committed version is
//! intact, the next write succeeds, and vacuum removes the orphans.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use flightstore::storage::{system_clock, Engine, WriteMode, WriteOptions};
use futures::stream::{BoxStream, StreamExt};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::common::*;

/// Fails every call once `calls >= fail_from`.
#[derive(Debug)]
struct CrashingStore {
    inner: Arc<dyn ObjectStore>,
    calls: AtomicUsize,
    fail_from: AtomicUsize,
}

impl fmt::Display for CrashingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrashingStore({})", self.inner)
    }
}

impl CrashingStore {
    fn step(&self) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_from.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "crashing",
                source: format!("injected failure at I/O call {n}").into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for CrashingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.step()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.step()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.step()?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.step()?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if let Err(e) = self.step() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        if let Err(e) = self.step() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.step()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.step()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// An engine with the small test options over `store`.
fn engine_on(store: Arc<dyn ObjectStore>) -> Engine {
    Engine::with_store(store, Path::default(), small_options(), system_clock()).unwrap()
}

async fn data_files(store: &Arc<dyn ObjectStore>) -> HashSet<String> {
    store
        .list(Some(&Path::from("c/item/_data")))
        .map_ok(|m| m.location.filename().unwrap().to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_crash_at_any_io_step_leaves_the_last_version_intact() {
    let (c, i) = names("c", "item");
    let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clean = engine_on(Arc::clone(&base));
    // Stored data spread over several files, so an upsert in the middle rewrites some.
    let mut expected: Vec<Row> = (0..60).map(|n| (n * 10, 0, n)).collect();
    write_rows(&clean, &c, &i, WriteOptions::default(), &expected, 15)
        .await
        .unwrap();
    let mut next_v = 1000;

    let mut n = 0;
    let mut completed_without_failure = false;
    while !completed_without_failure {
        let crashing = Arc::new(CrashingStore {
            inner: Arc::clone(&base),
            calls: AtomicUsize::new(0),
            fail_from: AtomicUsize::new(n),
        });
        let engine = engine_on(Arc::clone(&crashing) as Arc<dyn ObjectStore>);
        let before = clean.latest(&c, &i).await.unwrap().unwrap().version;
        // An upsert replacing rows in the middle plus an append after the end.
        let new: Vec<Row> = vec![
            (200, 0, next_v),
            (205, 1, next_v + 1),
            (10_000 + n as i64, 0, next_v + 2),
        ];
        next_v += 3;
        let opts = WriteOptions {
            mode: WriteMode::Upsert,
            dedup_on: Some(vec!["ts".into(), "k".into()]),
            ..Default::default()
        };
        let result = write_rows(&engine, &c, &i, opts, &new, 2).await;
        let after = clean.latest(&c, &i).await.unwrap().unwrap().version;
        let committed = after > before;
        if committed {
            // The commit happened (the failure hit the best-effort work after it).
            let mut model = expected.clone();
            model.retain(|r| !new.iter().any(|x| x.0 == r.0 && x.1 == r.1));
            model.extend(new.iter().copied());
            model.sort_by_key(|r| r.0);
            expected = model;
        } else {
            assert!(
                result.is_err(),
                "call {n}: nothing committed but the write said ok"
            );
        }
        completed_without_failure = crashing.calls.load(Ordering::SeqCst) <= n;
        let rows = read_rows(&clean, &c, &i, all_rows()).await.unwrap();
        assert_eq!(rows, expected, "after a crash at I/O call {n}");
        n += 1;
    }
    assert!(n > 10, "the write went through only {n} I/O calls");

    // The next write succeeds.
    let tail: Vec<Row> = vec![(50_000, 0, 1), (50_001, 0, 2)];
    write_rows(&clean, &c, &i, WriteOptions::default(), &tail, 10)
        .await
        .unwrap();
    expected.extend(tail);
    assert_eq!(
        read_rows(&clean, &c, &i, all_rows()).await.unwrap(),
        expected
    );

    // Vacuum (no retention, no grace) leaves exactly the latest version's files.
    let orphans_before = data_files(&base).await.len();
    let receipt = clean.vacuum(Some(&c), Some(&i)).await.unwrap();
    let referenced: HashSet<String> = clean
        .latest(&c, &i)
        .await
        .unwrap()
        .unwrap()
        .files
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(data_files(&base).await, referenced);
    assert!(receipt.files_removed as usize >= orphans_before - referenced.len());
    assert_eq!(
        read_rows(&clean, &c, &i, all_rows()).await.unwrap(),
        expected
    );
}

/// Performs the next manifest put, then reports it as failed (a lost acknowledgement:
/// the folder sync failed, the connection dropped after the write...).
#[derive(Debug)]
struct LostAckStore {
    inner: Arc<dyn ObjectStore>,
    armed: std::sync::atomic::AtomicBool,
}

impl fmt::Display for LostAckStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LostAckStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LostAckStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let manifest = location.as_ref().contains("_manifest");
        let result = self.inner.put_opts(location, payload, opts).await?;
        if manifest && self.armed.swap(false, Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "lost-ack",
                source: "the put landed but its acknowledgement was lost".into(),
            });
        }
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_commit_whose_acknowledgement_is_lost_keeps_its_files() {
    let (c, i) = names("c", "item");
    let store = Arc::new(LostAckStore {
        inner: Arc::new(InMemory::new()),
        armed: false.into(),
    });
    let engine = engine_on(Arc::clone(&store) as Arc<dyn ObjectStore>);
    let first: Vec<Row> = (0..30).map(|n| (n * 10, 0, n)).collect();
    write_rows(&engine, &c, &i, WriteOptions::default(), &first, 10)
        .await
        .unwrap();
    // An upsert rewrites files; its commit lands but is reported as failed.
    store.armed.store(true, Ordering::SeqCst);
    let update: Vec<Row> = (10..20).map(|n| (n * 10, 0, 100 + n)).collect();
    let upsert = WriteOptions {
        mode: WriteMode::Upsert,
        dedup_on: Some(vec!["k".into()]),
        ..Default::default()
    };
    assert!(write_rows(&engine, &c, &i, upsert, &update, 10)
        .await
        .is_err());
    // The landed version is whole: none of its files was cleaned up as garbage.
    let mut expected = first;
    expected.splice(10..20, update);
    assert_eq!(engine.latest(&c, &i).await.unwrap().unwrap().version, 2);
    assert_eq!(
        read_rows(&engine, &c, &i, all_rows()).await.unwrap(),
        expected
    );
}
