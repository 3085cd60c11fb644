//! The server killed with SIGKILL at random instants during concurrent appends, upserts
//! and compaction, and restarted each time: every acknowledged write is there, nothing
//! unacknowledged is half visible, and `vacuum` removes what the kills left.
//!
//! `FLIGHTSTORE_CRASH_KILLS` (default 20) sets the kills, `FLIGHTSTORE_CRASH_BIN` the
//! binary (CI runs the release binary 100 times), `FLIGHTSTORE_CRASH_SEED` the seed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use flightstore_client::{Client, Read, Write};
use futures::TryStreamExt;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::common::*;
use crate::failures::ServerProcess;
use crate::files::walk;

/// Rows of each append.
const BATCH: i64 = 200;
/// Keys every upsert rewrites (all of them, with one value).
const KEYS: i64 = 300;

/// What the writers of one run got acknowledged, and what they had in flight.
#[derive(Debug, Default)]
struct Acked {
    /// Appends acknowledged (batch k holds ids k * BATCH ..).
    appends: AtomicI64,
    /// The value of the last acknowledged upsert (0: none).
    upsert: AtomicI64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The rows of an item, or none if it does not exist yet.
async fn read_item(addr: &str, item: &str) -> Vec<RecordBatch> {
    let c = client(addr).await;
    let read = async { c.read(Read::new("crash", item)).await?.try_collect().await };
    match read.await {
        Ok(b) => b,
        Err(flightstore_client::Error::NotFound(_)) => Vec::new(),
        Err(e) => panic!("reading {item} after a restart: {e}"),
    }
}

async fn client(addr: &str) -> Client {
    Client::connect(format!("grpc://{addr}")).await.unwrap()
}

/// Appends batch after batch to `app` until the server goes.
async fn appender(addr: String, from: i64, acked: Arc<Acked>) {
    let c = client(&addr).await;
    let mut k = from;
    loop {
        let ids = k * BATCH..(k + 1) * BATCH;
        let append = Write::append("crash", "app");
        match c.write_batches(append, vec![ticks(ids, 0.0)]).await {
            Ok(_) => {
                k += 1;
                acked.appends.store(k, Ordering::SeqCst);
            }
            Err(_) => return,
        }
    }
}

/// Rewrites every key of `ups` with value v + 1, v + 2, ... until the server goes.
async fn upserter(addr: String, from: i64, acked: Arc<Acked>) {
    let c = client(&addr).await;
    let mut v = from;
    loop {
        v += 1;
        let upsert = Write::upsert("crash", "ups", ["ts"]);
        let batch = ticks(0..KEYS, 0.0);
        let prices = arrow::array::Float64Array::from(vec![v as f64; KEYS as usize]);
        let mut columns = batch.columns().to_vec();
        columns[1] = Arc::new(prices);
        let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        match c.write_batches(upsert, vec![batch]).await {
            Ok(_) => acked.upsert.store(v, Ordering::SeqCst),
            Err(_) => return,
        }
    }
}

/// Compacts both items again and again until the server goes.
async fn compactor(addr: String) {
    let c = client(&addr).await;
    loop {
        for item in ["app", "ups"] {
            match c.compact("crash", item).await {
                Ok(_) | Err(flightstore_client::Error::NotFound(_)) => {}
                Err(_) => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_instants_during_appends_upserts_and_compaction() {
    let kills: usize = env_or("FLIGHTSTORE_CRASH_KILLS", 20);
    let bin = std::env::var("FLIGHTSTORE_CRASH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_flightstore").to_string());
    let seed: u64 = env_or("FLIGHTSTORE_CRASH_SEED", rand::rng().random());
    println!("crash loop: {kills} kills of {bin}, FLIGHTSTORE_CRASH_SEED={seed}");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut dir = tempfile::tempdir().unwrap();
    // What the previous run acknowledged (appends, upsert value).
    let (mut appends, mut upsert) = (0i64, 0i64);
    // Acknowledged writes found again after a restart, counted at each restart.
    let mut writes_checked = 0i64;
    for kill in 0..kills {
        let server = ServerProcess::start_bin(&bin, dir, &[]);
        let addr = server.addr.clone();

        // Everything acknowledged before the last kill is there; the write in flight
        // then is there whole or not at all.
        let rows = read_item(&addr, "app").await;
        let got = ids(&rows);
        let batches = got.len() as i64 / BATCH;
        assert_eq!(got.len() as i64 % BATCH, 0, "kill {kill}: a partial append");
        assert!(
            batches == appends || batches == appends + 1,
            "kill {kill}: {batches} appends after restart, {appends} acknowledged"
        );
        assert_eq!(
            got,
            (0..batches * BATCH).collect::<Vec<_>>(),
            "kill {kill}: appends"
        );
        let rows = read_item(&addr, "ups").await;
        let values: BTreeSet<i64> = rows
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
            .map(|p| p as i64)
            .collect();
        let keys: usize = rows.iter().map(|b| b.num_rows()).sum();
        let value = values.iter().next().copied().unwrap_or(0);
        assert!(
            values.len() <= 1 && (keys == 0 || keys == KEYS as usize),
            "kill {kill}: an upsert is half visible: {keys} keys, values {values:?}"
        );
        assert!(
            value == upsert || value == upsert + 1,
            "kill {kill}: upsert value {value} after restart, {upsert} acknowledged"
        );
        writes_checked += batches + value;
        (appends, upsert) = (batches, value);

        // Write until killed at a random instant.
        let acked = Arc::new(Acked::default());
        acked.appends.store(appends, Ordering::SeqCst);
        acked.upsert.store(upsert, Ordering::SeqCst);
        let writers = vec![
            tokio::spawn(appender(addr.clone(), appends, Arc::clone(&acked))),
            tokio::spawn(upserter(addr.clone(), upsert, Arc::clone(&acked))),
            tokio::spawn(compactor(addr.clone())),
        ];
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..600))).await;
        dir = server.kill();
        for w in writers {
            w.await.unwrap();
        }
        appends = acked.appends.load(Ordering::SeqCst);
        upsert = acked.upsert.load(Ordering::SeqCst);
    }

    // A last restart: the log persisted, then vacuum with no retention and no grace
    // removes every file the kills left: what remains is what the latest versions list.
    let server = ServerProcess::start_bin(
        &bin,
        dir,
        &["--retention-secs", "0", "--orphan-grace-secs", "0"],
    );
    let c = client(&server.addr).await;
    for item in ["app", "ups"] {
        // A commit persists the item's log first.
        let checked = serde_json::Map::from_iter([("checked".to_string(), Value::Bool(true))]);
        c.update_metadata("crash", item, &checked).await.unwrap();
    }
    let vacuumed = c.vacuum(None, None).await.unwrap();
    let root = server_dir(&server);
    for item in ["app", "ups"] {
        let listed = latest_files(&root.join("crash").join(item));
        let on_disk: BTreeSet<String> = walk(&root.join("crash").join(item).join("_data"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            on_disk, listed,
            "{item}: files left besides the latest version's"
        );
    }
    let staging: Vec<_> = walk(&root.join("crash"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(staging.is_empty(), "staging files left: {staging:?}");
    println!(
        "crash loop: {kills} kills; {appends} appends and {upsert} upserts acknowledged in \
         all; {writes_checked} acknowledged writes found again over the restarts; vacuum \
         {vacuumed:?}"
    );
}

/// The data folder of a running server.
fn server_dir(server: &ServerProcess) -> std::path::PathBuf {
    server.data_dir().to_path_buf()
}

/// The files the latest manifest of the item at `item` lists.
fn latest_files(item: &Path) -> BTreeSet<String> {
    let manifests = walk(&item.join("_manifest"));
    let latest = manifests
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .expect("the item has a manifest");
    let m: Value = serde_json::from_slice(&std::fs::read(latest).unwrap()).unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}
