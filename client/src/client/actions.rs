//! Every action (`DoAction`) with its typed result (DESIGN.md, "Wire contract": the
//! actions table). Results ignore fields they do not know, so a newer server that adds
//! one does not break an older client.

use arrow_flight::Action;
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Client, Error, Result};
use crate::{encode_json, proto, JsonForm};

/// `health`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Health {
    /// `"ok"`.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// `item_info`: a summary of an item's latest version.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ItemInfo {
    /// Rows.
    pub rows: u64,
    /// The smallest ordering value (ns), if any row.
    pub start: Option<i64>,
    /// The largest ordering value (ns), if any row.
    pub end: Option<i64>,
    /// The version described.
    pub version: u64,
    /// Parquet files.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// The user's metadata.
    pub metadata: Map<String, Value>,
    /// The columns.
    pub schema: Vec<Field>,
    /// The item's settings (ordering column, key, row-group target, rules), as JSON.
    #[serde(default)]
    pub settings: Value,
}

/// A column of [`ItemInfo::schema`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Field {
    /// Name.
    pub name: String,
    /// Arrow's type name (`Timestamp(ns, "UTC")`, `Float64`, ...).
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether it may hold nulls.
    pub nullable: bool,
}

/// An entry of `list_versions`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// The version number.
    pub version: u64,
    /// Its commit time (ns).
    pub committed_at: i64,
    /// Rows at that version.
    pub rows: u64,
    /// The operation that made it (`append`, `upsert`, `delete_range`, ...).
    pub operation: String,
}

/// `create_snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapshotCreated {
    /// The snapshot's name.
    pub snapshot: String,
    /// How many items it holds.
    pub items: u64,
}

/// An entry of `list_snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's name.
    pub snapshot: String,
    /// Its creation time (ns).
    pub created_at: i64,
    /// How many items it holds.
    pub items: u64,
}

/// `delete_range`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeleteRangeReceipt {
    /// The version committed.
    pub version: u64,
    /// Rows deleted.
    pub rows_deleted: u64,
}

/// `compact`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompactReceipt {
    /// The version after compaction (unchanged if there was nothing to do).
    pub version: u64,
    /// Files before.
    pub files_before: u64,
    /// Files after.
    pub files_after: u64,
}

/// `vacuum`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VacuumReport {
    /// Files removed.
    pub files_removed: u64,
    /// Bytes removed.
    pub bytes_removed: u64,
}

/// An entry of `changes_since`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    /// The item.
    pub item: String,
    /// Its latest version.
    pub version: u64,
    /// That version's commit time (ns).
    pub updated_at: i64,
    /// Whether that version deleted the item.
    pub deleted: bool,
}

/// A JSON object's text, for the `metadata` fields of the messages.
fn object_text(object: &Map<String, Value>) -> String {
    Value::Object(object.clone()).to_string()
}

fn item_request(collection: &str, item: &str) -> proto::ItemRequest {
    proto::ItemRequest {
        collection: collection.into(),
        item: item.into(),
    }
}

fn collection_request(collection: &str) -> proto::CollectionRequest {
    proto::CollectionRequest {
        collection: collection.into(),
    }
}

impl Client {
    /// Run an action by name with a JSON body; its one result, parsed.
    ///
    /// # Errors
    ///
    /// The server's refusal; [`Error::Protocol`] if the result is not the JSON expected.
    pub async fn action<T: DeserializeOwned>(
        &self,
        action: &str,
        body: &(impl JsonForm + Sync),
    ) -> Result<T> {
        let results: Vec<bytes::Bytes> = self
            .flight_client()
            .do_action(Action::new(action, encode_json(body)))
            .await?
            .try_collect()
            .await?;
        let [result] = results.as_slice() else {
            return Err(Error::Protocol(format!(
                "{action} returned {} results, not 1",
                results.len()
            )));
        };
        serde_json::from_slice(result)
            .map_err(|e| Error::Protocol(format!("{action} returned unexpected JSON: {e}")))
    }

    /// An action whose result is `{}`.
    async fn unit_action(&self, action: &str, body: &(impl JsonForm + Sync)) -> Result<()> {
        let _: Map<String, Value> = self.action(action, body).await?;
        Ok(())
    }

    /// `health`: the server's status and version.
    ///
    /// # Errors
    ///
    /// The server's refusal.
    pub async fn health(&self) -> Result<Health> {
        self.action("health", &proto::Empty {}).await
    }

    /// `list_collections`: the collections the caller may read.
    ///
    /// # Errors
    ///
    /// The server's refusal.
    pub async fn list_collections(&self) -> Result<Vec<String>> {
        self.action("list_collections", &proto::Empty {}).await
    }

    /// `create_collection`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`InvalidArgument` for a bad name).
    pub async fn create_collection(&self, collection: &str) -> Result<()> {
        self.unit_action("create_collection", &collection_request(collection))
            .await
    }

