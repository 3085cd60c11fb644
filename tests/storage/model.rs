//! Model-based randomized test: random sequences of writes, range deletes, compactions,
//! snapshots and vacuums, checked after every step against a plain in-memory model, plus
//! reads at random ranges, projections, filters, limits and versions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use flightstore::sql::SqlFilter;
use flightstore::storage::{
    At, CollectionName, Engine, Error, ItemName, Keep, KeyRange, ReadOptions, SnapshotName,
    WriteMode, WriteOptions,
};
use futures::TryStreamExt;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::common::*;
use crate::wal::{open_wal, wal_options};

const SEC: i64 = 1_000_000_000;

/// The item as a plain vector, in the order the engine must return.
#[derive(Debug, Default, Clone)]
struct Model {
    rows: Vec<Row>,
}

fn stable_merge(existing: &[Row], new: &[Row]) -> Vec<Row> {
    let mut all = existing.to_vec();
    all.extend_from_slice(new);
    all.sort_by_key(|r| r.0); // stable: stored rows first, then new rows in upload order
    all
}

/// The de-duplication key of a row: (ts, k), or with `by_ts` the time alone.
fn key(r: &Row, by_ts: bool) -> (i64, i8) {
    (r.0, if by_ts { 0 } else { r.1 })
}

/// New rows de-duplicated on their key among themselves.
fn dedup_new(new: &[Row], keep: Keep, by_ts: bool) -> Vec<Row> {
    let mut winner: HashMap<(i64, i8), usize> = HashMap::new();
    for (n, r) in new.iter().enumerate() {
        match keep {
            Keep::Last => {
                winner.insert(key(r, by_ts), n);
            }
            Keep::First => {
                winner.entry(key(r, by_ts)).or_insert(n);
            }
        }
    }
    new.iter()
        .enumerate()
        .filter(|(n, r)| winner[&key(r, by_ts)] == *n)
        .map(|(_, r)| *r)
        .collect()
}

impl Model {
    fn append(&mut self, new: &[Row]) {
        self.rows = stable_merge(&self.rows, new);
    }

    /// Upsert on (ts, k), or with `by_ts` on the time alone.
    fn upsert(&mut self, new: &[Row], keep: Keep, by_ts: bool) {
        let new = dedup_new(new, keep, by_ts);
        match keep {
            Keep::Last => {
                let keys: HashSet<(i64, i8)> = new.iter().map(|r| key(r, by_ts)).collect();
                let kept: Vec<Row> = self
                    .rows
                    .iter()
                    .filter(|r| !keys.contains(&key(r, by_ts)))
                    .copied()
                    .collect();
                self.rows = stable_merge(&kept, &new);
            }
            Keep::First => {
                let keys: HashSet<(i64, i8)> = self.rows.iter().map(|r| key(r, by_ts)).collect();
                let fresh: Vec<Row> = new
                    .into_iter()
                    .filter(|r| !keys.contains(&key(r, by_ts)))
                    .collect();
                self.rows = stable_merge(&self.rows, &fresh);
            }
        }
    }

    fn delete_range(&mut self, s: i64, e: i64) {
        self.rows.retain(|r| r.0 < s || r.0 >= e);
    }

