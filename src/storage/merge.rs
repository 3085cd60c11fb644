//! Sorting, k-way merging and exact de-duplication of ordered batches.
//!
//! ```text
//!  source 0 (stored file) ─┐
//!  source 1 (stored file) ─┤  Merger: smallest (key, source) first   Dedup: per run of
//!  source 2 (new run)     ─┼─────────────────────────────────────────► equal keys, drop
//!  source 3 (new run)     ─┘  (stable: ties keep source order)        rows equal on the key
//! ```
//!
//! Order among rows with equal ordering keys is always: stored rows first, then new rows in
//! upload order. De-duplication only looks inside a run of equal ordering keys (the
//! ordering column is part of every key), so it streams with one run of look-behind.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::array::{make_comparator, ArrayRef, BooleanArray, RecordBatch};
use arrow::buffer::ScalarBuffer;
use arrow::compute::SortOptions;
use arrow::compute::{
    concat_batches, filter_record_batch, interleave_record_batch, take_record_batch,
};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::error::Result;
use super::manifest::Keep;
use super::time::order_keys;

/// A batch sorted on its ordering keys, with those keys and a flag per row telling whether
/// it comes from the new data (as opposed to data already stored).
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub(crate) batch: RecordBatch,
    pub(crate) keys: ScalarBuffer<i64>,
    pub(crate) is_new: Vec<bool>,
}

impl Keyed {
    pub(crate) fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn slice(&self, offset: usize, len: usize) -> Keyed {
        Keyed {
            batch: self.batch.slice(offset, len),
            keys: self.keys.slice(offset, len),
            is_new: self.is_new[offset..offset + len].to_vec(),
        }
    }

    fn concat(schema: &SchemaRef, parts: &[Keyed]) -> Result<Keyed> {
        if parts.len() == 1 {
            return Ok(parts[0].clone());
        }
        let batches: Vec<&RecordBatch> = parts.iter().map(|p| &p.batch).collect();
        let batch = concat_batches(schema, batches)?;
        let keys: Vec<i64> = parts.iter().flat_map(|p| p.keys.iter().copied()).collect();
        let is_new = parts
            .iter()
            .flat_map(|p| p.is_new.iter().copied())
            .collect();
        Ok(Keyed {
            batch,
            keys: keys.into(),
            is_new,
        })
    }

    fn filter(&self, keep: &[bool]) -> Result<Keyed> {
        let mask = BooleanArray::from(keep.to_vec());
        let batch = filter_record_batch(&self.batch, &mask)?;
        let keys: Vec<i64> = self
            .keys
            .iter()
            .zip(keep)
            .filter_map(|(k, &m)| m.then_some(*k))
            .collect();
        let is_new = self
            .is_new
            .iter()
            .zip(keep)
            .filter_map(|(n, &m)| m.then_some(*n))
            .collect();
        Ok(Keyed {
            batch,
            keys: keys.into(),
            is_new,
        })
    }
}

/// Sort `batch` on `ordered_on`, keeping the input order of equal keys (stable).
pub(crate) fn sort_batch(batch: RecordBatch, ordered_on: &str, is_new: bool) -> Result<Keyed> {
    let column = batch
        .column_by_name(ordered_on)
        .ok_or_else(|| super::Error::OrderingColumn {
            column: ordered_on.to_string(),
            message: "is not in the data".into(),
        })?;
    let keys = order_keys(ordered_on, column.as_ref())?;
    let n = batch.num_rows();
    if keys.windows(2).all(|w| w[0] <= w[1]) {
        return Ok(Keyed {
            batch,
            keys,
            is_new: vec![is_new; n],
        });
    }
    let mut indices: Vec<u32> = (0..n as u32).collect();
    indices.sort_by_key(|&i| keys[i as usize]); // `sort_by_key` is stable
    let sorted_keys: Vec<i64> = indices.iter().map(|&i| keys[i as usize]).collect();
    let batch = take_record_batch(&batch, &UInt32Array::from(indices))?;
    Ok(Keyed {
        batch,
        keys: sorted_keys.into(),
        is_new: vec![is_new; n],
    })
}

