//! Preparing a write: the item's settings, the schema after evolution, the key and range
//! of the write, resolved against the current version before the upload is read.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use parquet::file::metadata::KeyValue;
use serde_json::{Map, Value};

use super::{WriteMode, WriteOptions};
use crate::storage::catalog::merge_metadata;
use crate::storage::error::{Error, Result};
use crate::storage::key::{format_time, key_scale, KeyRange};
use crate::storage::manifest::{Keep, Manifest, RowGroupTarget, Settings};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::parquet::{FileTarget, Layouting};
use crate::storage::schema::resolve;
use crate::storage::Engine;
/// The resolved plan inputs of a write, fixed before the upload is consumed.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) settings: Settings,
    pub(super) schema: SchemaRef,
    /// De-duplication key and policy of this write, if any.
    pub(super) key: Option<(Vec<String>, Keep)>,
    pub(super) range: Option<KeyRange>,
    /// The item's metadata as this write leaves it (written into the files' provenance).
    pub(super) metadata: Map<String, Value>,
}

impl Engine {
    /// Resolve settings, schema and key of a write against the current item.
    pub(super) fn prepare(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: &WriteOptions,
        current: Option<&Manifest>,
        input: &SchemaRef,
    ) -> Result<Prepared> {
        let existing = current.map(|m| m.live_settings());
        let ordered_on = match (&opts.ordered_on, existing) {
            (Some(o), Some(s)) if o != &s.ordered_on => {
                return Err(Error::FailedPrecondition {
                    collection: c.to_string(),
                    item: i.to_string(),
                    message: format!(
                        "the item is ordered on {:?}, not {o:?} (the ordering column is fixed at creation)",
                        s.ordered_on
                    ),
                })
            }
            (_, Some(s)) => s.ordered_on.clone(),
            (Some(o), None) => o.clone(),
            (None, None) => input
                .fields()
                .iter()
                .find(|f| matches!(f.data_type(), DataType::Timestamp(..)))
                .map(|f| f.name().clone())
                .ok_or_else(|| {
                    Error::invalid(
                        "the data has no timestamp column: name the ordering column with ordered_on",
                    )
                })?,
        };
        let field = input
            .field_with_name(&ordered_on)
            .map_err(|_| Error::OrderingColumn {
                column: ordered_on.clone(),
                message: "is not in the data".into(),
            })?;
        if key_scale(field.data_type()).is_none() {
            return Err(Error::OrderingColumn {
                column: ordered_on,
                message: format!(
                    "has type {}, which cannot order an item (use a timestamp, date or integer column)",
                    field.data_type()
                ),
            });
        }
        let row_group_target = opts
            .row_group_target
            .clone()
            .or_else(|| existing.map(|s| s.row_group_target.clone()))
            .unwrap_or_else(|| self.inner.options.row_group_target.clone());
        row_group_target.period()?;
        let file_target_rows = opts
            .file_target_rows
            .or(existing.map(|s| s.file_target_rows))
            .unwrap_or(self.inner.options.file_target_rows);
        if file_target_rows == 0 {
            return Err(Error::invalid("file_target_rows must be at least 1"));
        }
        let schema_evolution = opts
            .schema_evolution
            .or(existing.map(|s| s.schema_evolution))
            .unwrap_or_default();
        let (dedup_on, keep) = match existing {
            Some(s) => (s.dedup_on.clone(), s.keep),
            None => (
                opts.dedup_on.clone().unwrap_or_default(),
                opts.keep.unwrap_or_default(),
            ),
        };
        let settings = Settings {
            ordered_on: ordered_on.clone(),
            dedup_on,
            keep,
            row_group_target,
            file_target_rows,
            schema_evolution,
            // The data rules: what this write gives, else the item's.
            validation: rule(&opts.validation, existing, |s| &s.validation),
            preset: opts.preset.or(existing.and_then(|s| s.preset)),
            rename: rule(&opts.rename, existing, |s| &s.rename),
            drop: rule(&opts.drop, existing, |s| &s.drop),
        };
        let base = if opts.mode.replaces_all() {
            None
        } else {
            current.map(|m| m.live_schema())
        };
        let schema = resolve(base, input, schema_evolution, &ordered_on, |message| {
            Error::SchemaMismatch {
                collection: c.to_string(),
                item: i.to_string(),
                message,
            }
        })?;
        let key_columns = write_key(opts, &settings);
        let keep = opts.keep.unwrap_or(settings.keep);
        if let Some(cols) = &key_columns {
            let unknown: Vec<&String> = cols
                .iter()
                .filter(|c| schema.field_with_name(c).is_err())
                .collect();
            if !unknown.is_empty() {
                return Err(Error::invalid(format!(
                    "dedup_on names unknown column(s) {unknown:?}"
                )));
            }
        }
        let range = match opts.mode {
            WriteMode::ReplaceRange | WriteMode::DeleteRange => match (opts.start, opts.end) {
                (Some(s), Some(e)) if s < e => Some(KeyRange::new(Some(s), Some(e))),
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        "the range is empty: start must be before end",
                    ))
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{} needs both start and end",
                        opts.mode.as_str()
                    )))
                }
            },
            _ => None,
        };
        let mut metadata = current.map(|m| m.metadata.clone()).unwrap_or_default();
        if let Some(patch) = &opts.metadata {
            merge_metadata(&mut metadata, patch);
        }
        Ok(Prepared {
            settings,
            schema,
            key: key_columns.map(|k| (k, keep)),
            range,
            metadata,
        })
    }

    pub(crate) fn file_target(
        &self,
        c: &CollectionName,
        i: &ItemName,
        settings: &Settings,
        schema: &SchemaRef,
        metadata: &Map<String, Value>,
    ) -> FileTarget {
        let period = settings
            .row_group_target
            .period()
            .expect("row group target validated at prepare");
        let row_group_rows = match &settings.row_group_target {
            RowGroupTarget::Rows(n) => *n as usize,
            RowGroupTarget::Period(_) => settings.file_target_rows as usize,
        };
        let mut provenance = vec![
            KeyValue::new("flightstore.collection".into(), c.to_string()),
            KeyValue::new("flightstore.item".into(), i.to_string()),
            KeyValue::new("flightstore.ordered_on".into(), settings.ordered_on.clone()),
            KeyValue::new("flightstore.written_at".into(), format_time(self.now())),
        ];
        if !metadata.is_empty() {
            provenance.push(KeyValue::new(
                "flightstore.metadata".into(),
                Value::Object(metadata.clone()).to_string(),
            ));
        }
        FileTarget {
            store: Arc::clone(self.store()),
            dir: self.layout().data_dir(c, i),
            schema: Arc::clone(schema),
            ordered_on: settings.ordered_on.clone(),
            layout: Layouting {
                row_group_rows: row_group_rows.max(1),
                period,
                file_rows: settings.file_target_rows as usize,
            },
            provenance,
        }
    }
}

/// A data rule of a write: the one it gives, else the item's, else none.
fn rule<T: Clone + Default>(
    given: &Option<T>,
    existing: Option<&Settings>,
    stored: impl Fn(&Settings) -> &T,
) -> T {
    given
        .clone()
        .or_else(|| existing.map(|s| stored(s).clone()))
        .unwrap_or_default()
}

/// The de-duplication key of a write: its own `dedup_on`, else the item's, else the
/// ordering column for an upsert (the write-ahead log takes it the same way).
pub(crate) fn write_key(opts: &WriteOptions, settings: &Settings) -> Option<Vec<String>> {
    let given = opts.dedup_on.clone().filter(|k| !k.is_empty());
    let item = (!settings.dedup_on.is_empty()).then(|| settings.dedup_on.clone());
    let upsert = (opts.mode == WriteMode::Upsert).then(|| vec![settings.ordered_on.clone()]);
    given.or(item).or(upsert)
}
