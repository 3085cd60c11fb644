//! Items: their summary, versions, metadata, deletion, and the changes since a time.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::info;

use crate::storage::error::{Error, Result};
use crate::storage::manifest::{self, Manifest, Settings, MANIFEST_FORMAT};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::read::At;
use crate::storage::Engine;

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

impl Engine {
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

    /// Delete an item: a tombstone version. Its history stays readable at older
    /// versions and snapshots until vacuumed.
    pub async fn delete_item(&self, c: &CollectionName, i: &ItemName) -> Result<u64> {
        let mut retry = self.commit_retry(c, i).await?;
        loop {
            let latest = retry.latest().await?;
            let current = self.live_or_not_found(c, i, latest).await?;
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
                // A retry of a write the item held before its deletion is still a retry.
                write_ids: current.write_ids.clone(),
                deltas: Vec::new(),
            };
            if let Some(m) = retry.commit(Some(&current), tombstone, &[]).await? {
                info!(collection = %c, item = %i, version = m.version, "item deleted");
                return Ok(m.version);
            }
        }
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
        let mut retry = self.commit_retry(c, i).await?;
        loop {
            let latest = retry.latest().await?;
            let current = self.live_or_not_found(c, i, latest).await?;
            let mut next = (*current).clone();
            next.operation = "metadata".into();
            merge_metadata(&mut next.metadata, patch);
            if let Some(m) = retry.commit(Some(&current), next, &[]).await? {
                return Ok(m.metadata.clone());
            }
        }
    }

    /// Versions of an item still stored, oldest first.
    pub async fn list_versions(
        &self,
        c: &CollectionName,
        i: &ItemName,
    ) -> Result<Vec<VersionInfo>> {
        // Versions still in the log's tail are stored first, so that all are listed.
        self.persist_tail(c, i).await?;
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

    /// The live manifest among `latest`, or the right not-found error.
    pub(crate) async fn live_or_not_found(
        &self,
        c: &CollectionName,
        i: &ItemName,
        latest: Option<Arc<Manifest>>,
    ) -> Result<Arc<Manifest>> {
        match latest.filter(|m| !m.deleted) {
            Some(m) => Ok(m),
            None => {
                self.check_collection(c).await?;
                Err(Error::ItemNotFound {
                    collection: c.to_string(),
                    item: i.to_string(),
                })
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
