//! Predicates on the ordering column as the engine's key range.
//!
//! A comparison of the ordering column with a constant (`>=`, `>`, `<`, `<=`, `=`,
//! `BETWEEN`) becomes a [`KeyRange`]; conjuncts (`AND`) intersect. Keys are integers
//! (nanoseconds for time columns), so every such comparison is a half-open range exactly:
//! `ts > x` is `[x + 1, ∞)`, `ts <= x` is `(-∞, x + 1)`. The scan applies the range
//! exactly, so these filters are pushed down as `Exact` and DataFusion can push a `LIMIT`
//! too.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use crate::storage::{key_scale, KeyRange};

/// The key range `expr` selects on `column`, or `None` if it is not such a range.
pub fn key_range(expr: &Expr, column: &str) -> Option<KeyRange> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => Some(key_range(left, column)?.intersect(key_range(right, column)?)),
            _ => compare(left, *op, right, column),
        },
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let lo = compare(expr, Operator::GtEq, low, column)?;
            let hi = compare(expr, Operator::LtEq, high, column)?;
            Some(lo.intersect(hi))
        }
        _ => None,
    }
}

/// The range of all `filters` together (an `AND`), if each is a range.
pub fn key_range_of_all<'a>(
    filters: impl IntoIterator<Item = &'a Expr>,
    column: &str,
) -> Option<KeyRange> {
    filters.into_iter().try_fold(KeyRange::ALL, |r, f| {
        Some(r.intersect(key_range(f, column)?))
    })
}

