//! The write-ahead log: appends acknowledged through it are visible at once, keep their
//! versions, survive a crash at any point of the log append, the replay and the
//! persist, and every other commit drafts on them.

use std::path::Path;
use std::time::Duration;

use flightstore::storage::{
    At, Engine, Error, Keep, Options, ReadOptions, WriteMode, WriteOptions,
};

use crate::common::*;

const SEC: i64 = 1_000_000_000;

/// Options with the log on; tails are persisted after `persist_after`.
pub(crate) fn wal_options(persist_after: Duration) -> Options {
    Options {
        wal: true,
        wal_persist_after: persist_after,
        wal_merges_persist_after: persist_after,
        ..small_options()
    }
}

/// Open an engine with the log on `dir`, waiting while a dropped engine still holds the
/// folder: tasks of the test's runtime (aborted reads, cleanups) hold it until they run.
pub(crate) async fn open_wal(dir: &Path, options: Options) -> Engine {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Engine::open(dir.to_str().unwrap(), options.clone()) {
            Ok(e) => return e,
            Err(e) if e.to_string().contains("in use") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("cannot open the engine: {e}"),
        }
    }
}

/// Rows `[from, to)` one second apart; `v` is the row number.
fn rows(from: i64, to: i64) -> Vec<Row> {
    (from..to).map(|n| (n * SEC, (n % 3) as i8, n)).collect()
}