    /// What a read must return (the contract's order of steps).
    fn read(&self, q: &Query) -> Vec<Row> {
        let pass = |r: &&Row| q.filter_k.is_none_or(|k| r.1 == k);
        let inside: Vec<Row> = self
            .rows
            .iter()
            .filter(|r| q.range.overlaps(r.0, r.0))
            .filter(pass)
            .copied()
            .collect();
        let mut out = Vec::new();
        if let (Some(start), true) = (q.range.start, q.n_prev > 0) {
            let before: Vec<Row> = self
                .rows
                .iter()
                .filter(|r| r.0 < start)
                .filter(pass)
                .copied()
                .collect();
            out.extend_from_slice(&before[before.len().saturating_sub(q.n_prev)..]);
        }
        out.extend(inside);
        if let Some(l) = q.limit {
            out.truncate(l);
        }
        if let Some(l) = q.last {
            out.drain(..out.len().saturating_sub(l));
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Query {
    range: KeyRange,
    filter_k: Option<i8>,
    n_prev: usize,
    limit: Option<usize>,
    last: Option<usize>,
    columns: Vec<&'static str>,
}

fn random_rows(
    rng: &mut SmallRng,
    next_v: &mut i64,
    n: usize,
    lo: i64,
    hi: i64,
    existing: &[Row],
) -> Vec<Row> {
    (0..n)
        .map(|_| {
            *next_v += 1;
            // Sometimes reuse a stored timestamp and key: duplicates for upserts.
            if !existing.is_empty() && rng.random_bool(0.3) {
                let r = existing[rng.random_range(0..existing.len())];
                if r.0 >= lo && r.0 < hi {
                    return (r.0, r.1, *next_v);
                }
            }
            (
                rng.random_range(lo..hi) * SEC,
                rng.random_range(0..3),
                *next_v,
            )
        })
        .collect()
}

fn random_query(rng: &mut SmallRng) -> Query {
    let a = rng.random_range(-2..62) * SEC;
    let b = rng.random_range(-2..62) * SEC;
    let range = match rng.random_range(0..4) {
        0 => KeyRange::ALL,
        1 => KeyRange::new(Some(a), None),
        2 => KeyRange::new(None, Some(b)),
        _ => KeyRange::new(Some(a.min(b)), Some(a.max(b))),
    };
    let mut columns = vec!["ts", "k", "v"];
    columns.shuffle(rng);
    columns.truncate(rng.random_range(1..=3));
    let (limit, last) = match rng.random_range(0..4) {
        0 => (Some(rng.random_range(0..40)), None),
        1 => (None, Some(rng.random_range(0..40))),
        _ => (None, None),
    };
    Query {
        range,
        filter_k: rng.random_bool(0.3).then(|| rng.random_range(0..3)),
        n_prev: if rng.random_bool(0.3) {
            rng.random_range(0..6)
        } else {
            0
        },
        limit,
        last,
        columns,
    }
}

/// Column `col` of model rows.
fn values<'a>(rows: impl Iterator<Item = &'a Row>, col: &str) -> Vec<i64> {
    rows.map(|r| match col {
        "ts" => r.0,
        "k" => r.1 as i64,
        _ => r.2,
    })
    .collect()
}

async fn check_query(engine: &Engine, at: At, model: &Model, q: &Query, ctx: &str) {
    let (c, i) = names("c", "item");
    let filter = q.filter_k.map(|k| {
        Arc::new(SqlFilter::try_new(&format!("k = {k}"), &schema()).unwrap())
            as Arc<dyn flightstore::storage::RowFilter>
    });
    let opts = ReadOptions {
        range: q.range,
        columns: Some(q.columns.iter().map(|s| s.to_string()).collect()),
        filter,
        limit: q.limit,
        last: q.last,
        n_prev: q.n_prev,
        at,
    };
    let batches = read_batches(engine, &c, &i, opts)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let expected = model.read(q);
    for col in &q.columns {
        let want = values(expected.iter(), col);
        assert_eq!(
            column_i64(&batches, col),
            want,
            "{ctx}: column {col} of {q:?}"
        );
    }
    for b in &batches {
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, q.columns, "{ctx}: projection order");
    }
}

/// A multi-item read of `q` over the item and its companion (`other`, in a random order
/// of the two), against the models merged: in time order, ties in item order, `limit` /
/// `last` of the merged rows.
async fn check_many(engine: &Engine, model: &Model, other: &Model, q: &Query, ctx: &str) {
    let c = CollectionName::new("c").unwrap();
    let mut items = [("item", model), ("other", other)];
    if q.range.start.unwrap_or(0) % 2 == 0 {
        items.reverse();
    }
    let mut plans = Vec::new();
    let mut expected: Vec<(i64, usize, Row)> = Vec::new();
    for (n, (name, m)) in items.iter().enumerate() {
        let opts = ReadOptions {
            range: q.range,
            columns: Some(q.columns.iter().map(|s| s.to_string()).collect()),
            limit: q.limit,
            last: q.last,
            n_prev: q.n_prev,
            ..Default::default()
        };
        let i = ItemName::new(*name).unwrap();
        plans.push(engine.plan_read(&c, &i, opts).await.unwrap());
        let unfiltered = Query {
            filter_k: None,
            ..q.clone()
        };
        expected.extend(m.read(&unfiltered).into_iter().map(|r| (r.0, n, r)));
    }
    expected.sort_by_key(|e| (e.0, e.1));
    if let Some(l) = q.limit {
        expected.truncate(l);
    }
    if let Some(l) = q.last {
        expected.drain(..expected.len().saturating_sub(l));
    }
    let read = engine.execute_many(&plans, q.limit, q.last).await.unwrap();
    let batches: Vec<RecordBatch> = read.stream.try_collect().await.unwrap();
    let got_items: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let col = cast(b.column(0), &DataType::Utf8).unwrap();
            let col = col.as_string::<i32>().clone();
            (0..col.len()).map(move |r| col.value(r).to_string())
        })
        .collect();
    let want_items: Vec<String> = expected.iter().map(|e| items[e.1].0.to_string()).collect();
    assert_eq!(got_items, want_items, "{ctx}: _item of many {q:?}");
    for col in &q.columns {
        let want = values(expected.iter().map(|(_, _, r)| r), col);
        assert_eq!(
            column_i64(&batches, col),
            want,
            "{ctx}: many {col} of {q:?}"
        );
    }
}

