//! Several clients appending to one item over the network while others read.

use std::collections::HashSet;

use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_and_readers_over_the_network() {
    const WRITERS: i64 = 4;
    const PUTS: i64 = 25;
    const ROWS: i64 = 100;
    let server = TestServer::start().await;
    let mut first = server.client().await;
    put(&mut first, path("c", "t"), vec![ticks(0..ROWS, 0.0)])
        .await
        .unwrap();

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut client = server.client().await;
        writers.push(tokio::spawn(async move {
            for p in 0..PUTS {
                // Interleaved ids: writers' rows land inside each other's ranges.
                let base = ROWS + (p * WRITERS + w) * ROWS;
                let ids: Vec<i64> = (0..ROWS).map(|k| base + k).collect();
                let r = put(&mut client, path("c", "t"), vec![ticks(ids, 0.0)])
                    .await
                    .unwrap();
                assert_eq!(r["rows_written"], ROWS);
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut client = server.client().await;
        let done = std::sync::Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let info = client.get_flight_info(path("c", "t")).await.unwrap();
                let got = endpoint_ids(&mut client, &info).await;
                // A whole version: whole uploads only, each row once, in order.
                assert_eq!(got.len() as i64 % ROWS, 0, "a partial commit is visible");
                assert_eq!(got.len() as i64, info.total_records);
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
    let all = ids(&get(&mut first, json!({"collection": "c", "item": "t"}))
        .await
        .unwrap());
    let expected = ROWS * (1 + WRITERS * PUTS);
    assert_eq!(all.len() as i64, expected);
    assert_eq!(all.iter().collect::<HashSet<_>>().len() as i64, expected);
    let versions = action(
        &mut first,
        "list_versions",
        json!({"collection": "c", "item": "t"}),
    )
    .await
    .unwrap();
    assert!(versions.as_array().unwrap().len() as i64 > WRITERS * PUTS);
}