fn manifests_on_disk(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("c/item/_manifest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Copy a data folder (a crash leaves what is on disk; this keeps one state of it).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Create the item (the first write takes the ordinary path), then `n` appends of 10
/// rows through the log; returns every version and the rows.
async fn appended(engine: &Engine, n: i64) -> (Vec<u64>, Vec<Row>) {
    let (c, i) = names("c", "item");
    let mut all = rows(0, 10);
    let mut versions = vec![
        write_rows(engine, &c, &i, WriteOptions::default(), &all, 4)
            .await
            .unwrap()
            .version,
    ];
    for k in 1..=n {
        let new = rows(k * 10, k * 10 + 10);
        let r = write_rows(engine, &c, &i, WriteOptions::default(), &new, 3)
            .await
            .unwrap();
        assert_eq!((r.rows_received, r.rows_written), (10, 10));
        versions.push(r.version);
        all.extend(new);
    }
    (versions, all)
}

#[tokio::test]
async fn appends_are_visible_at_once_keep_their_versions_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    let (c, i) = names("c", "item");
    let (versions, all) = appended(&engine, 12).await;
    assert_eq!(versions, (1..=13).collect::<Vec<_>>());
    // Acknowledged through the log: readable, though only the first version is stored.
    assert_eq!(manifests_on_disk(dir.path()), 1);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
    assert_eq!((info.version, info.rows), (13, 130));
    let at5 = ReadOptions {
        at: At::Version(5),
        ..Default::default()
    };
    assert_eq!(
        read_rows(&engine, &c, &i, at5.clone()).await.unwrap(),
        all[..50]
    );

    // A crash: the engine goes away without persisting anything.
    drop(engine);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    assert_eq!(
        read_rows(&engine, &c, &i, at5.clone()).await.unwrap(),
        all[..50]
    );
    let versions_now = engine.item_info(&c, &i, &At::Latest).await.unwrap().version;
    assert_eq!(versions_now, 13);

    // A clean shutdown persists every version as a manifest of the same number.
    engine.shutdown().await;
    drop(engine);
    assert_eq!(manifests_on_disk(dir.path()), 13);
    let engine = Engine::open(dir.path().to_str().unwrap(), small_options()).unwrap();
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    assert_eq!(read_rows(&engine, &c, &i, at5).await.unwrap(), all[..50]);
    assert_eq!(listed_versions(&engine).await, (1..=13).collect::<Vec<_>>());
}

#[tokio::test]
async fn other_writes_draft_on_the_tail_and_late_rows_merge_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_wal(dir.path(), wal_options(Duration::from_secs(3600))).await;
    let (c, i) = names("c", "item");
    let (_, mut all) = appended(&engine, 3).await;
    // Late rows (inside the stored range) merge into place, after the tail.
    let late = vec![(5 * SEC, 0, 1000), (25 * SEC, 1, 1001)];
    let r = write_rows(&engine, &c, &i, WriteOptions::default(), &late, 2)
        .await
        .unwrap();
    assert_eq!(r.version, 5);
    all.extend(late);
    all.sort_by_key(|r| r.0);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    // An upsert, a metadata update and a range delete see every acknowledged row.
    let (_, more) = {
        let new = rows(40, 50);
        let r = write_rows(&engine, &c, &i, WriteOptions::default(), &new, 5)
            .await
            .unwrap();
        (r, new)
    };
    all.extend(more);
    let upsert = WriteOptions {
        mode: WriteMode::Upsert,
        dedup_on: Some(vec!["ts".into()]),
        keep: Some(Keep::First),
        ..Default::default()
    };
    // With `keep = first` the receipt must say which rows were kept: the ordinary path.
    let r = write_rows(&engine, &c, &i, upsert, &[(45 * SEC, 2, 2000)], 1)
        .await
        .unwrap();
    assert_eq!((r.version, r.rows_written, r.rows_deleted), (7, 0, 0));
    let upsert = WriteOptions {
        mode: WriteMode::Upsert,
        dedup_on: Some(vec!["ts".into()]),
        ..Default::default()
    };
    let r = write_rows(&engine, &c, &i, upsert, &[(45 * SEC, 2, 2000)], 1)
        .await
        .unwrap();
    assert_eq!((r.version, r.rows_deleted), (8, 1));
    assert_eq!(pending(&engine).await, 1, "the upsert waits in the log");
    all.retain(|r| r.0 != 45 * SEC);
    all.push((45 * SEC, 2, 2000));
    all.sort_by_key(|r| r.0);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    let d = engine.delete_range(&c, &i, 0, 10 * SEC).await.unwrap();
    assert_eq!(d.version, 9);
    all.retain(|r| r.0 >= 10 * SEC);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_crash_after_any_step_of_a_persist_loses_and_repeats_nothing() {
    let base = tempfile::tempdir().unwrap();
    let acked = base.path().join("acked");
    let hour = Duration::from_secs(3600);
    let engine = open_wal(&acked, wal_options(hour)).await;
    let (c, i) = names("c", "item");
    let (versions, all) = appended(&engine, 6).await;
    let last = *versions.last().unwrap();
    drop(engine);
    // Nothing persisted yet; the log holds versions 2..=7.
    let persisted = base.path().join("persisted");
    copy_dir(&acked, &persisted);
    let engine = open_wal(&persisted, wal_options(hour)).await;
    engine.shutdown().await;
    drop(engine);
    // The persist wrote one data file and the manifests of versions 2..=7, in order. A
    // crash stops it after any of them; the log (not yet deleted) is what was acked.
    for stored in 1..=last {
        for with_file in [false, true] {
            if stored > 1 && !with_file {
                continue; // manifests are written after the file
            }
            let ctx = format!("crash with {stored} manifests, data file {with_file}");
            let dir = base.path().join(format!("crash-{stored}-{with_file}"));
            copy_dir(&persisted, &dir);
            for v in stored + 1..=last {
                std::fs::remove_file(dir.join(format!("c/item/_manifest/{v:020}.json"))).unwrap();
            }
            if !with_file {
                // The file the persist wrote: in the persisted folder, not in the acked one.
                for f in std::fs::read_dir(dir.join("c/item/_data")).unwrap() {
                    let name = f.unwrap().file_name();
                    if !acked.join("c/item/_data").join(&name).exists() {
                        std::fs::remove_file(dir.join("c/item/_data").join(name)).unwrap();
                    }
                }
            }
            std::fs::remove_dir_all(dir.join("_wal")).unwrap();
            copy_dir(&acked.join("_wal"), &dir.join("_wal"));
            let engine = open_wal(&dir, wal_options(hour)).await;
            assert_eq!(
                read_rows(&engine, &c, &i, all_rows()).await.unwrap(),
                all,
                "{ctx}"
            );
            let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
            assert_eq!(info.version, last, "{ctx}");
            // And once persisted again, a plain engine reads the same.
            engine.shutdown().await;
            drop(engine);
            let plain = Engine::open(dir.to_str().unwrap(), small_options()).unwrap();
            assert_eq!(
                read_rows(&plain, &c, &i, all_rows()).await.unwrap(),
                all,
                "{ctx}"
            );
            let v3 = ReadOptions {
                at: At::Version(3),
                ..Default::default()
            };
            assert_eq!(
                read_rows(&plain, &c, &i, v3).await.unwrap(),
                all[..30],
                "{ctx}"
            );
        }
    }
}

#[tokio::test]
async fn a_crash_at_any_byte_of_a_log_append_keeps_exactly_the_whole_records() {
    let base = tempfile::tempdir().unwrap();
    let acked = base.path().join("acked");
    let hour = Duration::from_secs(3600);
    let engine = open_wal(&acked, wal_options(hour)).await;
    let (c, i) = names("c", "item");
    let (_, all) = appended(&engine, 4).await;
    drop(engine);
    let segment = std::fs::read_dir(acked.join("_wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .unwrap();
    let full = std::fs::read(&segment).unwrap();
    // Cut the log at many offsets, as a crash in the middle of a write would.
    let cuts: Vec<usize> = (0..full.len()).step_by(37).chain([full.len()]).collect();
    let mut seen = std::collections::BTreeSet::new();
    for cut in cuts {
        let dir = base.path().join(format!("cut-{cut}"));
        copy_dir(&acked, &dir);
        std::fs::write(
            dir.join("_wal").join(segment.file_name().unwrap()),
            &full[..cut],
        )
        .unwrap();
        let engine = open_wal(&dir, wal_options(hour)).await;
        let got = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
        // Whole appends only, in order: a prefix of what was acknowledged, in tens.
        assert_eq!(got.len() % 10, 0, "cut at {cut}");
        assert_eq!(got, all[..got.len()], "cut at {cut}");
        let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
        assert_eq!(info.version as usize, got.len() / 10, "cut at {cut}");
        seen.insert(got.len());
        // The cut-off end is gone for good: new appends follow the recovered ones.
        let next = info.version as i64;
        let r = write_rows(
            &engine,
            &c,
            &i,
            WriteOptions::default(),
            &rows(next * 10, next * 10 + 10),
            10,
        )
        .await
        .unwrap();
        assert_eq!(r.version, info.version + 1, "cut at {cut}");
        drop(engine);
        let engine = open_wal(&dir, wal_options(hour)).await;
        let again = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
        assert_eq!(again.len(), got.len() + 10, "cut at {cut}");
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(
        seen.iter().copied().collect::<Vec<_>>(),
        [10, 20, 30, 40, 50]
    );
}

#[tokio::test]
async fn background_persist_stores_the_tail_and_deletes_nothing_acked() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_wal(dir.path(), wal_options(Duration::ZERO)).await;
    let (c, i) = names("c", "item");
    let (versions, all) = appended(&engine, 8).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while manifests_on_disk(dir.path()) < *versions.last().unwrap() as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail was not persisted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    drop(engine);
    let plain = Engine::open(dir.path().to_str().unwrap(), small_options()).unwrap();
    assert_eq!(read_rows(&plain, &c, &i, all_rows()).await.unwrap(), all);
}

#[tokio::test]
async fn a_second_process_on_the_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open_wal(dir.path(), wal_options(Duration::from_secs(1))).await;
    let err = Engine::open(
        dir.path().to_str().unwrap(),
        wal_options(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Wal { .. }), "{err}");
    assert!(err.to_string().contains("in use by another"), "{err}");
    drop(first);
}

#[tokio::test]
async fn a_persisted_tail_of_small_appends_is_laid_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        wal: true,
        wal_persist_after: Duration::from_secs(3600),
        ..Options::default()
    };
    let engine = open_wal(dir.path(), options).await;
    let (c, i) = names("c", "item");
    let (versions, all) = appended(&engine, 20).await;
    let last = *versions.last().unwrap();
    // Reopened with a persister that runs at once: it persists the replayed tail (a row
    // group per append), then rewrites that file in the item's layout.
    drop(engine);
    let options = Options {
        wal: true,
        wal_persist_after: Duration::ZERO,
        ..Options::default()
    };
    let engine = open_wal(dir.path(), options).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let latest = loop {
        let m = engine.latest(&c, &i).await.unwrap().unwrap();
        if m.version > last {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no re-layout after the persist"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(latest.operation, "compact");
    let file = dir
        .path()
        .join("c/item/_data")
        .join(&latest.files.last().unwrap().name);
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file).unwrap())
            .unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().num_row_groups(), 1);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), all);
    // The appends' own versions still read as they were.
    let at5 = ReadOptions {
        at: At::Version(5),
        ..Default::default()
    };
    assert_eq!(read_rows(&engine, &c, &i, at5).await.unwrap(), all[..50]);
}

