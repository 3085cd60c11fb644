//! A shutdown while an upload streams lets it finish: the write commits, and the server
//! stops only afterwards.

use arrow_flight::error::FlightError;
use flightstore::server::{Bound, Config};
use flightstore::storage::{At, CollectionName, Engine, ItemName, Options};
use futures::StreamExt;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_an_upload_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data: dir.path().to_str().unwrap().to_string(),
        bind: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let bound = Bound::bind(config).await.unwrap();
    let addr = bound.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));

    let client = flightstore_client::Client::connect(format!("grpc://{addr}"))
        .await
        .unwrap();
    // The upload is fed by hand: half before the shutdown, half after.
    let (tx, rx) =
        futures::channel::mpsc::unbounded::<Result<arrow::array::RecordBatch, FlightError>>();
    tx.unbounded_send(Ok(ticks(0..1000, 0.0))).unwrap();
    let put = tokio::spawn(async move { client.append("c", "t", rx).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    stop.send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!server.is_finished(), "the server must wait for the upload");
    tx.unbounded_send(Ok(ticks(1000..2000, 0.0))).unwrap();
    drop(tx);

    let receipt = put.await.unwrap().unwrap();
    assert_eq!(receipt.rows_written, Some(2000));
    server.await.unwrap().unwrap();

    // The data is on disk, whole.
    let engine = Engine::open(dir.path().to_str().unwrap(), Options::default()).unwrap();
    let (c, i) = (
        CollectionName::new("c").unwrap(),
        ItemName::new("t").unwrap(),
    );
    let info = engine.item_info(&c, &i, &At::Latest).await.unwrap();
    assert_eq!((info.rows, info.version), (2000, 1));
    let read = engine.read(&c, &i, Default::default()).await.unwrap();
    let rows: usize = read
        .stream
        .map(|b| b.unwrap().num_rows())
        .collect::<Vec<_>>()
        .await
        .iter()
        .sum();
    assert_eq!(rows, 2000);
}
