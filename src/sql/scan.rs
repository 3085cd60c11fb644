//! The physical side of an item table: the scan (forward in key order, or backward for
//! `ORDER BY ts DESC`) and the delete of a range.

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::{take_record_batch, SortOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, SortOrderPushdownResult, StatisticsArgs,
};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use super::error::external;
use crate::storage::{Engine, KeyRange, ReadPlan, ReadSplit};

/// Rows a partition of a scan reads at least (smaller reads are not split).
const MIN_PARTITION_ROWS: u64 = 256 * 1024;
/// Rows a backward scan holds at once (it reverses one stretch of files at a time).
const BACKWARD_CHUNK_ROWS: u64 = 256 * 1024;

/// The `ExecutionPlan` methods of a plan with no inputs.
macro_rules! leaf_plan {
    () => {
        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
        ) -> Result<TreeNodeRecursion> {
            Ok(TreeNodeRecursion::Continue)
        }

        fn replace_children(
            self: Arc<Self>,
            _children: Vec<Arc<dyn ExecutionPlan>>,
            _options: ReplaceChildrenOptions,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }

        fn with_new_children(
            self: Arc<Self>,
            _children: Vec<Arc<dyn ExecutionPlan>>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }
    };
}

/// Scan of an item's read plan. Forward: one partition per split, each in key order
/// (splits are disjoint key ranges). Backward: one partition, in descending key order.
#[derive(Debug)]
pub(crate) struct ItemScanExec {
    engine: Engine,
    plan: ReadPlan,
    splits: Vec<ReadSplit>,
    /// The order declared: `descending` is a backward scan. The ordering column holds no
    /// nulls, so `nulls_first` is whatever the query asked for (SQL's default: ASC NULLS
    /// LAST).
    order: SortOptions,
    properties: Arc<PlanProperties>,
}

impl ItemScanExec {
    /// A forward scan of `plan` in up to `partitions` partitions.
    pub(crate) fn new(engine: Engine, plan: ReadPlan, partitions: usize) -> Self {
        let limited = plan.options().limit.is_some() || plan.options().last.is_some();
        let rows = plan.rows_upper_bound();
        let per_partition = (rows / partitions.max(1) as u64).max(MIN_PARTITION_ROWS);
        let splits = if limited {
            vec![plan.whole()]
        } else {
            plan.splits(per_partition)
        };
        Self::build(engine, plan, splits, SortOptions::new(false, false))
    }

    fn build(engine: Engine, plan: ReadPlan, splits: Vec<ReadSplit>, order: SortOptions) -> Self {
        let schema = Arc::clone(plan.schema());
        let backward = order.descending;
        let ordering = schema.index_of(plan.ordered_on()).ok().map(|i| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(plan.ordered_on(), i));
            vec![PhysicalSortExpr::new(column, order)]
        });
        let eq = EquivalenceProperties::new_with_orderings(Arc::clone(&schema), ordering);
        let properties = PlanProperties::new(
            eq,
            // Backward is one stream: it walks the splits itself, last first.
            Partitioning::UnknownPartitioning(if backward { 1 } else { splits.len().max(1) }),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            engine,
            plan,
            splits,
            order,
            properties: Arc::new(properties),
        }
    }

    fn backward(&self) -> bool {
        self.order.descending
    }

    /// The same scan in descending key order, keeping the last `fetch` rows if given.
    fn reversed(&self, fetch: Option<usize>, nulls_first: bool) -> Self {
        let plan = self.plan.clone().with_last(fetch);
        let splits = match fetch {
            Some(_) => vec![plan.whole()],
            None => {
                let mut s = plan.splits(BACKWARD_CHUNK_ROWS);
                s.reverse();
                s
            }
        };
        Self::build(
            self.engine.clone(),
            plan,
            splits,
            SortOptions::new(true, nulls_first),
        )
    }

    /// Batches of `split` in key order.
    fn forward_stream(&self, split: ReadSplit) -> BoxStream<'static, Result<RecordBatch>> {
        let (engine, plan) = (self.engine.clone(), self.plan.clone());
        stream::once(async move { engine.execute(&plan, &split).await })
            .map_ok(|read| read.stream)
            .try_flatten()
            .map_err(external)
            .boxed()
    }

    /// Batches of the splits, last split first, each reversed whole (one split is a
    /// bounded stretch of files, or the last `fetch` rows).
    fn backward_stream(&self) -> BoxStream<'static, Result<RecordBatch>> {
        let scans: Vec<_> = self
            .splits
            .iter()
            .map(|s| self.forward_stream(*s))
            .collect();
        stream::iter(scans)
            .then(|scan| async move {
                // Each batch is reversed as it is sent, and dropped: one copy at a time.
                let batches: Vec<RecordBatch> = scan.try_collect().await?;
                let reversed = batches.into_iter().rev().map(|b| reverse(&b));
                Ok::<_, datafusion::error::DataFusionError>(stream::iter(reversed))
            })
            .try_flatten()
            .boxed()
    }
}

