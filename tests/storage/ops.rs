//! Collections, items, modes, bad input, metadata, snapshots, layout, gaps.

use std::sync::Arc;

use arrow::array::{
    Array, Float64Array, Int32Array, Int64Array, RecordBatch, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use flightstore::storage::{
    At, CollectionName, Engine, Error, ItemName, KeyRange, Options, Period, ReadOptions,
    RowGroupTarget, SchemaEvolution, SnapshotName, WriteMode, WriteOptions,
};
use futures::stream::{self, StreamExt};
use parquet::file::reader::FileReader;
use serde_json::json;

use crate::common::*;
use crate::files::walk;

const MIN: i64 = 60_000_000_000;
const DAY: i64 = 86_400_000_000_000;

fn rows(ts: impl IntoIterator<Item = i64>) -> Vec<Row> {
    ts.into_iter()
        .enumerate()
        .map(|(n, t)| (t, 0, n as i64))
        .collect()
}

async fn data_file_count(dir: &std::path::Path) -> usize {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
}

#[tokio::test]
async fn collections_and_items_are_listed_and_deleted() {
    let engine = memory_engine(small_options());
    let nasdaq = CollectionName::new("NASDAQ").unwrap();
    engine.create_collection(&nasdaq).await.unwrap();
    assert!(matches!(
        engine.create_collection(&nasdaq).await,
        Err(Error::AlreadyExists { .. })
    ));
    for (item, source) in [
        ("AAPL", "feed"),
        ("MSFT", "feed"),
        ("temperature-berlin/1D", "dwd"),
        ("temperature-berlin/1W", "dwd"),
    ] {
        let i = ItemName::new(item).unwrap();
        let opts = WriteOptions {
            metadata: Some(json!({ "source": source }).as_object().unwrap().clone()),
            ..Default::default()
        };
        write_rows(&engine, &nasdaq, &i, opts, &rows([1, 2, 3]), 2)
            .await
            .unwrap();
    }
    // Writing creates the collection too.
    let (eod, aapl) = names("EOD", "AAPL");
    write_rows(&engine, &eod, &aapl, WriteOptions::default(), &rows([1]), 1)
        .await
        .unwrap();
    assert_eq!(
        engine.list_collections().await.unwrap(),
        vec!["EOD", "NASDAQ"]
    );
    assert_eq!(
        engine.list_items(&nasdaq, None, None).await.unwrap(),
        vec![
            "AAPL",
            "MSFT",
            "temperature-berlin/1D",
            "temperature-berlin/1W"
        ]
    );
    assert_eq!(
        engine
            .list_items(&nasdaq, Some("temperature-berlin/"), None)
            .await
            .unwrap(),
        vec!["temperature-berlin/1D", "temperature-berlin/1W"]
    );
    let dwd = json!({ "source": "dwd" }).as_object().unwrap().clone();
    assert_eq!(
        engine
            .list_items(&nasdaq, None, Some(&dwd))
            .await
            .unwrap()
            .len(),
        2
    );

    let info = engine
        .item_info(&nasdaq, &ItemName::new("AAPL").unwrap(), &At::Latest)
        .await
        .unwrap();
    assert_eq!(
        (info.rows, info.start, info.end, info.version),
        (3, Some(1), Some(3), 1)
    );
    assert_eq!(info.settings.ordered_on, "ts");
    assert_eq!(info.metadata["source"], "feed");

    // Delete an item: gone from lists and reads, its history still readable, and a new
    // write starts it again.
    let msft = ItemName::new("MSFT").unwrap();
    let v = engine.delete_item(&nasdaq, &msft).await.unwrap();
    assert_eq!(v, 2);
    assert!(matches!(
        engine.read(&nasdaq, &msft, all_rows()).await,
        Err(Error::ItemNotFound { .. })
    ));
    assert!(!engine
        .list_items(&nasdaq, None, None)
        .await
        .unwrap()
        .contains(&"MSFT".to_string()));
    let old = read_rows(
        &engine,
        &nasdaq,
        &msft,
        ReadOptions {
            at: At::Version(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(old.len(), 3);
    assert!(matches!(
        engine.delete_item(&nasdaq, &msft).await,
        Err(Error::ItemNotFound { .. })
    ));
    let changes = engine.changes_since(&nasdaq, 0).await.unwrap();
    assert!(changes.iter().any(|c| c.item == "MSFT" && c.deleted));
    write_rows(
        &engine,
        &nasdaq,
        &msft,
        WriteOptions::default(),
        &rows([9]),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        read_rows(&engine, &nasdaq, &msft, all_rows())
            .await
            .unwrap()
            .len(),
        1
    );

    engine.delete_collection(&nasdaq).await.unwrap();
    assert_eq!(engine.list_collections().await.unwrap(), vec!["EOD"]);
    assert!(matches!(
        engine.list_items(&nasdaq, None, None).await,
        Err(Error::CollectionNotFound { .. })
    ));
    assert!(matches!(
        engine.read(&nasdaq, &msft, all_rows()).await,
        Err(Error::CollectionNotFound { .. })
    ));
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().to_str().unwrap(), small_options()).unwrap();
    let (c, i) = names("c", "item");
    write_rows(&engine, &c, &i, WriteOptions::default(), &rows(0..30), 7)
        .await
        .unwrap();
    let before = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
    let files_before = data_file_count(dir.path()).await;

    // Unknown items, collections, versions, snapshots.
    let unknown = ItemName::new("nope").unwrap();
    assert!(matches!(
        engine.read(&c, &unknown, all_rows()).await,
        Err(Error::ItemNotFound { .. })
    ));
    let other = CollectionName::new("other").unwrap();
    assert!(matches!(
        engine.read(&other, &i, all_rows()).await,
        Err(Error::CollectionNotFound { .. })
    ));
    let at = |at| ReadOptions {
        at,
        ..Default::default()
    };
    assert!(matches!(
        engine.read(&c, &i, at(At::Version(99))).await,
        Err(Error::VersionNotFound { .. })
    ));
    let snap = SnapshotName::new("nope").unwrap();
    assert!(matches!(
        engine.read(&c, &i, at(At::Snapshot(snap))).await,
        Err(Error::SnapshotNotFound { .. })
    ));

    // A null in the ordering column (in the second batch: part of the upload was staged).
    let ts = TimestampNanosecondArray::from(vec![Some(100), None]).with_timezone("UTC");
    let nullable: SchemaRef = Arc::new(Schema::new(
        schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let nulls = RecordBatch::try_new(
        Arc::clone(&nullable),
        vec![
            Arc::new(ts),
            Arc::new(arrow::array::Int8Array::from(vec![0, 0])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    let first = RecordBatch::try_new(
        Arc::clone(&nullable),
        batch(&rows(100..150)).columns().to_vec(),
    )
    .unwrap();
    let input = stream::iter(vec![Ok(first), Ok(nulls)]).boxed();
    let err = engine
        .write(&c, &i, WriteOptions::default(), nullable, input)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OrderingColumn { .. }), "{err}");

    // Missing ordering column.
    let no_ts = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let b = RecordBatch::try_new(
        Arc::clone(&no_ts),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let err = engine
        .write(
            &c,
            &i,
            WriteOptions::default(),
            no_ts,
            stream::iter(vec![Ok(b)]).boxed(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OrderingColumn { .. }), "{err}");

    // A schema mismatch names the columns.
    let wrong = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("k", DataType::Int8, false),
        Field::new("v", DataType::Float64, false),
        Field::new("extra", DataType::Int32, true),
    ]));
    let b = RecordBatch::try_new(
        Arc::clone(&wrong),
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![1]).with_timezone("UTC")),
            Arc::new(arrow::array::Int8Array::from(vec![0])),
            Arc::new(Float64Array::from(vec![1.0])),
            Arc::new(Int32Array::from(vec![1])),
        ],
    )
    .unwrap();
    let err = engine
        .write(
            &c,
            &i,
            WriteOptions::default(),
            wrong,
            stream::iter(vec![Ok(b)]).boxed(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::SchemaMismatch { .. })
            && msg.contains("\"v\"")
            && msg.contains("\"extra\""),
        "{msg}"
    );

    // A different ordering column, `create` on an existing item, rows outside a replaced range.
    let opts = WriteOptions {
        ordered_on: Some("v".into()),
        ..Default::default()
    };
    assert!(matches!(
        write_rows(&engine, &c, &i, opts, &rows([1]), 1).await,
        Err(Error::FailedPrecondition { .. })
    ));
    let opts = WriteOptions {
        mode: WriteMode::Create,
        ..Default::default()
    };
    assert!(matches!(
        write_rows(&engine, &c, &i, opts, &rows([1]), 1).await,
        Err(Error::AlreadyExists { .. })
    ));
    let opts = WriteOptions {
        mode: WriteMode::ReplaceRange,
        start: Some(0),
        end: Some(10),
        ..Default::default()
    };
    assert!(matches!(
        write_rows(&engine, &c, &i, opts, &rows([5, 10]), 1).await,
        Err(Error::InvalidArgument { .. })
    ));
    let opts = WriteOptions {
        mode: WriteMode::ReplaceRange,
        start: Some(10),
        ..Default::default()
    };
    assert!(matches!(
        write_rows(&engine, &c, &i, opts, &rows([5]), 1).await,
        Err(Error::InvalidArgument { .. })
    ));
    let opts = WriteOptions {
        dedup_on: Some(vec!["nope".into()]),
        mode: WriteMode::Upsert,
        ..Default::default()
    };
    assert!(matches!(
        write_rows(&engine, &c, &i, opts, &rows([5]), 1).await,
        Err(Error::InvalidArgument { .. })
    ));
    let bad_period = WriteOptions {
        row_group_target: Some(RowGroupTarget::Period("1 day".into())),
        ..Default::default()
    };
    assert!(matches!(
        write_rows(&engine, &c, &i, bad_period, &rows([5]), 1).await,
        Err(Error::InvalidArgument { .. })
    ));
    // Bad reads.
    let bad_cols = ReadOptions {
        columns: Some(vec!["nope".into()]),
        ..Default::default()
    };
    assert!(matches!(
        engine.read(&c, &i, bad_cols).await,
        Err(Error::InvalidArgument { .. })
    ));
    let both = ReadOptions {
        limit: Some(1),
        last: Some(1),
        ..Default::default()
    };
    assert!(matches!(
        engine.read(&c, &i, both).await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(flightstore::sql::SqlFilter::try_new("nope > 1", &schema()).is_err());
    assert!(flightstore::sql::SqlFilter::try_new("v + 1", &schema()).is_err());

    // Nothing changed: same rows, same version, no file left behind.
    assert_eq!(
        read_rows(&engine, &c, &i, all_rows()).await.unwrap(),
        before
    );
    assert_eq!(
        engine.item_info(&c, &i, &At::Latest).await.unwrap().version,
        1
    );
    assert_eq!(data_file_count(dir.path()).await, files_before);
}

#[tokio::test]
async fn create_overwrite_and_schema_evolution() {
    let engine = memory_engine(small_options());
    let (c, i) = names("c", "evolving");
    let opts = WriteOptions {
        mode: WriteMode::Create,
        schema_evolution: Some(SchemaEvolution::AddColumns),
        ..Default::default()
    };
    write_rows(&engine, &c, &i, opts, &rows([1, 2]), 1)
        .await
        .unwrap();

    // add_columns: a new nullable column; older files read back with nulls. Column order
    // in a write may differ.
    let wider = Arc::new(Schema::new(vec![
        Field::new("note", DataType::Utf8, true),
        Field::new("v", DataType::Int64, false),
        Field::new("k", DataType::Int8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
    ]));
    let b = RecordBatch::try_new(
        Arc::clone(&wider),
        vec![
            Arc::new(arrow::array::StringArray::from(vec!["hello"])),
            Arc::new(Int64Array::from(vec![7])),
            Arc::new(arrow::array::Int8Array::from(vec![0])),
            Arc::new(TimestampNanosecondArray::from(vec![3]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    engine
        .write(
            &c,
            &i,
            WriteOptions::default(),
            wider,
            stream::iter(vec![Ok(b)]).boxed(),
        )
        .await
        .unwrap();
    let batches = read_batches(&engine, &c, &i, all_rows()).await.unwrap();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let cols: Vec<&str> = all
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(cols, vec!["ts", "k", "v", "note"]);
    assert_eq!(all.column(3).null_count(), 2);

    // widen: int64 column written as int32 is cast up; float32 -> float64 widens the item.
    let (c2, i2) = names("c", "widen");
    let s1 = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("x", DataType::Float32, false),
    ]));
    let b1 = RecordBatch::try_new(
        Arc::clone(&s1),
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![1])),
            Arc::new(arrow::array::Float32Array::from(vec![1.5])),
        ],
    )
    .unwrap();
    let opts = WriteOptions {
        schema_evolution: Some(SchemaEvolution::Widen),
        ..Default::default()
    };
    engine
        .write(&c2, &i2, opts, s1, stream::iter(vec![Ok(b1)]).boxed())
        .await
        .unwrap();
    let s2 = Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("x", DataType::Float64, false),
    ]));
    let b2 = RecordBatch::try_new(
        Arc::clone(&s2),
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![2])),
            Arc::new(Float64Array::from(vec![2.25])),
        ],
    )
    .unwrap();
    engine
        .write(
            &c2,
            &i2,
            WriteOptions::default(),
            s2,
            stream::iter(vec![Ok(b2)]).boxed(),
        )
        .await
        .unwrap();
    let batches = read_batches(&engine, &c2, &i2, all_rows()).await.unwrap();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(
        all.column(1).as_ref(),
        &Float64Array::from(vec![1.5, 2.25]) as &dyn Array
    );

    // overwrite replaces everything.
    let opts = WriteOptions {
        mode: WriteMode::Overwrite,
        ..Default::default()
    };
    write_rows(&engine, &c, &i, opts, &rows([50]), 1)
        .await
        .unwrap();
    assert_eq!(
        read_rows(&engine, &c, &i, all_rows()).await.unwrap(),
        rows([50])
    );
}

