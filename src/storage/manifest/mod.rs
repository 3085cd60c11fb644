//! Manifests: one immutable JSON object per committed version of an item.
//!
//! - this file: the format (files, settings, schema, metadata) and snapshots;
//! - [`store`]: loading, the cached latest version, the version a read sees;
//! - [`commit`]: put-if-absent of the next version and the one retry loop.
//!
//! A commit writes `_manifest/<version+1>.json` with a conditional put (put-if-absent):
//! exactly one writer wins each version number, a loser re-plans on top of the winner.
//! A manifest is self-contained (the whole file list, schema, settings and metadata), so a
//! reader needs exactly one object to see a whole version, and any old version can be read
//! as long as its manifest and files are kept (snapshots, retention).

mod commit;
mod store;

pub(crate) use store::{get_json, load, put_json_if_absent};

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::convert::{fb_to_schema, IpcSchemaEncoder};
use arrow::ipc::writer::DictionaryTracker;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::key::Period;
use super::rules::{Preset, Validation};

/// Version of the manifest format; readers refuse newer ones.
pub(crate) const MANIFEST_FORMAT: u32 = 1;

/// How duplicates (rows equal on the key) are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The row written last wins (an upsert).
    #[default]
    Last,
    /// The row stored first wins (insert-if-absent).
    First,
}

/// Which schema changes a write may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// The schema is fixed: same columns, same types (column order may differ).
    #[default]
    Strict,
    /// New nullable columns may be added; columns may be omitted if nullable.
    AddColumns,
    /// `AddColumns` plus safe type widenings (int32 -> int64, float32 -> float64, ...).
    Widen,
}

/// Target size of a row group: a row count, or a calendar period (`"1D"`, `"1M"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RowGroupTarget {
    /// At most this many rows per row group.
    Rows(u64),
    /// One row group per period (aligned on the calendar, UTC).
    Period(String),
}

impl RowGroupTarget {
    /// Check the target and return the period, if any.
    pub fn period(&self) -> Result<Option<Period>> {
        match self {
            Self::Rows(0) => Err(Error::invalid("row_group_target must be at least 1 row")),
            Self::Rows(_) => Ok(None),
            Self::Period(p) => Period::parse(p).map(Some),
        }
    }
}

/// Settings of an item, fixed at creation (some may change later, see DESIGN.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The ordering column.
    pub ordered_on: String,
    /// Columns that identify a row (the ordering column is always part of the key);
    /// empty means no de-duplication: every row is kept.
    pub dedup_on: Vec<String>,
    /// Which duplicate wins.
    pub keep: Keep,
    /// Row group target.
    pub row_group_target: RowGroupTarget,
    /// Target rows per file.
    pub file_target_rows: u64,
    /// Schema evolution policy.
    pub schema_evolution: SchemaEvolution,
    /// Validation rules of every write.
    #[serde(default, skip_serializing_if = "Validation::is_empty")]
    pub validation: Validation,
    /// The market-data preset the item was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Incoming columns renamed before the schema check.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename: BTreeMap<String, String>,
    /// Incoming columns left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// One Parquet file of an item, or a run of its row groups.
///
/// A write that touches a few row groups of a stored file rewrites only those; the
/// untouched row groups stay where they are, listed as entries that name the same file
/// with the `row_groups` they cover. Two entries of one file never overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the item's `_data/` folder.
    pub name: String,
    /// Smallest ordering key in the entry.
    pub min: i64,
    /// Largest ordering key in the entry.
    pub max: i64,
    /// Rows in the entry.
    pub rows: u64,
    /// Size of the whole file in bytes.
    pub bytes: u64,
    /// Row groups `[first, end)` of the file this entry covers; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups: Option<[usize; 2]>,
    /// Rows of the write-ahead log's tail, held in memory (no file): only in the
    /// manifests readers see, never stored.
    #[serde(skip)]
    pub(crate) memory: Option<MemoryRows>,
}

/// Sorted rows in memory, in the item's schema (a tail entry of the write-ahead log).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MemoryRows(pub(crate) arrow::array::RecordBatch);

impl Eq for MemoryRows {}

/// Rows of the write-ahead log's tail that merge into place (an upsert, or rows inside
/// the stored range): readers merge them with the files exactly as the write would.
#[derive(Debug, Clone)]
pub(crate) struct Delta {
    /// Sorted rows, in the item's schema.
    pub(crate) rows: arrow::array::RecordBatch,
    /// Smallest and largest ordering key of the rows.
    pub(crate) min: i64,
    pub(crate) max: i64,
    /// De-duplication key (`keep = last`); without one, rows are only merged in.
    pub(crate) key: Option<Vec<String>>,
    /// Rows before it that it replaces (equal on the key), counted when it was logged.
    pub(crate) replaced: u64,
}

/// Rows `files` and `deltas` hold together: a delta adds its rows and removes the rows
/// it replaces (which may outnumber its own: one row replaces every row at its time
/// when the key is the ordering column alone).
pub(crate) fn rows_with(files: u64, deltas: &mut dyn Iterator<Item = &Arc<Delta>>) -> u64 {
    let (added, replaced) = deltas.fold((0, 0), |(a, r), d| {
        (a + d.rows.num_rows() as u64, r + d.replaced)
    });
    files + added - replaced
}

