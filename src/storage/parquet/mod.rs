//! Parquet files of an item: writing sorted batches into files near their target size
//! ([`sink`], encoded by [`encode`]), and reading a key range back ([`scan`]) with the
//! footers cached ([`footer`]).

mod encode;
mod footer;
mod scan;
mod sink;

pub(crate) use encode::ParallelWriter;
pub(crate) use footer::{split_row_groups, MetaCache};
pub(crate) use scan::scan;
pub(crate) use sink::{FileSink, FileTarget, Layouting};

/// Rows per data page: the granularity of page pruning for range reads.
pub(crate) const DATA_PAGE_ROW_LIMIT: usize = 16 * 1024;

/// Rows per batch when reading.
pub(crate) const READ_BATCH_ROWS: usize = 64 * 1024;
