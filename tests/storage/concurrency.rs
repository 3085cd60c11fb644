//! Concurrent writers never lose a row: many tasks on one engine, and two engines on the
//! same folder racing through the conditional commit.

use std::collections::HashSet;
use std::time::Duration;

use flightstore::storage::{Engine, Options, WriteOptions};

use crate::common::*;

const ROWS_PER_APPEND: i64 = 3;

async fn append_many(engine: Engine, task: i64, appends: i64) {
    let (c, i) = names("c", "ticks");
    for n in 0..appends {
        let id = (task * 10_000 + n) * ROWS_PER_APPEND;
        // Interleaved timestamps: appends of different tasks land inside each other.
        let rows: Vec<Row> = (0..ROWS_PER_APPEND)
            .map(|r| (n * 100 + task, 0, id + r))
            .collect();
        write_rows(&engine, &c, &i, WriteOptions::default(), &rows, 10)
            .await
            .unwrap_or_else(|e| panic!("task {task} append {n}: {e}"));
    }
}

fn check_all_once(rows: &[Row], tasks: i64, appends: i64) {
    let ids: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a row is present twice");
    assert_eq!(
        ids.len() as i64,
        tasks * appends * ROWS_PER_APPEND,
        "rows were lost"
    );
    assert!(
        rows.windows(2).all(|w| w[0].0 <= w[1].0),
        "rows out of order"
    );
}

fn options() -> Options {
    Options {
        file_target_rows: 2_000,
        vacuum_retention: Duration::ZERO,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_appending_to_one_item_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().to_str().unwrap(), options()).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| tokio::spawn(append_many(engine.clone(), t, 200)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (c, i) = names("c", "ticks");
    let rows = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
    check_all_once(&rows, 8, 200);
    // 1,600 appends were compacted along the way into a handful of files.
    let files = engine.latest(&c, &i).await.unwrap().unwrap().files.len();
    assert!(files <= 30, "{files} files after 1600 appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_on_one_folder_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let a = Engine::open(path, options()).unwrap();
    let b = Engine::open(path, options()).unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let engine = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(append_many(engine, t, 60))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (c, i) = names("c", "ticks");
    for engine in [&a, &b] {
        let rows = read_rows(engine, &c, &i, all_rows()).await.unwrap();
        check_all_once(&rows, 4, 60);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_compactions_rebase_onto_concurrent_writes() {
    // Compactions merge without the item lock and rebase onto the writes that committed
    // meanwhile; interleaved appends keep rewriting the files they merge.
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        file_target_rows: 300,
        compaction_fanin: 3,
        compact_in_background: true,
        ..options()
    };
    let engine = Engine::open(dir.path().to_str().unwrap(), options).unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|t| tokio::spawn(append_many(engine.clone(), t, 120)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (c, i) = names("c", "ticks");
    // Background compactions that lost races retry once the writers stop.
    let mut background = 0;
    for _ in 0..100 {
        let versions = engine.list_versions(&c, &i).await.unwrap();
        background = versions.iter().filter(|v| v.operation == "compact").count();
        if background > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(background > 0, "no background compaction committed");
    let receipt = engine.compact(&c, &i).await.unwrap();
    let rows = read_rows(&engine, &c, &i, all_rows()).await.unwrap();
    check_all_once(&rows, 6, 120);
    // The files of the latest version stay in order and disjoint.
    let m = engine.latest(&c, &i).await.unwrap().unwrap();
    assert!(
        m.files.windows(2).all(|w| w[0].max <= w[1].min),
        "{receipt:?}"
    );
    assert_eq!(m.rows(), 6 * 120 * ROWS_PER_APPEND as u64);

    // Shutdown stops the compactor (after the item it is merging); writes still work,
    // and queue nothing any more.
    engine.shutdown().await;
    engine.shutdown().await;
    let before = engine.list_versions(&c, &i).await.unwrap().len();
    append_many(engine.clone(), 99, 12).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let versions = engine.list_versions(&c, &i).await.unwrap();
    assert_eq!(versions.len(), before + 12, "only the appends committed");
}