/// The rows of `batch` in reverse order.
fn reverse(batch: &RecordBatch) -> Result<RecordBatch> {
    let n = batch.num_rows() as u32;
    let indices = UInt32Array::from_iter_values((0..n).rev());
    Ok(take_record_batch(batch, &indices)?)
}

impl DisplayAs for ItemScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.plan.options();
        let (kept, total) = self.plan.file_counts();
        write!(
            f,
            "ItemScanExec: {}/{} version={} range=[{}, {}) files={kept}/{total} partitions={}",
            self.plan.collection(),
            self.plan.item(),
            self.plan.version(),
            bound(o.range.start),
            bound(o.range.end),
            self.splits.len(),
        )?;
        if let Some(limit) = o.limit {
            write!(f, " limit={limit}")?;
        }
        if let Some(last) = o.last {
            write!(f, " last={last}")?;
        }
        if self.backward() {
            write!(f, " backward")?;
        }
        Ok(())
    }
}

fn bound(key: Option<i64>) -> String {
    key.map_or("..".into(), |k| k.to_string())
}

impl ExecutionPlan for ItemScanExec {
    fn name(&self) -> &str {
        "ItemScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::clone(self.plan.schema());
        let stream = if self.backward() {
            self.backward_stream()
        } else {
            match self.splits.get(partition) {
                Some(split) => self.forward_stream(*split),
                None => stream::empty().boxed(),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let schema = self.plan.schema();
        let mut stats = Statistics::new_unknown(schema);
        let whole = args.partition().is_none() || self.splits.len() == 1;
        if let (true, Some(rows)) = (whole, self.plan.rows()) {
            stats.num_rows = Precision::Exact(rows as usize);
        } else {
            stats.num_rows = Precision::Inexact(self.plan.rows_upper_bound() as usize);
        }
        Ok(Arc::new(stats))
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        if self.backward() {
            return Some(Arc::new(self.reversed(limit, self.order.nulls_first)));
        }
        let plan = self.plan.clone().with_limit(limit);
        let splits = vec![plan.whole()];
        Some(Arc::new(Self::build(
            self.engine.clone(),
            plan,
            splits,
            self.order,
        )))
    }

    fn fetch(&self) -> Option<usize> {
        let o = self.plan.options();
        o.limit.or(o.last)
    }

    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
    ) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        // `ORDER BY <ordering column> DESC [LIMIT n]`: read backward (the tail only with
        // a limit). Ascending is the scan's own order: only where nulls go may differ,
        // and the ordering column has none.
        let ordered_on = self.plan.ordered_on();
        let [first] = order else {
            return Ok(SortOrderPushdownResult::Unsupported);
        };
        let on_key = first
            .expr
            .downcast_ref::<Column>()
            .is_some_and(|c| c.name() == ordered_on);
        if !on_key || self.backward() || self.fetch().is_some() {
            return Ok(SortOrderPushdownResult::Unsupported);
        }
        let wanted = first.options;
        let inner = if wanted.descending {
            self.reversed(None, wanted.nulls_first)
        } else {
            let (plan, splits) = (self.plan.clone(), self.splits.clone());
            Self::build(self.engine.clone(), plan, splits, wanted)
        };
        Ok(SortOrderPushdownResult::Exact {
            inner: Arc::new(inner),
        })
    }
}

/// `DELETE FROM item WHERE <range>`: one commit, its count the rows deleted.
#[derive(Debug)]
pub(crate) struct DeleteExec {
    engine: Engine,
    plan: ReadPlan,
    range: KeyRange,
    properties: Arc<PlanProperties>,
}

impl DeleteExec {
    /// Delete `range` of the item of `plan`.
    pub(crate) fn new(engine: Engine, plan: ReadPlan, range: KeyRange) -> Self {
        let schema = count_schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            engine,
            plan,
            range,
            properties: Arc::new(properties),
        }
    }
}

/// The schema of a DML result: one `count` (DataFusion's convention).
pub fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl DisplayAs for DeleteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeleteExec: {}/{} range=[{}, {})",
            self.plan.collection(),
            self.plan.item(),
            bound(self.range.start),
            bound(self.range.end)
        )
    }
}

impl ExecutionPlan for DeleteExec {
    fn name(&self) -> &str {
        "DeleteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan!();

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (engine, plan) = (self.engine.clone(), self.plan.clone());
        let range = self.range;
        let schema = count_schema();
        let out = Arc::clone(&schema);
        let delete = async move {
            let deleted = if range.is_empty() {
                0
            } else {
                let start = range.start.unwrap_or(i64::MIN);
                let end = range.end.unwrap_or(i64::MAX);
                engine
                    .delete_range(plan.collection(), plan.item(), start, end)
                    .await
                    .map_err(external)?
                    .rows_deleted
            };
            let count = UInt64Array::from(vec![deleted]);
            Ok(RecordBatch::try_new(out, vec![Arc::new(count)])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream::once(delete),
        )))
    }
}
