//! Multi-item reads (oups' synchronized reads, a backtest's replay): the rows of several
//! items as one stream in key order, with a first column `_item`; ties go to the item
//! named first. Each item's read is planned on its own (version, range, filter, `n_prev`);
//! `limit` and `last` apply to the merged stream (each item's read keeps at most as many,
//! so the merge reads no more than it needs).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::scan::limit_stream;
use super::{ReadPlan, ReadStream};
use crate::storage::error::{Error, Result};
use crate::storage::merge::{Merger, Source};
use crate::storage::parquet::READ_BATCH_ROWS;
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
        // Each item is read with the ordering column too (the merge needs it).
        let read_schema = match schema.field_with_name(&on) {
            Ok(_) => Arc::clone(&schema),
            Err(_) => {
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                let item_schema = plans[0].item_schema();
                fields.push(item_schema.field_with_name(&on)?.clone());
                Arc::new(Schema::new(fields))
            }
        };
        let mut sources = Vec::with_capacity(plans.len());
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
            let (item_names, read_schema) = (Arc::clone(&names), Arc::clone(&read_schema));
            let stream = read
                .stream
                .map(move |b| with_item(b?, n as i32, &item_names, &read_schema))
                .boxed();
            sources.push(Source {
                stream,
                is_new: false,
            });
        }
        let merger = Merger::new(&on, sources, READ_BATCH_ROWS);
        let merged = stream::try_unfold(merger, |mut m| async move {
            Ok(m.next().await?.map(|k| (k.batch, m)))
        });
        let out = Arc::clone(&schema);
        let merged = merged
            .map(move |b: Result<RecordBatch>| {
                let b = b?;
                let mut columns: Vec<ArrayRef> = (0..out.fields().len())
                    .map(|i| Arc::clone(b.column(i)))
                    .collect();
                columns[0] = one_dictionary(&columns[0], &names)?;
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
            version: 0,
            stream,
        })
    }
}

/// `batch` of item `n` with the `_item` column first, in `schema`.
fn with_item(
    batch: RecordBatch,
    n: i32,
    names: &Arc<StringArray>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let keys = Int32Array::from(vec![n; batch.num_rows()]);
    let item: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::try_new(
        keys,
        Arc::clone(names) as ArrayRef,
    )?);
    let mut columns = vec![item];
    for f in &schema.fields()[1..] {
        columns.push(Arc::clone(batch.column(batch.schema().index_of(f.name())?)));
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The `_item` column of merged rows over the one dictionary of item names (the merge
/// may have concatenated the sources' dictionaries, repeating names).
fn one_dictionary(column: &ArrayRef, names: &Arc<StringArray>) -> Result<ArrayRef> {
    let merged = column.as_dictionary::<Int32Type>();
    let values = merged.values().as_string::<i32>();
    if values.len() == names.len() {
        return Ok(Arc::clone(column));
    }
    let position = |name: &str| (0..names.len()).position(|i| names.value(i) == name);
    let mut map = Vec::with_capacity(values.len());
    for v in 0..values.len() {
        let n = position(values.value(v))
            .ok_or_else(|| Error::invalid("the merge produced an unknown item name"))?;
        map.push(n as i32);
    }
    let keys =
        Int32Array::from_iter_values(merged.keys().values().iter().map(|&k| map[k as usize]));
    Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
        keys,
        Arc::clone(names) as ArrayRef,
    )?))
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
