//! Wire messages (`proto/flightstore.proto`, binary or JSON) turned into engine calls.

use std::sync::Arc;

use arrow_flight::FlightDescriptor;
use flightstore_client::proto::{self, row_group_target, time};
use serde_json::{Map, Value};
use tonic::Status;

use super::status::{invalid, to_status};
use crate::sql::SqlFilter;
use crate::storage::time::parse_time;
use crate::storage::{
    At, CollectionName, Engine, FileEntry, ItemName, KeyRange, Manifest, ReadOptions,
    RowGroupTarget, SnapshotName, WriteMode, WriteOptions,
};

/// Decode a wire message (JSON form or protobuf binary).
pub(crate) fn decode<T>(what: &str, bytes: &[u8]) -> Result<T, Status>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    flightstore_client::decode(bytes).map_err(|e| invalid(format!("{what}: {e}")))
}

pub(crate) fn collection(name: &str) -> Result<CollectionName, Status> {
    CollectionName::new(name).map_err(to_status)
}

pub(crate) fn item(name: &str) -> Result<ItemName, Status> {
    ItemName::new(name).map_err(to_status)
}

/// `[collection, item segment...]` of a path descriptor.
pub(crate) fn path(d: &FlightDescriptor) -> Result<(CollectionName, ItemName), Status> {
    match d.path.as_slice() {
        [c, segments @ ..] if !segments.is_empty() => {
            Ok((collection(c)?, item(&segments.join("/"))?))
        }
        _ => Err(invalid(
            "a path descriptor is [collection, item, ...]: at least two segments",
        )),
    }
}

pub(crate) fn time(t: &proto::Time, what: &str) -> Result<i64, Status> {
    match &t.value {
        Some(time::Value::Nanos(n)) => Ok(*n),
        Some(time::Value::Iso(s)) => parse_time(s).map_err(to_status),
        None => Err(invalid(format!("{what}: a time is required"))),
    }
}

fn opt_time(t: Option<&proto::Time>, what: &str) -> Result<Option<i64>, Status> {
    t.map(|t| time(t, what)).transpose()
}

/// A required time field.
pub(crate) fn required_time(t: Option<&proto::Time>, what: &str) -> Result<i64, Status> {
    opt_time(t, what)?.ok_or_else(|| invalid(format!("{what} is required")))
}

/// A JSON object given as text (the `metadata` fields).
pub(crate) fn object(text: &str, what: &str) -> Result<Map<String, Value>, Status> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid(format!("{what} must be a JSON object"))),
    }
}

/// A string enum setting (`keep`, `schema_evolution`) parsed by its serde name.
fn setting<T: serde::de::DeserializeOwned>(value: &str, what: &str) -> Result<T, Status> {
    serde_json::from_value(Value::String(value.to_string()))
        .map_err(|e| invalid(format!("{what}: {e}")))
}

/// A read, resolved to the version it reads and the item's schema at that version.
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) collection: CollectionName,
    pub(crate) item: ItemName,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) options: ReadOptions,
    /// The filter as written (tickets carry it; `options` holds it compiled).
    pub(crate) filter: Option<String>,
}

