//! The log on disk: numbered segment files of framed records, appended by one thread
//! that makes every group of waiting records durable with one `fdatasync`.
//!
//! ```text
//! <data>/_wal/<segment:020>.wal   frame*
//! frame    magic "FSW1" | payload length u32 LE | CRC-32 of payload u32 LE | payload
//! payload  header length u32 LE | header (JSON) | rows (Arrow IPC stream)
//! ```
//!
//! Appenders hand a frame to the writer thread and get its log sequence number (LSN);
//! the thread writes every frame waiting at that moment, syncs once (group commit) and
//! publishes the highest LSN now durable. A segment is closed after a sync once it
//! passes [`SEGMENT_BYTES`]; closed segments are deleted once every record in them is
//! persisted as Parquet ([`Log::delete_segments_before`]).
//!
//! Recovery reads the segments in order. A frame cut short or failing its CRC at the
//! end of the last segment is a write that was never acknowledged (the crash came
//! before its sync): the segment is truncated there. Anywhere else it is corruption,
//! and the server refuses to start rather than skip acknowledged data.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::storage::error::{Error, Result};
use crate::storage::write::WriteMode;

const MAGIC: &[u8; 4] = b"FSW1";
const FRAME_HEAD: usize = 12;
/// A segment is closed once it grows past this.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// What a record is about: the write it makes durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) collection: String,
    pub(crate) item: String,
    /// The item version this write commits.
    pub(crate) version: u64,
    /// Commit time, ns since the epoch.
    pub(crate) committed_at: i64,
    /// Smallest ordering key of the rows.
    pub(crate) min: i64,
    /// Largest ordering key of the rows.
    pub(crate) max: i64,
    /// The write's mode (`append` or `upsert`).
    #[serde(default, skip_serializing_if = "is_append")]
    pub(crate) mode: WriteMode,
    /// Rows merged into place (not after the item's end), de-duplicated on this key
    /// (keep last) if it has one. Absent for rows after the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) merge: Option<Merge>,
    /// The item went with its collection: replay forgets its records before this one
    /// (which carries no rows). Its manifests are gone, so nothing else could tell
    /// replay that those records are not of the item written later under the same name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) dropped: bool,
}

/// How a log entry's rows merge into the rows before them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Merge {
    /// De-duplication key (keep last); without one, no row is dropped.
    pub(crate) key: Option<Vec<String>>,
    /// Rows before it that it replaces, counted when it was logged.
    #[serde(default)]
    pub(crate) replaced: u64,
}

fn is_append(mode: &WriteMode) -> bool {
    *mode == WriteMode::Append
}

/// One record read back by recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) header: Header,
    /// Arrow IPC stream of the rows.
    pub(crate) rows: bytes::Bytes,
    pub(crate) lsn: u64,
}

