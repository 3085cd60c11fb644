//! Test helpers: a small tick-like table, engines on memory or a temp folder, and
//! readers that return plain values.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int64Array, Int8Array, RecordBatch, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use flightstore::storage::{
    CollectionName, Engine, ItemName, Options, ReadOptions, RowGroupTarget, WriteOptions,
    WriteReceipt,
};
use futures::stream::{self, StreamExt, TryStreamExt};

/// A row of the test table: (ts in ns, k, v). `v` is unique per written row.
pub(crate) type Row = (i64, i8, i64);

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("k", DataType::Int8, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

pub(crate) fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(
                TimestampNanosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            Arc::new(Int8Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// Small targets so that a few hundred rows exercise many files, row groups and runs.
pub(crate) fn small_options() -> Options {
    Options {
        row_group_target: RowGroupTarget::Rows(7),
        file_target_rows: 20,
        // Upload chunks of 1 KiB (a quarter of the memory budget).
        stage_bytes: 4096,
        compaction_fanin: 3,
        vacuum_retention: Duration::ZERO,
        orphan_grace: Duration::ZERO,
        ..Options::default()
    }
}

pub(crate) fn memory_engine(options: Options) -> Engine {
    Engine::open("memory://", options).unwrap()
}

pub(crate) fn names(c: &str, i: &str) -> (CollectionName, ItemName) {
    (CollectionName::new(c).unwrap(), ItemName::new(i).unwrap())
}

/// Write `rows` split into batches of at most `chunk` rows.
pub(crate) async fn write_rows(
    engine: &Engine,
    c: &CollectionName,
    i: &ItemName,
    opts: WriteOptions,
    rows: &[Row],
    chunk: usize,
) -> flightstore::storage::Result<WriteReceipt> {
    let batches: Vec<_> = rows.chunks(chunk.max(1)).map(|r| Ok(batch(r))).collect();
    engine
        .write(c, i, opts, schema(), stream::iter(batches).boxed())
        .await
}

/// Values of a column as i64 (timestamps as ns).
pub(crate) fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let col = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let col = if matches!(col.data_type(), DataType::Timestamp(..)) {
            cast(
                &cast(col, &DataType::Timestamp(TimeUnit::Nanosecond, None)).unwrap(),
                &DataType::Int64,
            )
            .unwrap()
        } else {
            cast(col, &DataType::Int64).unwrap()
        };
        assert_eq!(col.null_count(), 0);
        out.extend(col.as_primitive::<Int64Type>().values().iter().copied());
    }
    out
}

/// Read into rows (all three columns must be read).
pub(crate) async fn read_rows(
    engine: &Engine,
    c: &CollectionName,
    i: &ItemName,
    opts: ReadOptions,
) -> flightstore::storage::Result<Vec<Row>> {
    let batches = read_batches(engine, c, i, opts).await?;
    let ts = column_i64(&batches, "ts");
    let k = column_i64(&batches, "k");
    let v = column_i64(&batches, "v");
    Ok((0..ts.len()).map(|n| (ts[n], k[n] as i8, v[n])).collect())
}

pub(crate) async fn read_batches(
    engine: &Engine,
    c: &CollectionName,
    i: &ItemName,
    opts: ReadOptions,
) -> flightstore::storage::Result<Vec<RecordBatch>> {
    let read = engine.read(c, i, opts).await?;
    let schema = Arc::clone(&read.schema);
    let batches: Vec<RecordBatch> = read.stream.try_collect().await?;
    for b in &batches {
        assert_eq!(
            b.schema(),
            schema,
            "batch schema differs from the announced one"
        );
    }
    Ok(batches)
}

pub(crate) fn all_rows() -> ReadOptions {
    ReadOptions::default()
}