/// A source of sorted batches for the merger.
pub(crate) struct Source {
    /// Sorted batches, already in the output schema.
    pub(crate) stream: BoxStream<'static, Result<RecordBatch>>,
    /// Whether its rows are new data.
    pub(crate) is_new: bool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("is_new", &self.is_new)
            .finish()
    }
}

/// Streams the k-way merge of sorted sources; ties go to the lower source index.
#[derive(Debug)]
pub(crate) struct Merger {
    ordered_on: String,
    sources: Vec<Source>,
    cursors: Vec<Option<(Keyed, usize)>>,
    done: Vec<bool>,
    batch_size: usize,
}

impl Merger {
    pub(crate) fn new(ordered_on: &str, sources: Vec<Source>, batch_size: usize) -> Self {
        let n = sources.len();
        Self {
            ordered_on: ordered_on.to_string(),
            sources,
            cursors: (0..n).map(|_| None).collect(),
            done: vec![false; n],
            batch_size,
        }
    }

    /// Make sure source `i` has a cursor with rows left, unless it is exhausted; true if
    /// a new batch was loaded.
    async fn fill(&mut self, i: usize) -> Result<bool> {
        let mut loaded = false;
        while !self.done[i]
            && self.cursors[i]
                .as_ref()
                .is_none_or(|(k, pos)| *pos >= k.num_rows())
        {
            match self.sources[i].stream.next().await {
                None => {
                    self.done[i] = true;
                    self.cursors[i] = None;
                }
                Some(batch) => {
                    let batch = batch?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let column = batch
                        .column_by_name(&self.ordered_on)
                        .expect("sources carry the ordering column");
                    let keys = order_keys(&self.ordered_on, column.as_ref())?;
                    let n = batch.num_rows();
                    let is_new = self.sources[i].is_new;
                    self.cursors[i] = Some((
                        Keyed {
                            batch,
                            keys,
                            is_new: vec![is_new; n],
                        },
                        0,
                    ));
                    loaded = true;
                }
            }
        }
        Ok(loaded)
    }

    /// The next merged batch, or `None` when every source is exhausted.
    ///
    /// The output is gathered as (batch, row) indices and built with one `interleave`
    /// (or one slice, when it is a single contiguous run): sources that alternate row by
    /// row cost no more than long runs.
    pub(crate) async fn next(&mut self) -> Result<Option<Keyed>> {
        let n = self.sources.len();
        let mut batches: Vec<RecordBatch> = Vec::new();
        // Index in `batches` of each cursor's current batch, once it has been used.
        let mut slot: Vec<Option<usize>> = vec![None; n];
        let mut indices: Vec<(usize, usize)> = Vec::new();
        let mut keys: Vec<i64> = Vec::new();
        let mut is_new: Vec<bool> = Vec::new();
        for (i, slot) in slot.iter_mut().enumerate() {
            if self.fill(i).await? {
                *slot = None;
            }
        }
        while indices.len() < self.batch_size {
            // The best and second-best heads, by (key, source index).
            let mut best: Option<(i64, usize)> = None;
            let mut second: Option<(i64, usize)> = None;
            for (i, c) in self.cursors.iter().enumerate() {
                if let Some((k, pos)) = c {
                    let head = (k.keys[*pos], i);
                    if best.is_none_or(|b| head < b) {
                        second = best;
                        best = Some(head);
                    } else if second.is_none_or(|s| head < s) {
                        second = Some(head);
                    }
                }
            }
            let Some((_, s)) = best else { break };
            let (keyed, pos) = self.cursors[s].as_mut().expect("best has a cursor");
            let rest = &keyed.keys[*pos..];
            let run = match second {
                None => rest.len(),
                // A lower index wins ties, so it may also take rows equal to the other head.
                Some((k2, i2)) if s < i2 => gallop(rest, |k| k <= k2),
                Some((k2, _)) => gallop(rest, |k| k < k2),
            };
            let take = run.min(self.batch_size - indices.len()).max(1);
            let b = *slot[s].get_or_insert_with(|| {
                batches.push(keyed.batch.clone());
                batches.len() - 1
            });
            indices.extend((*pos..*pos + take).map(|r| (b, r)));
            keys.extend_from_slice(&keyed.keys[*pos..*pos + take]);
            is_new.extend_from_slice(&keyed.is_new[*pos..*pos + take]);
            *pos += take;
            // Only the source just taken from can have run dry.
            if *pos >= keyed.num_rows() && self.fill(s).await? {
                slot[s] = None;
            }
        }
        let Some(&(first_batch, first_row)) = indices.first() else {
            return Ok(None);
        };
        let contiguous = batches.len() == 1
            && indices
                .last()
                .is_some_and(|&(_, r)| r + 1 - first_row == indices.len());
        let batch = if contiguous {
            batches[first_batch].slice(first_row, indices.len())
        } else {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            interleave_record_batch(&refs, &indices)?
        };
        Ok(Some(Keyed {
            batch,
            keys: keys.into(),
            is_new,
        }))
    }
}