/// `column <op> constant` (either side) as a range.
fn compare(left: &Expr, op: Operator, right: &Expr, column: &str) -> Option<KeyRange> {
    let (op, value) = match (left, right) {
        (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (op, v),
        (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => (op.swap()?, v),
        _ => return None,
    };
    let k = scalar_key(value)?;
    let after = k.checked_add(1);
    Some(match op {
        Operator::GtEq => KeyRange::new(Some(k), None),
        Operator::Gt => KeyRange::new(Some(after?), None),
        Operator::Lt => KeyRange::new(None, Some(k)),
        Operator::LtEq => KeyRange::new(None, Some(after?)),
        Operator::Eq => KeyRange::new(Some(k), Some(after?)),
        _ => return None,
    })
}

/// The ordering key of a constant (nanoseconds for times), `None` for a null or a type
/// that cannot be a key.
fn scalar_key(v: &ScalarValue) -> Option<i64> {
    let scale = key_scale(&v.data_type())?;
    let raw = match v {
        ScalarValue::TimestampSecond(x, _)
        | ScalarValue::TimestampMillisecond(x, _)
        | ScalarValue::TimestampMicrosecond(x, _)
        | ScalarValue::TimestampNanosecond(x, _)
        | ScalarValue::Int64(x)
        | ScalarValue::Date64(x) => (*x)?,
        ScalarValue::Date32(x) | ScalarValue::Int32(x) => i64::from((*x)?),
        ScalarValue::UInt32(x) => i64::from((*x)?),
        ScalarValue::Int16(x) => i64::from((*x)?),
        ScalarValue::UInt16(x) => i64::from((*x)?),
        ScalarValue::Int8(x) => i64::from((*x)?),
        ScalarValue::UInt8(x) => i64::from((*x)?),
        _ => return None,
    };
    raw.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::simplify::SimplifyContextBuilder;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    use datafusion::prelude::SessionContext;

    use super::*;

    const T0: i64 = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z

    /// `sql` planned and simplified against `ts timestamp[unit, UTC], id int64, price
    /// float64`, the way DataFusion hands filters to a table.
    fn range(sql: &str, unit: TimeUnit) -> Option<KeyRange> {
        let schema = Schema::new(vec![
            Field::new("ts", DataType::Timestamp(unit, Some("UTC".into())), false),
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Float64, true),
        ]);
        let df_schema = Arc::new(DFSchema::try_from(schema).unwrap());
        let ctx = SessionContext::new();
        let expr = ctx.parse_sql_expr(sql, &df_schema).unwrap();
        let simplifier = ExprSimplifier::new(
            SimplifyContextBuilder::default()
                .with_schema(Arc::clone(&df_schema))
                .build(),
        );
        let expr = simplifier.coerce(expr, &df_schema).unwrap();
        let expr = simplifier.simplify(expr).unwrap();
        key_range(&expr, "ts")
    }

    fn ns(sql: &str) -> Option<KeyRange> {
        range(sql, TimeUnit::Nanosecond)
    }

    #[test]
    fn bounds_inclusive_and_strict() {
        let r = |s, e| Some(KeyRange::new(s, e));
        assert_eq!(
            ns("ts >= TIMESTAMP '2024-01-01T00:00:00Z'"),
            r(Some(T0), None)
        );
        assert_eq!(
            ns("ts > TIMESTAMP '2024-01-01T00:00:00Z'"),
            r(Some(T0 + 1), None)
        );
        assert_eq!(
            ns("ts < TIMESTAMP '2024-01-01T00:00:00Z'"),
            r(None, Some(T0))
        );
        assert_eq!(
            ns("ts <= TIMESTAMP '2024-01-01T00:00:00Z'"),
            r(None, Some(T0 + 1))
        );
        assert_eq!(
            ns("ts = TIMESTAMP '2024-01-01T00:00:00Z'"),
            r(Some(T0), Some(T0 + 1))
        );
        // The constant on the left.
        assert_eq!(
            ns("TIMESTAMP '2024-01-01T00:00:00Z' < ts"),
            r(Some(T0 + 1), None)
        );
    }

    #[test]
    fn between_and_conjunctions() {
        let day = 86_400_000_000_000;
        assert_eq!(
            ns("ts BETWEEN TIMESTAMP '2024-01-01T00:00:00Z' AND TIMESTAMP '2024-01-02T00:00:00Z'"),
            Some(KeyRange::new(Some(T0), Some(T0 + day + 1)))
        );
        assert_eq!(
            ns(
                "ts >= TIMESTAMP '2024-01-01T00:00:00Z' AND ts < TIMESTAMP '2024-01-02T00:00:00Z' \
                AND ts > TIMESTAMP '2023-12-01T00:00:00Z'"
            ),
            Some(KeyRange::new(Some(T0), Some(T0 + day)))
        );
        assert_eq!(ns("ts NOT BETWEEN '2024-01-01' AND '2024-01-02'"), None);
    }

    #[test]
    fn string_literals_are_times_in_utc() {
        assert_eq!(
            ns("ts >= '2024-01-01T00:00:00Z'"),
            Some(KeyRange::new(Some(T0), None))
        );
        assert_eq!(
            ns("ts < '2024-01-01 01:00:00+01:00'"),
            Some(KeyRange::new(None, Some(T0)))
        );
    }

    #[test]
    fn other_units_scale_to_nanoseconds() {
        assert_eq!(
            range(
                "ts >= TIMESTAMP '2024-01-01T00:00:00Z'",
                TimeUnit::Millisecond
            ),
            Some(KeyRange::new(Some(T0), None))
        );
        // ts > x in seconds: keys are nanoseconds, so the range starts 1 ns later.
        assert_eq!(
            range("ts > '2024-01-01T00:00:00Z'", TimeUnit::Second),
            Some(KeyRange::new(Some(T0 + 1), None))
        );
    }

    #[test]
    fn other_predicates_are_not_ranges() {
        assert_eq!(ns("price > 10"), None);
        assert_eq!(ns("ts >= '2024-01-01' OR ts < '2023-01-01'"), None);
        assert_eq!(ns("ts >= '2024-01-01' AND price > 10"), None);
        assert_eq!(ns("ts <> '2024-01-01'"), None);
        assert_eq!(ns("ts IS NULL"), None);
        assert_eq!(range("id >= 5", TimeUnit::Nanosecond), None); // not the ordering column
    }
}
