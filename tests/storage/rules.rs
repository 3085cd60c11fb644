//! Data rules (DESIGN.md, "Data rules"): validation, presets and legacy columns, dense
//! grid reads, multi-item reads and batch writes, at the engine level.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit};
use flightstore::sql::SqlChecks;
use flightstore::storage::{
    At, BatchReceipt, CollectionName, Engine, Error, Fill, Grid, ItemInfo, ItemName, KeyRange,
    Options, Period, Preset, ReadOptions, ReadStream, Result, Validation, WriteOptions,
    WriteReceipt, ITEM_COLUMN,
};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::common::*;

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;

/// A row with a nullable value: (ts, v).
type NRow = (i64, Option<i64>);
/// A row of a batch write: (symbol, ts, v).
type Tagged = (Option<String>, i64, Option<i64>);
/// A slot of a grid read: (slot time, v).
type Slot = (i64, Option<i64>);

/// One item of an engine that compiles SQL checks.
#[derive(Clone)]
struct Item {
    e: Engine,
    c: CollectionName,
    i: ItemName,
}

impl Item {
    async fn new(c: &str, i: &str) -> Self {
        let (c, i) = names(c, i);
        let options = Options {
            checks: Some(Arc::new(SqlChecks)),
            ..small_options()
        };
        let e = memory_engine(options);
        e.create_collection(&c).await.unwrap();
        Self { e, c, i }
    }

    /// Another item of the same collection.
    fn sibling(&self, i: &str) -> Self {
        let i = ItemName::new(i).unwrap();
        Self { i, ..self.clone() }
    }

    /// Write `batches` (of the first one's schema).
    async fn write(&self, opts: WriteOptions, batches: Vec<RecordBatch>) -> Result<WriteReceipt> {
        let schema = batches[0].schema();
        let input = stream::iter(batches.into_iter().map(Ok)).boxed();
        self.e.write(&self.c, &self.i, opts, schema, input).await
    }

    /// Write rows of a nullable `v`, in batches of `chunk` rows.
    async fn put(&self, opts: WriteOptions, rows: &[NRow], chunk: usize) -> Result<WriteReceipt> {
        self.write(opts, rows.chunks(chunk).map(nbatch).collect())
            .await
    }

    /// (version, rows), `None` if the item does not exist.
    async fn state(&self) -> Option<(u64, u64)> {
        match self.e.item_info(&self.c, &self.i, &At::Latest).await {
            Ok(info) => Some((info.version, info.rows)),
            Err(Error::ItemNotFound { .. }) => None,
            Err(err) => panic!("item_info: {err}"),
        }
    }

    async fn info(&self) -> ItemInfo {
        self.e
            .item_info(&self.c, &self.i, &At::Latest)
            .await
            .unwrap()
    }

    async fn read(&self) -> Vec<RecordBatch> {
        read_batches(&self.e, &self.c, &self.i, all_rows())
            .await
            .unwrap()
    }

    async fn plan(&self, opts: ReadOptions) -> flightstore::storage::ReadPlan {
        self.e.plan_read(&self.c, &self.i, opts).await.unwrap()
    }

    /// A grid read of `[start, end)` as (slot time, v).
    async fn grid(
        &self,
        range: (Option<i64>, Option<i64>),
        freq: &str,
        fill: Fill,
    ) -> Result<Vec<Slot>> {
        let range = KeyRange::new(range.0, range.1);
        let plan = self
            .plan(ReadOptions {
                range,
                ..Default::default()
            })
            .await;
        let freq = Period::parse(freq)?;
        let read = self.e.execute_grid(&plan, Grid { freq, fill }).await?;
        assert!(read.schema.field_with_name("v").unwrap().is_nullable());
        let batches = gather(read).await?;
        let ts = opt_i64(&batches, "ts").into_iter().map(Option::unwrap);
        Ok(ts.zip(opt_i64(&batches, "v")).collect())
    }
}

fn ts_field() -> Field {
    let utc = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Field::new("ts", utc, false)
}

fn ts_array(ts: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from_iter_values(ts).with_timezone("UTC"))
}

fn v_field() -> Field {
    Field::new("v", DataType::Int64, true)
}