impl Read {
    /// Check a `ReadRequest` and pin it to one version.
    pub(crate) async fn resolve(engine: &Engine, req: proto::ReadRequest) -> Result<Self, Status> {
        let (c, i) = (collection(&req.collection)?, item(&req.item)?);
        if req.limit.is_some() && req.last.is_some() {
            return Err(invalid("limit and last exclude each other"));
        }
        let at = match (req.version, &req.snapshot) {
            (Some(_), Some(_)) => return Err(invalid("version and snapshot exclude each other")),
            (Some(v), None) => At::Version(v),
            (None, Some(s)) => At::Snapshot(SnapshotName::new(s).map_err(to_status)?),
            (None, None) => At::Latest,
        };
        let manifest = engine.manifest_at(&c, &i, &at).await.map_err(to_status)?;
        let schema = Arc::clone(manifest.live_schema());
        let filter = match &req.filter {
            Some(sql) if !sql.trim().is_empty() => {
                Some(Arc::new(SqlFilter::try_new(sql, &schema).map_err(to_status)?) as _)
            }
            _ => None,
        };
        let columns = (!req.columns.is_empty()).then(|| req.columns.clone());
        let count = |n: Option<u64>| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let options = ReadOptions {
            range: KeyRange::new(
                opt_time(req.start.as_ref(), "start")?,
                opt_time(req.end.as_ref(), "end")?,
            ),
            columns,
            filter,
            limit: count(req.limit),
            last: count(req.last),
            n_prev: count(req.n_prev).unwrap_or(0),
            at: At::Version(manifest.version),
        };
        Ok(Self {
            collection: c,
            item: i,
            manifest,
            options,
            filter: req.filter.filter(|f| !f.trim().is_empty()),
        })
    }

    /// The files of the version that the read's range overlaps.
    pub(crate) fn files(&self) -> impl Iterator<Item = &FileEntry> {
        let range = self.options.range;
        self.manifest
            .files
            .iter()
            .filter(move |f| range.overlaps(f.min, f.max))
    }

    /// A ticket for this read restricted to `range`, pinned to the resolved version.
    pub(crate) fn ticket(&self, range: KeyRange, whole: bool) -> Vec<u8> {
        let mut t = Map::new();
        t.insert("collection".into(), self.collection.to_string().into());
        t.insert("item".into(), self.item.to_string().into());
        t.insert("version".into(), self.manifest.version.into());
        if let Some(s) = range.start {
            t.insert("start".into(), s.into());
        }
        if let Some(e) = range.end {
            t.insert("end".into(), e.into());
        }
        if let Some(c) = &self.options.columns {
            t.insert("columns".into(), c.clone().into());
        }
        if let Some(f) = &self.filter {
            t.insert("filter".into(), f.clone().into());
        }
        if whole {
            let o = &self.options;
            if let Some(n) = o.limit {
                t.insert("limit".into(), n.into());
            }
            if let Some(n) = o.last {
                t.insert("last".into(), n.into());
            }
            if o.n_prev > 0 {
                t.insert("n_prev".into(), o.n_prev.into());
            }
        }
        Value::Object(t).to_string().into_bytes()
    }
}

/// Engine options of a `WriteRequest`.
pub(crate) fn write_options(req: &proto::WriteRequest) -> Result<WriteOptions, Status> {
    let mode = match req.mode.as_deref() {
        None | Some("") => WriteMode::Append,
        Some(m) => WriteMode::parse(m).map_err(to_status)?,
    };
    if mode == WriteMode::DeleteRange {
        return Err(invalid(
            "delete_range takes no data: use the delete_range action",
        ));
    }
    let row_group_target = match req.row_group_target.as_ref().and_then(|t| t.value.as_ref()) {
        None => None,
        Some(row_group_target::Value::Rows(0)) => {
            return Err(invalid("row_group_target must be at least 1 row"))
        }
        Some(row_group_target::Value::Rows(n)) => Some(RowGroupTarget::Rows(*n)),
        Some(row_group_target::Value::Period(p)) => Some(RowGroupTarget::Period(p.clone())),
    };
    Ok(WriteOptions {
        mode,
        ordered_on: req.ordered_on.clone(),
        dedup_on: (!req.dedup_on.is_empty()).then(|| req.dedup_on.clone()),
        keep: req
            .keep
            .as_deref()
            .map(|k| setting(k, "keep"))
            .transpose()?,
        start: opt_time(req.start.as_ref(), "start")?,
        end: opt_time(req.end.as_ref(), "end")?,
        row_group_target,
        file_target_rows: req.file_target_rows,
        metadata: req
            .metadata
            .as_deref()
            .map(|m| object(m, "metadata"))
            .transpose()?,
        schema_evolution: req
            .schema_evolution
            .as_deref()
            .map(|s| setting(s, "schema_evolution"))
            .transpose()?,
    })
}
