//! Storage engine benchmarks on a tick table, each next to the same work done on one
//! plain Parquet file with the parquet crate (the baseline), in the same run.
//!
//! `cargo bench --bench storage` (set `TICKS_ROWS` to change the 10M default).
//! Reported as medians; compare `flightstore/*` with `baseline/*` of the same step.
//!
//! The ticks look like real trades (`TICKS_DATA=regular` gives the old, regular ones):
//! timestamps 1 ms apart with +-0.4 ms jitter at microsecond resolution, random-walk
//! prices, exponential sizes rounded to 0.01, random sides, sequential trade ids. Every
//! value is a function of the row number, so a block of rows (an append, an upsert) is
//! the same rows wherever it is made.
//!
//! The engine runs as the server does, with its write-ahead log; `append_100k` is also
//! measured without it (`flightstore_no_wal`).

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, Float64Array, Int64Array, Int8Array, RecordBatch, TimestampNanosecondArray,
};
use arrow::compute::kernels::cmp::{gt_eq, lt};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use criterion::{criterion_group, criterion_main, Criterion};
use flightstore::storage::{
    CollectionName, Engine, ItemName, KeyRange, Options, ReadOptions, WriteMode, WriteOptions,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};

const BATCH_ROWS: usize = 65_536;
const T0: i64 = 1_704_067_200_000_000_000; // 2024-01-01
const STEP: i64 = 1_000_000; // one tick per millisecond

fn tick_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("price", DataType::Float64, false),
        Field::new("size", DataType::Float64, false),
        Field::new("side", DataType::Int8, false),
        Field::new("trade_id", DataType::Int64, false),
    ]))
}

/// Whether the ticks are the old regular ones (`TICKS_DATA=regular`).
fn regular() -> bool {
    std::env::var("TICKS_DATA").is_ok_and(|d| d == "regular")
}

