//! Schema resolution (what a write may change) and adaptation (making a batch, or an
//! older file, fit the item's current schema).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::error::{Error, Result};
use super::manifest::SchemaEvolution;

/// True if every value of `from` converts to `to` exactly.
pub(crate) fn is_widening(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (Int8, Int16 | Int32 | Int64 | Float32 | Float64) => true,
        (Int16, Int32 | Int64 | Float32 | Float64) => true,
        (Int32, Int64 | Float64) => true,
        (UInt8, UInt16 | UInt32 | UInt64 | Int16 | Int32 | Int64 | Float32 | Float64) => true,
        (UInt16, UInt32 | UInt64 | Int32 | Int64 | Float32 | Float64) => true,
        (UInt32, UInt64 | Int64 | Float64) => true,
        (Float16, Float32 | Float64) => true,
        (Float32, Float64) => true,
        (Utf8, LargeUtf8) | (Binary, LargeBinary) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p2 >= p1,
        (Decimal128(p1, s1), Decimal256(p2, s2)) => s1 == s2 && p2 >= p1,
        (Dictionary(k1, v1), Dictionary(k2, v2)) => v1 == v2 && (k1 == k2 || is_widening(k1, k2)),
        _ => false,
    }
}

/// Differences every policy accepts: dictionary key width (categoricals grow) and
/// nothing else. The batch is cast to the item's type (an overflow is an error).
fn always_compatible(from: &DataType, to: &DataType) -> bool {
    match (from, to) {
        (DataType::Dictionary(_, v1), DataType::Dictionary(_, v2)) => v1 == v2,
        _ => from == to,
    }
}

/// The item schema after a write of `input` under `policy`.
///
/// `existing` is the item's schema (`None` for a new item). Column order in `input` may
/// differ; the item's order is kept and new columns go to the end.
pub(crate) fn resolve(
    existing: Option<&SchemaRef>,
    input: &Schema,
    policy: SchemaEvolution,
    ordered_on: &str,
    mismatch: impl Fn(String) -> Error,
) -> Result<SchemaRef> {
    let mut seen = HashSet::new();
    for f in input.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(Error::invalid(format!(
                "column {:?} appears twice in the uploaded schema",
                f.name()
            )));
        }
    }
    let Some(existing) = existing else {
        return Ok(Arc::new(input.clone()));
    };
    let mut problems = Vec::new();
    let mut fields: Vec<Field> = Vec::with_capacity(existing.fields().len());
    for item_field in existing.fields() {
        match input.field_with_name(item_field.name()) {
            Err(_) => {
                if policy == SchemaEvolution::Strict {
                    problems.push(format!("column {:?} is missing", item_field.name()));
                } else if !item_field.is_nullable() {
                    problems.push(format!(
                        "column {:?} is missing and is not nullable",
                        item_field.name()
                    ));
                }
                fields.push(item_field.as_ref().clone());
            }
            Ok(f) => {
                let (from, to) = (f.data_type(), item_field.data_type());
                let data_type = if always_compatible(from, to)
                    || (policy == SchemaEvolution::Widen && is_widening(from, to))
                {
                    to.clone()
                } else if policy == SchemaEvolution::Widen
                    && is_widening(to, from)
                    && item_field.name() != ordered_on
                {
                    from.clone()
                } else {
                    problems.push(format!(
                        "column {:?} has type {to} in the item but {from} in this write",
                        item_field.name()
                    ));
                    to.clone()
                };
                let nullable = item_field.is_nullable() || f.is_nullable();
                fields.push(
                    Field::new(item_field.name(), data_type, nullable)
                        .with_metadata(item_field.metadata().clone()),
                );
            }
        }
    }
    for f in input.fields() {
        if existing.field_with_name(f.name()).is_err() {
            if policy == SchemaEvolution::Strict {
                problems.push(format!(
                    "column {:?} is not in the item (schema_evolution \"add_columns\" allows new columns)",
                    f.name()
                ));
            } else {
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
    }
    if !problems.is_empty() {
        return Err(mismatch(problems.join("; ")));
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        existing.metadata().clone(),
    )))
}