#[tokio::test]
async fn metadata_merges_and_lands_in_the_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().to_str().unwrap(), small_options()).unwrap();
    let (c, i) = names("c", "meta");
    let opts = WriteOptions {
        metadata: Some(
            json!({"source": "feed", "v": 1})
                .as_object()
                .unwrap()
                .clone(),
        ),
        ..Default::default()
    };
    write_rows(&engine, &c, &i, opts, &rows([1]), 1)
        .await
        .unwrap();
    let patch = json!({"v": 2, "source": null, "owner": "desk"})
        .as_object()
        .unwrap()
        .clone();
    let m = engine.update_metadata(&c, &i, &patch).await.unwrap();
    assert_eq!(
        serde_json::Value::Object(m),
        json!({"v": 2, "owner": "desk"})
    );
    assert_eq!(engine.get_metadata(&c, &i).await.unwrap()["owner"], "desk");
    assert_eq!(
        engine
            .list_versions(&c, &i)
            .await
            .unwrap()
            .iter()
            .map(|v| v.operation.as_str())
            .collect::<Vec<_>>(),
        vec!["append", "metadata"]
    );

    // Plain Parquet with provenance in the key/value metadata.
    let file = walk(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file).unwrap())
            .unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("flightstore.collection").as_deref(), Some("c"));
    assert_eq!(get("flightstore.item").as_deref(), Some("meta"));
    assert!(get("flightstore.metadata").unwrap().contains("feed"));
}