/// The versions of `c/item` listed (which persists its log tail first).
async fn listed_versions(engine: &Engine) -> Vec<u64> {
    let (c, i) = names("c", "item");
    let listed = engine.list_versions(&c, &i).await.unwrap();
    listed.iter().map(|v| v.version).collect()
}

/// How many writes of the log's tail of `c/item` merge into place (not persisted).
async fn pending(engine: &Engine) -> usize {
    let (c, i) = names("c", "item");
    engine
        .latest(&c, &i)
        .await
        .unwrap()
        .unwrap()
        .pending_merges()
}

/// Read `opts` and compare with `want`, on the engine as it is.
async fn assert_reads(engine: &Engine, opts: ReadOptions, want: &[Row], what: &str) {
    let (c, i) = names("c", "item");
    assert_eq!(
        read_rows(engine, &c, &i, opts).await.unwrap(),
        want,
        "{what}"
    );
}

/// Upsert one row on the ordering column alone: it takes the log (merging into place)
/// and commits `version`; `all` gets it too.
async fn upsert_one(engine: &Engine, all: &mut Vec<Row>, row: Row, version: u64) {
    let (c, i) = names("c", "item");
    let upsert = WriteOptions {
        mode: WriteMode::Upsert,
        ..Default::default()
    };
    let r = write_rows(engine, &c, &i, upsert, &[row], 1).await.unwrap();
    let replaced = all.iter().filter(|r| r.0 == row.0).count() as u64;
    assert_eq!((r.version, r.rows_deleted), (version, replaced));
    assert!(pending(engine).await > 0, "the upsert waits in the log");
    all.retain(|r| r.0 != row.0);
    all.push(row);
    all.sort_by_key(|r| r.0);
}

