//! Wire messages (`proto/flightstore.proto`, binary or JSON) turned into engine arguments,
//! and read plans back into tickets. Pure: no I/O.
//!
//! Path descriptors: `[collection, item_segment, ...]`; the item name is the segments
//! joined with `/` (DESIGN.md, "Wire contract"). So a segment may itself hold the `/` of
//! a sub-level: `["c", "a/b"]` and `["c", "a", "b"]` name the same item `a/b` (as
//! `pyarrow.flight.FlightDescriptor.for_path("c", "a/b")` users expect), and the joined
//! name is validated whole (no empty, `.` or `..` level, so `["c", "a/", "b"]` is
//! refused). The server always answers with the split form (`ListFlights`).

use arrow_flight::FlightDescriptor;
use flightstore_client::proto::{self, row_group_target};
use flightstore_client::time::optional_time;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use crate::storage::{
    At, CollectionName, Fill, Grid, ItemName, KeyRange, Period, Preset, ReadOptions, ReadPlan,
    ReadSplit, RowGroupTarget, SnapshotName, Validation, WriteMode, WriteOptions,
};

/// Decode a wire message (JSON form or protobuf binary); `what` names it in errors.
pub(crate) fn decode<T>(what: &str, bytes: &[u8]) -> Result<T>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    flightstore_client::decode(bytes).map_err(|e| Error::bad_message(what, e))
}

pub(crate) fn collection(name: &str) -> Result<CollectionName> {
    Ok(CollectionName::new(name)?)
}

pub(crate) fn item(name: &str) -> Result<ItemName> {
    Ok(ItemName::new(name)?)
}

/// `[collection, item segment...]` of a path descriptor (see the module docs).
pub(crate) fn path(d: &FlightDescriptor) -> Result<(CollectionName, ItemName)> {
    match d.path.as_slice() {
        [c, segments @ ..] if !segments.is_empty() => {
            Ok((collection(c)?, item(&segments.join("/"))?))
        }
        other => Err(Error::BadPath {
            segments: other.len(),
        }),
    }
}

/// The path descriptor of an item.
pub(crate) fn descriptor(c: &CollectionName, i: &ItemName) -> FlightDescriptor {
    let mut path = vec![c.to_string()];
    path.extend(i.as_str().split('/').map(str::to_string));
    FlightDescriptor::new_path(path)
}

/// A time field.
fn time(t: Option<&proto::Time>, field: &'static str) -> Result<Option<i64>> {
    optional_time(t).map_err(|e| Error::bad_message(field, e))
}

/// A required time field.
pub(crate) fn required_time(t: Option<&proto::Time>, field: &'static str) -> Result<i64> {
    flightstore_client::time::required_time(t, field).map_err(|e| Error::bad_message(field, e))
}

/// A JSON object given as text (the `metadata` fields).
pub(crate) fn object(text: &str, field: &'static str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::NotAnObject { field }),
    }
}

/// A string enum setting (`keep`, `schema_evolution`) parsed by its serde name.
fn setting<T: serde::de::DeserializeOwned>(value: &str, field: &'static str) -> Result<T> {
    serde_json::from_value(Value::String(value.to_string())).map_err(|e| Error::BadSetting {
        field,
        message: e.to_string(),
    })
}

