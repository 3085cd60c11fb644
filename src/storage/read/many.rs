//! Multi-item reads (oups' synchronized reads, a backtest's replay): the rows of several
//! items as one stream in key order, with a first column `_item`; ties go to the item
//! named first. Each item's read is planned on its own (version, range, filter, `n_prev`);
//! `limit` and `last` apply to the merged stream (each item's read keeps at most as many,
//! so the merge reads no more than it needs).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow::buffer::ScalarBuffer;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::scan::limit_stream;
use super::{ReadPlan, ReadStream};
use crate::storage::error::{Error, Result};
use crate::storage::key::order_keys;
use crate::storage::Engine;

/// The name of the column that says which item a row of a multi-item read comes from.
pub const ITEM_COLUMN: &str = "_item";

/// The schema of a multi-item read of `plans`: `_item` (dictionary-encoded string), then
/// the columns every plan returns, which must be the same with one type each.
pub fn many_schema(plans: &[ReadPlan]) -> Result<SchemaRef> {
    let Some(first) = plans.first() else {
        return Err(Error::invalid("items is empty: name at least one item"));
    };
    let on = first.ordered_on();
    let mut fields: Vec<Field> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for p in &plans[1..] {
        let item = p.item();
        if p.ordered_on() != on {
            return Err(Error::invalid(format!(
                "items must share an ordering column: {} is ordered on {on:?}, {item} on {:?}",
                first.item(),
                p.ordered_on()
            )));
        }
        let (a, b) = (first.item_schema(), p.item_schema());
        if a.field_with_name(on)?.data_type() != b.field_with_name(on)?.data_type() {
            return Err(Error::invalid(format!(
                "items must share the type of {on:?}: {} and {item} differ",
                first.item()
            )));
        }
        let same = p.schema().fields().len() == fields.len()
            && p.schema()
                .fields()
                .iter()
                .zip(&fields)
                .all(|(f, g)| f.name() == g.name() && f.data_type() == g.data_type());
        if !same {
            return Err(Error::invalid(format!(
                "the columns of {item} differ from those of {} in name or type: choose \
                 columns that every item has with one type",
                first.item()
            )));
        }
        for (g, f) in fields.iter_mut().zip(p.schema().fields()) {
            if f.is_nullable() {
                *g = g.clone().with_nullable(true);
            }
        }
    }
    let item = Field::new_dictionary(ITEM_COLUMN, DataType::Int32, DataType::Utf8, false);
    fields.insert(0, item);
    Ok(Arc::new(Schema::new(fields)))
}

impl Engine {
    /// Run `plans` (one per item, in the order given) as one stream in key order, in
    /// [`many_schema`]; `limit` / `last` apply to the merged stream.
    pub async fn execute_many(
        &self,
        plans: &[ReadPlan],
        limit: Option<usize>,
        last: Option<usize>,
    ) -> Result<ReadStream> {
        let schema = many_schema(plans)?;
        let on = plans[0].ordered_on().to_string();
        let names: Arc<StringArray> =
            Arc::new(plans.iter().map(|p| Some(p.item().to_string())).collect());
        // Each item is read with the ordering column too (the merge needs it), and its
        // position as a plain int32 (merged far cheaper than a dictionary; it becomes the
        // dictionary's keys after the merge).
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[0] = Field::new(ITEM_COLUMN, DataType::Int32, false);
        if schema.field_with_name(&on).is_err() {
            fields.push(plans[0].item_schema().field_with_name(&on)?.clone());
        }
        let read_schema = Arc::new(Schema::new(fields));
        let mut sources: Vec<BoxStream<'static, Result<RecordBatch>>> =
            Vec::with_capacity(plans.len());
        for (n, plan) in plans.iter().enumerate() {
            let mut columns: Vec<String> = plan
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if !columns.contains(&on) {
                columns.push(on.clone());
            }
            let plan = plan.clone().with_columns(columns)?;
            let read = self.execute(&plan, &plan.whole()).await?;
            let read_schema = Arc::clone(&read_schema);
            let stream = read
                .stream
                .map(move |b| with_item(b?, n as i32, &read_schema))
                .boxed();
            sources.push(stream);
        }
        let merger = TimeMerge::new(&on, sources);
        let merged = stream::try_unfold(merger, |mut m| async move {
            Ok(m.next().await?.map(|b| (b, m)))
        });
        let out = Arc::clone(&schema);
        let merged = merged
            .map(move |b: Result<RecordBatch>| {
                let b = b?;
                let mut columns: Vec<ArrayRef> = (0..out.fields().len())
                    .map(|i| Arc::clone(b.column(i)))
                    .collect();
                let keys = columns[0].as_primitive::<Int32Type>().clone();
                columns[0] = Arc::new(DictionaryArray::<Int32Type>::try_new(
                    keys,
                    Arc::clone(&names) as ArrayRef,
                )?);
                Ok(RecordBatch::try_new(Arc::clone(&out), columns)?)
            })
            .boxed();
        let stream = match (limit, last) {
            (Some(n), _) => limit_stream(merged, n),
            (None, Some(n)) => last_rows(merged, n).await?,
            (None, None) => merged,
        };
        Ok(ReadStream {
            schema,
            version: 0, // each item has its own: the plans'

            stream,
        })
    }
}

