//! Reads: a stream of batches in key order, pruned by the manifest, row group statistics
//! and the page index.
//!
//! ```text
//! plan_read(ReadOptions) ─► ReadPlan: the version, schema after projection, files,
//!                           row and byte estimates, splits (Flight endpoints)
//! execute(plan, split)   ─► scan: files decode ahead on the CPU runtime (parquet/scan)
//!                           ─► filter ─► n_prev ─► limit / last ─► projection
//! ```
//!
//! The steps apply in the order of the wire contract: pick the version, take
//! `[start, end)`, apply the filter, prepend the `n_prev` rows before `start` that pass the
//! filter, keep the first `limit` or the last `last` rows, project `columns`.

mod grid;
mod many;
mod piece;
mod plan;
mod scan;

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;

pub use grid::{Fill, Grid, MAX_GRID_SLOTS};
pub use many::{many_schema, ITEM_COLUMN};
pub use plan::{ReadPlan, ReadSplit};

use super::error::Result;
use super::key::KeyRange;
use super::names::{CollectionName, ItemName, SnapshotName};
use super::Engine;

/// A row filter evaluated on batches (implemented with DataFusion in `sql`, so storage
/// stays free of it).
pub trait RowFilter: Send + Sync + std::fmt::Debug {
    /// Columns the filter reads.
    fn columns(&self) -> Vec<String>;
    /// Which rows pass (nulls count as false). The batch holds at least `columns()`.
    fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray>;
}

/// Which version to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum At {
    /// The latest committed version.
    #[default]
    Latest,
    /// A given version.
    Version(u64),
    /// The item's version in a snapshot.
    Snapshot(SnapshotName),
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Key range `[start, end)`.
    pub range: KeyRange,
    /// Columns to return (default: all), in this order.
    pub columns: Option<Vec<String>>,
    /// Row filter.
    pub filter: Option<Arc<dyn RowFilter>>,
    /// Keep the first `limit` rows.
    pub limit: Option<usize>,
    /// Keep the last `last` rows.
    pub last: Option<usize>,
    /// Prepend up to this many rows before `start` (that pass the filter).
    pub n_prev: usize,
    /// Version to read.
    pub at: At,
}

/// An open read.
pub struct ReadStream {
    /// Schema of the batches (after projection).
    pub schema: SchemaRef,
    /// The version being read.
    pub version: u64,
    /// Batches in key order.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
}

impl std::fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStream")
            .field("schema", &self.schema)
            .field("version", &self.version)
            .finish()
    }
}

impl Engine {
    /// Read an item whole (see [`ReadOptions`]): [`Engine::plan_read`], then
    /// [`Engine::execute`] of the whole plan.
    pub async fn read(
        &self,
        c: &CollectionName,
        i: &ItemName,
        opts: ReadOptions,
    ) -> Result<ReadStream> {
        let plan = self.plan_read(c, i, opts).await?;
        self.execute(&plan, &plan.whole()).await
    }
}