    /// `delete_collection`: the collection and everything in it.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn delete_collection(&self, collection: &str) -> Result<()> {
        self.unit_action("delete_collection", &collection_request(collection))
            .await
    }

    /// `list_items`: item names, optionally under a name prefix and with metadata
    /// matching every key given.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound` for an unknown collection).
    pub async fn list_items(
        &self,
        collection: &str,
        prefix: Option<&str>,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Vec<String>> {
        let body = proto::ListItemsRequest {
            collection: collection.into(),
            prefix: prefix.map(Into::into),
            metadata: metadata.map(object_text),
        };
        self.action("list_items", &body).await
    }

    /// `item_info`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn item_info(&self, collection: &str, item: &str) -> Result<ItemInfo> {
        self.action("item_info", &item_request(collection, item))
            .await
    }

    /// `delete_item` (older versions stay readable until vacuumed).
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn delete_item(&self, collection: &str, item: &str) -> Result<()> {
        self.unit_action("delete_item", &item_request(collection, item))
            .await
    }

    /// `delete_range`: the rows in `[start, end)`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`, `InvalidArgument` for a bad time).
    pub async fn delete_range(
        &self,
        collection: &str,
        item: &str,
        start: impl Into<proto::Time>,
        end: impl Into<proto::Time>,
    ) -> Result<DeleteRangeReceipt> {
        let body = proto::DeleteRangeRequest {
            collection: collection.into(),
            item: item.into(),
            start: Some(start.into()),
            end: Some(end.into()),
        };
        self.action("delete_range", &body).await
    }

    /// `get_metadata`: exactly the user's keys.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn get_metadata(&self, collection: &str, item: &str) -> Result<Map<String, Value>> {
        self.action("get_metadata", &item_request(collection, item))
            .await
    }

    /// `update_metadata`: merge `patch` into the metadata (a `null` removes a key); the
    /// new metadata.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn update_metadata(
        &self,
        collection: &str,
        item: &str,
        patch: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let body = proto::UpdateMetadataRequest {
            collection: collection.into(),
            item: item.into(),
            metadata: object_text(patch),
        };
        self.action("update_metadata", &body).await
    }

    /// `list_versions`, oldest first.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn list_versions(&self, collection: &str, item: &str) -> Result<Vec<VersionInfo>> {
        self.action("list_versions", &item_request(collection, item))
            .await
    }

    /// `create_snapshot`: pin every item's current version under `snapshot`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`AlreadyExists`, `NotFound`).
    pub async fn create_snapshot(
        &self,
        collection: &str,
        snapshot: &str,
    ) -> Result<SnapshotCreated> {
        let body = proto::SnapshotRequest {
            collection: collection.into(),
            snapshot: snapshot.into(),
        };
        self.action("create_snapshot", &body).await
    }

    /// `list_snapshots`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn list_snapshots(&self, collection: &str) -> Result<Vec<SnapshotInfo>> {
        self.action("list_snapshots", &collection_request(collection))
            .await
    }

    /// `delete_snapshot`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn delete_snapshot(&self, collection: &str, snapshot: &str) -> Result<()> {
        let body = proto::SnapshotRequest {
            collection: collection.into(),
            snapshot: snapshot.into(),
        };
        self.unit_action("delete_snapshot", &body).await
    }

    /// `compact`: merge the item's files toward the target size.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn compact(&self, collection: &str, item: &str) -> Result<CompactReceipt> {
        self.action("compact", &item_request(collection, item))
            .await
    }

    /// `vacuum`: remove versions past retention and orphan files, of one item, one
    /// collection, or (both `None`) everything.
    ///
    /// # Errors
    ///
    /// The server's refusal.
    pub async fn vacuum(
        &self,
        collection: Option<&str>,
        item: Option<&str>,
    ) -> Result<VacuumReport> {
        let body = proto::VacuumRequest {
            collection: collection.map(Into::into),
            item: item.map(Into::into),
        };
        self.action("vacuum", &body).await
    }

    /// `missing_intervals`: the slots of the grid `start + k*freq` in `[start, end)` that
    /// hold no row, adjacent slots merged, as `[start, end)` pairs in ns.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`, `InvalidArgument` for a bad period).
    pub async fn missing_intervals(
        &self,
        collection: &str,
        item: &str,
        start: impl Into<proto::Time>,
        end: impl Into<proto::Time>,
        freq: &str,
    ) -> Result<Vec<(i64, i64)>> {
        let body = proto::MissingIntervalsRequest {
            collection: collection.into(),
            item: item.into(),
            start: Some(start.into()),
            end: Some(end.into()),
            freq: freq.into(),
        };
        self.action("missing_intervals", &body).await
    }

    /// `changes_since`: every item committed or deleted at or after `since`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`).
    pub async fn changes_since(
        &self,
        collection: &str,
        since: impl Into<proto::Time>,
    ) -> Result<Vec<Change>> {
        let body = proto::ChangesSinceRequest {
            collection: collection.into(),
            since: Some(since.into()),
        };
        self.action("changes_since", &body).await
    }
}