fn nbatch(rows: &[NRow]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![ts_field(), v_field()]));
    let v = Int64Array::from_iter(rows.iter().map(|r| r.1));
    let columns: Vec<ArrayRef> = vec![ts_array(rows.iter().map(|r| r.0)), Arc::new(v)];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn tagged_schema() -> SchemaRef {
    let symbol = Field::new("symbol", DataType::Utf8, true);
    Arc::new(Schema::new(vec![symbol, ts_field(), v_field()]))
}

fn tagged_batch(rows: &[Tagged]) -> RecordBatch {
    let symbol = StringArray::from_iter(rows.iter().map(|r| r.0.clone()));
    let v = Int64Array::from_iter(rows.iter().map(|r| r.2));
    let ts = ts_array(rows.iter().map(|r| r.1));
    let columns: Vec<ArrayRef> = vec![Arc::new(symbol), ts, Arc::new(v)];
    RecordBatch::try_new(tagged_schema(), columns).unwrap()
}

fn rules(v: Validation) -> WriteOptions {
    WriteOptions {
        validation: Some(v),
        ..Default::default()
    }
}

fn preset(p: Preset) -> WriteOptions {
    WriteOptions {
        preset: Some(p),
        ..Default::default()
    }
}

fn not_null(column: &str) -> Validation {
    Validation {
        not_null: vec![column.to_string()],
        ..Default::default()
    }
}

fn check(sql: &str) -> Validation {
    Validation {
        checks: vec![sql.to_string()],
        ..Default::default()
    }
}

fn unique() -> Validation {
    Validation {
        unique_ordering: true,
        ..Default::default()
    }
}

/// The message of a broken rule.
fn broken<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Validation { message }) => message,
        other => panic!("expected a broken rule, got {other:?}"),
    }
}

/// A column as nullable i64 (timestamps as ns).
fn opt_i64(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let mut col = Arc::clone(b.column_by_name(name).expect(name));
        if matches!(col.data_type(), DataType::Timestamp(..)) {
            col = cast(&col, &DataType::Timestamp(TimeUnit::Nanosecond, None)).unwrap();
        }
        let col = cast(&col, &DataType::Int64).unwrap();
        out.extend(col.as_primitive::<Int64Type>().iter());
    }
    out
}

fn opt_f64(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    let cols = batches.iter().map(|b| b.column_by_name(name).expect(name));
    let cols = cols.map(|c| c.as_primitive::<Float64Type>().iter().collect::<Vec<_>>());
    cols.flatten().collect()
}

/// The batches of a read, each in the announced schema.
async fn gather(read: ReadStream) -> Result<Vec<RecordBatch>> {
    let schema = Arc::clone(&read.schema);
    let batches: Vec<RecordBatch> = read.stream.try_collect().await?;
    assert!(
        batches.iter().all(|b| b.schema() == schema),
        "a batch schema differs"
    );
    Ok(batches)
}