/// The merge of sorted streams whose rows interleave finely (the ticks of several
/// symbols): each round takes from every stream the rows up to the smallest last key of
/// their current batches (the merge is known up to there) and orders them with one stable
/// sort of their keys, so ties keep stream order. Memory: one batch per stream and the
/// round's output.
struct TimeMerge {
    ordered_on: String,
    streams: Vec<BoxStream<'static, Result<RecordBatch>>>,
    /// Each stream's current batch, its keys and the next row; `None` once it is done.
    cursors: Vec<Option<(RecordBatch, ScalarBuffer<i64>, usize)>>,
    done: Vec<bool>,
}

impl TimeMerge {
    fn new(ordered_on: &str, streams: Vec<BoxStream<'static, Result<RecordBatch>>>) -> Self {
        let n = streams.len();
        Self {
            ordered_on: ordered_on.to_string(),
            streams,
            cursors: (0..n).map(|_| None).collect(),
            done: vec![false; n],
        }
    }

    /// Load stream `i`'s next non-empty batch if its cursor is spent.
    async fn fill(&mut self, i: usize) -> Result<()> {
        while !self.done[i] && self.cursors[i].is_none() {
            match self.streams[i].try_next().await? {
                None => self.done[i] = true,
                Some(b) if b.num_rows() == 0 => {}
                Some(b) => {
                    let col = b.column(b.schema().index_of(&self.ordered_on)?);
                    let keys = order_keys(&self.ordered_on, col.as_ref())?;
                    self.cursors[i] = Some((b, keys, 0));
                }
            }
        }
        Ok(())
    }

    /// Take stream `i`'s rows with keys `< bound` (or `== bound`) from its current batch.
    fn take(&mut self, i: usize, bound: i64, equal: bool, round: &mut Round) {
        let Some((batch, keys, pos)) = &mut self.cursors[i] else {
            return;
        };
        let rest = &keys[*pos..];
        let end = *pos
            + if equal {
                rest.partition_point(|&k| k <= bound)
            } else {
                rest.partition_point(|&k| k < bound)
            };
        if end > *pos {
            let n = round.slices.len() as u32;
            let from = *pos;
            round
                .order
                .extend((from..end).map(|r| (keys[r], n, (r - from) as u32)));
            round.slices.push(batch.slice(from, end - from));
            *pos = end;
        }
        if *pos == batch.num_rows() {
            self.cursors[i] = None;
        }
    }

    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        for i in 0..self.streams.len() {
            self.fill(i).await?;
        }
        let bound = self
            .cursors
            .iter()
            .flatten()
            .map(|(_, keys, _)| keys[keys.len() - 1])
            .min();
        let Some(bound) = bound else {
            return Ok(None);
        };
        let mut round = Round::default();
        // Every row below the bound is known: merge them all.
        for i in 0..self.streams.len() {
            self.take(i, bound, false, &mut round);
        }
        if round.order.is_empty() {
            // Only rows at the bound are left in some batch: take them stream by stream,
            // each through its following batches, so ties stay in stream order.
            for i in 0..self.streams.len() {
                loop {
                    self.take(i, bound, true, &mut round);
                    if self.cursors[i].is_some() {
                        break;
                    }
                    self.fill(i).await?;
                    let starts_at_bound = self.cursors[i]
                        .as_ref()
                        .is_some_and(|(_, keys, _)| keys[0] == bound);
                    if !starts_at_bound {
                        break;
                    }
                }
            }
        }
        round.order.sort_by_key(|e| e.0); // stable: ties stay in stream order
        let indices: Vec<(usize, usize)> = round
            .order
            .iter()
            .map(|&(_, s, r)| (s as usize, r as usize))
            .collect();
        let refs: Vec<&RecordBatch> = round.slices.iter().collect();
        Ok(Some(interleave_record_batch(&refs, &indices)?))
    }
}

/// The rows of one round of [`TimeMerge`]: slices and `(key, slice, row)` in merge order.
#[derive(Default)]
struct Round {
    slices: Vec<RecordBatch>,
    order: Vec<(i64, u32, u32)>,
}

/// `batch` of item `n` with the item's position first, in `schema`.
fn with_item(batch: RecordBatch, n: i32, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int32Array::from(vec![n; batch.num_rows()]))];
    for f in &schema.fields()[1..] {
        columns.push(Arc::clone(batch.column(batch.schema().index_of(f.name())?)));
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The last `n` rows of a stream (which holds at most `n` rows plus one batch).
async fn last_rows(
    mut s: BoxStream<'static, Result<RecordBatch>>,
    n: usize,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let mut kept: VecDeque<RecordBatch> = VecDeque::new();
    let mut rows = 0;
    while let Some(b) = s.try_next().await? {
        rows += b.num_rows();
        kept.push_back(b);
        while rows - kept.front().map_or(0, |f| f.num_rows()) >= n && kept.len() > 1 {
            rows -= kept.pop_front().map_or(0, |f| f.num_rows());
        }
    }
    if rows > n {
        if let Some(front) = kept.pop_front() {
            let skip = rows - n;
            kept.push_front(front.slice(skip, front.num_rows() - skip));
        }
    }
    Ok(stream::iter(kept.into_iter().map(Ok)).boxed())
}
