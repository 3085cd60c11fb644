//! Reading one data file: the rows of a key range, pruned by row group statistics and
//! the page index, decoded and adapted to the item's current schema.
//!
//! ```text
//! FileEntry + range ─► footer + page index ─► row groups by statistics
//!                  ─► pages by column index ─► decode ─► adapt schema ─► slice range
//! ```

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::footer::{entry_row_groups, load_metadata, row_group_keys, MetaCache, ObjectReader};
use super::READ_BATCH_ROWS;
use crate::storage::error::{Error, Result};
use crate::storage::key::{order_keys, stat_keys, KeyRange};
use crate::storage::manifest::FileEntry;
use crate::storage::schema::adapt;

/// Read the rows of `file` inside `range`, adapted to `target` (the item schema,
/// projected; it must contain the ordering column), in key order.
pub(crate) async fn scan(
    store: Arc<dyn ObjectStore>,
    meta: &MetaCache,
    path: Path,
    file: &FileEntry,
    target: SchemaRef,
    ordered_on: &str,
    range: KeyRange,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if !range.overlaps(file.min, file.max) {
        return Ok(stream::empty().boxed());
    }
    let mut reader = ObjectReader {
        store,
        path,
        size: file.bytes,
    };
    let covers = range.covers(file.min, file.max);
    let metadata = load_metadata(&mut reader, meta).await?;
    let groups = entry_row_groups(file, &metadata);
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata);
    let file_schema = Arc::clone(builder.schema());
    let roots: Vec<usize> = target
        .fields()
        .iter()
        .filter_map(|f| file_schema.index_of(f.name()).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS);
    if !covers {
        let (row_groups, selection) = prune(&builder, &file_schema, ordered_on, groups, range)?;
        if row_groups.is_empty() {
            return Ok(stream::empty().boxed());
        }
        builder = builder.with_row_groups(row_groups);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
    } else if file.row_groups.is_some() {
        builder = builder.with_row_groups(groups.collect());
    }
    let stream = builder.build()?;
    let ordered_on = ordered_on.to_string();
    Ok(stream
        .map_err(Error::from)
        .and_then(move |batch| {
            let out = adapt(&batch, &target).and_then(|b| {
                if covers {
                    return Ok(b);
                }
                let column = b.column_by_name(&ordered_on).expect("projected");
                let keys = order_keys(&ordered_on, column.as_ref())?;
                let r = range.slice_of(&keys);
                Ok(b.slice(r.start, r.len()))
            });
            futures::future::ready(out)
        })
        .try_filter(|b| futures::future::ready(b.num_rows() > 0))
        .boxed())
}

/// Row groups (by statistics) and a page selection (by the column index) that may hold
/// keys of `range`. Everything is kept where statistics are missing.
fn prune<T>(
    builder: &parquet::arrow::arrow_reader::ArrowReaderBuilder<T>,
    file_schema: &SchemaRef,
    ordered_on: &str,
    candidates: Range<usize>,
    range: KeyRange,
) -> Result<(Vec<usize>, Option<RowSelection>)> {
    let metadata = builder.metadata();
    let converter =
        StatisticsConverter::try_new(ordered_on, file_schema, builder.parquet_schema())?;
    let row_groups_meta = metadata.row_groups();
    let keys = row_group_keys(&converter, metadata, candidates.clone())?;
    let row_groups: Vec<usize> = candidates
        .zip(keys)
        .filter(|(_, key_range)| key_range.is_none_or(|(lo, hi)| range.overlaps(lo, hi)))
        .map(|(i, _)| i)
        .collect();
    let (Some(column_index), Some(offset_index)) =
        (metadata.column_index(), metadata.offset_index())
    else {
        return Ok((row_groups, None));
    };
    let page_mins =
        stat_keys(&converter.data_page_mins(column_index, offset_index, &row_groups)?);
    let page_maxes =
        stat_keys(&converter.data_page_maxes(column_index, offset_index, &row_groups)?);
    let Some(counts) =
        converter.data_page_row_counts(offset_index, row_groups_meta, &row_groups)?
    else {
        return Ok((row_groups, None));
    };
    if counts.len() != page_mins.len() || counts.null_count() > 0 {
        return Ok((row_groups, None));
    }
    let mut selectors: Vec<RowSelector> = Vec::with_capacity(counts.len());
    for (i, count) in counts.values().iter().enumerate() {
        let keep = match (page_mins[i], page_maxes[i]) {
            (Some(lo), Some(hi)) => range.overlaps(lo, hi),
            _ => true,
        };
        let count = *count as usize;
        selectors.push(if keep {
            RowSelector::select(count)
        } else {
            RowSelector::skip(count)
        });
    }
    Ok((row_groups, Some(RowSelection::from(selectors))))
}
