//! An item as a DataFusion table: planned through the engine's read plan.
//!
//! ```text
//! ItemTable (one version of an item, pinned when the query is planned)
//!   supports_filters_pushdown  ranges of the ordering column: Exact (the scan applies
//!                              them exactly); anything else: DataFusion filters
//!   scan                       range ∩ projection ∩ limit ─► ReadPlan ─► ItemScanExec
//!   insert_into                ItemSink: the rows appended as one write
//!   delete_from                DeleteExec: a range of the ordering column deleted
//! ```

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use super::error::{external, Error};
use super::pushdown::key_range;
use super::scan::ItemScanExec;
use crate::storage::{self, Engine, KeyRange, ReadPlan, WriteOptions};

/// One version of an item, as a table.
#[derive(Debug, Clone)]
pub(crate) struct ItemTable {
    engine: Engine,
    /// The whole item at the version the query reads.
    plan: ReadPlan,
}

impl ItemTable {
    /// The table of `plan` (a whole item at one version).
    pub(crate) fn new(engine: Engine, plan: ReadPlan) -> Self {
        Self { engine, plan }
    }

    /// The version the table reads.
    pub(crate) fn version(&self) -> u64 {
        self.plan.version()
    }

    fn ordered_on(&self) -> &str {
        self.plan.ordered_on()
    }
}

#[async_trait]
impl TableProvider for ItemTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.plan.schema())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match key_range(f, self.ordered_on()) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut range = KeyRange::ALL;
        for f in filters {
            // Only filters accepted as Exact arrive here.
            let r = key_range(f, self.ordered_on()).ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "filter {f} was pushed into the scan but is not a range"
                ))
            })?;
            range = range.intersect(r);
        }
        let mut plan = self.plan.clone().with_range(range).with_limit(limit);
        if let Some(indices) = projection {
            let schema = self.plan.schema();
            let columns = indices
                .iter()
                .map(|&i| schema.field(i).name().clone())
                .collect();
            plan = plan.with_columns(columns).map_err(external)?;
        }
        let partitions = state.config_options().execution.target_partitions;
        Ok(Arc::new(ItemScanExec::new(
            self.engine.clone(),
            plan,
            partitions,
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(Error::unsupported(
                format!("INSERT ({insert_op})"),
                "INSERT INTO collection.item VALUES ... | SELECT ... appends",
            )
            .into());
        }
        let sink = ItemSink {
            engine: self.engine.clone(),
            plan: self.plan.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let hint = format!(
            "DELETE FROM collection.item WHERE <a range of {:?}>, e.g. {0} >= '2024-01-01' AND {0} < '2024-02-01'",
            self.ordered_on()
        );
        if filters.is_empty() {
            return Err(Error::unsupported("DELETE without WHERE", hint).into());
        }
        let mut range = KeyRange::ALL;
        for f in &filters {
            let r = key_range(f, self.ordered_on())
                .ok_or_else(|| Error::unsupported(format!("DELETE ... WHERE {f}"), hint.clone()))?;
            range = range.intersect(r);
        }
        Ok(Arc::new(super::scan::DeleteExec::new(
            self.engine.clone(),
            self.plan.clone(),
            range,
        )))
    }
}

/// Rows of an `INSERT` appended to the item, as one write.
#[derive(Debug)]
struct ItemSink {
    engine: Engine,
    plan: ReadPlan,
}

impl DisplayAs for ItemSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ItemSink: append to {}/{}",
            self.plan.collection(),
            self.plan.item()
        )
    }
}

#[async_trait]
impl DataSink for ItemSink {
    fn schema(&self) -> &SchemaRef {
        self.plan.schema()
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let schema = data.schema();
        // The engine sees a failed input as an upload error; the query's own error (a
        // read failure, resources exhausted) is kept to be returned with its kind.
        let failure = Arc::new(std::sync::Mutex::new(None));
        let stash = Arc::clone(&failure);
        let input = data
            .map_err(move |e| {
                let message = format!("the rows to insert failed: {e}");
                *stash.lock().expect("insert failure poisoned") = Some(e);
                storage::Error::Upload { message }
            })
            .boxed();
        let written = self
            .engine
            .write(
                self.plan.collection(),
                self.plan.item(),
                WriteOptions::default(),
                schema,
                input,
            )
            .await;
        match written {
            Ok(receipt) => Ok(receipt.rows_written),
            Err(e) => Err(failure
                .lock()
                .expect("insert failure poisoned")
                .take()
                .unwrap_or_else(|| external(e))),
        }
    }
}
