//! Several clients (the Rust client library) appending to one item over the network
//! while others read.

use std::collections::HashSet;

use flightstore_client::Read;
use futures::TryStreamExt;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_and_readers_over_the_network() {
    const WRITERS: i64 = 4;
    const PUTS: i64 = 25;
    const ROWS: i64 = 100;
    let server = TestServer::start().await;
    let first = server.rust_client().await;
    first
        .write_batches(
            flightstore_client::Write::append("c", "t"),
            vec![ticks(0..ROWS, 0.0)],
        )
        .await
        .unwrap();

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = server.rust_client().await;
        writers.push(tokio::spawn(async move {
            for p in 0..PUTS {
                // Interleaved ids: writers' rows land inside each other's ranges.
                let base = ROWS + (p * WRITERS + w) * ROWS;
                let ids: Vec<i64> = (0..ROWS).map(|k| base + k).collect();
                let batches =
                    futures::stream::iter([Ok::<_, arrow::error::ArrowError>(ticks(ids, 0.0))]);
                let r = client.append("c", "t", batches).await.unwrap();
                assert_eq!(r.rows_written, Some(ROWS as u64));
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..2 {
        let client = server.rust_client().await;
        let done = std::sync::Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let read = client.read(Read::new("c", "t")).await.unwrap();
                let total = read.total_records();
                let got = ids(&read.try_collect::<Vec<_>>().await.unwrap());
                // A whole version: whole uploads only, each row once, in order.
                assert_eq!(got.len() as i64 % ROWS, 0, "a partial commit is visible");
                assert_eq!(Some(got.len() as u64), total);
                assert!(
                    got.windows(2).all(|w| w[0] < w[1]),
                    "rows out of order or duplicated"
                );
                reads += 1;
            }
            reads
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    let all: Vec<_> = first
        .read(Read::new("c", "t"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let all = ids(&all);
    let expected = ROWS * (1 + WRITERS * PUTS);
    assert_eq!(all.len() as i64, expected);
    assert_eq!(all.iter().collect::<HashSet<_>>().len() as i64, expected);
    let versions = first.list_versions("c", "t").await.unwrap();
    assert!(versions.len() as i64 > WRITERS * PUTS);
}