#[tokio::test]
async fn not_null_names_the_row_and_sticks_to_the_item() {
    let t = Item::new("rules", "not-null").await;
    let mut rows: Vec<NRow> = (0..8).map(|n| (n * MIN, Some(n + 1))).collect();
    rows[5].1 = None; // in the second batch of three
    let msg = broken(t.put(rules(not_null("v")), &rows, 3).await);
    let want = r#"rule not_null is broken at row 5 of the upload: column "v" is null"#;
    assert_eq!(msg, want);
    assert_eq!(
        t.state().await,
        None,
        "a broken first write creates nothing"
    );

    rows[5].1 = Some(6);
    t.put(rules(not_null("v")), &rows, 3).await.unwrap();
    let info = t.info().await;
    assert_eq!((info.version, info.rows), (1, 8));
    assert_eq!(info.settings.validation, not_null("v"));
    // A later write that gives no rules is checked by the item's.
    let later: [NRow; 2] = [(10 * MIN, Some(1)), (11 * MIN, None)];
    let msg = broken(t.put(WriteOptions::default(), &later, 1).await);
    assert!(
        msg.starts_with("rule not_null is broken at row 1 of"),
        "{msg}"
    );
    assert_eq!(t.state().await, Some((1, 8)));
    // New rules replace the old: the null passes now, a value <= 0 does not.
    t.put(rules(check("v > 0")), &later, 1).await.unwrap();
    let info = t.info().await;
    assert_eq!((info.version, info.rows), (2, 10));
    assert_eq!(info.settings.validation, check("v > 0"));
    let msg = broken(
        t.put(WriteOptions::default(), &[(12 * MIN, Some(0))], 1)
            .await,
    );
    assert!(
        msg.starts_with(r#"rule check "v > 0" is broken at row 0"#),
        "{msg}"
    );
    assert_eq!(t.state().await, Some((2, 10)));
}

#[tokio::test]
async fn check_names_the_row_and_value_and_lets_nulls_pass() {
    let t = Item::new("rules", "check").await;
    let first: [NRow; 2] = [(0, Some(1)), (MIN, Some(2))];
    t.put(rules(check("v > 0")), &first, 1).await.unwrap();
    let before = t.state().await;
    let values = [Some(1), Some(2), None, Some(3), Some(4), Some(-1), Some(-2)];
    let rows: Vec<NRow> = (10..).map(|m| m * MIN).zip(values).collect();
    let msg = broken(t.put(WriteOptions::default(), &rows, 2).await);
    let want = r#"rule check "v > 0" is broken at row 5 of the upload: column "v" = -1"#;
    assert_eq!(msg, want);
    // A check that is no boolean, or names an unknown column, is refused up front; so is
    // any check on an engine without SQL.
    let bare = Item {
        e: memory_engine(small_options()),
        ..t.clone()
    };
    for (target, sql) in [(&t, "v + 1"), (&t, "w > 0"), (&bare, "v > 0")] {
        let r = target.put(rules(check(sql)), &rows[..1], 1).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{sql}: {r:?}"
        );
    }
    assert_eq!(t.state().await, before);
    assert_eq!(t.info().await.settings.validation, check("v > 0"));
}

#[tokio::test]
async fn unique_ordering_names_the_repeated_row() {
    let t = Item::new("rules", "unique").await;
    let ts = [0, 1, 2, 3, 4, 5, 6, 6, 7];
    let rows: Vec<NRow> = ts.iter().map(|m| (m * MIN, Some(*m))).collect();
    let msg = broken(t.put(rules(unique()), &rows, 3).await);
    let want = r#"rule unique_ordering is broken at row 7 of the upload: column "ts" repeats "#;
    assert!(
        msg.starts_with(format!("{want}1970-01-01T00:06:00").as_str()),
        "{msg}"
    );
    assert_eq!(t.state().await, None);
    t.put(rules(unique()), &rows[..7], 3).await.unwrap();
    assert_eq!(t.info().await.settings.validation, unique());
}

#[tokio::test]
async fn unique_ordering_holds_against_stored_rows_and_across_chunks() {
    let t = Item::new("rules", "unique-stored").await;
    let at = |ts: &[i64]| -> Vec<NRow> { ts.iter().map(|m| (m * MIN, Some(*m))).collect() };
    let stored = at(&(0..10).collect::<Vec<_>>());
    t.put(rules(unique()), &stored, 4).await.unwrap();
    let before = t.state().await;
    // Out of order (the upload's own check stops there), 30 rows in batches of 10: the
    // repeat of row 0 comes in another chunk (a chunk holds at most 20 rows).
    let far: Vec<i64> = [150].into_iter().chain(100..128).chain([150]).collect();
    let cases = [
        ("at the stored end", at(&[9, 10]), 1, 9),
        ("inside the stored rows", at(&[4]), 1, 4),
        ("out of order, one chunk", at(&[205, 200, 205]), 1, 205),
        ("out of order, two chunks", at(&far), 10, 150),
    ];
    for (what, rows, chunk, m) in cases {
        let msg = broken(t.put(WriteOptions::default(), &rows, chunk).await);
        let value = format!("\"ts\" repeats 1970-01-01T{:02}:{:02}:00", m / 60, m % 60);
        assert!(
            msg.starts_with("rule unique_ordering is broken"),
            "{what}: {msg}"
        );
        assert!(msg.contains(value.as_str()), "{what}: {msg}");
        assert_eq!(t.state().await, before, "{what}");
    }
    let v: Vec<Option<i64>> = stored.iter().map(|r| r.1).collect();
    assert_eq!(opt_i64(&t.read().await, "v"), v);
    // The same out-of-order upload without its repeat is fine.
    let fine: Vec<i64> = [150].into_iter().chain(100..128).chain([151]).collect();
    t.put(WriteOptions::default(), &at(&fine), 10)
        .await
        .unwrap();
    assert_eq!(t.info().await.rows, 40);
}

