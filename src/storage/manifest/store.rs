//! Loading manifests: JSON objects in the store, the latest version of an item (cached
//! and validated), and the version a read at a version or snapshot sees.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;

use super::{Manifest, MANIFEST_FORMAT};
use crate::storage::error::{Error, Result};
use crate::storage::names::{parse_manifest_name, CollectionName, ItemName};
use crate::storage::read::At;
use crate::storage::Engine;

/// Read and parse a JSON object.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<T> {
    let bytes = store.get(path).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path, e))
}

/// Write a JSON object if nothing exists at `path`; `Ok(false)` if something does.
pub(crate) async fn put_json_if_absent<T: Serialize + Sync>(
    store: &dyn ObjectStore,
    path: &Path,
    value: &T,
) -> Result<bool> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::corrupt(path, e))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(path, PutPayload::from(Bytes::from(bytes)), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Load a manifest, checking its format.
pub(crate) async fn load(store: &dyn ObjectStore, path: &Path) -> Result<Manifest> {
    let m: Manifest = get_json(store, path).await?;
    if m.format > MANIFEST_FORMAT {
        return Err(Error::corrupt(
            path,
            format!(
                "manifest format {} is newer than this server understands ({MANIFEST_FORMAT})",
                m.format
            ),
        ));
    }
    Ok(m)
}

impl Engine {
    /// The latest manifest of an item as readers see it (with the acknowledged appends
    /// of the write-ahead log on top), tombstones included; `None` if it never existed.
    pub async fn latest(&self, c: &CollectionName, i: &ItemName) -> Result<Option<Arc<Manifest>>> {
        self.with_tail(c, i, None).await
    }

    /// The latest manifest stored, tombstones included; `None` if it never existed.
    ///
    /// A cached manifest `v` is current iff `v + 1` does not exist and `v` still does
    /// (vacuum never removes the latest version), so two cheap lookups validate the cache.
    pub(crate) async fn persisted_latest(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<Arc<Manifest>>> {
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
                match load(self.store().as_ref(), &path).await {
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

    pub(crate) async fn list_versions_raw(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Vec<u64>> {
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
        let m = load(self.store().as_ref(), &self.layout().manifest(c, i, v)).await?;
        Ok(Some(Arc::new(m)))
    }

    /// The latest manifest if the item is live.
    pub(crate) async fn live(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Option<Arc<Manifest>>> {
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
            At::Latest => return self.live_or_not_found(c, i, self.latest(c, i).await?).await,
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
        if self.tail_holds(c, i, version) {
            if let Some(m) = self.with_tail(c, i, Some(version)).await? {
                // (Persisted meanwhile if it holds no rows in memory: load it below.)
                let in_memory = !m.deltas.is_empty() || m.files.iter().any(|f| f.memory.is_some());
                if m.version == version && in_memory {
                    return Ok(m); // a version still in the log's tail
                }
            }
        }
        let path = self.layout().manifest(c, i, version);
        match load(self.store().as_ref(), &path).await {
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
}
