//! Snapshots: a named, collection-wide set of item versions, kept until deleted.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;
use tracing::info;

use crate::storage::error::{Error, Result};
use crate::storage::manifest::{get_json, put_json_if_absent, Snapshot};
use crate::storage::names::{CollectionName, SnapshotName};
use crate::storage::Engine;

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

impl Engine {
    pub(crate) async fn load_snapshot(
        &self,
        c: &CollectionName,
        s: &SnapshotName,
    ) -> Result<Snapshot> {
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

    pub(crate) async fn snapshots(&self, c: &CollectionName) -> Result<Vec<Snapshot>> {
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
}
