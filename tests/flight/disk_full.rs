//! A full disk: the data folder on a small tmpfs. Writes fail cleanly with
//! `RESOURCE_EXHAUSTED` while reads go on; once there is space again, writes succeed.
//! Needs root to mount the tmpfs (as in CI).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arrow::array::{BinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use flightstore_client::{Client, Read, Write};
use futures::TryStreamExt;
use rand::{RngCore, SeedableRng};

use crate::common::*;
use crate::failures::ServerProcess;

/// A tmpfs mounted on a temporary folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        Self { dir }
    }

    fn resize(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// 1000 rows with ts from `from` seconds and a 1 KiB random payload each.
fn payload_rows(from: i64, rng: &mut rand::rngs::SmallRng) -> RecordBatch {
    let ts = tick_schema().field(0).clone();
    let schema = std::sync::Arc::new(Schema::new(vec![
        ts,
        Field::new("payload", DataType::Binary, false),
    ]));
    let mut bytes = vec![0u8; 1000 * 1024];
    rng.fill_bytes(&mut bytes);
    RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(
                arrow::array::TimestampNanosecondArray::from_iter_values(
                    (from..from + 1000).map(|s| T0 + s * SEC),
                )
                .with_timezone("UTC"),
            ),
            std::sync::Arc::new(BinaryArray::from_iter_values(bytes.chunks(1024))),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_reads_go_on() {
    let disk = Tmpfs::mount(24);
    let data = tempfile::Builder::new().tempdir_in(disk.path()).unwrap();
    let server = ServerProcess::start_bin(env!("CARGO_BIN_EXE_flightstore"), data, &[]);
    let c = Client::connect(format!("grpc://{}", server.addr))
        .await
        .unwrap();
    let append =
        |item: &str, batch: RecordBatch| c.write_batches(Write::append("c", item), vec![batch]);
    let rows = |item: &'static str| async {
        let batches: Vec<RecordBatch> = c
            .read(Read::new("c", item))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        batches.iter().map(RecordBatch::num_rows).sum::<usize>() as i64
    };
    append("keep", ticks(0..1000, 0.0)).await.unwrap();

    // Fill the disk: 1 MiB appends of random bytes until one fails.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut acked = 0i64;
    let error = loop {
        assert!(acked < 100, "24 MiB took 100 MiB of appends");
        match append("fill", payload_rows(acked * 1000, &mut rng)).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(error, flightstore_client::Error::ResourceExhausted(_)),
        "{error}"
    );
    assert!(error.to_string().contains("space"), "{error}");
    assert!(acked > 0, "no append fitted");
    println!("disk full after {acked} appends of 1 MiB: {error}");

    // Reads go on, and every acknowledged append is there (and nothing else).
    assert_eq!(rows("keep").await, 1000);
    assert_eq!(rows("fill").await, acked * 1000);
    assert_eq!(c.health().await.unwrap().status, "ok");

    // Space again: writes succeed.
    disk.resize(256);
    let mut ok = false;
    for _ in 0..50 {
        if append("fill", payload_rows(acked * 1000, &mut rng))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "writes did not succeed once there was space");
    assert_eq!(rows("fill").await, (acked + 1) * 1000);
    drop(server);
}