/// Run `steps` random operations. With `wal`, the engine keeps a write-ahead log in a
/// temporary folder, appends after the end (which take the log) are frequent, and the
/// engine sometimes crashes (is dropped without persisting) and is opened again.
/// Whether the item has writes of the log merging into place (not persisted yet).
async fn pending_merges(engine: &Engine, c: &CollectionName, i: &ItemName) -> usize {
    let latest = engine.latest(c, i).await.unwrap().unwrap();
    usize::from(latest.pending_merges() > 0)
}

/// Returns after how many writes the log held merges (upserts, late rows).
async fn run_model(seed: u64, steps: usize, wal: bool) -> usize {
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let wal_options = wal_options(Duration::from_millis(rng.random_range(0..300)));
    let mut engine = if wal {
        open_wal(dir.path(), wal_options.clone()).await
    } else {
        memory_engine(small_options())
    };
    let (c, i) = names("c", "item");
    let mut model = Model::default();
    let mut history: BTreeMap<u64, Model> = BTreeMap::new();
    let mut snapshots: Vec<(String, u64)> = Vec::new();
    let mut next_v = 0i64;
    let mut exists = false;
    let mut merged = 0;
    // A companion item that multi-item reads merge with the item.
    let other_rows = random_rows(&mut rng, &mut next_v, 30, 0, 60, &[]);
    let other_item = ItemName::new("other").unwrap();
    write_rows(
        &engine,
        &c,
        &other_item,
        WriteOptions::default(),
        &other_rows,
        7,
    )
    .await
    .unwrap();
    let other = Model {
        rows: stable_merge(&[], &other_rows),
    };
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let ops = if wal { 13 } else { 10 };
        let op = if exists { rng.random_range(0..ops) } else { 0 };
        let n = rng.random_range(0..25);
        let chunk = rng.random_range(1..10);
        let written_version = match op {
            0..=2 => {
                let rows = random_rows(&mut rng, &mut next_v, n, 0, 60, &model.rows);
                let r = write_rows(&engine, &c, &i, WriteOptions::default(), &rows, chunk)
                    .await
                    .unwrap();
                assert_eq!(
                    (r.rows_received, r.rows_written),
                    (n as u64, n as u64),
                    "{ctx}"
                );
                merged += pending_merges(&engine, &c, &i).await;
                model.append(&rows);
                exists = true;
                Some(r.version)
            }
            3 | 4 => {
                let keep = if rng.random_bool(0.5) {
                    Keep::Last
                } else {
                    Keep::First
                };
                let rows = random_rows(&mut rng, &mut next_v, n, 0, 60, &model.rows);
                // On (ts, k), or on the ordering column alone (the item has no key).
                let by_ts = rng.random_bool(0.3);
                let opts = WriteOptions {
                    mode: WriteMode::Upsert,
                    dedup_on: (!by_ts).then(|| vec!["ts".into(), "k".into()]),
                    keep: Some(keep),
                    ..Default::default()
                };
                let r = write_rows(&engine, &c, &i, opts, &rows, chunk)
                    .await
                    .unwrap();
                let before = model.rows.len();
                model.upsert(&rows, keep, by_ts);
                assert_eq!(r.rows_received, n as u64, "{ctx}");
                // Exact through the log too (its merges count what they replace).
                assert_eq!(
                    model.rows.len() as i64,
                    before as i64 + r.rows_written as i64 - r.rows_deleted as i64,
                    "{ctx}: receipt counts"
                );
                merged += pending_merges(&engine, &c, &i).await;
                Some(r.version)
            }
            5 => {
                let rows = random_rows(&mut rng, &mut next_v, n, 0, 60, &[]);
                let opts = WriteOptions {
                    mode: WriteMode::Overwrite,
                    ..Default::default()
                };
                let r = write_rows(&engine, &c, &i, opts, &rows, chunk)
                    .await
                    .unwrap();
                model.rows = stable_merge(&[], &rows);
                Some(r.version)
            }
            6 => {
                let a = rng.random_range(0..60);
                let b = rng.random_range(a + 1..=61);
                let rows = random_rows(&mut rng, &mut next_v, n, a, b, &model.rows);
                let opts = WriteOptions {
                    mode: WriteMode::ReplaceRange,
                    start: Some(a * SEC),
                    end: Some(b * SEC),
                    ..Default::default()
                };
                let r = write_rows(&engine, &c, &i, opts, &rows, chunk)
                    .await
                    .unwrap();
                model.delete_range(a * SEC, b * SEC);
                model.append(&rows);
                Some(r.version)
            }
            7 => {
                let a = rng.random_range(0..60);
                let b = rng.random_range(a + 1..=61);
                let r = engine.delete_range(&c, &i, a * SEC, b * SEC).await.unwrap();
                let before = model.rows.len();
                model.delete_range(a * SEC, b * SEC);
                assert_eq!(r.rows_deleted as usize, before - model.rows.len(), "{ctx}");
                Some(r.version)
            }
            8 => {
                if rng.random_bool(0.5) {
                    Some(engine.compact(&c, &i).await.unwrap().version)
                } else {
                    let name = format!("s{step}");
                    engine
                        .create_snapshot(&c, &SnapshotName::new(&name).unwrap())
                        .await
                        .unwrap();
                    let v = engine.item_info(&c, &i, &At::Latest).await.unwrap().version;
                    snapshots.push((name, v));
                    None
                }
            }
            10 | 11 => {
                // After the end (or at it): the log takes it.
                let end = model.rows.last().map_or(0, |r| r.0 / SEC);
                let rows = random_rows(&mut rng, &mut next_v, n.max(1), end, end + 4, &[]);
                let r = write_rows(&engine, &c, &i, WriteOptions::default(), &rows, chunk)
                    .await
                    .unwrap();
                model.append(&rows);
                Some(r.version)
            }
            12 => {
                drop(engine);
                engine = open_wal(dir.path(), wal_options.clone()).await;
                None
            }
            _ => {
                engine.vacuum(Some(&c), Some(&i)).await.unwrap();
                let latest = engine.item_info(&c, &i, &At::Latest).await.unwrap().version;
                let held: HashSet<u64> = snapshots.iter().map(|s| s.1).collect();
                let gone: Vec<u64> = history
                    .keys()
                    .copied()
                    .filter(|v| *v != latest && !held.contains(v))
                    .collect();
                for v in gone {
                    history.remove(&v);
                    let err = engine
                        .read(
                            &c,
                            &i,
                            ReadOptions {
                                at: At::Version(v),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap_err();
                    assert!(matches!(err, Error::VersionNotFound { .. }), "{ctx}: {err}");
                }
                None
            }
        };
        // Every version from the write to the latest (automatic compactions) holds the
        // model's rows.
        let manifest = engine.latest(&c, &i).await.unwrap().unwrap();
        if let Some(w) = written_version {
            for v in w..=manifest.version {
                history.insert(v, model.clone());
            }
        }
        for pair in manifest.files.windows(2) {
            assert!(
                pair[0].max <= pair[1].min,
                "{ctx}: overlapping files {pair:?}"
            );
        }
        let all = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
        assert_eq!(all, model.rows, "{ctx}: full read");
        for _ in 0..3 {
            let q = random_query(&mut rng);
            check_query(&engine, At::Latest, &model, &q, &ctx).await;
        }
        check_many(&engine, &model, &other, &random_query(&mut rng), &ctx).await;
        let versions: Vec<u64> = history.keys().copied().collect();
        let v = versions[rng.random_range(0..versions.len())];
        let q = random_query(&mut rng);
        check_query(
            &engine,
            At::Version(v),
            &history[&v],
            &q,
            &format!("{ctx} at v{v}"),
        )
        .await;
        if let Some((name, v)) = snapshots.last() {
            let snap = At::Snapshot(SnapshotName::new(name).unwrap());
            check_query(
                &engine,
                snap,
                &history[v],
                &q,
                &format!("{ctx} at snapshot {name}"),
            )
            .await;
        }
        // Last, and not every step: it persists log rows that merge into place, which
        // the reads above are to see unpersisted too, several at once.
        if rng.random_bool(0.3) {
            let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
            assert_eq!(
                info.rows as usize,
                model.rows.len(),
                "{ctx}: item_info rows"
            );
        }
    }
    merged
}

#[tokio::test]
async fn random_operations_match_the_model() {
    // A fixed set of seeds keeps CI reproducible; FLIGHTSTORE_MODEL_SEEDS widens the search.
    let seeds: u64 = std::env::var("FLIGHTSTORE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    for seed in 0..seeds {
        assert_eq!(run_model(seed, 60, false).await, 0);
    }
}

#[tokio::test]
async fn random_operations_with_the_write_ahead_log_and_crashes_match_the_model() {
    let seeds: u64 = std::env::var("FLIGHTSTORE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut merged = 0;
    for seed in 0..seeds {
        merged += run_model(1000 + seed, 60, true).await;
    }
    // Upserts and rows inside the stored range took the log, merged on reads.
    assert!(
        merged >= seeds as usize,
        "only {merged} writes merged through the log"
    );
}
