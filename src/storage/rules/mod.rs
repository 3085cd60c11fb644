//! Data rules of an item (DESIGN.md, "Data rules"): validation, market-data presets and
//! the canonicalisation of legacy columns. All are item settings: given at creation,
//! replaced by a later write that gives them, applied to every write.
//!
//! ```text
//! upload ─► canonicalise (rename, drop, preset types, fill missing nullable columns)
//!        ─► validate (not_null, checks, unique_ordering) ─► the write path
//! ```
//!
//! A rule broken by any row fails the write before anything is committed:
//! `unique_ordering` is checked on the upload as it arrives when it is in order, and
//! again where the write merges rows with equal ordering values (out-of-order uploads,
//! stored rows).

mod check;
mod preset;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

pub(crate) use check::unique_keys;
use check::Checker;
pub use preset::Preset;

use super::error::{Error, Result};
use super::manifest::{Manifest, Settings};
use super::read::RowFilter;
use super::schema::adapt;
use super::write::WriteOptions;

/// Validation rules of an item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// Columns that may hold no null.
    #[serde(default)]
    pub not_null: Vec<String>,
    /// SQL boolean expressions every row satisfies (a NULL result passes, as in SQL's
    /// CHECK constraints).
    #[serde(default)]
    pub checks: Vec<String>,
    /// No two rows of the item share an ordering value.
    #[serde(default)]
    pub unique_ordering: bool,
}

impl Validation {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.not_null.is_empty() && self.checks.is_empty() && !self.unique_ordering
    }

    /// These rules and `other`'s (a preset's rules under the user's).
    fn union(mut self, other: &Validation) -> Self {
        for c in &other.not_null {
            if !self.not_null.contains(c) {
                self.not_null.push(c.clone());
            }
        }
        for c in &other.checks {
            if !self.checks.contains(c) {
                self.checks.push(c.clone());
            }
        }
        self.unique_ordering |= other.unique_ordering;
        self
    }
}

/// Compiles the SQL of validation checks (DataFusion's, given by the server, so that
/// storage stays free of it).
pub trait CheckCompiler: Send + Sync + std::fmt::Debug {
    /// Plan `sql`, a boolean expression, against `schema`.
    fn compile(&self, sql: &str, schema: &SchemaRef) -> Result<Arc<dyn RowFilter>>;
}

/// The rules of one write: the item's, or the ones this write gives (with its preset's).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rules {
    pub(crate) validation: Validation,
    pub(crate) preset: Option<Preset>,
    pub(crate) rename: BTreeMap<String, String>,
    pub(crate) drop: Vec<String>,
}

impl Rules {
    /// The rules a write works under: what it gives, else the item's. A preset brings its
    /// key, ordering column, checks and legacy column map (`opts` is completed with them).
    pub(crate) fn of_write(opts: &mut WriteOptions, current: Option<&Settings>) -> Result<Self> {
        let mut rules = Rules {
            validation: opts
                .validation
                .clone()
                .or_else(|| current.map(|s| s.validation.clone()))
                .unwrap_or_default(),
            preset: opts.preset.or(current.and_then(|s| s.preset)),
            rename: opts
                .rename
                .clone()
                .or_else(|| current.map(|s| s.rename.clone()))
                .unwrap_or_default(),
            drop: opts
                .drop
                .clone()
                .or_else(|| current.map(|s| s.drop.clone()))
                .unwrap_or_default(),
        };
        if let Some(preset) = rules.preset {
            // A preset's rules stay under whatever a later write gives.
            let given = opts.preset.is_some();
            if given {
                match &opts.ordered_on {
                    Some(o) if o != preset::ORDERED_ON => {
                        return Err(Error::invalid(format!(
                            "preset {} is ordered on {:?}, not {o:?}",
                            preset.name(),
                            preset::ORDERED_ON
                        )))
                    }
                    _ => opts.ordered_on = Some(preset::ORDERED_ON.to_string()),
                }
                if current.is_none() || opts.mode.replaces_all() {
                    opts.dedup_on.get_or_insert_with(|| preset.dedup_on());
                }
            }
            rules.validation = rules.validation.union(&preset.validation());
            for (from, to) in preset.rename() {
                rules.rename.entry(from).or_insert(to);
            }
            for d in preset.drop() {
                if !rules.drop.contains(&d) {
                    rules.drop.push(d);
                }
            }
            if given || opts.validation.is_some() {
                opts.validation = Some(rules.validation.clone());
            }
            if given || opts.rename.is_some() {
                opts.rename = Some(rules.rename.clone());
            }
            if given || opts.drop.is_some() {
                opts.drop = Some(rules.drop.clone());
            }
        }
        Ok(rules)
    }

    /// Whether incoming columns are canonicalised (renamed, dropped, converted, filled).
    fn canonicalises(&self) -> bool {
        self.preset.is_some() || !self.rename.is_empty() || !self.drop.is_empty()
    }
}

