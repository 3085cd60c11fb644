//! Collections: create, list, delete; and the items a collection holds.

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde_json::{Map, Value};
use tracing::info;

use crate::storage::error::{Error, Result};
use crate::storage::manifest::put_json_if_absent;
use crate::storage::names::{CollectionName, ItemName, MANIFEST_DIR};
use crate::storage::Engine;

impl Engine {
    /// Create a collection; [`Error::AlreadyExists`] if it exists.
    pub async fn create_collection(&self, c: &CollectionName) -> Result<()> {
        let marker = self.layout().collection_marker(c);
        let body = serde_json::json!({ "created_at": self.now() });
        if put_json_if_absent(self.store().as_ref(), &marker, &body).await? {
            info!(collection = %c, "collection created");
            Ok(())
        } else {
            Err(Error::AlreadyExists {
                what: format!("collection {c}"),
            })
        }
    }

    /// Create the collection unless it exists (first write into it).
    pub(crate) async fn ensure_collection(&self, c: &CollectionName) -> Result<()> {
        let marker = self.layout().collection_marker(c);
        // A look first: a conditional put writes (and syncs) the marker before it finds
        // out that it exists, on every write.
        match self.store().head(&marker).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let body = serde_json::json!({ "created_at": self.now() });
        put_json_if_absent(self.store().as_ref(), &marker, &body).await?;
        Ok(())
    }

    pub(crate) async fn check_collection(&self, c: &CollectionName) -> Result<()> {
        match self.store().head(&self.layout().collection_marker(c)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(Error::CollectionNotFound {
                collection: c.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of all collections, sorted.
    pub async fn list_collections(&self) -> Result<Vec<String>> {
        let listing = self
            .store()
            .list_with_delimiter(Some(self.layout().root()))
            .await?;
        let mut out = Vec::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            let Ok(c) = CollectionName::new(name) else {
                continue;
            };
            if self.check_collection(&c).await.is_ok() {
                out.push(c.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delete a collection with all its items, versions and snapshots.
    pub async fn delete_collection(&self, c: &CollectionName) -> Result<()> {
        self.check_collection(c).await?;
        // Every item's log tail is persisted and its records forgotten, under the item's
        // lock (held until the files are gone, so no append slips in between).
        let mut locks = Vec::new();
        for i in self.item_names(c).await? {
            let lock = self.item_lock(c, &i).await;
            self.persist_locked(c, &i).await?;
            self.forget_logged(c, &i).await?;
            locks.push(lock);
        }
        // The marker goes first: from then on the collection is not found, even if the
        // rest of the deletion is interrupted (a later delete finishes it).
        self.store()
            .delete(&self.layout().collection_marker(c))
            .await?;
        let prefix = self.layout().collection(c);
        let locations = self
            .store()
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        self.store()
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await?;
        self.inner
            .cache
            .lock()
            .expect("cache poisoned")
            .retain(|(col, _), _| col != c);
        drop(locks);
        info!(collection = %c, "collection deleted");
        Ok(())
    }

    /// Every item folder of a collection (live or deleted), sorted.
    pub(crate) async fn item_names(&self, c: &CollectionName) -> Result<Vec<ItemName>> {
        let mut out = Vec::new();
        let mut pending = vec![(self.layout().collection(c), String::new())];
        while let Some((dir, name)) = pending.pop() {
            let listing = self.store().list_with_delimiter(Some(&dir)).await?;
            for prefix in listing.common_prefixes {
                let Some(seg) = prefix.filename() else {
                    continue;
                };
                if seg == MANIFEST_DIR && !name.is_empty() {
                    if let Ok(item) = ItemName::new(name.clone()) {
                        out.push(item);
                    }
                } else if !seg.starts_with('_') {
                    let child = if name.is_empty() {
                        seg.to_string()
                    } else {
                        format!("{name}/{seg}")
                    };
                    pending.push((prefix.clone(), child));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Live items of a collection, optionally with a name prefix and matching metadata
    /// (every given key must have the given value).
    pub async fn list_items(
        &self,
        c: &CollectionName,
        prefix: Option<&str>,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Vec<String>> {
        self.check_collection(c).await?;
        let mut out = Vec::new();
        for item in self.item_names(c).await? {
            if prefix.is_some_and(|p| !item.as_str().starts_with(p)) {
                continue;
            }
            let Some(m) = self.live(c, &item).await? else {
                continue;
            };
            if let Some(want) = metadata {
                if !want.iter().all(|(k, v)| m.metadata.get(k) == Some(v)) {
                    continue;
                }
            }
            out.push(item.to_string());
        }
        Ok(out)
    }
}