/// One committed version of an item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this object ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// The version this manifest commits.
    pub version: u64,
    /// Commit time, ns since the epoch.
    pub committed_at: i64,
    /// What the commit did (`append`, `upsert`, `compact`, `delete`, ...).
    pub operation: String,
    /// A tombstone: the item was deleted in this version.
    #[serde(default)]
    pub deleted: bool,
    /// Item settings (absent on tombstones).
    pub settings: Option<Settings>,
    /// Item schema (absent on tombstones).
    #[serde(with = "schema_serde")]
    pub schema: Option<SchemaRef>,
    /// User metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Files in order of the ordering column; ranges do not overlap (they may touch).
    pub files: Vec<FileEntry>,
    /// The receipts of recent writes that carried a `write_id` (idempotent writes),
    /// oldest first; each stays at least the retention period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_ids: Vec<WriteRecord>,
    /// Log entries merged over `files` in version order: only in the manifests readers
    /// see, never stored.
    #[serde(skip)]
    pub(crate) deltas: Vec<Arc<Delta>>,
}

impl Manifest {
    /// Total rows.
    pub fn rows(&self) -> u64 {
        rows_with(
            self.files.iter().map(|f| f.rows).sum(),
            &mut self.deltas.iter(),
        )
    }

    /// Total bytes of the data files (a file listed in several entries counts once).
    pub fn bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.files
            .iter()
            .filter(|f| seen.insert(f.name.as_str()))
            .map(|f| f.bytes)
            .sum()
    }

    /// Writes of the write-ahead log that readers merge over the files (upserts and
    /// rows inside the stored range, not persisted yet).
    pub fn pending_merges(&self) -> usize {
        self.deltas.len()
    }

    /// Smallest and largest ordering key, if the item holds rows.
    pub fn range(&self) -> Option<(i64, i64)> {
        let files = self
            .files
            .first()
            .map(|f| (f.min, self.files[self.files.len() - 1].max));
        self.deltas.iter().fold(files, |r, d| match r {
            Some((a, b)) => Some((a.min(d.min), b.max(d.max))),
            None => Some((d.min, d.max)),
        })
    }

    /// The schema of a live manifest (every manifest but a deletion's tombstone; those
    /// [`super::Engine::manifest_at`] returns are live).
    pub fn live_schema(&self) -> &SchemaRef {
        self.schema.as_ref().expect("live manifests carry a schema")
    }

    /// The settings of a live manifest.
    pub(crate) fn live_settings(&self) -> &Settings {
        self.settings
            .as_ref()
            .expect("live manifests carry settings")
    }
}

mod schema_serde {
    //! The schema travels as base64 of its Arrow IPC flatbuffer: exact for every type
    //! (time zones, dictionaries, nested fields, metadata), unlike a hand-made JSON form.
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        schema: &Option<SchemaRef>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match schema {
            None => s.serialize_none(),
            Some(schema) => {
                let mut tracker = DictionaryTracker::new(false);
                let fb = IpcSchemaEncoder::new()
                    .with_dictionary_tracker(&mut tracker)
                    .schema_to_fb(schema);
                s.serialize_some(
                    &base64::engine::general_purpose::STANDARD.encode(fb.finished_data()),
                )
            }
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<SchemaRef>, D::Error> {
        let encoded: Option<String> = Option::deserialize(d)?;
        encoded
            .map(|e| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(e)
                    .map_err(serde::de::Error::custom)?;
                let fb = arrow::ipc::root_as_schema(&bytes).map_err(serde::de::Error::custom)?;
                Ok(Arc::new(fb_to_schema(fb)))
            })
            .transpose()
    }
}

/// The receipt of a write that carried a `write_id`: a retry with the same id gets it
/// back instead of writing again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    /// The client's id of the write.
    pub id: String,
    /// The version it committed.
    pub version: u64,
    /// Its commit time, ns since the epoch.
    pub committed_at: i64,
    /// Rows it received.
    pub rows_received: u64,
    /// Rows it stored.
    pub rows_written: u64,
    /// Stored rows it removed.
    pub rows_deleted: u64,
}

impl Manifest {
    /// The receipt of the write `id`, if it committed on this item (and is still kept).
    pub(crate) fn write_record(&self, id: &str) -> Option<&WriteRecord> {
        self.write_ids.iter().rev().find(|r| r.id == id)
    }

    /// The write ids a next version carries: those committed at or after `since`.
    pub(crate) fn write_ids_since(&self, since: i64) -> Vec<WriteRecord> {
        let first = self.write_ids.partition_point(|r| r.committed_at < since);
        self.write_ids[first..].to_vec()
    }
}

/// A named, collection-wide set of item versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// Snapshot name.
    pub name: String,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// Each live item's version at creation.
    pub items: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    #[test]
    fn manifest_round_trips_schema_exactly() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new_dictionary("cat", DataType::Int8, DataType::Utf8, true),
        ]));
        let m = Manifest {
            format: MANIFEST_FORMAT,
            version: 3,
            committed_at: 1,
            operation: "append".into(),
            deleted: false,
            settings: Some(Settings {
                ordered_on: "ts".into(),
                dedup_on: vec![],
                keep: Keep::Last,
                row_group_target: RowGroupTarget::Period("1D".into()),
                file_target_rows: 10,
                schema_evolution: SchemaEvolution::Widen,
                validation: Validation::default(),
                preset: None,
                rename: BTreeMap::new(),
                drop: Vec::new(),
            }),
            schema: Some(Arc::clone(&schema)),
            metadata: Map::new(),
            files: vec![],
            write_ids: vec![],
            deltas: vec![],
        };
        let json = serde_json::to_string(&m).unwrap();
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.schema.unwrap(), schema);
        assert_eq!(back.settings, m.settings);
    }
}