#[tokio::test]
async fn upserts_and_late_rows_take_the_log_read_merged_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    let (c, i) = names("c", "item");
    let (_, mut all) = appended(&engine, 3).await; // rows 0..40 s, versions 1..=4
    let before = all.clone();
    // Late rows without a key: merged in, nothing dropped, after the stored row at 5 s.
    let late = vec![(5 * SEC, 0, 1000), (25 * SEC, 1, 1001)];
    let r = write_rows(&engine, &c, &i, WriteOptions::default(), &late, 2)
        .await
        .unwrap();
    assert_eq!((r.version, r.rows_written, r.rows_deleted), (5, 2, 0));
    assert_eq!(pending(&engine).await, 1);
    all.extend(late);
    all.sort_by_key(|r| r.0);
    // An upsert keyed on (ts, k): replaces the rows at 12 s and 39 s (k = s % 3 = 0),
    // adds one at 13 s beside the stored one (k = 1).
    let upsert = WriteOptions {
        mode: WriteMode::Upsert,
        dedup_on: Some(vec!["ts".into(), "k".into()]),
        ..Default::default()
    };
    let new = vec![
        (12 * SEC, 0, 2000),
        (13 * SEC, 2, 2001),
        (39 * SEC, 0, 2002),
    ];
    let r = write_rows(&engine, &c, &i, upsert, &new, 3).await.unwrap();
    assert_eq!((r.version, r.rows_written, r.rows_deleted), (6, 3, 2));
    assert_eq!(pending(&engine).await, 2);
    all.retain(|r| r.1 != 0 || (r.0 != 12 * SEC && r.0 != 39 * SEC));
    all.extend(new);
    all.sort_by_key(|r| r.0);
    // An upsert on the ordering column alone replaces every row at 5 s, the late one too.
    upsert_one(&engine, &mut all, (5 * SEC, 1, 3000), 7).await;
    // An append after the end, behind the merges.
    let tail = rows(40, 45);
    let r = write_rows(&engine, &c, &i, WriteOptions::default(), &tail, 2)
        .await
        .unwrap();
    assert_eq!((r.version, r.rows_deleted), (8, 0));
    assert_eq!(
        pending(&engine).await,
        3,
        "appended after the merges, which still wait"
    );
    let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
    assert_eq!((info.version, info.rows), (8, all.len() as u64 + 5));
    all.extend(tail);
    let check = |engine: Engine, all: Vec<Row>, when: &'static str| {
        let before = before.clone();
        async move {
            assert_reads(&engine, all_rows(), &all, when).await;
            let range = ReadOptions {
                range: flightstore::storage::KeyRange::new(Some(5 * SEC), Some(13 * SEC)),
                n_prev: 2,
                ..Default::default()
            };
            let want: Vec<Row> = {
                let from = all.iter().position(|r| r.0 >= 5 * SEC).unwrap();
                let to = all.iter().position(|r| r.0 >= 13 * SEC).unwrap();
                all[from - 2..to].to_vec()
            };
            assert_reads(&engine, range, &want, when).await;
            let last = ReadOptions {
                last: Some(7),
                ..Default::default()
            };
            assert_reads(&engine, last, &all[all.len() - 7..], when).await;
            let limit = ReadOptions {
                limit: Some(9),
                ..Default::default()
            };
            assert_reads(&engine, limit, &all[..9], when).await;
            let v4 = ReadOptions {
                at: At::Version(4),
                ..Default::default()
            };
            assert_reads(&engine, v4, &before, when).await;
        }
    };
    check(engine.clone(), all.clone(), "from the log").await;
    // A crash: the log replays every acknowledged write, merges included.
    drop(engine);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    check(engine.clone(), all.clone(), "after the replay").await;
    let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
    assert_eq!((info.version, info.rows), (8, all.len() as u64));
    // Persisted (listing versions persists the tail first): each merge became its own
    // version, as an ordinary write would make it.
    let ops: Vec<String> = engine
        .list_versions(&c, &i)
        .await
        .unwrap()
        .iter()
        .map(|v| v.operation.clone())
        .collect();
    assert_eq!(ops[4..], ["append", "upsert", "upsert", "append"]);
    assert_eq!(pending(&engine).await, 0);
    check(engine.clone(), all.clone(), "persisted").await;
    engine.shutdown().await;
    drop(engine);
    let engine = Engine::open(dir.path().to_str().unwrap(), small_options()).unwrap();
    check(engine, all, "without the log").await;
}

