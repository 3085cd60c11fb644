//! SQL over the store, with DataFusion.
//!
//! For now this module provides row filters: a SQL boolean expression (`price > 100 AND
//! side = 1`) parsed and planned by DataFusion against an item's schema, evaluated batch by
//! batch by the storage engine through its [`RowFilter`] trait (so storage stays free of
//! DataFusion).

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::storage::{self, CheckCompiler, RowFilter};

/// A SQL boolean expression over an item's columns.
#[derive(Debug)]
pub struct SqlFilter {
    text: String,
    /// The columns the expression reads, in item order.
    schema: SchemaRef,
    expr: Arc<dyn PhysicalExpr>,
}

impl SqlFilter {
    /// Parse and plan `sql` against `item_schema`; errors name what is wrong.
    pub fn try_new(sql: &str, item_schema: &SchemaRef) -> storage::Result<Self> {
        let bad =
            |e: &dyn std::fmt::Display| storage::Error::invalid(format!("bad filter {sql:?}: {e}"));
        let ctx = SessionContext::new();
        let full = DFSchema::try_from(item_schema.as_ref().clone()).map_err(|e| bad(&e))?;
        let expr = ctx.parse_sql_expr(sql, &full).map_err(|e| bad(&e))?;
        let used: Vec<String> = expr
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        let fields: Vec<_> = item_schema
            .fields()
            .iter()
            .filter(|f| used.contains(f.name()))
            .cloned()
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| bad(&e))?;
        let expr = ctx
            .create_physical_expr(expr, &df_schema)
            .map_err(|e| bad(&e))?;
        let data_type = expr.data_type(&schema).map_err(|e| bad(&e))?;
        if data_type != DataType::Boolean {
            return Err(bad(&format!(
                "it is of type {data_type}, not a boolean condition"
            )));
        }
        Ok(Self {
            text: sql.to_string(),
            schema,
            expr,
        })
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl RowFilter for SqlFilter {
    fn columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn evaluate(&self, batch: &RecordBatch) -> storage::Result<BooleanArray> {
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                    storage::Error::invalid(format!("filter column {:?} was not read", f.name()))
                })
            })
            .collect::<storage::Result<Vec<_>>>()?;
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let input = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        let value = self
            .expr
            .evaluate(&input)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| storage::Error::invalid(format!("filter {:?} failed: {e}", self.text)))?;
        Ok(value.as_boolean().clone())
    }
}

/// Validation checks compiled as [`SqlFilter`]s: what the server gives the engine.
#[derive(Debug, Default)]
pub struct SqlChecks;

impl CheckCompiler for SqlChecks {
    fn compile(&self, sql: &str, schema: &SchemaRef) -> storage::Result<Arc<dyn RowFilter>> {
        Ok(Arc::new(SqlFilter::try_new(sql, schema)?))
    }
}