#[tokio::test]
async fn snapshots_pin_versions_across_the_collection() {
    let engine = memory_engine(small_options());
    let (c, a) = names("c", "a");
    let b = ItemName::new("b").unwrap();
    write_rows(&engine, &c, &a, WriteOptions::default(), &rows([1, 2]), 1)
        .await
        .unwrap();
    write_rows(&engine, &c, &b, WriteOptions::default(), &rows([1]), 1)
        .await
        .unwrap();
    let eod = SnapshotName::new("eod-2024-06-28").unwrap();
    let info = engine.create_snapshot(&c, &eod).await.unwrap();
    assert_eq!(info.items, 2);
    assert!(matches!(
        engine.create_snapshot(&c, &eod).await,
        Err(Error::AlreadyExists { .. })
    ));
    write_rows(&engine, &c, &a, WriteOptions::default(), &rows([3, 4]), 1)
        .await
        .unwrap();
    engine.delete_item(&c, &b).await.unwrap();
    engine.vacuum(Some(&c), None).await.unwrap();
    let at = ReadOptions {
        at: At::Snapshot(eod.clone()),
        ..Default::default()
    };
    assert_eq!(
        read_rows(&engine, &c, &a, at.clone()).await.unwrap().len(),
        2
    );
    assert_eq!(
        read_rows(&engine, &c, &b, at.clone()).await.unwrap().len(),
        1
    );
    assert_eq!(
        read_rows(&engine, &c, &a, all_rows()).await.unwrap().len(),
        4
    );
    assert_eq!(
        engine.list_snapshots(&c).await.unwrap()[0].snapshot,
        "eod-2024-06-28"
    );
    engine.delete_snapshot(&c, &eod).await.unwrap();
    assert!(engine.list_snapshots(&c).await.unwrap().is_empty());
    assert!(matches!(
        engine.read(&c, &a, at).await,
        Err(Error::SnapshotNotFound { .. })
    ));
}

