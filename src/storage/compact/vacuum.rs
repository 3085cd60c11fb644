//! Vacuum: removes versions past the retention that no snapshot holds, and data files
//! no remaining version lists (orphans of failed writes, after a grace period).

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;
use tracing::info;

use crate::storage::backend::sweep_staging;
use crate::storage::error::{Error, Result};
use crate::storage::manifest;
use crate::storage::names::{CollectionName, ItemName, DATA_DIR};
use crate::storage::{Engine, SpawnedTask};

/// What a vacuum removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VacuumReceipt {
    /// Objects deleted (data files and manifests).
    pub files_removed: u64,
    /// Bytes deleted.
    pub bytes_removed: u64,
}

impl Engine {
    /// Remove versions older than the retention that no snapshot holds (never an item's
    /// latest version), and data files that no remaining version references and that are
    /// older than the orphan grace period (files of failed writes).
    pub async fn vacuum(
        &self,
        collection: Option<&CollectionName>,
        item: Option<&ItemName>,
    ) -> Result<VacuumReceipt> {
        let collections = match collection {
            Some(c) => {
                self.check_collection(c).await?;
                vec![c.clone()]
            }
            None if item.is_some() => {
                return Err(Error::invalid("vacuum of an item needs its collection"))
            }
            None => self
                .list_collections()
                .await?
                .into_iter()
                .filter_map(|c| CollectionName::new(c).ok())
                .collect(),
        };
        let mut receipt = VacuumReceipt::default();
        for c in &collections {
            let held: Vec<(String, u64)> = self
                .snapshots(c)
                .await?
                .into_iter()
                .flat_map(|s| s.items.into_iter())
                .collect();
            let items = match item {
                Some(i) => vec![i.clone()],
                None => self.item_names(c).await?,
            };
            for i in &items {
                let held: HashSet<u64> = held
                    .iter()
                    .filter(|(name, _)| name == i.as_str())
                    .map(|(_, v)| *v)
                    .collect();
                self.vacuum_item(c, i, &held, &mut receipt).await?;
            }
        }
        info!(
            files_removed = receipt.files_removed,
            bytes_removed = receipt.bytes_removed,
            "vacuum done"
        );
        Ok(receipt)
    }

    async fn vacuum_item(
        &self,
        c: &CollectionName,
        i: &ItemName,
        held: &HashSet<u64>,
        receipt: &mut VacuumReceipt,
    ) -> Result<()> {
        // Hold the item lock so this engine's writers are not racing the file listing.
        let _held = self.commit_retry(c, i).await?;
        let versions = self.list_versions_raw(c, i).await?;
        let Some(&latest) = versions.last() else {
            return Ok(());
        };
        let now = self.now();
        let retention = self.inner.options.vacuum_retention.as_nanos() as i64;
        let mut live_files: HashSet<String> = HashSet::new();
        for &v in &versions {
            let path = self.layout().manifest(c, i, v);
            let m = match manifest::load(self.store().as_ref(), &path).await {
                Ok(m) => m,
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => continue,
                Err(e) => return Err(e),
            };
            let keep =
                v == latest || held.contains(&v) || now.saturating_sub(m.committed_at) < retention;
            if keep {
                live_files.extend(m.files.iter().map(|f| f.name.clone()));
            } else {
                let size = self.store().head(&path).await.map(|h| h.size).unwrap_or(0);
                self.store().delete(&path).await?;
                receipt.files_removed += 1;
                receipt.bytes_removed += size;
            }
        }
        let grace = self.inner.options.orphan_grace.as_nanos() as i64;
        let data_dir = self.layout().item(c, i).clone().join(DATA_DIR);
        let objects: Vec<_> = self.store().list(Some(&data_dir)).try_collect().await?;
        for meta in objects {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if live_files.contains(name) || self.inner.in_flight.contains(&meta.location) {
                continue;
            }
            let age = now.saturating_sub(meta.last_modified.timestamp_nanos_opt().unwrap_or(now));
            if age < grace {
                continue;
            }
            match self.store().delete(&meta.location).await {
                Ok(()) => {
                    receipt.files_removed += 1;
                    receipt.bytes_removed += meta.size;
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A local folder also holds the staging files of puts cut by a crash (hidden
        // from listings): of data files (those of this engine's writes in flight stay)
        // and of manifests (none is being committed: the item's lock is held).
        if let Some(root) = &self.inner.local_root {
            let (data, manifests) = (
                root.join(data_dir.as_ref()),
                root.join(self.layout().manifest_dir(c, i).as_ref()),
            );
            let grace = self.inner.options.orphan_grace;
            let engine = self.clone();
            let (files, bytes) = SpawnedTask::spawn_blocking("vacuum staging files", move || {
                let in_flight = |name: &str| {
                    engine
                        .inner
                        .in_flight
                        .contains(&data_dir.clone().join(name))
                };
                let (f1, b1) = sweep_staging(&data, grace, in_flight);
                let (f2, b2) = sweep_staging(&manifests, grace, |_| false);
                (f1 + f2, b1 + b2)
            })
            .join()
            .await?;
            receipt.files_removed += files;
            receipt.bytes_removed += bytes;
        }
        Ok(())
    }
}