/// A well-mixed 64-bit hash of a row number and a stream (splitmix64).
fn mix(i: i64, stream: u64) -> u64 {
    let mut z = (i as u64).wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in (0, 1) from a row number and a stream.
fn uniform(i: i64, stream: u64) -> f64 {
    ((mix(i, stream) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Timestamp of row `i`: 1 ms steps, +-0.4 ms of jitter at microsecond resolution
/// (strictly increasing: neighbours are at least 0.2 ms apart).
fn ts_of(i: i64) -> i64 {
    if regular() {
        return T0 + i * STEP;
    }
    let jitter_us = (mix(i, 1) % 801) as i64 - 400;
    T0 + i * STEP + jitter_us * 1000
}

/// Rows `[from, to)` of the tick table, in batches; `bump` shifts prices (for upserts).
fn ticks(from: i64, to: i64, bump: f64) -> Vec<RecordBatch> {
    let schema = tick_schema();
    let regular = regular();
    // A random walk from the block's first row (multiplicative steps of ~1e-4).
    let mut price = 100.0 * (1.0 + 0.05 * (from as f64 * 1e-7).sin()) + bump;
    (from..to)
        .step_by(BATCH_ROWS)
        .map(|start| {
            let end = (start + BATCH_ROWS as i64).min(to);
            let ids: Vec<i64> = (start..end).collect();
            let ts = TimestampNanosecondArray::from_iter_values(ids.iter().map(|&i| ts_of(i)))
                .with_timezone("UTC");
            let price = Float64Array::from_iter_values(ids.iter().map(|&i| {
                if regular {
                    return 100.0 + (i % 1000) as f64 * 0.01 + bump;
                }
                let z = (uniform(i, 2) + uniform(i, 3) + uniform(i, 4) - 1.5) * 2.0;
                price *= 1.0 + 1e-4 * z;
                price
            }));
            let size = Float64Array::from_iter_values(ids.iter().map(|&i| {
                if regular {
                    return ((i * 7) % 500) as f64;
                }
                (-uniform(i, 5).ln() * 50.0 * 100.0).round() / 100.0
            }));
            let side = Int8Array::from_iter_values(ids.iter().map(|&i| {
                let down = if regular {
                    i % 3 == 0
                } else {
                    mix(i, 6) & 1 == 0
                };
                if down {
                    -1
                } else {
                    1
                }
            }));
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(ts),
                    Arc::new(price),
                    Arc::new(size),
                    Arc::new(side),
                    Arc::new(Int64Array::from(ids)),
                ],
            )
            .expect("valid batch")
        })
        .collect()
}

fn rows_env() -> i64 {
    std::env::var("TICKS_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    engine: Engine,
    /// The same engine settings without the write-ahead log.
    engine_no_wal: Engine,
    plain: std::path::PathBuf,
    dir: std::path::PathBuf,
    c: CollectionName,
    n: i64,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let open = |folder: &str, wal: bool| {
            let options = Options {
                wal,
                ..Options::default()
            };
            Engine::open(dir.path().join(folder).to_str().unwrap(), options).unwrap()
        };
        let (engine, engine_no_wal) = (open("store", true), open("store-no-wal", false));
        let n = rows_env();
        let fixture = Self {
            rt,
            plain: dir.path().join("plain.parquet"),
            dir: dir.path().to_path_buf(),
            _dir: dir,
            engine,
            engine_no_wal,
            c: CollectionName::new("bench").unwrap(),
            n,
        };
        fixture.write_engine("ticks", ticks(0, n, 0.0), WriteMode::Overwrite);
        // Appends go to their own item: criterion runs them many times.
        fixture.write_engine("appended", ticks(0, n, 0.0), WriteMode::Overwrite);
        fixture.write_to(
            &fixture.engine_no_wal,
            "appended",
            ticks(0, n, 0.0),
            WriteMode::Overwrite,
        );
        write_plain(&fixture.plain, &ticks(0, n, 0.0));
        fixture
    }

    fn write_engine(&self, item: &str, batches: Vec<RecordBatch>, mode: WriteMode) {
        self.write_to(&self.engine, item, batches, mode)
    }

    fn write_to(&self, engine: &Engine, item: &str, batches: Vec<RecordBatch>, mode: WriteMode) {
        let i = ItemName::new(item).unwrap();
        let opts = WriteOptions {
            mode,
            dedup_on: (mode == WriteMode::Upsert).then(|| vec!["trade_id".to_string()]),
            ..Default::default()
        };
        let input = stream::iter(batches.into_iter().map(Ok)).boxed();
        self.rt
            .block_on(engine.write(&self.c, &i, opts, tick_schema(), input))
            .unwrap();
    }

    fn read_engine(&self, opts: ReadOptions) -> usize {
        let i = ItemName::new("ticks").unwrap();
        self.rt.block_on(async {
            let read = self.engine.read(&self.c, &i, opts).await.unwrap();
            read.stream
                .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
                .await
                .unwrap()
        })
    }
}

fn write_plain(path: &std::path::Path, batches: &[RecordBatch]) {
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), tick_schema(), None).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

fn read_plain(path: &std::path::Path, columns: Option<&[usize]>) -> Vec<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let builder = match columns {
        Some(c) => {
            let mask = ProjectionMask::roots(builder.parquet_schema(), c.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn in_range(batch: &RecordBatch, start: i64, end: i64) -> RecordBatch {
    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .unwrap();
    let ts = ts.clone().with_timezone_opt(None::<String>);
    let lo = TimestampNanosecondArray::new_scalar(start);
    let hi = TimestampNanosecondArray::new_scalar(end);
    let mask = and(&gt_eq(&ts, &lo).unwrap(), &lt(&ts, &hi).unwrap()).unwrap();
    filter_record_batch(batch, &mask).unwrap()
}

fn benches(c: &mut Criterion) {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        // Phase timings of the engine (e.g. RUST_LOG=flightstore=debug).
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let f = Fixture::new();
    let n = f.n;
    let mut g = c.benchmark_group("ticks");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    let all = ticks(0, n, 0.0);
    g.bench_function("write_all/flightstore", |b| {
        b.iter(|| f.write_engine("written", all.clone(), WriteMode::Overwrite))
    });
    g.bench_function("write_all/baseline", |b| {
        b.iter(|| write_plain(&f.dir.join("w.parquet"), &all))
    });
    drop(all);

    // Appends after the end: a fresh 100k-row block each time.
    let block = 100_000i64;
    let mut next = n;
    g.bench_function("append_100k/flightstore", |b| {
        b.iter(|| {
            f.write_engine(
                "appended",
                ticks(next, next + block, 0.0),
                WriteMode::Append,
            );
            next += block;
        })
    });
    let mut next = n;
    g.bench_function("append_100k/flightstore_no_wal", |b| {
        b.iter(|| {
            f.write_to(
                &f.engine_no_wal,
                "appended",
                ticks(next, next + block, 0.0),
                WriteMode::Append,
            );
            next += block;
        })
    });
    // Baseline: a dataset of Parquet files, one new file per append.
    let mut k = 0;
    g.bench_function("append_100k/baseline", |b| {
        b.iter(|| {
            write_plain(
                &f.dir.join(format!("append-{k}.parquet")),
                &ticks(n + k * block, n + (k + 1) * block, 0.0),
            );
            k += 1;
        })
    });

    g.bench_function("read_all/flightstore", |b| {
        b.iter(|| assert_eq!(f.read_engine(ReadOptions::default()) as i64, n))
    });
    g.bench_function("read_all/baseline", |b| {
        b.iter(|| {
            assert_eq!(
                read_plain(&f.plain, None)
                    .iter()
                    .map(|b| b.num_rows() as i64)
                    .sum::<i64>(),
                n
            )
        })
    });

    let (start, end) = (ts_of(n / 2), ts_of(n / 2 + n / 100));
    g.bench_function("read_1pct/flightstore", |b| {
        b.iter(|| {
            let opts = ReadOptions {
                range: KeyRange::new(Some(start), Some(end)),
                ..Default::default()
            };
            assert_eq!(f.read_engine(opts) as i64, n / 100)
        })
    });
    g.bench_function("read_1pct/baseline", |b| {
        b.iter(|| {
            let rows: usize = read_plain(&f.plain, None)
                .iter()
                .map(|b| in_range(b, start, end).num_rows())
                .sum();
            assert_eq!(rows as i64, n / 100)
        })
    });

    g.bench_function("read_2_columns/flightstore", |b| {
        b.iter(|| {
            let opts = ReadOptions {
                columns: Some(vec!["ts".into(), "price".into()]),
                ..Default::default()
            };
            assert_eq!(f.read_engine(opts) as i64, n)
        })
    });
    g.bench_function("read_2_columns/baseline", |b| {
        b.iter(|| {
            assert_eq!(
                read_plain(&f.plain, Some(&[0, 1]))
                    .iter()
                    .map(|b| b.num_rows() as i64)
                    .sum::<i64>(),
                n
            )
        })
    });

    // Upsert 100k existing rows in the middle (new prices for the same trades).
    let (from, to) = (n / 2, n / 2 + block);
    g.bench_function("upsert_100k/flightstore", |b| {
        b.iter(|| f.write_engine("ticks", ticks(from, to, 1.0), WriteMode::Upsert))
    });
    // Baseline: what a plain-file user does: read all, replace the rows, rewrite.
    g.bench_function("upsert_100k/baseline", |b| {
        b.iter(|| {
            let updates = ticks(from, to, 1.0);
            let mut out: Vec<RecordBatch> = Vec::new();
            for batch in read_plain(&f.plain, None) {
                let ids = batch
                    .column(4)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                let (lo, hi) = (ids.value(0), ids.value(ids.len() - 1));
                if hi < from || lo >= to {
                    out.push(batch);
                    continue;
                }
                out.push(in_range(&batch, ts_of(lo), ts_of(from)));
                if lo <= from {
                    out.extend(updates.iter().cloned());
                }
                out.push(in_range(&batch, ts_of(to), ts_of(hi) + 1));
            }
            write_plain(&f.dir.join("upserted.parquet"), &out);
        })
    });
    g.finish();
}

criterion_group!(storage, benches);
criterion_main!(storage);