/// A batch of `p`'s schema: floats `x`, ints and strings numbered by row, booleans true.
fn preset_batch(p: Preset, ts: &[i64], x: f64) -> RecordBatch {
    let schema = p.schema();
    let n = ts.len();
    let column = |f: &Arc<Field>| -> ArrayRef {
        match f.data_type() {
            DataType::Timestamp(..) => ts_array(ts.iter().copied()),
            DataType::Float64 => Arc::new(Float64Array::from(vec![x; n])),
            DataType::Int64 => Arc::new(Int64Array::from_iter_values(0..n as i64)),
            DataType::Utf8 => {
                Arc::new(StringArray::from_iter_values((0..n).map(|r| r.to_string())))
            }
            DataType::Boolean => Arc::new(BooleanArray::from(vec![true; n])),
            other => panic!("unexpected type {other}"),
        }
    };
    let columns = schema.fields().iter().map(column).collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// `b` with column `name` replaced by (or extended with) `col`.
fn altered(b: &RecordBatch, name: &str, col: ArrayRef) -> RecordBatch {
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = b.columns().to_vec();
    let field = Field::new(name, col.data_type().clone(), true);
    if let Some(n) = fields.iter().position(|f| f.name() == name) {
        (fields[n], columns[n]) = (field, col);
    } else {
        fields.push(field);
        columns.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[tokio::test]
async fn presets_take_their_schema_and_refuse_others() {
    let market = Item::new("market", "none").await;
    for p in [Preset::Ohlc, Preset::Trades, Preset::Orderbook] {
        let t = market.sibling(p.name());
        let ts: Vec<i64> = (0..25).map(|n| n * SEC).collect();
        let batches = vec![
            preset_batch(p, &ts[..15], 1.0),
            preset_batch(p, &ts[15..], 2.0),
        ];
        t.write(preset(p), batches).await.unwrap();
        let info = t.info().await;
        assert_eq!(info.rows, 25, "{p:?}");
        assert_eq!(info.schema.fields(), p.schema().fields(), "{p:?}");
        let settings = &info.settings;
        assert_eq!(
            (settings.preset, settings.ordered_on.as_str()),
            (Some(p), "ts")
        );
        assert_eq!(settings.dedup_on, p.dedup_on());
        let rows: usize = t.read().await.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 25, "{p:?}");

        // Column 1 (open, price, side) as booleans; an extra column. Refused for a new
        // item, and for this one without naming the preset (it sticks).
        let good = preset_batch(p, &[100 * SEC], 1.0);
        let field = p.schema().field(1).name().clone();
        let bad = [
            altered(&good, &field, Arc::new(BooleanArray::from(vec![true]))),
            altered(&good, "extra", Arc::new(Float64Array::from(vec![1.0]))),
        ];
        let new = market.sibling(&format!("{}-new", p.name()));
        for b in bad {
            for (target, opts) in [(&new, preset(p)), (&t, WriteOptions::default())] {
                let before = target.state().await;
                let r = target.write(opts, vec![b.clone()]).await;
                let refused = matches!(
                    r,
                    Err(Error::InvalidArgument { .. } | Error::SchemaMismatch { .. })
                );
                assert!(refused, "{p:?} {} {:?}: {r:?}", target.i, b.schema());
                assert_eq!(target.state().await, before);
            }
        }
    }
}

/// OHLC bars (ts, low, high): open and close are `low`, quote_volume 2, trades 1.
fn ohlc_batch(rows: &[(i64, f64, f64)]) -> RecordBatch {
    let floats = |g: fn(&(i64, f64, f64)) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
    };
    let (low, high) = (floats(|r| r.1), floats(|r| r.2));
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        ts_array(rows.iter().map(|r| r.0)),
        Arc::clone(&low),
        high,
        Arc::clone(&low),
        low,
        Arc::new(Float64Array::from(vec![1.0; n])),
        Arc::new(Float64Array::from(vec![2.0; n])),
        Arc::new(Int64Array::from(vec![1; n])),
    ];
    RecordBatch::try_new(Preset::Ohlc.schema(), columns).unwrap()
}

