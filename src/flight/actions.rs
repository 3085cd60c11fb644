//! `DoAction`: administration. Each action's body is a message of
//! `proto/flightstore.proto` (binary or JSON); each result is one JSON document.

use serde::Serialize;
use serde_json::{json, Value};

use super::error::{Error, Result};
use super::request::{collection, decode, item, object, required_time};
use crate::auth::{Access, Level};
use crate::storage::{At, CollectionName, Engine, Period, SnapshotName};
use flightstore_client::proto;

/// Every action: name, body (JSON form), what it does. `ListActions` serves this table.
pub const ACTIONS: &[(&str, &str, &str)] = &[
    ("health", "{}", "Server status and version."),
    ("list_collections", "{}", "Names of all collections."),
    (
        "create_collection",
        r#"{"collection"}"#,
        "Create a collection (items also create it on first write).",
    ),
    (
        "delete_collection",
        r#"{"collection"}"#,
        "Delete a collection and everything in it.",
    ),
    (
        "list_items",
        r#"{"collection", "prefix"?, "metadata"?}"#,
        "Item names, optionally by name prefix and metadata match.",
    ),
    (
        "item_info",
        r#"{"collection", "item"}"#,
        "Rows, time range, version, files, bytes, metadata, schema and settings.",
    ),
    (
        "delete_item",
        r#"{"collection", "item"}"#,
        "Delete an item (older versions stay readable until vacuumed).",
    ),
    (
        "delete_range",
        r#"{"collection", "item", "start", "end"}"#,
        "Delete the rows in [start, end).",
    ),
    (
        "get_metadata",
        r#"{"collection", "item"}"#,
        "The item's metadata object.",
    ),
    (
        "update_metadata",
        r#"{"collection", "item", "metadata"}"#,
        "Merge keys into the metadata; a null value removes a key.",
    ),
    (
        "list_versions",
        r#"{"collection", "item"}"#,
        "Versions, oldest first.",
    ),
    (
        "create_snapshot",
        r#"{"collection", "snapshot"}"#,
        "Pin every item's current version under a name.",
    ),
    (
        "list_snapshots",
        r#"{"collection"}"#,
        "Snapshots of a collection.",
    ),
    (
        "delete_snapshot",
        r#"{"collection", "snapshot"}"#,
        "Delete a snapshot (its versions become vacuumable).",
    ),
    (
        "compact",
        r#"{"collection", "item"}"#,
        "Merge the item's files toward the target size.",
    ),
    (
        "vacuum",
        r#"{"collection"?, "item"?}"#,
        "Remove old versions past retention and orphan files.",
    ),
    (
        "missing_intervals",
        r#"{"collection", "item", "start", "end", "freq"}"#,
        "Slots of the grid start + k*freq in [start, end) that hold no row.",
    ),
    (
        "changes_since",
        r#"{"collection", "since"}"#,
        "Items committed or deleted at or after a time.",
    ),
];

fn to_json(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("results serialize")
}

/// The grant an action needs on its collection (DESIGN.md, "Security"); `None`: any
/// valid caller (`health`, and `list_collections`, which lists only what the caller
/// may read).
pub(crate) fn level(action: &str) -> Option<Level> {
    Some(match action {
        "health" | "list_collections" => return None,
        "list_items" | "item_info" | "get_metadata" | "list_versions" | "list_snapshots"
        | "missing_intervals" | "changes_since" => Level::Read,
        "update_metadata" | "create_snapshot" | "delete_snapshot" | "delete_range"
        | "delete_item" | "compact" => Level::Write,
        // create_collection, delete_collection, vacuum, and anything new: the most.
        _ => Level::Admin,
    })
}