#[tokio::test]
async fn vacuum_keeps_versions_within_the_retention() {
    let options = Options {
        vacuum_retention: std::time::Duration::from_secs(3600),
        ..small_options()
    };
    let engine = memory_engine(options);
    let (c, i) = names("c", "kept");
    write_rows(&engine, &c, &i, WriteOptions::default(), &rows([1]), 1)
        .await
        .unwrap();
    write_rows(&engine, &c, &i, WriteOptions::default(), &rows([2]), 1)
        .await
        .unwrap();
    engine.vacuum(None, None).await.unwrap();
    let at = ReadOptions {
        at: At::Version(1),
        ..Default::default()
    };
    assert_eq!(read_rows(&engine, &c, &i, at).await.unwrap().len(), 1);
}

#[tokio::test]
async fn ten_thousand_small_appends_leave_a_handful_of_files() {
    let engine = memory_engine(Options::default());
    let (c, i) = names("c", "appends");
    for n in 0..10_000i64 {
        let rows: Vec<Row> = (0..100).map(|r| (n * 100 + r, 0, n * 100 + r)).collect();
        write_rows(&engine, &c, &i, WriteOptions::default(), &rows, 100)
            .await
            .unwrap();
    }
    let m = engine.latest(&c, &i).await.unwrap().unwrap();
    assert_eq!(m.rows(), 1_000_000);
    assert!(m.files.len() <= 40, "{} files", m.files.len());
    let after = engine.compact(&c, &i).await.unwrap();
    let full_files = 1_000_000u64.div_ceil(Options::default().file_target_rows) as usize;
    assert!(after.files_after <= full_files + 1, "{after:?}");
    let rows = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
    assert!(rows.iter().enumerate().all(|(n, r)| r.2 == n as i64));
}