#[tokio::test]
async fn ohlc_keeps_the_last_bar_of_an_instant_and_checks_low_and_high() {
    let t = Item::new("market", "bars").await;
    let bars = ohlc_batch(&[(0, 1.0, 9.0), (MIN, 2.0, 9.0), (0, 3.0, 9.0)]);
    t.write(preset(Preset::Ohlc), vec![bars]).await.unwrap();
    let got = t.read().await;
    assert_eq!(opt_i64(&got, "ts"), [Some(0), Some(MIN)]);
    assert_eq!(opt_f64(&got, "low"), [Some(3.0), Some(2.0)]);
    // An append repeating a stored instant replaces its bar.
    let more = ohlc_batch(&[(MIN, 4.0, 9.0), (2 * MIN, 5.0, 9.0)]);
    t.write(WriteOptions::default(), vec![more]).await.unwrap();
    let got = t.read().await;
    assert_eq!(opt_f64(&got, "low"), [Some(3.0), Some(4.0), Some(5.0)]);
    // The preset's check.
    let before = t.state().await;
    let bad = ohlc_batch(&[(3 * MIN, 1.0, 2.0), (4 * MIN, 5.0, 1.0)]);
    let msg = broken(t.write(WriteOptions::default(), vec![bad]).await);
    assert!(
        msg.starts_with(r#"rule check "low <= high" is broken at row 1"#),
        "{msg}"
    );
    assert!(msg.contains(r#"column "low" = 5"#), "{msg}");
    assert_eq!(t.state().await, before);
}

/// A dccd v2 OHLC frame: TS as int64 ns, quoteVolume, weightedAverage, no trades.
fn legacy_ohlc(ts: &[i64], quote: &[f64]) -> RecordBatch {
    let floats = [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quoteVolume",
        "weightedAverage",
    ];
    let mut fields = vec![Field::new("TS", DataType::Int64, false)];
    fields.extend(
        floats
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, false)),
    );
    let ones = || -> ArrayRef { Arc::new(Float64Array::from(vec![1.0; ts.len()])) };
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ts.to_vec()))];
    columns.extend((0..5).map(|_| ones()));
    columns.extend([
        Arc::new(Float64Array::from(quote.to_vec())) as ArrayRef,
        ones(),
    ]);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[tokio::test]
async fn legacy_ohlc_frames_are_renamed_dropped_and_filled() {
    let t = Item::new("market", "legacy").await;
    let first = ohlc_batch(&[(0, 1.0, 2.0)]);
    t.write(preset(Preset::Ohlc), vec![first]).await.unwrap();
    let legacy = legacy_ohlc(&[MIN, 2 * MIN], &[7.5, 8.5]);
    t.write(preset(Preset::Ohlc), vec![legacy]).await.unwrap();
    // Again without naming the preset: the item's legacy column map sticks.
    let legacy = legacy_ohlc(&[3 * MIN], &[9.5]);
    t.write(WriteOptions::default(), vec![legacy])
        .await
        .unwrap();

    let info = t.info().await;
    assert_eq!(info.rows, 4);
    assert_eq!(info.schema.fields(), Preset::Ohlc.schema().fields());
    let got = t.read().await;
    let ts: Vec<i64> = opt_i64(&got, "ts").into_iter().flatten().collect();
    assert_eq!(ts, [0, MIN, 2 * MIN, 3 * MIN]);
    let quote = opt_f64(&got, "quote_volume");
    assert_eq!(quote, [Some(2.0), Some(7.5), Some(8.5), Some(9.5)]);
    assert_eq!(opt_i64(&got, "trades"), [Some(1), None, None, None]);
}