#[tokio::test]
async fn merges_past_the_limit_take_the_ordinary_path() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_wal(dir.path(), wal_options(Duration::from_secs(3600))).await;
    let (c, i) = names("c", "item");
    let (_, mut all) = appended(&engine, 1).await;
    for n in 0..20 {
        let late = vec![(n * SEC / 2, 2, 5000 + n)];
        let r = write_rows(&engine, &c, &i, WriteOptions::default(), &late, 1)
            .await
            .unwrap();
        // 16 merges wait in the log; the 17th write persists them and commits itself,
        // and the next ones take the log again.
        // Stored rows at the same time stay (no key): nothing is replaced.
        assert_eq!(r.rows_deleted, 0);
        let want = match n {
            0..16 => n + 1,
            16 => 0,
            _ => n - 16,
        };
        assert_eq!(pending(&engine).await as i64, want, "write {n}");
        all.extend(late);
    }
    all.sort_by_key(|r| r.0); // stable: stored rows first among equal times
    assert_reads(&engine, all_rows(), &all, "after 20 late writes").await;
    engine.shutdown().await;
}

#[tokio::test]
async fn a_failed_log_sync_fails_its_writes_only_and_later_writes_commit_as_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    // The item's first write takes the ordinary path; then syncs 1 and 2 (appends) and 3
    // (an upsert waiting in the log, merged on reads) succeed, and sync 4 fails.
    let failing = Options {
        wal_fail_sync: Some(4),
        ..wal_options(hour)
    };
    let engine = open_wal(dir.path(), failing).await;
    let (c, i) = names("c", "item");
    let (_, mut all) = appended(&engine, 2).await;
    upsert_one(&engine, &mut all, (7 * SEC, 2, 7000), 4).await;
    // The failed sync fails its write, which is not visible.
    let err = write_rows(&engine, &c, &i, WriteOptions::default(), &rows(30, 35), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Wal { message } if message.contains("injected sync failure")),
        "{err}"
    );
    assert_reads(&engine, all_rows(), &all, "after the failed sync").await;
    // A crash right now: the failed write's record was cut off the log, so the restart
    // replays exactly the acknowledged writes.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let replayed = open_wal(crashed.path(), wal_options(hour)).await;
    assert_reads(&replayed, all_rows(), &all, "after a crash at the failure").await;
    let info = replayed.item_info(&c, &i, &At::Latest).await.unwrap();
    assert_eq!((info.version, info.rows), (4, all.len() as u64));
    replayed.shutdown().await;
    // Later writes take Parquet commits, drafting on every acknowledged write.
    let r = write_rows(&engine, &c, &i, WriteOptions::default(), &rows(40, 45), 2)
        .await
        .unwrap();
    assert_eq!(
        (r.version, r.rows_deleted, pending(&engine).await),
        (5, 0, 0)
    );
    all.extend(rows(40, 45));
    assert_reads(&engine, all_rows(), &all, "after a Parquet commit").await;
    // A crash and a restart: what was acknowledged, once.
    drop(engine);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    assert_reads(&engine, all_rows(), &all, "after the restart").await;
    assert_eq!(listed_versions(&engine).await, (1..=5).collect::<Vec<_>>());
    engine.shutdown().await;
}

#[tokio::test]
async fn a_deleted_collection_leaves_no_log_records_behind() {
    // Regression: appends still in the log when their collection was deleted came back
    // as versions of the item written later under the same name (and, once past its
    // versions, kept the server from starting).
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    let (c, i) = names("c", "item");
    appended(&engine, 5).await; // versions 2..=6 in the log only
    engine.delete_collection(&c).await.unwrap();
    let create = WriteOptions {
        mode: WriteMode::Create,
        ..Default::default()
    };
    let fresh = rows(100, 103);
    let r = write_rows(&engine, &c, &i, create, &fresh, 3)
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), fresh);
    // A crash: the log still holds the old records; replay must not bring them back.
    drop(engine);
    let engine = open_wal(dir.path(), wal_options(hour)).await;
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), fresh);
    assert_eq!(listed_versions(&engine).await, vec![1]);
    // And appends through the log go on from there.
    let more = rows(103, 106);
    let r = write_rows(&engine, &c, &i, WriteOptions::default(), &more, 3)
        .await
        .unwrap();
    assert_eq!(r.version, 2);
}
