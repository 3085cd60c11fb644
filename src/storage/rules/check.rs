//! Validation of incoming batches: each broken rule is an error naming the rule, the
//! column and the first offending row (its index in the upload and its value).

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::util::display::array_value_to_string;

use super::{CheckCompiler, Validation};
use crate::storage::error::{Error, Result};
use crate::storage::key::order_keys;
use crate::storage::read::RowFilter;

/// The compiled rules of one upload, with its position in it.
#[derive(Debug)]
pub(crate) struct Checker {
    not_null: Vec<String>,
    checks: Vec<(String, Arc<dyn RowFilter>)>,
    /// The ordering column, when its values must be unique.
    unique: Option<String>,
    /// Rows of the upload before the next batch.
    offset: u64,
    /// The last ordering value so far, while the upload arrives in order (then every
    /// repeat is caught here, with its row; otherwise the write's merge catches it).
    last_key: Option<i64>,
    in_order: bool,
    /// What row indices count: "the upload", or one item's rows of a batch write.
    rows_of: String,
}

impl Checker {
    /// Compile `rules` against the upload's schema; `None` if there is nothing to check.
    pub(crate) fn new(
        rules: &Validation,
        schema: &SchemaRef,
        ordered_on: Option<&str>,
        compiler: Option<&Arc<dyn CheckCompiler>>,
    ) -> Result<Option<Self>> {
        if rules.is_empty() {
            return Ok(None);
        }
        for c in &rules.not_null {
            if schema.field_with_name(c).is_err() {
                return Err(Error::invalid(format!(
                    "validation not_null names column {c:?}, which the data does not have"
                )));
            }
        }
        let mut checks = Vec::with_capacity(rules.checks.len());
        for sql in &rules.checks {
            let compiler = compiler.ok_or_else(|| {
                Error::invalid("validation checks need SQL, which this engine was opened without")
            })?;
            let filter = compiler
                .compile(sql, schema)
                .map_err(|e| Error::invalid(format!("validation check {sql:?}: {e}")))?;
            checks.push((sql.clone(), filter));
        }
        Ok(Some(Self {
            not_null: rules.not_null.clone(),
            checks,
            unique: rules
                .unique_ordering
                .then(|| ordered_on.map(str::to_string))
                .flatten(),
            offset: 0,
            last_key: None,
            in_order: true,
            rows_of: "the upload".into(),
        }))
    }

    /// Count rows within `item`'s rows of a batch write.
    pub(crate) fn for_item(mut self, item: &str) -> Self {
        self.rows_of = format!("item {item:?}'s rows in the upload");
        self
    }

    /// Check the next batch of the upload.
    pub(crate) fn check(&mut self, batch: &RecordBatch) -> Result<()> {
        let result = self.check_rows(batch);
        self.offset += batch.num_rows() as u64;
        result
    }

    fn check_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        for name in &self.not_null {
            let col = column(batch, name)?;
            if let Some(row) = (0..col.len()).find(|&r| col.is_null(r)) {
                return Err(self.broken("not_null", &format!("column {name:?} is null"), row));
            }
        }
        for (sql, filter) in &self.checks {
            let passed = filter.evaluate(batch)?;
            let failed = (0..passed.len()).find(|&r| passed.is_valid(r) && !passed.value(r));
            if let Some(row) = failed {
                let values = filter
                    .columns()
                    .iter()
                    .map(|c| Ok(format!("column {c:?} = {}", value(column(batch, c)?, row))))
                    .collect::<Result<Vec<_>>>()?;
                return Err(self.broken(&format!("check {sql:?}"), &values.join(", "), row));
            }
        }
        if let Some(on) = self.unique.clone() {
            let col = column(batch, &on)?;
            let keys = order_keys(&on, col.as_ref())?;
            if let Some(row) = self.repeat(&keys) {
                let what = format!("column {on:?} repeats {}", value(col, row));
                return Err(self.broken("unique_ordering", &what, row));
            }
        }
        Ok(())
    }

    /// The first row of `keys` that repeats an earlier ordering value of the upload, if
    /// the upload is in order so far.
    fn repeat(&mut self, keys: &[i64]) -> Option<usize> {
        if !self.in_order {
            return None;
        }
        let mut last = self.last_key;
        for (row, &k) in keys.iter().enumerate() {
            match last {
                Some(l) if k == l => return Some(row),
                Some(l) if k < l => {
                    self.in_order = false;
                    return None;
                }
                _ => last = Some(k),
            }
        }
        self.last_key = last;
        None
    }

    fn broken(&self, rule: &str, what: &str, row: usize) -> Error {
        Error::Validation {
            message: format!(
                "rule {rule} is broken at row {} of {}: {what}",
                self.offset + row as u64,
                self.rows_of
            ),
        }
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::invalid(format!("validation: column {name:?} is missing")))
}

fn value(col: &Arc<dyn Array>, row: usize) -> String {
    if col.is_null(row) {
        return "null".into();
    }
    array_value_to_string(col, row).unwrap_or_else(|_| "?".into())
}

/// The error of a repeated ordering value found where the write merges rows (stored
/// ones, or an out-of-order upload's).
fn duplicate_key(ordered_on: &str, batch: &RecordBatch, row: usize) -> Error {
    let repeated = batch
        .column_by_name(ordered_on)
        .map_or_else(|| "?".into(), |col| value(col, row));
    Error::Validation {
        message: format!(
            "rule unique_ordering is broken: column {ordered_on:?} repeats {repeated} (in the \
             upload, or already stored)"
        ),
    }
}

/// Where sorted rows are merged: the first of `keys` (sorted) equal to the one before it
/// (`last`, carried from the previous batch), as the [`duplicate_key`] error.
pub(crate) fn unique_keys(
    ordered_on: &str,
    batch: &RecordBatch,
    keys: &[i64],
    last: &mut Option<i64>,
) -> Result<()> {
    for (row, &k) in keys.iter().enumerate() {
        if *last == Some(k) {
            return Err(duplicate_key(ordered_on, batch, row));
        }
        *last = Some(k);
    }
    Ok(())
}