/// The grid a model expects for `[start, end)` (rows in stored order).
fn grid_model(rows: &[Row], start: i64, end: i64, step: i64, previous: bool) -> Vec<Slot> {
    // The last row before start (`max_by_key` keeps the last of equals).
    let before = rows.iter().filter(|r| r.0 < start).max_by_key(|r| r.0);
    let mut last = before.filter(|_| previous).map(|r| r.2);
    let slot = |t: i64| {
        let here = rows.iter().rev().find(|r| r.0 == t).map(|r| r.2);
        last = here.or(last.filter(|_| previous));
        (t, last)
    };
    (start..end).step_by(step as usize).map(slot).collect()
}

#[tokio::test]
async fn grid_fills_slots_from_start_to_end() {
    let t = Item::new("grid", "fills").await;
    // 5:00, 10:00, 10:30, 11:00, 11:10, 11:20, 13:00 twice, 15:00, 19:59, 20:00.
    let secs = [300, 600, 630, 660, 670, 680, 780, 780, 900, 1199, 1200];
    let rows: Vec<Row> = (1..).zip(secs).map(|(v, s)| (s * SEC, 0, v)).collect();
    t.write(WriteOptions::default(), rows.chunks(3).map(batch).collect())
        .await
        .unwrap();
    let (start, end) = (Some(10 * MIN), Some(20 * MIN));

    let nulls = t.grid((start, end), "1min", Fill::Null).await.unwrap();
    assert_eq!(nulls, grid_model(&rows, 10 * MIN, 20 * MIN, MIN, false));
    // The row at start counts, the later of two rows at 13:00 wins, rows between slots
    // and at end do not show.
    let filled: Vec<(usize, i64)> = (0..)
        .zip(&nulls)
        .filter_map(|(k, s)| Some((k, s.1?)))
        .collect();
    assert_eq!(filled, [(0, 2), (1, 4), (3, 8), (5, 9)]);
    let previous = t.grid((start, end), "1min", Fill::Previous).await.unwrap();
    assert_eq!(previous, grid_model(&rows, 10 * MIN, 20 * MIN, MIN, true));
    assert_eq!(previous[2], (12 * MIN, Some(4)));
    // The first slot empty: `previous` starts from the last row before start (11:20).
    let from_12 = t
        .grid((Some(12 * MIN), end), "1min", Fill::Previous)
        .await
        .unwrap();
    assert_eq!(from_12, grid_model(&rows, 12 * MIN, 20 * MIN, MIN, true));
    assert_eq!(from_12[0], (12 * MIN, Some(6)));
    for range in [(None, end), (start, None), (None, None)] {
        let r = t.grid(range, "1min", Fill::Null).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{range:?}: {r:?}"
        );
    }
}

#[tokio::test]
async fn grid_spans_gaps_longer_than_a_file() {
    let t = Item::new("grid", "gap").await;
    let early = (0..30).map(|n| (n * MIN, 0, n));
    let rows: Vec<Row> = early
        .chain((0..30).map(|n| ((600 + n) * MIN, 1, 100 + n)))
        .collect();
    for part in rows.chunks(30) {
        t.write(WriteOptions::default(), part.chunks(7).map(batch).collect())
            .await
            .unwrap();
    }
    assert!(t.info().await.files >= 3, "the rows span several files");
    for (start, end) in [(0, 700), (300, 650), (25, 605)] {
        for fill in [Fill::Null, Fill::Previous] {
            let got = t
                .grid((Some(start * MIN), Some(end * MIN)), "1min", fill)
                .await
                .unwrap();
            let want = grid_model(&rows, start * MIN, end * MIN, MIN, fill == Fill::Previous);
            assert_eq!(got.len() as i64, end - start);
            assert_eq!(got, want, "{start}..{end} {fill:?}");
        }
    }
}