/// Make `batch` fit `target`: columns by name, cast where types differ, nulls for absent
/// columns. Fails if a value does not fit (an overflowing cast, a null in a non-null column).
pub(crate) fn adapt(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == target {
        return Ok(batch.clone());
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = target
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef> {
            match batch.column_by_name(field.name()) {
                Some(col) if col.data_type() == field.data_type() => Ok(Arc::clone(col)),
                Some(col) => Ok(cast_with_options(col, field.data_type(), &options)?),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(target), columns, &options)
        .map_err(|e| Error::invalid(format!("the data does not fit the item's schema: {e}")))
}

/// The item schema restricted to `columns` (in the order given), or an error naming the
/// unknown ones.
pub(crate) fn project(schema: &SchemaRef, columns: Option<&[String]>) -> Result<SchemaRef> {
    let Some(columns) = columns else {
        return Ok(Arc::clone(schema));
    };
    let mut fields = Vec::with_capacity(columns.len());
    let mut unknown = Vec::new();
    for c in columns {
        match schema.field_with_name(c) {
            Ok(f) => fields.push(f.clone()),
            Err(_) => unknown.push(c.as_str()),
        }
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(Error::invalid(format!(
            "unknown column(s) {unknown:?}; the item has {known:?}"
        )));
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int32Array};

    fn schema(fields: Vec<(&str, DataType, bool)>) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .into_iter()
                .map(|(n, t, nl)| Field::new(n, t, nl))
                .collect::<Vec<_>>(),
        ))
    }

    fn mismatch(m: String) -> Error {
        Error::SchemaMismatch {
            collection: "c".into(),
            item: "i".into(),
            message: m,
        }
    }

    #[test]
    fn strict_names_every_difference() {
        let item = schema(vec![
            ("ts", DataType::Int64, false),
            ("a", DataType::Int32, true),
        ]);
        let input = schema(vec![
            ("ts", DataType::Int64, false),
            ("b", DataType::Int32, true),
        ]);
        let err = resolve(Some(&item), &input, SchemaEvolution::Strict, "ts", mismatch)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"a\" is missing") && err.contains("\"b\" is not in the item"),
            "{err}"
        );
    }

    #[test]
    fn reordered_columns_are_fine_and_keep_item_order() {
        let item = schema(vec![
            ("ts", DataType::Int64, false),
            ("a", DataType::Int32, true),
        ]);
        let input = schema(vec![
            ("a", DataType::Int32, true),
            ("ts", DataType::Int64, false),
        ]);
        let out = resolve(Some(&item), &input, SchemaEvolution::Strict, "ts", mismatch).unwrap();
        assert_eq!(out, item);
    }

    #[test]
    fn add_columns_and_widen() {
        let item = schema(vec![
            ("ts", DataType::Int64, false),
            ("a", DataType::Int32, true),
        ]);
        let input = schema(vec![
            ("ts", DataType::Int64, false),
            ("a", DataType::Int64, true),
            ("b", DataType::Float32, false),
        ]);
        assert!(resolve(
            Some(&item),
            &input,
            SchemaEvolution::AddColumns,
            "ts",
            mismatch
        )
        .is_err());
        let out = resolve(Some(&item), &input, SchemaEvolution::Widen, "ts", mismatch).unwrap();
        assert_eq!(out.field(1).data_type(), &DataType::Int64);
        assert_eq!(out.field(2).name(), "b");
        assert!(out.field(2).is_nullable());

        let older = RecordBatch::try_new(
            schema(vec![
                ("ts", DataType::Int64, false),
                ("a", DataType::Int32, true),
            ]),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1])),
                Arc::new(Int32Array::from(vec![7])),
            ],
        )
        .unwrap();
        let adapted = adapt(&older, &out).unwrap();
        assert_eq!(adapted.schema(), out);
        assert_eq!(adapted.column(2).null_count(), 1);
        let _ = Float32Array::from(vec![1.0]);
    }
}
