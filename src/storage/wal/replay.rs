//! Replay: at start, the log's records of versions not persisted become tail entries
//! again; and the record that makes replay forget an item deleted with its collection.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::ipc::reader::StreamReader;
use bytes::Bytes;
use tracing::info;

use super::log::{frame, Header};
use super::{TailEntry, Wal};
use crate::storage::error::{Error, Result};
use crate::storage::names::{parse_manifest_name, CollectionName, ItemName, Layout};
use crate::storage::write::{Reservation, WriteMode};
use crate::storage::{Engine, ItemKey, Options};

impl Wal {
    /// Open the log of the local data folder `root` and replay what it holds: records
    /// of versions not persisted yet become tail entries again.
    pub(crate) fn recover(root: &FsPath, layout: &Layout, o: &Options) -> Result<Self> {
        let (wal, recovered) = Wal::open(&root.join("_wal"), o)?;
        let mut expected: HashMap<ItemKey, u64> = HashMap::new();
        let mut replayed = 0;
        for r in recovered {
            let key = (
                CollectionName::new(r.header.collection.clone())?,
                ItemName::new(r.header.item.clone())?,
            );
            if r.header.dropped {
                expected.remove(&key);
                wal.tails().remove(&key);
                continue;
            }
            let next = match expected.get(&key) {
                Some(v) => *v,
                None => persisted_version(root, layout, &key)? + 1,
            };
            if r.header.version < next {
                continue; // persisted before the restart
            }
            if r.header.version > next {
                return Err(Error::Wal {
                    message: format!(
                        "the log holds version {} of {}/{} but the item is at version {}: refusing to start with a gap",
                        r.header.version, key.0, key.1, next - 1
                    ),
                });
            }
            let batch = decode(&r.rows)?;
            let entry = TailEntry {
                version: r.header.version,
                committed_at: r.header.committed_at,
                lsn: r.lsn,
                min: r.header.min,
                max: r.header.max,
                mode: r.header.mode,
                merge: r.header.merge.clone(),
                bytes: batch.get_array_memory_size(),
                batch,
                // Replayed entries are due at once.
                added: Instant::now() - o.wal_persist_after,
                _share: Reservation::none(),
            };
            expected.insert(key.clone(), next + 1);
            wal.tails().entry(key).or_default().push(Arc::new(entry));
            replayed += 1;
        }
        if replayed > 0 {
            info!(
                writes = replayed,
                "replayed acknowledged writes from the log"
            );
        }
        wal.delete_segments();
        Ok(wal)
    }
}

impl Engine {
    /// Forget the log's records of an item whose collection is being deleted (call under
    /// the item's lock, after its tail is persisted): a durable record says so, so that
    /// replay never brings them back as versions of an item of the same name written
    /// later.
    pub(crate) async fn forget_logged(&self, c: &CollectionName, i: &ItemName) -> Result<()> {
        let Some(wal) = &self.inner.wal else {
            return Ok(());
        };
        let header = Header {
            collection: c.to_string(),
            item: i.to_string(),
            version: 0,
            committed_at: self.now(),
            min: 0,
            max: 0,
            mode: WriteMode::Append,
            merge: None,
            dropped: true,
        };
        let lsn = wal.log.append(frame(&header, &[]))?;
        wal.log.wait(lsn).await?;
        wal.remove(&(c.clone(), i.clone()), |_| false);
        Ok(())
    }
}

/// The batch of a record's IPC stream (all of its batches, concatenated).
fn decode(bytes: &Bytes) -> Result<RecordBatch> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.as_ref()), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(concat_batches(&schema, &batches)?)
}

/// The item's latest version on disk (0 if none), read from its manifest folder.
fn persisted_version(root: &FsPath, layout: &Layout, key: &ItemKey) -> Result<u64> {
    let dir = root.join(layout.manifest_dir(&key.0, &key.1).as_ref());
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(Error::Wal {
                message: format!("cannot list {}: {e}", dir.display()),
            })
        }
    };
    let mut latest = 0;
    for entry in entries.flatten() {
        if let Some(v) = entry.file_name().to_str().and_then(parse_manifest_name) {
            latest = latest.max(v);
        }
    }
    Ok(latest)
}
