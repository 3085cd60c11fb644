//! Failures inside the engine's own tasks, and its memory budget: a part of a read that
//! fails is an error (never a shorter stream), concurrent uploads hold at most the
//! budget together, and a writer that cannot get its share is refused, changing nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{BooleanArray, RecordBatch};
use flightstore::storage::{Error, ReadOptions, RowFilter, WriteOptions};
use futures::stream::{self, StreamExt};

use crate::common::*;

/// A row filter that panics on its `fail_at`-th batch: a decode that fails mid-read.
#[derive(Debug)]
struct PanicsAt {
    calls: AtomicUsize,
    fail_at: usize,
}

impl RowFilter for PanicsAt {
    fn columns(&self) -> Vec<String> {
        vec!["v".into()]
    }

    fn evaluate(&self, batch: &RecordBatch) -> flightstore::storage::Result<BooleanArray> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.fail_at {
            panic!("injected failure while decoding");
        }
        Ok(BooleanArray::from(vec![true; batch.num_rows()]))
    }
}

#[tokio::test]
async fn a_read_whose_decoding_fails_part_way_is_an_error_not_a_shorter_stream() {
    let engine = memory_engine(small_options());
    let (c, i) = names("c", "item");
    let rows: Vec<Row> = (0..200).map(|n| (n * 10, 0, n)).collect();
    write_rows(&engine, &c, &i, WriteOptions::default(), &rows, 50)
        .await
        .unwrap();
    let files = engine.latest(&c, &i).await.unwrap().unwrap().files.len();
    assert!(files > 3, "the item spans several files ({files})");

    let filter = Arc::new(PanicsAt {
        calls: AtomicUsize::new(0),
        fail_at: 2,
    });
    let opts = ReadOptions {
        filter: Some(filter),
        ..Default::default()
    };
    let mut read = engine.read(&c, &i, opts).await.unwrap().stream;
    let mut seen = 0;
    let mut failed = None;
    while let Some(item) = read.next().await {
        match item {
            Ok(b) => seen += b.num_rows(),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed
        .unwrap_or_else(|| panic!("the read ended after {seen} of 200 rows without an error"));
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(seen < rows.len());

    // The same read without the failure is whole.
    assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), rows);
}

/// `n` batches of `per_batch` rows for an upload (ts from `from`).
fn upload(from: i64, n: usize, per_batch: usize) -> Vec<Row> {
    (0..(n * per_batch) as i64)
        .map(|k| (from + k * 7, (k % 3) as i8, from + k))
        .collect()
}

#[tokio::test]
async fn sixteen_concurrent_uploads_hold_at_most_the_memory_budget() {
    // 256 KiB of budget, 16 uploads of ~0.5 MiB each (as Arrow): far more than the budget.
    let options = flightstore::storage::Options {
        stage_bytes: 256 << 10,
        file_target_rows: 1 << 20,
        ..small_options()
    };
    let engine = memory_engine(options);
    let mut writers = Vec::new();
    for w in 0..16 {
        let engine = engine.clone();
        writers.push(tokio::spawn(async move {
            let (c, i) = names("c", &format!("item{w}"));
            let rows = upload(w * 1_000_000, 20, 1000);
            let receipt = write_rows(&engine, &c, &i, WriteOptions::default(), &rows, 1000)
                .await
                .unwrap();
            assert_eq!(receipt.rows_written, rows.len() as u64);
            (c, i, rows)
        }));
    }
    for w in writers {
        let (c, i, rows) = w.await.unwrap();
        assert_eq!(read_rows(&engine, &c, &i, all_rows()).await.unwrap(), rows);
    }
    let high = engine.stage_high_water_bytes();
    assert!(high > 0, "the uploads used the budget");
    assert!(
        high <= 256 << 10,
        "chunks held {high} bytes, over the 256 KiB budget"
    );
}

#[tokio::test]
async fn a_writer_that_cannot_get_its_share_is_busy_and_changes_nothing() {
    let options = flightstore::storage::Options {
        stage_bytes: 4 << 10,
        stage_wait: Duration::from_millis(200),
        ..small_options()
    };
    let engine = memory_engine(options);
    let (c, i) = names("c", "item");
    write_rows(
        &engine,
        &c,
        &i,
        WriteOptions::default(),
        &upload(0, 1, 10),
        10,
    )
    .await
    .unwrap();
    let before = read_rows(&engine, &c, &i, all_rows()).await.unwrap();

    // Four uploads that each sent a small batch and then stall hold the whole budget
    // (a chunk is staged, freeing its share, only when full or at the end).
    let mut stalled = Vec::new();
    for n in 0..4 {
        let engine = engine.clone();
        let (c, i) = names("c", &format!("stalled{n}"));
        let first = batch(&upload(1_000_000 * (n + 1), 1, 3));
        let input = stream::iter(vec![Ok(first)])
            .chain(stream::pending())
            .boxed();
        stalled.push(tokio::spawn(async move {
            engine
                .write(&c, &i, WriteOptions::default(), schema(), input)
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let more = upload(5_000, 1, 10);
    let append = || write_rows(&engine, &c, &i, WriteOptions::default(), &more, 10);
    let err = append().await.unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(err.to_string().contains("stage-mb"), "{err}");
    assert_eq!(
        read_rows(&engine, &c, &i, all_rows()).await.unwrap(),
        before
    );

    // Once the stalled uploads go away, their shares are free again.
    for s in stalled {
        s.abort();
        let _ = s.await;
    }
    append().await.unwrap();
}