#[tokio::test]
async fn period_row_groups_follow_the_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().to_str().unwrap(), Options::default()).unwrap();
    let (c, i) = names("c", "daily");
    let opts = WriteOptions {
        row_group_target: Some(RowGroupTarget::Period("1D".into())),
        ..Default::default()
    };
    // 3 days of hourly rows starting mid-day: 4 calendar days.
    let ts: Vec<i64> = (0..72).map(|h| DAY / 2 + h * 60 * MIN).collect();
    write_rows(&engine, &c, &i, opts, &rows(ts), 1000)
        .await
        .unwrap();
    let file = walk(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file).unwrap())
            .unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, vec![12, 24, 24, 12]);
    assert_eq!(
        engine
            .item_info(&c, &i, &At::Latest)
            .await
            .unwrap()
            .settings
            .row_group_target,
        RowGroupTarget::Period("1D".into())
    );
}

#[tokio::test]
async fn missing_intervals_finds_the_gaps() {
    let engine = memory_engine(small_options());
    let (c, i) = names("c", "bars");
    write_rows(
        &engine,
        &c,
        &i,
        WriteOptions::default(),
        &rows([0, 1, 2, 5, 6, 9].map(|m| m * MIN + 7)),
        2,
    )
    .await
    .unwrap();
    let gaps = engine
        .missing_intervals(
            &c,
            &i,
            0,
            12 * MIN,
            Period::parse("1min").unwrap(),
            At::Latest,
        )
        .await
        .unwrap();
    assert_eq!(
        gaps,
        vec![(3 * MIN, 5 * MIN), (7 * MIN, 9 * MIN), (10 * MIN, 12 * MIN)]
    );
    // A leading gap is found too; the last slot is clipped to `end`.
    let gaps = engine
        .missing_intervals(
            &c,
            &i,
            -2 * MIN,
            3 * MIN,
            Period::parse("1min").unwrap(),
            At::Latest,
        )
        .await
        .unwrap();
    assert_eq!(gaps, vec![(-2 * MIN, 0)]);
    let gaps = engine
        .missing_intervals(
            &c,
            &i,
            -2 * MIN,
            3 * MIN + 30 * 1_000_000_000,
            Period::parse("1min").unwrap(),
            At::Latest,
        )
        .await
        .unwrap();
    assert_eq!(
        gaps,
        vec![(-2 * MIN, 0), (3 * MIN, 3 * MIN + 30 * 1_000_000_000)]
    );
    // Calendar months.
    let (_, m) = names("c", "monthly");
    let jan = flightstore_client::time::parse_time("2024-01-15").unwrap();
    let mar = flightstore_client::time::parse_time("2024-03-02").unwrap();
    write_rows(
        &engine,
        &c,
        &m,
        WriteOptions::default(),
        &rows([jan, mar]),
        2,
    )
    .await
    .unwrap();
    let start = flightstore_client::time::parse_time("2024-01-01").unwrap();
    let end = flightstore_client::time::parse_time("2024-05-01").unwrap();
    let gaps = engine
        .missing_intervals(&c, &m, start, end, Period::parse("1M").unwrap(), At::Latest)
        .await
        .unwrap();
    let feb = flightstore_client::time::parse_time("2024-02-01").unwrap();
    let apr = flightstore_client::time::parse_time("2024-04-01").unwrap();
    let mar1 = flightstore_client::time::parse_time("2024-03-01").unwrap();
    assert_eq!(gaps, vec![(feb, mar1), (apr, end)]);
}

