//! Batches sorted on their ordering keys, with the keys beside them.

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::ScalarBuffer;
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;

use crate::storage::error::Result;
use crate::storage::key::order_keys;

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

    pub(crate) fn slice(&self, offset: usize, len: usize) -> Keyed {
        Keyed {
            batch: self.batch.slice(offset, len),
            keys: self.keys.slice(offset, len),
            is_new: self.is_new[offset..offset + len].to_vec(),
        }
    }

    pub(crate) fn concat(schema: &SchemaRef, parts: &[Keyed]) -> Result<Keyed> {
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

    pub(crate) fn filter(&self, keep: &[bool]) -> Result<Keyed> {
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
    let column = batch.column_by_name(ordered_on).ok_or_else(|| {
        crate::storage::error::Error::OrderingColumn {
            column: ordered_on.to_string(),
            message: "is not in the data".into(),
        }
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
