//! SQL over the store, with DataFusion (DESIGN.md, "Flight SQL").
//!
//! ```text
//! Sql::plan(text, params)
//!   parse (one statement; `?` placeholders numbered $1, $2, ...)
//!   ─► kind: query | INSERT | DELETE (anything else is refused)
//!   ─► catalog::QueryTables: each item named pinned to one version (time travel too)
//!   ─► DataFusion logical plan, parameters bound
//! Sql::execute(planned)
//!   ─► physical plan: table::ItemTable scans through the engine's read plan
//!      (pushdown: ranges of the ordering column, projection, limit, ORDER BY key DESC)
//!   ─► batches cast to the announced schema (no view types, no dictionaries)
//! ```
//!
//! Every query runs on the caller's runtime under one server-wide memory pool
//! ([`SqlOptions::memory_bytes`]) that spills to disk before it fails.
//! [`filter`] is the row filter of `ReadRequest.filter`.

mod catalog;
mod error;
mod filter;
mod pushdown;
mod scan;
mod table;

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::common::{ParamValues, ScalarValue, TableReference};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{execute_stream, SendableRecordBatchStream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{self as ast, Value, VisitMut, VisitorMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

pub use catalog::{quote, Pins, AT_SNAPSHOT, AT_VERSION, CATALOG};
pub use error::{Error, Result};
pub use filter::{SqlChecks, SqlFilter};
pub use pushdown::{key_range, key_range_of_all};
pub use scan::count_schema;

use catalog::QueryTables;

use crate::auth::{Access, Level};
use crate::storage::Engine;

/// Default memory all queries together may hold before they spill or fail.
pub const DEFAULT_MEMORY_BYTES: usize = 1 << 30;

/// Settings of the SQL layer.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Memory all queries together may hold (bytes), beyond which they spill or fail
    /// with "resources exhausted".
    pub memory_bytes: usize,
    /// Partitions a query runs in (default: one per core).
    pub target_partitions: usize,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// A query (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`): returns rows.
    Query,
    /// `INSERT` or `DELETE`: changes an item, returns `count`.
    Update,
}

/// A statement planned against pinned tables, parameters bound.
pub struct Planned {
    ctx: SessionContext,
    plan: LogicalPlan,
    kind: StatementKind,
    pins: Pins,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("kind", &self.kind)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Planned {
    /// The version of each item read (time travel aside): plan again with them to see
    /// the same data.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// What the statement does.
    pub fn kind(&self) -> StatementKind {
        self.kind
    }

    /// The schema its result streams: the plan's, with view types and dictionaries as
    /// their plain types (older JDBC drivers and Grafana cannot read view types).
    pub fn schema(&self) -> SchemaRef {
        wire_schema(self.plan.schema().as_arrow())
    }

    /// Types of the parameters (`$1`, `$2`, ...), as a schema of fields `$1`, `$2`, ...
    /// (`Null` where DataFusion cannot tell). Timestamps are announced in milliseconds:
    /// the JDBC driver writes `setTimestamp` values as epoch milliseconds whatever the
    /// unit announced. Bound values of any unit are cast to the plan's own type.
    pub fn parameter_schema(&self) -> Result<SchemaRef> {
        let types = self.plan.get_parameter_types()?;
        let mut names: Vec<_> = types.keys().cloned().collect();
        names.sort_by_key(|n| {
            n.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let fields: Vec<Field> = names
            .into_iter()
            .map(|n| {
                let dt = match types[&n].clone() {
                    Some(DataType::Timestamp(_, tz)) => {
                        DataType::Timestamp(TimeUnit::Millisecond, tz)
                    }
                    Some(dt) => dt,
                    None => DataType::Null,
                };
                Field::new(n, dt, true)
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// The SQL service over an engine.
#[derive(Clone)]
pub struct Sql {
    engine: Engine,
    state: datafusion::execution::SessionState,
}

impl std::fmt::Debug for Sql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql").finish_non_exhaustive()
    }
}

impl Sql {
    /// SQL over `engine`.
    pub fn new(engine: Engine, options: &SqlOptions) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .with_target_partitions(options.target_partitions.max(1));
        let o = config.options_mut();
        o.sql_parser.enable_ident_normalization = false;
        o.sql_parser.map_string_types_to_utf8view = false;
        // A sort answered by a backward scan buffers ahead this much (DataFusion: 1 GiB).
        o.execution.sort_pushdown_buffer_capacity = 8 << 20;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(options.memory_bytes)))
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        Ok(Self { engine, state })
    }

    /// Plan `sql` with `params` bound to `$1`, `$2`, ... (or `?`, in order), reading the
    /// items in `pins` at those versions and the others at their latest.
    ///
    /// Every table it names must be readable by `access`, the target of an INSERT or
    /// DELETE writable: [`Error::Denied`] otherwise, before anything is read.
    pub async fn plan(
        &self,
        access: &Access,
        sql: &str,
        params: Vec<ScalarValue>,
        pins: &Pins,
    ) -> Result<Planned> {
        let dialect = self.state.config().options().sql_parser.dialect;
        let mut statement = self.state.sql_to_statement(sql, &dialect)?;
        let kind = kind(&statement)?;
        number_placeholders(&mut statement);
        let references = self.state.resolve_table_references(&statement)?;
        // A bare name that is a table function call (`at_version(...)`,
        // `generate_series(...)`) is not a table.
        let functions = self.state.table_functions();
        let is_function =
            |name: &str| name == AT_VERSION || name == AT_SNAPSHOT || functions.contains_key(name);
        let references = references
            .into_iter()
            .filter(|r| !(matches!(r, TableReference::Bare { .. }) && is_function(r.table())))
            .collect();
        let tables =
            QueryTables::resolve(&self.engine, access, &statement, references, pins).await?;
        let pins = tables.pins();
        let tables = Arc::new(tables);
        // A catalog list of this query's own: a clone of the state shares the list.
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG.to_string(), tables.catalog()?);
        let mut state = self.state.clone();
        state.register_catalog_list(Arc::new(catalogs));
        let ctx = SessionContext::new_with_state(state);
        for (name, function) in tables.time_travel() {
            ctx.register_udtf(name, function);
        }
        let plan = ctx.state().statement_to_plan(statement).await?;
        if let LogicalPlan::Dml(dml) = &plan {
            let collection = dml.table_name.schema().unwrap_or_default();
            access.check(collection, Level::Write)?;
        }
        let plan = if params.is_empty() {
            plan
        } else {
            let types = plan.get_parameter_types()?;
            let params = params
                .into_iter()
                .enumerate()
                .map(|(i, v)| match types.get(&format!("${}", i + 1)) {
                    Some(Some(dt)) if dt != &v.data_type() => v.cast_to(dt),
                    _ => Ok(v),
                })
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            plan.with_param_values(ParamValues::from(params))?
        };
        Ok(Planned {
            ctx,
            plan,
            kind,
            pins,
        })
    }

    /// Run a planned statement: its batches, in [`Planned::schema`].
    pub async fn execute(
        &self,
        planned: Planned,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let schema = planned.schema();
        let state = planned.ctx.state();
        let physical = state.create_physical_plan(&planned.plan).await?;
        let stream: SendableRecordBatchStream = execute_stream(physical, planned.ctx.task_ctx())?;
        Ok(stream
            .map_err(Error::from)
            .and_then(move |b| {
                let schema = Arc::clone(&schema);
                async move { to_schema(b, &schema) }
            })
            .boxed())
    }

    /// The engine queried.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// What `statement` does, or an error saying what is supported.
fn kind(statement: &Statement) -> Result<StatementKind> {
    let hint = "Flightstore runs queries (SELECT, WITH, VALUES, EXPLAIN), \
                INSERT INTO collection.item VALUES ... | SELECT ..., and \
                DELETE FROM collection.item WHERE <a range of the ordering column>; \
                create items by writing to them (DoPut or ingest)";
    let refuse = |what: String| {
        let what = what
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Error::unsupported(what, hint)
    };
    let s = match statement {
        Statement::Statement(s) => s.as_ref(),
        // EXPLAIN of a query or a change; EXPLAIN ANALYZE runs its statement: queries only.
        Statement::Explain(e) => {
            let inner = kind(&e.statement)?;
            if e.options.analyze && inner != StatementKind::Query {
                return Err(Error::unsupported(
                    "EXPLAIN ANALYZE of an INSERT or DELETE",
                    "EXPLAIN (without ANALYZE) shows its plan",
                ));
            }
            return Ok(StatementKind::Query);
        }
        other => return Err(refuse(other.to_string())),
    };
    match s {
        ast::Statement::Query(_) => Ok(StatementKind::Query),
        ast::Statement::Insert(_) => Ok(StatementKind::Update),
        ast::Statement::Delete(d) => {
            // DataFusion hands a table only the filters on it: a LIMIT, a subquery or a
            // join would be dropped and delete more than asked.
            let range_only = "DELETE FROM collection.item WHERE <a range of the ordering column> \
                              (no LIMIT, ORDER BY, USING, RETURNING or subquery)";
            if d.limit.is_some()
                || !d.order_by.is_empty()
                || d.using.is_some()
                || d.returning.is_some()
                || d.selection.as_ref().is_some_and(has_subquery)
            {
                return Err(Error::unsupported("this DELETE", range_only));
            }
            Ok(StatementKind::Update)
        }
        other => Err(refuse(other.to_string())),
    }
}

/// Whether `expr` holds a subquery (`IN (SELECT ...)`, `EXISTS`, a scalar subquery).
fn has_subquery(expr: &ast::Expr) -> bool {
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<()> {
            match e {
                ast::Expr::Subquery(_)
                | ast::Expr::Exists { .. }
                | ast::Expr::InSubquery { .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    ast::Visit::visit(expr, &mut Finder).is_break()
}

/// Number `?` placeholders `$1`, `$2`, ... in order (DataFusion reads every `?` as one
/// parameter named `?`).
fn number_placeholders(statement: &mut Statement) {
    struct Numbering(usize);
    impl VisitorMut for Numbering {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
            if let ast::Expr::Value(v) = expr {
                if matches!(&v.value, Value::Placeholder(p) if p == "?") {
                    self.0 += 1;
                    v.value = Value::Placeholder(format!("${}", self.0));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut numbering = Numbering(0);
    match statement {
        Statement::Statement(s) => {
            let _ = s.visit(&mut numbering);
        }
        Statement::Explain(e) => {
            if let Statement::Statement(s) = e.statement.as_mut() {
                let _ = s.visit(&mut numbering);
            }
        }
        _ => {}
    }
}

/// `schema` with view types and dictionaries replaced by their plain types.
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match plain_type(f.data_type()) {
            Some(dt) => Arc::new(f.as_ref().clone().with_data_type(dt)),
            None => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The plain type of a view or dictionary type (`None` if `dt` is plain).
fn plain_type(dt: &DataType) -> Option<DataType> {
    match dt {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        DataType::Dictionary(_, value) => Some(plain_type(value).unwrap_or(*value.clone())),
        DataType::ListView(f) | DataType::List(f) => plain_type(f.data_type())
            .map(|dt| DataType::List(Arc::new(f.as_ref().clone().with_data_type(dt))))
            .or_else(|| matches!(dt, DataType::ListView(_)).then(|| DataType::List(Arc::clone(f)))),
        _ => None,
    }
}

/// `batch` in `schema` (same columns; types cast where the wire type differs).
fn to_schema(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    // Always rebuilt: the announced schema may differ in metadata too (a UNION keeps
    // only the metadata its inputs share).
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)))?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
        .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)))
}
