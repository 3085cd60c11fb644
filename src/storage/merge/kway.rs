//! The k-way merge of sorted sources into batches in key order (stable: ties go to the
//! lower source index).

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::sort::Keyed;
use crate::storage::error::Result;
use crate::storage::key::order_keys;

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
pub(crate) fn gallop(keys: &[i64], pred: impl Fn(i64) -> bool) -> usize {
    let mut hi = 1;
    while hi < keys.len() && pred(keys[hi]) {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(keys.len());
    lo + keys[lo..hi].partition_point(|&k| pred(k))
}