/// Canonicalises and checks the batches of one upload.
pub(crate) struct Shaper {
    /// The canonical schema, when columns are canonicalised.
    canonical: Option<SchemaRef>,
    rename: BTreeMap<String, String>,
    checker: Option<Checker>,
}

impl Shaper {
    /// The schema an upload of `schema` is written with by `opts` under `rules`
    /// (canonical against the item, `current`, unless the write replaces everything), and
    /// the shaper of its batches (`None`: they pass as they are).
    pub(crate) fn new(
        rules: &Rules,
        opts: &WriteOptions,
        current: Option<&Manifest>,
        compiler: Option<&Arc<dyn CheckCompiler>>,
        schema: SchemaRef,
    ) -> Result<(SchemaRef, Option<Self>)> {
        let replaces_all = opts.mode.replaces_all();
        let stored = current.filter(|_| !replaces_all).map(|m| m.live_schema());
        let canonical = if rules.canonicalises() {
            Some(canonical_schema(rules, stored, &schema)?)
        } else {
            None
        };
        let schema = canonical.clone().unwrap_or(schema);
        // The ordering column: as given, the item's, or the default (the first timestamp).
        let ordered_on = opts
            .ordered_on
            .clone()
            .or_else(|| current.map(|m| m.live_settings().ordered_on.clone()))
            .or_else(|| {
                let mut fields = schema.fields().iter();
                let first = fields.find(|f| matches!(f.data_type(), DataType::Timestamp(..)));
                first.map(|f| f.name().clone())
            });
        let checker = Checker::new(&rules.validation, &schema, ordered_on.as_deref(), compiler)?;
        if canonical.is_none() && checker.is_none() {
            return Ok((schema, None));
        }
        let shaper = Self {
            canonical,
            rename: rules.rename.clone(),
            checker,
        };
        Ok((schema, Some(shaper)))
    }

    /// `input` through `shaper`, if any.
    pub(crate) fn stream(
        shaper: Option<Self>,
        input: BoxStream<'static, Result<RecordBatch>>,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        match shaper {
            None => input,
            Some(mut shaper) => input.map(move |b| shaper.shape(b?)).boxed(),
        }
    }

    /// Count rows within `item`'s rows of a batch write.
    pub(crate) fn for_item(mut self, item: &impl std::fmt::Display) -> Self {
        self.checker = self.checker.map(|c| c.for_item(&item.to_string()));
        self
    }

    /// The next batch of the upload, canonical and checked.
    pub(crate) fn shape(&mut self, mut batch: RecordBatch) -> Result<RecordBatch> {
        if let Some(target) = &self.canonical {
            batch = adapt(&renamed(&batch, &self.rename)?, target)?;
        }
        if let Some(checker) = &mut self.checker {
            checker.check(&batch)?;
        }
        Ok(batch)
    }
}

/// The batch with its columns renamed (dropped columns are left out by `adapt`).
fn renamed(batch: &RecordBatch, renames: &BTreeMap<String, String>) -> Result<RecordBatch> {
    if renames.is_empty() {
        return Ok(batch.clone());
    }
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match renames.get(f.name()) {
            Some(to) => f.as_ref().clone().with_name(to),
            None => f.as_ref().clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        batch.columns().to_vec(),
    )?)
}

/// The schema an upload of `input` is stored with: renamed, without dropped columns,
/// in a preset's schema (converted), with the missing nullable columns of the preset or
/// of the stored item (`stored`) added.
fn canonical_schema(
    rules: &Rules,
    stored: Option<&SchemaRef>,
    input: &SchemaRef,
) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = Vec::new();
    for f in input.fields() {
        if rules.drop.contains(f.name()) {
            continue;
        }
        let name = rules.rename.get(f.name()).unwrap_or(f.name());
        if fields.iter().any(|g| g.name() == name) {
            return Err(Error::invalid(format!(
                "column {name:?} appears twice after renaming {:?}",
                f.name()
            )));
        }
        fields.push(f.as_ref().clone().with_name(name));
    }
    let target = match (stored, rules.preset) {
        (Some(stored), _) => Arc::clone(stored),
        (None, Some(preset)) => preset.schema(),
        (None, None) => return Ok(Arc::new(Schema::new(fields))),
    };
    for f in target.fields() {
        if !fields.iter().any(|g| g.name() == f.name()) {
            if !f.is_nullable() {
                return Err(Error::invalid(format!(
                    "column {:?} is missing and may not be null",
                    f.name()
                )));
            }
            fields.push(f.as_ref().clone());
        }
    }
    match rules.preset {
        Some(preset) => preset.conform(&fields, &target),
        None => Ok(Arc::new(Schema::new(fields))),
    }
}