#[tokio::test]
async fn grid_of_many_slots_streams_every_one() {
    let t = Item::new("grid", "long").await;
    let rows: [Row; 3] = [(0, 0, 10), (100_000 * SEC, 0, 20), (199_999 * SEC, 0, 30)];
    t.write(WriteOptions::default(), vec![batch(&rows)])
        .await
        .unwrap();
    let slots = 200_003; // 1s over ~2.3 days
    let range = KeyRange::new(Some(0), Some(slots * SEC));
    let plan = t
        .plan(ReadOptions {
            range,
            ..Default::default()
        })
        .await;
    let grid = Grid {
        freq: Period::parse("1s").unwrap(),
        fill: Fill::Previous,
    };
    assert_eq!(plan.grid_slots(&grid).unwrap(), slots as u64);
    let batches = gather(t.e.execute_grid(&plan, grid).await.unwrap())
        .await
        .unwrap();
    assert!(batches.len() > 1, "the grid came as one batch");
    let ts = opt_i64(&batches, "ts").into_iter().map(Option::unwrap);
    let got: Vec<Slot> = ts.zip(opt_i64(&batches, "v")).collect();
    assert_eq!(got.len() as i64, slots);
    assert_eq!(got, grid_model(&rows, 0, slots * SEC, SEC, true));
}

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A multi-item read as (item, ts, v).
async fn read_many(
    t: &Item,
    items: &[&str],
    opts: &ReadOptions,
    limit: Option<usize>,
    last: Option<usize>,
) -> Vec<(String, i64, i64)> {
    let mut plans = Vec::new();
    for item in items {
        plans.push(t.sibling(item).plan(opts.clone()).await);
    }
    let read = t.e.execute_many(&plans, limit, last).await.unwrap();
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let first = read.schema.field(0);
    assert_eq!(
        (first.name().as_str(), first.data_type()),
        (ITEM_COLUMN, &dict)
    );
    let batches = gather(read).await.unwrap();
    let mut names = Vec::new();
    for b in &batches {
        let col = cast(b.column(0), &DataType::Utf8).unwrap();
        names.extend(
            col.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string()),
        );
    }
    let (ts, v) = (column_i64(&batches, "ts"), column_i64(&batches, "v"));
    names
        .into_iter()
        .zip(ts)
        .zip(v)
        .map(|((item, ts), v)| (item, ts, v))
        .collect()
}

#[tokio::test]
async fn many_items_merge_in_time_then_item_order() {
    let t = Item::new("many", "none").await;
    let items = ["B", "A", "C"]; // ties go by this order, not by name
    let mut lcg = Lcg(7);
    let mut all: Vec<(usize, Row)> = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let ts: BTreeSet<i64> = (0..80).map(|_| lcg.below(300) as i64 * SEC).collect();
        let rows: Vec<Row> = (0..)
            .zip(ts)
            .map(|(n, ts)| (ts, j as i8, j as i64 * 1000 + n))
            .collect();
        let batches = rows.chunks(13).map(batch).collect();
        t.sibling(item)
            .write(WriteOptions::default(), batches)
            .await
            .unwrap();
        all.extend(rows.into_iter().map(|r| (j, r)));
    }
    all.sort_by_key(|(j, r)| (r.0, *j));
    assert!(
        all.windows(2).any(|w| w[0].1 .0 == w[1].1 .0),
        "no ties across items"
    );
    // Per item, the rows in range and the n_prev before it; merged by (ts, item order).
    let expect = |range: KeyRange, n_prev: usize| -> Vec<(String, i64, i64)> {
        let mut out: Vec<(usize, Row)> = Vec::new();
        for j in 0..items.len() {
            let mine = all.iter().filter(|(k, _)| *k == j).map(|(_, r)| *r);
            let before: Vec<Row> = mine.clone().filter(|r| range.start > Some(r.0)).collect();
            let prev = &before[before.len().saturating_sub(n_prev)..];
            let inside =
                mine.filter(|r| range.start <= Some(r.0) && range.end.is_none_or(|e| r.0 < e));
            out.extend(prev.iter().copied().chain(inside).map(|r| (j, r)));
        }
        out.sort_by_key(|(j, r)| (r.0, *j));
        out.into_iter()
            .map(|(j, r)| (items[j].to_string(), r.0, r.2))
            .collect()
    };
    let whole = ReadOptions::default();
    let merged = expect(KeyRange::default(), 0);
    assert_eq!(read_many(&t, &items, &whole, None, None).await, merged);
    let first = read_many(&t, &items, &whole, Some(25), None).await;
    assert_eq!(first, merged[..25].to_vec());
    let last = read_many(&t, &items, &whole, None, Some(25)).await;
    assert_eq!(last, merged[merged.len() - 25..].to_vec());

    let range = KeyRange::new(Some(100 * SEC), Some(200 * SEC));
    let opts = ReadOptions {
        range,
        n_prev: 2,
        ..Default::default()
    };
    let windowed = expect(range, 2);
    assert_eq!(read_many(&t, &items, &opts, None, None).await, windowed);
    let first = read_many(&t, &items, &opts, Some(4), None).await;
    assert_eq!(first, windowed[..4].to_vec());
    let last = read_many(&t, &items, &opts, None, Some(10)).await;
    assert_eq!(last, windowed[windowed.len() - 10..].to_vec());
}