#[tokio::test]
async fn range_reads_prune_files() {
    let engine = memory_engine(Options {
        file_target_rows: 1000,
        row_group_target: RowGroupTarget::Rows(100),
        ..Options::default()
    });
    let (c, i) = names("c", "pruned");
    write_rows(
        &engine,
        &c,
        &i,
        WriteOptions::default(),
        &rows(0..10_000),
        10_000,
    )
    .await
    .unwrap();
    let m = engine.latest(&c, &i).await.unwrap().unwrap();
    assert_eq!(m.files.len(), 10);
    let read = ReadOptions {
        range: KeyRange::new(Some(4_250), Some(4_260)),
        ..Default::default()
    };
    let got = read_rows(&engine, &c, &i, read).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (4_250..4_260).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_upsert_rewrites_only_the_row_groups_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        row_group_target: RowGroupTarget::Rows(10),
        file_target_rows: 100,
        auto_compact: false,
        ..small_options()
    };
    let engine = Engine::open(dir.path().to_str().unwrap(), options).unwrap();
    let (c, i) = names("c", "slices");
    let mut model = rows(0..100);
    write_rows(&engine, &c, &i, WriteOptions::default(), &model, 100)
        .await
        .unwrap();
    let original = engine.latest(&c, &i).await.unwrap().unwrap().files[0].clone();

    // New values for keys 45..55: row groups 4 and 5 of the ten are rewritten.
    let update: Vec<Row> = (45..55).map(|t| (t, 1, 1000 + t)).collect();
    let upsert = WriteOptions {
        mode: WriteMode::Upsert,
        ..Default::default()
    };
    write_rows(&engine, &c, &i, upsert, &update, 3)
        .await
        .unwrap();
    for r in &update {
        model[r.0 as usize] = *r;
    }
    let m = engine.latest(&c, &i).await.unwrap().unwrap();
    let layout: Vec<_> = m
        .files
        .iter()
        .map(|f| (f.name == original.name, f.row_groups, f.min, f.max, f.rows))
        .collect();
    assert_eq!(
        layout,
        [
            (true, Some([0, 4]), 0, 39, 40),
            (false, None, 40, 59, 20),
            (true, Some([6, 10]), 60, 99, 40),
        ]
    );
    assert_eq!(m.rows(), 100);
    assert_eq!(m.bytes(), original.bytes + m.files[1].bytes);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), model);
    let range = ReadOptions {
        range: KeyRange::new(Some(35), Some(65)),
        ..Default::default()
    };
    assert_eq!(
        read_rows(&engine, &c, &i, range).await.unwrap(),
        model[35..65]
    );

    // Vacuum keeps the file that the slices still list.
    engine.vacuum(None, None).await.unwrap();
    assert_eq!(data_file_count(dir.path()).await, 2);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), model);

    // A deletion inside a slice splits it further; the rest stays by reference.
    engine.delete_range(&c, &i, 72, 75).await.unwrap();
    model.retain(|r| !(72..75).contains(&r.0));
    let m = engine.latest(&c, &i).await.unwrap().unwrap();
    let slices: Vec<_> = m.files.iter().map(|f| f.row_groups).collect();
    assert_eq!(
        slices,
        [Some([0, 4]), None, Some([6, 7]), None, Some([8, 10])]
    );
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), model);

    // A full compaction writes whole files again.
    engine.compact(&c, &i).await.unwrap();
    let m = engine.latest(&c, &i).await.unwrap().unwrap();
    assert!(m.files.iter().all(|f| f.row_groups.is_none()), "{m:?}");
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), model);
}