/// Run one action for a caller with `access`; the result's JSON body.
pub(crate) async fn run(
    engine: &Engine,
    access: &Access,
    action: &str,
    body: &[u8],
) -> Result<Value> {
    // The collection the body names, checked against the action's level before any
    // engine call.
    let allowed = |c: &CollectionName| -> Result<()> {
        match level(action) {
            Some(level) => Ok(access.check(c.as_str(), level)?),
            None => Ok(()),
        }
    };
    // An empty body is the empty JSON object.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let what = format!("{action} body");
    Ok(match action {
        "health" => {
            let _: proto::Empty = decode(&what, body)?;
            json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
        }
        "list_collections" => {
            let _: proto::Empty = decode(&what, body)?;
            let mut names = engine.list_collections().await?;
            names.retain(|c| access.allows(c, Level::Read));
            to_json(names)
        }
        "create_collection" | "delete_collection" | "list_snapshots" => {
            let r: proto::CollectionRequest = decode(&what, body)?;
            let c = collection(&r.collection)?;
            allowed(&c)?;
            match action {
                "create_collection" => {
                    engine.create_collection(&c).await?;
                    json!({})
                }
                "delete_collection" => {
                    engine.delete_collection(&c).await?;
                    json!({})
                }
                _ => to_json(engine.list_snapshots(&c).await?),
            }
        }
        "list_items" => {
            let r: proto::ListItemsRequest = decode(&what, body)?;
            let metadata = r
                .metadata
                .as_deref()
                .map(|m| object(m, "metadata"))
                .transpose()?;
            let c = collection(&r.collection)?;
            allowed(&c)?;
            let items = engine
                .list_items(&c, r.prefix.as_deref(), metadata.as_ref())
                .await?;
            to_json(items)
        }
        "item_info" | "delete_item" | "get_metadata" | "list_versions" | "compact" => {
            let r: proto::ItemRequest = decode(&what, body)?;
            let (c, i) = (collection(&r.collection)?, item(&r.item)?);
            allowed(&c)?;
            match action {
                "item_info" => {
                    let info = engine.item_info(&c, &i, &At::Latest).await?;
                    let schema: Vec<Value> = info
                        .schema
                        .fields()
                        .iter()
                        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
                        .collect();
                    let mut out = to_json(&info);
                    out["schema"] = Value::Array(schema);
                    out
                }
                "delete_item" => {
                    engine.delete_item(&c, &i).await?;
                    json!({})
                }
                "get_metadata" => Value::Object(engine.get_metadata(&c, &i).await?),
                "list_versions" => to_json(engine.list_versions(&c, &i).await?),
                _ => to_json(engine.compact(&c, &i).await?),
            }
        }
        "delete_range" => {
            let r: proto::DeleteRangeRequest = decode(&what, body)?;
            let (c, i) = (collection(&r.collection)?, item(&r.item)?);
            allowed(&c)?;
            let start = required_time(r.start.as_ref(), "start")?;
            let end = required_time(r.end.as_ref(), "end")?;
            let receipt = engine.delete_range(&c, &i, start, end).await?;
            json!({"version": receipt.version, "rows_deleted": receipt.rows_deleted})
        }
        "update_metadata" => {
            let r: proto::UpdateMetadataRequest = decode(&what, body)?;
            let (c, i) = (collection(&r.collection)?, item(&r.item)?);
            allowed(&c)?;
            let patch = object(&r.metadata, "metadata")?;
            Value::Object(engine.update_metadata(&c, &i, &patch).await?)
        }
        "create_snapshot" | "delete_snapshot" => {
            let r: proto::SnapshotRequest = decode(&what, body)?;
            let c = collection(&r.collection)?;
            allowed(&c)?;
            let s = SnapshotName::new(&r.snapshot)?;
            if action == "create_snapshot" {
                to_json(engine.create_snapshot(&c, &s).await?)
            } else {
                engine.delete_snapshot(&c, &s).await?;
                json!({})
            }
        }
        "vacuum" => {
            let r: proto::VacuumRequest = decode(&what, body)?;
            let c = r.collection.as_deref().map(collection).transpose()?;
            let i = r.item.as_deref().map(item).transpose()?;
            if i.is_some() && c.is_none() {
                return Err(Error::BadSetting {
                    field: "item",
                    message: "vacuum of an item needs its collection".into(),
                });
            }
            match &c {
                Some(c) => allowed(c)?,
                None => access.check_all(Level::Admin)?,
            }
            to_json(engine.vacuum(c.as_ref(), i.as_ref()).await?)
        }
        "missing_intervals" => {
            let r: proto::MissingIntervalsRequest = decode(&what, body)?;
            let (c, i) = (collection(&r.collection)?, item(&r.item)?);
            allowed(&c)?;
            let start = required_time(r.start.as_ref(), "start")?;
            let end = required_time(r.end.as_ref(), "end")?;
            let freq = Period::parse(&r.freq)?;
            let gaps = engine
                .missing_intervals(&c, &i, start, end, freq, At::Latest)
                .await?;
            to_json(gaps.into_iter().map(|(s, e)| [s, e]).collect::<Vec<_>>())
        }
        "changes_since" => {
            let r: proto::ChangesSinceRequest = decode(&what, body)?;
            let c = collection(&r.collection)?;
            allowed(&c)?;
            let since = required_time(r.since.as_ref(), "since")?;
            to_json(engine.changes_since(&c, since).await?)
        }
        other => {
            let known: Vec<&str> = ACTIONS.iter().map(|a| a.0).collect();
            return Err(Error::UnknownAction {
                action: other.to_string(),
                known: known.join(", "),
            });
        }
    })
}