/// Encode a frame (done by the appender, off the writer thread).
pub(crate) fn frame(header: &Header, rows: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("a header serializes");
    let payload_len = 4 + header.len() + rows.len();
    let mut out = Vec::with_capacity(FRAME_HEAD + payload_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(rows);
    let crc = crc32fast::hash(&out[FRAME_HEAD..]);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What the writer thread has made durable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Synced {
    /// Every record up to this LSN is on disk.
    pub(crate) lsn: u64,
    /// Set once a write or sync failed: nothing after `lsn` will ever be durable.
    pub(crate) failed: Option<String>,
}

struct Job {
    lsn: u64,
    frame: Vec<u8>,
}

/// Closed segments and the last LSN each holds.
type Closed = Vec<(PathBuf, u64)>;

/// The log: the writer thread's queue and what it has synced.
#[derive(Debug)]
pub(crate) struct Log {
    /// The queue and the next LSN, taken together so that LSN order is queue order.
    queue: Mutex<Option<(mpsc::Sender<Job>, u64)>>,
    synced: watch::Receiver<Synced>,
    closed: std::sync::Arc<Mutex<Closed>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Log {
    /// Recover the records of `dir` (created if missing) and start a new segment after
    /// them. Records get LSNs `1..=n` in log order; new ones follow.
    ///
    /// `fail_sync` injects a fault for tests: the sync of that group (1-based) fails as
    /// a failing disk's would.
    pub(crate) fn open(dir: &Path, fail_sync: Option<u64>) -> Result<(Self, Vec<Recovered>)> {
        std::fs::create_dir_all(dir).map_err(|e| io("create the log folder", e))?;
        let segments = list_segments(dir)?;
        let mut recovered = Vec::new();
        let mut closed = Vec::new();
        for (k, (_, path)) in segments.iter().enumerate() {
            let last = k + 1 == segments.len();
            read_segment(path, last, &mut recovered)?;
            closed.push((path.clone(), recovered.len() as u64));
        }
        let next_segment = segments.last().map_or(1, |(n, _)| n + 1);
        let path = dir.join(segment_name(next_segment));
        let file = create_segment(dir, &path)?;
        let start = recovered.len() as u64;
        let (tx, rx) = mpsc::channel();
        let (synced_tx, synced) = watch::channel(Synced {
            lsn: start,
            failed: None,
        });
        let closed = std::sync::Arc::new(Mutex::new(closed));
        let thread = std::thread::Builder::new()
            .name("flightstore-wal".into())
            .spawn({
                let dir = dir.to_path_buf();
                let closed = std::sync::Arc::clone(&closed);
                move || {
                    Writer {
                        dir,
                        file,
                        path,
                        segment: next_segment,
                        written: 0,
                        durable: 0,
                        syncs: 0,
                        fail_sync,
                        closed,
                    }
                    .run(rx, synced_tx)
                }
            })
            .map_err(|e| io("start the log thread", e))?;
        if !recovered.is_empty() {
            info!(records = recovered.len(), "write-ahead log recovered");
        }
        Ok((
            Self {
                queue: Mutex::new(Some((tx, start + 1))),
                synced,
                closed,
                thread: Mutex::new(Some(thread)),
            },
            recovered,
        ))
    }

    /// Queue `frame`; returns its LSN. Durable once [`Log::wait`] says so.
    pub(crate) fn append(&self, frame: Vec<u8>) -> Result<u64> {
        let mut queue = self.queue.lock().expect("log queue poisoned");
        let Some((tx, next)) = queue.as_mut() else {
            return Err(self.failure());
        };
        let lsn = *next;
        if tx.send(Job { lsn, frame }).is_err() {
            return Err(self.failure());
        }
        *next += 1;
        Ok(lsn)
    }

    /// Wait until `lsn` is durable, or fail if the log failed before it was.
    pub(crate) async fn wait(&self, lsn: u64) -> Result<()> {
        let mut rx = self.synced.clone();
        let synced = rx
            .wait_for(|s| s.lsn >= lsn || s.failed.is_some())
            .await
            .map_err(|_| self.failure())?;
        if synced.lsn >= lsn {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    /// The highest durable LSN.
    pub(crate) fn synced(&self) -> u64 {
        self.synced.borrow().lsn
    }

    fn failure(&self) -> Error {
        let cause = self
            .synced
            .borrow()
            .failed
            .clone()
            .unwrap_or_else(|| "the log is closed".into());
        Error::Wal {
            message: format!(
                "{cause}; writes are no longer acknowledged through the log (see the server log)"
            ),
        }
    }

    /// Delete closed segments whose records all have LSNs below `lsn` (persisted).
    pub(crate) fn delete_segments_before(&self, lsn: u64) {
        let mut closed = self.closed.lock().expect("closed segments poisoned");
        closed.retain(|(path, last)| {
            if *last >= lsn {
                return true;
            }
            match std::fs::remove_file(path) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    warn!(path = %path.display(), cause = %e, "cannot delete a log segment");
                    true
                }
            }
        });
    }

    /// Stop the writer thread once it has written what is queued.
    pub(crate) fn close(&self) {
        self.queue.lock().expect("log queue poisoned").take();
        if let Some(thread) = self.thread.lock().expect("log thread poisoned").take() {
            if thread.join().is_err() {
                warn!("the log thread ended abnormally");
            }
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    segment: u64,
    /// Bytes written to the segment, and how many of them are synced.
    written: u64,
    durable: u64,
    /// Groups synced, and the one whose sync fails (fault injection for tests).
    syncs: u64,
    fail_sync: Option<u64>,
    closed: std::sync::Arc<Mutex<Closed>>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>, synced: watch::Sender<Synced>) {
        while let Ok(first) = rx.recv() {
            let mut last = first.lsn;
            let mut group = vec![first];
            while let Ok(job) = rx.try_recv() {
                last = job.lsn;
                group.push(job);
            }
            if let Err(e) = self.write(&group) {
                warn!(cause = %e, "the write-ahead log failed: later writes bypass it");
                self.discard_unsynced();
                synced.send_modify(|s| s.failed = Some(e.to_string()));
                return;
            }
            synced.send_modify(|s| s.lsn = last);
            if self.written >= SEGMENT_BYTES {
                if let Err(e) = self.rotate(last) {
                    warn!(cause = %e, "the write-ahead log failed: later writes bypass it");
                    synced.send_modify(|s| s.failed = Some(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Cut the segment back to what was synced: the failed group's writers got an
    /// error, so a restart must not replay their records (best effort: the disk is
    /// failing).
    fn discard_unsynced(&mut self) {
        let cut = self
            .file
            .set_len(self.durable)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cut {
            warn!(
                path = %self.path.display(), cause = %e,
                "cannot cut the unsynced end off the log: a write reported as failed may be replayed at the next start"
            );
        }
    }

    /// Write a group of frames and make them durable with one sync.
    fn write(&mut self, group: &[Job]) -> std::io::Result<()> {
        for job in group {
            self.file.write_all(&job.frame)?;
            self.written += job.frame.len() as u64;
        }
        self.syncs += 1;
        if self.fail_sync == Some(self.syncs) {
            return Err(std::io::Error::other("injected sync failure"));
        }
        self.file.sync_data()?;
        self.durable = self.written;
        Ok(())
    }

    /// Close the segment (its last record is `last`) and start the next one.
    fn rotate(&mut self, last: u64) -> Result<()> {
        self.segment += 1;
        let path = self.dir.join(segment_name(self.segment));
        self.file = create_segment(&self.dir, &path)?;
        let old = std::mem::replace(&mut self.path, path);
        self.closed
            .lock()
            .expect("closed segments poisoned")
            .push((old, last));
        self.written = 0;
        self.durable = 0;
        Ok(())
    }
}

fn io(what: &'static str, source: std::io::Error) -> Error {
    Error::Wal {
        message: format!("cannot {what}: {source}"),
    }
}

fn segment_name(n: u64) -> String {
    format!("{n:020}.wal")
}

/// Segments of `dir` in order.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("list the log folder", e))? {
        let entry = entry.map_err(|e| io("list the log folder", e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Create a segment and make its existence durable.
fn create_segment(dir: &Path, path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .map_err(|e| io("create a log segment", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync the log folder", e))?;
    Ok(file)
}

/// Read the records of one segment. In the `last` segment a damaged end is cut off.
fn read_segment(path: &Path, last: bool, out: &mut Vec<Recovered>) -> Result<()> {
    let data = bytes::Bytes::from(std::fs::read(path).map_err(|e| io("read a log segment", e))?);
    let mut at = 0usize;
    while at < data.len() {
        match parse_frame(&data[at..]) {
            Some((header_len, payload_len)) => {
                let payload = data.slice(at + FRAME_HEAD..at + FRAME_HEAD + payload_len);
                let header: Header = serde_json::from_slice(&payload[4..4 + header_len])
                    .map_err(|e| Error::corrupt(path.display(), e))?;
                out.push(Recovered {
                    header,
                    rows: payload.slice(4 + header_len..),
                    lsn: out.len() as u64 + 1,
                });
                at += FRAME_HEAD + payload_len;
            }
            None if last => {
                warn!(
                    path = %path.display(), offset = at, dropped_bytes = data.len() - at,
                    "the log ends in a record that was never acknowledged: cut off"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io("truncate a log segment", e))?;
                file.set_len(at as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("truncate a log segment", e))?;
                return Ok(());
            }
            None => {
                return Err(Error::corrupt(
                    path.display(),
                    format!("damaged log record at byte {at} of a closed segment: refusing to start without acknowledged writes (restore the file or move it away)"),
                ))
            }
        }
    }
    Ok(())
}

/// Check the frame at the start of `data`: `(header length, payload length)` if it is
/// whole and its CRC matches.
fn parse_frame(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < FRAME_HEAD || &data[..4] != MAGIC {
        return None;
    }
    let payload_len = u32::from_le_bytes(data[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data[8..12].try_into().ok()?);
    let payload = data.get(FRAME_HEAD..FRAME_HEAD + payload_len)?;
    if payload.len() < 4 || crc32fast::hash(payload) != crc {
        return None;
    }
    let header_len = u32::from_le_bytes(payload[..4].try_into().ok()?) as usize;
    (4 + header_len <= payload_len).then_some((header_len, payload_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u64) -> Header {
        Header {
            dropped: false,
            collection: "c".into(),
            item: "i".into(),
            version,
            committed_at: 7,
            min: 0,
            max: 0,
            mode: WriteMode::Append,
            merge: None,
        }
    }

    #[tokio::test]
    async fn records_survive_a_restart_and_a_torn_end_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (log, recovered) = Log::open(dir.path(), None).unwrap();
        assert!(recovered.is_empty());
        let a = log.append(frame(&header(1), b"one")).unwrap();
        let b = log.append(frame(&header(2), b"two")).unwrap();
        log.wait(b).await.unwrap();
        assert_eq!((a, b), (1, 2));
        log.close();
        drop(log);

        // A crash in the middle of a third record: half of it reached the file.
        let segment = list_segments(dir.path()).unwrap().pop().unwrap().1;
        let torn = frame(&header(3), b"three");
        let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(&torn[..torn.len() - 2]).unwrap();
        drop(f);

        let (log, recovered) = Log::open(dir.path(), None).unwrap();
        let got: Vec<(u64, &[u8], u64)> = recovered
            .iter()
            .map(|r| (r.header.version, &r.rows[..], r.lsn))
            .collect();
        assert_eq!(got, [(1, &b"one"[..], 1), (2, &b"two"[..], 2)]);
        // New records follow the recovered ones; the torn end is gone for good.
        let c = log.append(frame(&header(3), b"three")).unwrap();
        log.wait(c).await.unwrap();
        assert_eq!(c, 3);
        log.close();
        drop(log);
        let (_log, recovered) = Log::open(dir.path(), None).unwrap();
        assert_eq!(recovered.len(), 3);
    }

    #[test]
    fn damage_inside_a_closed_segment_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = frame(&header(1), b"one");
        data.extend(frame(&header(2), b"two"));
        data[FRAME_HEAD + 6] ^= 0xff; // a flipped byte in the first record
        std::fs::write(dir.path().join(segment_name(1)), &data).unwrap();
        std::fs::write(dir.path().join(segment_name(2)), b"").unwrap();
        let err = Log::open(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("damaged log record"), "{err}");
    }
}
