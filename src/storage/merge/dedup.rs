//! Exact de-duplication of a merged stream on `(ordering key, key columns)`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{make_comparator, ArrayRef};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};

use super::kway::gallop;
use super::sort::Keyed;
use crate::storage::error::Result;
use crate::storage::manifest::Keep;

/// Runs of equal ordering keys up to this size are de-duplicated without hashing.
const SMALL_GROUP: usize = 16;

/// De-duplicates a merged stream on `(ordering key, key columns)`.
///
/// Rules for a run of rows with equal ordering keys (stored rows first, then new ones):
/// new rows are de-duplicated among themselves (the last or first in upload order wins);
/// with `Keep::Last` a stored row whose key matches a new row is dropped, with
/// `Keep::First` a new row whose key matches a stored row is dropped. Stored rows are
/// never compared with each other.
#[derive(Debug)]
pub(crate) struct Dedup {
    schema: SchemaRef,
    key_columns: Vec<String>,
    keep: Keep,
    carry: Option<Keyed>,
    converter: Option<RowConverter>,
}

impl Dedup {
    pub(crate) fn new(
        schema: SchemaRef,
        ordered_on: &str,
        key_columns: &[String],
        keep: Keep,
    ) -> Result<Self> {
        let key_columns: Vec<String> = key_columns
            .iter()
            .filter(|c| c.as_str() != ordered_on)
            .cloned()
            .collect();
        let converter = if key_columns.is_empty() {
            None
        } else {
            let fields = key_columns
                .iter()
                .map(|c| {
                    let f = schema.field_with_name(c)?;
                    Ok(SortField::new(f.data_type().clone()))
                })
                .collect::<Result<Vec<_>>>()?;
            Some(RowConverter::new(fields)?)
        };
        Ok(Self {
            schema,
            key_columns,
            keep,
            carry: None,
            converter,
        })
    }

    /// Feed one merged batch; returns what can be emitted so far (the trailing run of
    /// equal keys is held back until the next batch or `finish`).
    pub(crate) fn push(&mut self, batch: Keyed) -> Result<Option<Keyed>> {
        let combined = match self.carry.take() {
            Some(c) => Keyed::concat(&self.schema, &[c, batch])?,
            None => batch,
        };
        let n = combined.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let last = combined.keys[n - 1];
        let tail_start = combined.keys.partition_point(|&k| k < last);
        self.carry = Some(combined.slice(tail_start, n - tail_start));
        if tail_start == 0 {
            return Ok(None);
        }
        self.resolve(&combined.slice(0, tail_start)).map(Some)
    }

    /// Emit the rows held back.
    pub(crate) fn finish(&mut self) -> Result<Option<Keyed>> {
        self.carry.take().map(|c| self.resolve(&c)).transpose()
    }

    /// Apply the rules to a batch that holds whole runs of equal keys.
    fn resolve(&self, k: &Keyed) -> Result<Keyed> {
        let n = k.num_rows();
        let mut keep = vec![true; n];
        let mut changed = false;
        let cols: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|c| Arc::clone(k.batch.column_by_name(c).expect("key column exists")))
            .collect();
        // Small groups compare rows pairwise; large ones hash their row encoding, made
        // only when one occurs (or up front for key types without a comparator).
        let comparators = cols
            .iter()
            .map(|c| make_comparator(c.as_ref(), c.as_ref(), SortOptions::default()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok();
        let rows = std::cell::OnceCell::new();
        let encoded = || -> Result<&Option<Rows>> {
            if rows.get().is_none() {
                let encoded = match &self.converter {
                    Some(conv) => Some(conv.convert_columns(&cols)?),
                    None => None,
                };
                let _ = rows.set(encoded);
            }
            Ok(rows.get().expect("set above"))
        };
        if comparators.is_none() {
            encoded()?;
        }
        let same = |i: usize, j: usize| match &comparators {
            Some(cmps) => cmps.iter().all(|cmp| cmp(i, j).is_eq()),
            None => {
                let r = rows.get().expect("encoded above");
                row_key(r, i) == row_key(r, j)
            }
        };
        let mut start = 0;
        while start < n {
            let end = start + gallop(&k.keys[start..], |x| x == k.keys[start]);
            if end - start > 1 && k.is_new[start..end].iter().any(|&b| b) {
                changed = true;
                let group = start..end;
                match self.keep {
                    // Small groups (the usual case: a stored row and its replacement)
                    // compare directly instead of hashing.
                    Keep::Last if end - start <= SMALL_GROUP => {
                        for i in group.clone() {
                            let winner = group.clone().rev().find(|&j| k.is_new[j] && same(j, i));
                            keep[i] = winner.is_none_or(|w| w == i);
                        }
                    }
                    Keep::First if end - start <= SMALL_GROUP => {
                        for i in group.clone().filter(|&i| k.is_new[i]) {
                            keep[i] = !(start..i).any(|j| same(j, i));
                        }
                    }
                    Keep::Last => {
                        // Last occurrence of each key among new rows wins.
                        let rows = encoded()?;
                        let mut last_new: HashMap<&[u8], usize> = HashMap::new();
                        for i in group.clone().filter(|&i| k.is_new[i]) {
                            last_new.insert(row_key(rows, i), i);
                        }
                        for i in group {
                            if let Some(&winner) = last_new.get(&row_key(rows, i)) {
                                keep[i] = winner == i;
                            }
                        }
                    }
                    Keep::First => {
                        let rows = encoded()?;
                        let mut seen: HashSet<&[u8]> = HashSet::new();
                        for i in group {
                            // Stored rows come first in a group: they are all seen
                            // before any new row is considered.
                            if k.is_new[i] {
                                keep[i] = seen.insert(row_key(rows, i));
                            } else {
                                seen.insert(row_key(rows, i));
                            }
                        }
                    }
                }
            }
            start = end;
        }
        if !changed {
            return Ok(k.clone());
        }
        k.filter(&keep)
    }
}

/// The row encoding of the key columns of row `i` (empty without key columns).
fn row_key(rows: &Option<Rows>, i: usize) -> &[u8] {
    match rows {
        Some(r) => r.row(i).data(),
        None => &[],
    }
}