async fn write_tagged(
    t: &Item,
    rows: &[Tagged],
    chunk: usize,
    opts: WriteOptions,
) -> Result<BatchReceipt> {
    let batches = rows.chunks(chunk).map(tagged_batch).collect::<Vec<_>>();
    let input = stream::iter(batches.into_iter().map(Ok)).boxed();
    t.e.write_batch(&t.c, "symbol", opts, tagged_schema(), input)
        .await
}

#[tokio::test]
async fn batch_write_splits_an_upload_into_items() {
    let t = Item::new("batch", "none").await;
    let item_rows = |n: i64| {
        (0..6).map(move |r| {
            (
                Some(format!("S{n:03}")),
                (r * 100 + n) * SEC,
                Some(n * 100 + r),
            )
        })
    };
    let mut rows: Vec<Tagged> = (0..100).flat_map(item_rows).collect();
    let mut lcg = Lcg(11);
    for k in (1..rows.len()).rev() {
        rows.swap(k, lcg.below(k as u64 + 1) as usize);
    }
    let receipt = write_tagged(&t, &rows, 200, WriteOptions::default())
        .await
        .unwrap();
    assert_eq!((receipt.rows_received, receipt.items.len()), (600, 100));
    assert_eq!(t.e.list_items(&t.c, None, None).await.unwrap().len(), 100);
    for n in 0..100 {
        let name = format!("S{n:03}");
        let mine = rows
            .iter()
            .filter(|r| r.0.as_deref() == Some(name.as_str()));
        let mut want: Vec<(Option<i64>, Option<i64>)> = mine.map(|r| (Some(r.1), r.2)).collect();
        want.sort();
        let got = t.sibling(&name).read().await;
        let stored = Schema::new(vec![ts_field(), v_field()]);
        assert_eq!(
            got[0].schema().fields(),
            stored.fields(),
            "{name}: symbol is dropped"
        );
        let got: Vec<_> = opt_i64(&got, "ts")
            .into_iter()
            .zip(opt_i64(&got, "v"))
            .collect();
        assert_eq!(got, want, "{name}");
        let r = receipt.items[&name];
        assert_eq!((r.version, r.rows_written), (1, 6), "{name}");
    }
}

#[tokio::test]
async fn batch_write_with_a_bad_part_commits_nothing() {
    let t = Item::new("batch", "none").await;
    // A null item name late in the upload.
    let mut rows: Vec<Tagged> = (0..30)
        .map(|n| (Some(format!("S{}", n % 5)), n * SEC, Some(n)))
        .collect();
    rows[25].0 = None;
    let r = write_tagged(&t, &rows, 6, WriteOptions::default()).await;
    let null_name =
        matches!(&r, Err(Error::InvalidArgument { message }) if message.contains("row 25"));
    assert!(null_name, "{r:?}");
    assert!(t.e.list_items(&t.c, None, None).await.unwrap().is_empty());
    // A rule broken by one item's rows only (B's third row, in the second batch).
    let symbol = |n: i64| Some(["A", "B", "C"][n as usize % 3].to_string());
    let mut rows: Vec<Tagged> = (0..12).map(|n| (symbol(n), n * SEC, Some(n))).collect();
    rows[7].2 = None;
    let msg = broken(write_tagged(&t, &rows, 6, rules(not_null("v"))).await);
    let want =
        r#"rule not_null is broken at row 2 of item "B"'s rows in the upload: column "v" is null"#;
    assert_eq!(msg, want);
    assert!(t.e.list_items(&t.c, None, None).await.unwrap().is_empty());
}
