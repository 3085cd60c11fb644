//! A local-folder object store whose puts are durable when they return.
//!
//! `object_store`'s `LocalFileSystem` writes a staged file and renames (or links) it into
//! place, but never calls `fsync`: after a power loss a committed manifest could be
//! missing or empty. This wrapper writes puts itself — staged file, `fsync`, atomic
//! rename (or hard link, which refuses to replace, for `PutMode::Create`), `fsync` of the
//! folder — and delegates everything else to `LocalFileSystem`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// `LocalFileSystem` with durable puts.
#[derive(Debug)]
pub(crate) struct DurableLocal {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl DurableLocal {
    /// A store rooted at the existing folder `root`.
    pub(crate) fn new(root: &FsPath) -> Result<Self> {
        Ok(Self {
            inner: LocalFileSystem::new_with_prefix(root)?,
            root: root.canonicalize().map_err(|e| io_error(root, e))?,
        })
    }
}

impl std::fmt::Display for DurableLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DurableLocal({})", self.inner)
    }
}

fn io_error(path: &FsPath, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "DurableLocal",
        source: format!("{}: {e}", path.display()).into(),
    }
}

/// Fsync a folder, so that the names created in it survive a power loss.
fn sync_dir(dir: &FsPath) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Whether the caller of a put went away. Checked under its lock right before the
/// rename (or link), the commit point of a put, and set under it when the put's future
/// is dropped: a put abandoned before it landed never lands later, and one that landed
/// has landed before the drop returns (so whoever cleans up after the caller sees it).
#[derive(Debug, Default)]
struct Abandoned(Mutex<bool>);

/// Marks its put abandoned when dropped (on completion too, when it no longer matters).
#[derive(Debug)]
struct AbandonOnDrop(Arc<Abandoned>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

/// Write `payload` at `dest` (under `root`) durably; with `create`, fail if `dest` exists.
fn write_durably(
    root: &FsPath,
    dest: &FsPath,
    payload: &PutPayload,
    create: bool,
    abandoned: &Abandoned,
) -> Result<()> {
    let dir = dest.parent().expect("object paths have a parent folder");
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        // The names of the new folders must be durable too: sync each up to the root.
        for d in dir.ancestors().skip(1) {
            sync_dir(d)?;
            if d == root {
                break;
            }
        }
    }
    // `name#digits` is the staging name `LocalFileSystem` hides from listings.
    let staged = PathBuf::from(format!("{}#{}", dest.display(), rand_digits()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .map_err(|e| io_error(&staged, e))?;
        for chunk in payload.iter() {
            f.write_all(chunk).map_err(|e| io_error(&staged, e))?;
        }
        f.sync_all().map_err(|e| io_error(&staged, e))?;
        drop(f);
        let abandoned = abandoned.0.lock().unwrap_or_else(|p| p.into_inner());
        if *abandoned {
            return Err(object_store::Error::Generic {
                store: "DurableLocal",
                source: format!("put of {} abandoned by its caller", dest.display()).into(),
            });
        }
        if create {
            match std::fs::hard_link(&staged, dest) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(object_store::Error::AlreadyExists {
                        path: dest.display().to_string(),
                        source: Box::new(e),
                    })
                }
                Err(e) => return Err(io_error(dest, e)),
            }
            std::fs::remove_file(&staged).map_err(|e| io_error(&staged, e))
        } else {
            std::fs::rename(&staged, dest).map_err(|e| io_error(dest, e))
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result?;
    sync_dir(dir)
}

/// Remove the staging files (`name#digits`, hidden from listings) in `dir` whose name
/// `keep` does not claim and that are older than `grace`: what a process killed during
/// a put leaves. Returns the files and bytes removed; what cannot be removed is logged.
pub(crate) fn sweep_staging(
    dir: &FsPath,
    grace: std::time::Duration,
    keep: impl Fn(&str) -> bool,
) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((dest, _)) = name.to_str().and_then(|n| n.split_once('#')) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if !old || keep(dest) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                files += 1;
                bytes += meta.len();
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), cause = %e, "cannot remove a staging file")
            }
        }
    }
    (files, bytes)
}

fn rand_digits() -> u128 {
    u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes())
}

#[async_trait]
impl ObjectStore for DurableLocal {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => return self.inner.put_opts(location, payload, opts).await,
        };
        let dest = self.inner.path_to_filesystem(location)?;
        let root = self.root.clone();
        let abandoned = Arc::new(Abandoned::default());
        let _on_drop = AbandonOnDrop(Arc::clone(&abandoned));
        tokio::task::spawn_blocking(move || {
            write_durably(&root, &dest, &payload, create, &abandoned)
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocal",
            source: Box::new(e),
        })??;
        Ok(PutResult {
            e_tag: None,
            version: None,
        })
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

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn puts_are_atomic_create_refuses_to_replace_and_staging_stays_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableLocal::new(dir.path()).unwrap();
        let p = Path::from("a/b/c.json");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&p, "one".into(), create.clone())
            .await
            .unwrap();
        let again = store.put_opts(&p, "two".into(), create).await.unwrap_err();
        assert!(
            matches!(again, object_store::Error::AlreadyExists { .. }),
            "{again}"
        );
        assert_eq!(store.get(&p).await.unwrap().bytes().await.unwrap(), "one");
        store.put(&p, "three".into()).await.unwrap();
        assert_eq!(store.get(&p).await.unwrap().bytes().await.unwrap(), "three");
        let listed: Vec<_> = store
            .list(None)
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed, vec![p]);
        let on_disk = std::fs::read_dir(dir.path().join("a/b")).unwrap().count();
        assert_eq!(on_disk, 1, "no staged file is left behind");
    }
}