/// The length of the prefix of `keys` (sorted) whose keys satisfy `pred` (true, then
/// false), found by galloping: O(log run) for short runs, as when sources alternate row
/// by row, and still O(log n) for long ones.
fn gallop(keys: &[i64], pred: impl Fn(i64) -> bool) -> usize {
    let mut hi = 1;
    while hi < keys.len() && pred(keys[hi]) {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(keys.len());
    lo + keys[lo..hi].partition_point(|&k| pred(k))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallop_agrees_with_partition_point() {
        for len in 0..70usize {
            let keys: Vec<i64> = (0..len as i64).map(|k| k / 3).collect();
            for bound in -1..=(len as i64 / 3 + 1) {
                assert_eq!(
                    gallop(&keys, |k| k <= bound),
                    keys.partition_point(|&k| k <= bound)
                );
                assert_eq!(
                    gallop(&keys, |k| k < bound),
                    keys.partition_point(|&k| k < bound)
                );
            }
        }
    }
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::stream;

    fn batch(ts: &[i64], v: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("v", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ts.to_vec())),
                Arc::new(StringArray::from(v.to_vec())),
            ],
        )
        .unwrap()
    }

    fn values(k: &Keyed) -> Vec<(i64, String)> {
        let v = k
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        (0..k.num_rows())
            .map(|i| (k.keys[i], v.value(i).to_string()))
            .collect()
    }

    #[test]
    fn sort_is_stable() {
        let k = sort_batch(batch(&[3, 1, 3, 1], &["a", "b", "c", "d"]), "ts", true).unwrap();
        assert_eq!(
            values(&k),
            vec![
                (1, "b".into()),
                (1, "d".into()),
                (3, "a".into()),
                (3, "c".into())
            ]
        );
    }

    #[tokio::test]
    async fn merge_breaks_ties_by_source_and_dedups() {
        let b = batch(&[1, 2, 2, 5], &["s1", "s2", "s2b", "s5"]);
        let schema = b.schema();
        let sources = vec![
            Source {
                stream: stream::iter(vec![Ok(b)]).boxed(),
                is_new: false,
            },
            Source {
                stream: stream::iter(vec![
                    Ok(batch(&[2], &["n2"])),
                    Ok(batch(&[2, 7], &["s2", "n7"])),
                ])
                .boxed(),
                is_new: true,
            },
        ];
        let mut m = Merger::new("ts", sources, 2);
        let mut all = vec![];
        let mut d = Dedup::new(Arc::clone(&schema), "ts", &["v".into()], Keep::Last).unwrap();
        let mut deduped = vec![];
        while let Some(k) = m.next().await.unwrap() {
            all.extend(values(&k));
            if let Some(out) = d.push(k).unwrap() {
                deduped.extend(values(&out));
            }
        }
        if let Some(out) = d.finish().unwrap() {
            deduped.extend(values(&out));
        }
        let s = |t: i64, v: &str| (t, v.to_string());
        assert_eq!(
            all,
            vec![
                s(1, "s1"),
                s(2, "s2"),
                s(2, "s2b"),
                s(2, "n2"),
                s(2, "s2"),
                s(5, "s5"),
                s(7, "n7")
            ]
        );
        // The stored ("2","s2") is replaced by the new one, placed after the stored rows.
        assert_eq!(
            deduped,
            vec![
                s(1, "s1"),
                s(2, "s2b"),
                s(2, "n2"),
                s(2, "s2"),
                s(5, "s5"),
                s(7, "n7")
            ]
        );
    }
}