/// A count given as `u64` on the wire.
fn count(n: Option<u64>) -> Option<usize> {
    n.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// What a `ReadRequest` reads: one item, or several (`items`) each pinned to its
/// version when a server-issued ticket gives `versions`.
pub(crate) enum Target {
    One(ItemName),
    Many(Vec<(ItemName, Option<u64>)>),
}

/// The collection, items and engine options of a `ReadRequest` (its filter is compiled by
/// the caller, against each item's schema at the version read).
pub(crate) fn read_options(
    req: &proto::ReadRequest,
) -> Result<(CollectionName, Target, ReadOptions)> {
    let c = collection(&req.collection)?;
    let target = match (req.item.is_empty(), req.items.is_empty()) {
        (false, true) => Target::One(item(&req.item)?),
        (true, false) => {
            if req.version.is_some() {
                return Err(Error::Exclusive {
                    first: "version",
                    second: "items",
                });
            }
            if !req.versions.is_empty() && req.versions.len() != req.items.len() {
                return Err(Error::BadSetting {
                    field: "versions",
                    message: "give one version per item".into(),
                });
            }
            let mut items = Vec::with_capacity(req.items.len());
            for (n, name) in req.items.iter().enumerate() {
                let i = item(name)?;
                if items.iter().any(|(j, _)| j == &i) {
                    return Err(Error::BadSetting {
                        field: "items",
                        message: format!("item {name:?} is named twice"),
                    });
                }
                items.push((i, req.versions.get(n).copied()));
            }
            Target::Many(items)
        }
        (false, false) => {
            return Err(Error::Exclusive {
                first: "item",
                second: "items",
            })
        }
        (true, true) => {
            return Err(Error::BadSetting {
                field: "item",
                message: "name the item to read (item), or several (items)".into(),
            })
        }
    };
    if req.limit.is_some() && req.last.is_some() {
        return Err(Error::Exclusive {
            first: "limit",
            second: "last",
        });
    }
    let at = match (req.version, &req.snapshot) {
        (Some(_), Some(_)) => {
            return Err(Error::Exclusive {
                first: "version",
                second: "snapshot",
            })
        }
        (Some(v), None) => At::Version(v),
        (None, Some(s)) => At::Snapshot(SnapshotName::new(s)?),
        (None, None) => At::Latest,
    };
    let options = ReadOptions {
        range: KeyRange::new(
            time(req.start.as_ref(), "start")?,
            time(req.end.as_ref(), "end")?,
        ),
        columns: (!req.columns.is_empty()).then(|| req.columns.clone()),
        filter: None,
        limit: count(req.limit),
        last: count(req.last),
        n_prev: count(req.n_prev).unwrap_or(0),
        at,
    };
    Ok((c, target, options))
}

/// The dense grid of a `ReadRequest`, if it asks for one.
pub(crate) fn grid(req: &proto::ReadRequest) -> Result<Option<Grid>> {
    let Some(g) = &req.grid else {
        return Ok(None);
    };
    let freq = Period::parse(&g.freq)?;
    let fill = Fill::parse(g.fill.as_deref().unwrap_or("null"))?;
    Ok(Some(Grid { freq, fill }))
}

/// The filter of a `ReadRequest`, if it has a non-blank one.
pub(crate) fn filter(req: &proto::ReadRequest) -> Option<&str> {
    req.filter.as_deref().filter(|f| !f.trim().is_empty())
}

/// The ticket of `split` of `plan`: pinned to the plan's version; `filter` as written.
pub(crate) fn ticket(
    plan: &ReadPlan,
    split: &ReadSplit,
    filter: Option<&str>,
) -> proto::ReadRequest {
    let o = plan.options();
    let whole = |n: Option<usize>| n.filter(|_| split.whole).map(|n| n as u64);
    proto::ReadRequest {
        collection: plan.collection().to_string(),
        item: plan.item().to_string(),
        start: split.range.start.map(Into::into),
        end: split.range.end.map(Into::into),
        columns: o.columns.clone().unwrap_or_default(),
        filter: filter.map(str::to_string),
        limit: whole(o.limit),
        last: whole(o.last),
        n_prev: whole(Some(o.n_prev).filter(|&n| n > 0)),
        version: Some(plan.version()),
        ..Default::default()
    }
}

/// The item and engine options of a `WriteRequest`.
pub(crate) fn write_options(
    req: &proto::WriteRequest,
) -> Result<(CollectionName, ItemName, WriteOptions)> {
    let (c, i) = (collection(&req.collection)?, item(&req.item)?);
    Ok((c, i, write_settings(req)?))
}

/// The engine options of a `WriteRequest` (all but its collection and item).
pub(crate) fn write_settings(req: &proto::WriteRequest) -> Result<WriteOptions> {
    let mode = match req.mode.as_deref() {
        None | Some("") => WriteMode::Append,
        Some(m) => WriteMode::parse(m)?,
    };
    if mode == WriteMode::DeleteRange {
        return Err(Error::BadSetting {
            field: "mode",
            message: "delete_range takes no data: use the delete_range action".into(),
        });
    }
    let row_group_target = match req.row_group_target.as_ref().and_then(|t| t.value.as_ref()) {
        None => None,
        Some(row_group_target::Value::Rows(n)) => Some(RowGroupTarget::Rows(*n)),
        Some(row_group_target::Value::Period(p)) => Some(RowGroupTarget::Period(p.clone())),
    };
    let options = WriteOptions {
        mode,
        ordered_on: req.ordered_on.clone(),
        dedup_on: (!req.dedup_on.is_empty()).then(|| req.dedup_on.clone()),
        keep: req
            .keep
            .as_deref()
            .map(|k| setting(k, "keep"))
            .transpose()?,
        start: time(req.start.as_ref(), "start")?,
        end: time(req.end.as_ref(), "end")?,
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
        validation: req.validation.as_ref().map(|v| Validation {
            not_null: v.not_null.clone(),
            checks: v.checks.clone(),
            unique_ordering: v.unique_ordering,
        }),
        preset: req.preset.as_deref().map(Preset::parse).transpose()?,
        rename: (!req.rename.is_empty()).then(|| req.rename.clone().into_iter().collect()),
        drop: (!req.drop.is_empty()).then(|| req.drop.clone()),
        write_id: req.write_id.clone(),
    };
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_holding_a_slash_names_the_same_item_as_split_segments() {
        let p = |segments: &[&str]| {
            FlightDescriptor::new_path(segments.iter().map(|s| s.to_string()).collect())
        };
        let (c, i) = path(&p(&["c", "a", "b"])).unwrap();
        assert_eq!((c.as_str(), i.as_str()), ("c", "a/b"));
        assert_eq!(path(&p(&["c", "a/b"])).unwrap(), (c.clone(), i.clone()));
        // The server answers with the split form.
        assert_eq!(descriptor(&c, &i), p(&["c", "a", "b"]));
        for bad in [
            &["c", "a/", "b"][..],
            &["c", "/a"],
            &["c", "a/../b"],
            &["c/d", "a"],
        ] {
            assert!(matches!(path(&p(bad)), Err(Error::Storage(_))), "{bad:?}");
        }
        let short = FlightDescriptor::new_path(vec!["c".into()]);
        assert!(matches!(path(&short), Err(Error::BadPath { segments: 1 })));
    }
}
