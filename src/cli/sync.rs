//! `sync --from URL --to URL [COLLECTION...]`: copy every item changed since the last sync,
//! propagate deletions; safe to rerun, from any machine.
//!
//! The destination remembers what it holds: after each run, a snapshot
//! `sync-<source id>-<time>` of the collection on the destination, where `<time>` is the
//! source's commit time of the newest change copied. The next run asks the source for
//! `changes_since` that time (less a minute, for commits that were in flight), and each
//! copy carries a `write_id` made of the source, item and version, so a version already
//! copied commits nothing again. The snapshot also pins what was copied until the next
//! sync replaces it.
//!
//! ```text
//!  source                                    destination
//!  changes_since(T - 1 min) ──> [item, version, deleted]
//!    deleted ─────────────────────────────> delete_item
//!  collection gone (NotFound) ────────────> delete_collection (if synced from it before)
//!    changed: read at version ──(stream)──> overwrite (write_id) + metadata
//!                                            snapshot sync-<source>-<T'>, older ones removed
//! ```

use anyhow::Context;
use flightstore_client::{Client, Error, Read, Write};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::remote::{connect, Remote};

/// Commits still in flight when a sync lists changes may carry an earlier time than the
/// newest it saw: the next run looks back this far (their write ids skip what it copied).
const LOOK_BACK_NS: i64 = 60_000_000_000;

/// `sync`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct Sync {
    /// The server to copy from.
    #[arg(long)]
    from: String,
    /// The server to copy to.
    #[arg(long)]
    to: String,
    /// The source's token (default: --token).
    #[arg(long, env = "FLIGHTSTORE_FROM_TOKEN", hide_env_values = true)]
    from_token: Option<String>,
    /// The destination's token (default: --token).
    #[arg(long, env = "FLIGHTSTORE_TO_TOKEN", hide_env_values = true)]
    to_token: Option<String>,
    /// The collections to sync (default: every collection of the source).
    collections: Vec<String>,
}

/// What one collection's sync did.
#[derive(Debug, Default)]
struct Counts {
    copied: u64,
    unchanged: u64,
    deleted: u64,
    /// The source deleted the whole collection: so did the destination.
    collection_deleted: bool,
}

impl Sync {
    pub(crate) async fn run(self, remote: &Remote) -> anyhow::Result<()> {
        let token = remote.token.as_deref();
        let source = connect(&self.from, self.from_token.as_deref().or(token), remote).await?;
        let dest = connect(&self.to, self.to_token.as_deref().or(token), remote).await?;
        let source_id = source_id(&self.from);
        let collections = if self.collections.is_empty() {
            let mut all = source.list_collections().await?;
            // Collections this source synced that it no longer has: their deletion too.
            for c in dest.list_collections().await? {
                if !all.contains(&c) && !markers(&dest, &source_id, &c).await?.is_empty() {
                    all.push(c);
                }
            }
            all
        } else {
            self.collections
        };
        for c in &collections {
            let counts = sync_collection(&source, &dest, &source_id, c)
                .await
                .with_context(|| format!("sync of collection {c}"))?;
            if counts.collection_deleted {
                println!("{c}: deleted (the source no longer has it)");
                continue;
            }
            println!(
                "{c}: {} copied, {} deleted, {} already there",
                counts.copied, counts.deleted, counts.unchanged
            );
        }
        Ok(())
    }
}

/// A short, stable name of a source URL.
fn source_id(url: &str) -> String {
    hex::encode(&Sha256::digest(url.trim_end_matches('/').as_bytes())[..6])
}

/// The sync snapshots of this source on the destination, as (name, time).
async fn markers(dest: &Client, source_id: &str, c: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let prefix = format!("sync-{source_id}-");
    let snapshots = match dest.list_snapshots(c).await {
        Ok(s) => s,
        Err(Error::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(snapshots
        .into_iter()
        .filter_map(|s| {
            let t = s.snapshot.strip_prefix(&prefix)?.parse().ok()?;
            Some((s.snapshot, t))
        })
        .collect())
}

async fn sync_collection(
    source: &Client,
    dest: &Client,
    source_id: &str,
    c: &str,
) -> anyhow::Result<Counts> {
    let old = markers(dest, source_id, c).await?;
    let since = old.iter().map(|m| m.1).max();
    let look_from = since.map_or(0, |t| t.saturating_sub(LOOK_BACK_NS));
    let changes = match source.changes_since(c, look_from).await {
        // Gone from the source after an earlier sync copied it: delete it here too (a
        // collection this source never synced is an error, as a typo would be).
        Err(Error::NotFound(_)) if !old.is_empty() => {
            match dest.delete_collection(c).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Counts {
                collection_deleted: true,
                ..Counts::default()
            });
        }
        changes => changes?,
    };
    let mut newest = since.unwrap_or(0);
    let mut counts = Counts::default();
    match dest.create_collection(c).await {
        Ok(()) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    for change in changes {
        newest = newest.max(change.updated_at);
        if change.deleted {
            match dest.delete_item(c, &change.item).await {
                Ok(()) => counts.deleted += 1,
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if copy_item(source, dest, source_id, c, &change.item, change.version).await? {
            counts.copied += 1;
        } else {
            counts.unchanged += 1;
        }
    }
    let marker = format!("sync-{source_id}-{newest}");
    if !old.iter().any(|m| m.0 == marker) {
        dest.create_snapshot(c, &marker).await?;
    }
    for (name, _) in old.into_iter().filter(|m| m.0 != marker) {
        dest.delete_snapshot(c, &name).await?;
    }
    Ok(counts)
}

/// Copy one item's `version` from the source over the destination's item (its rows, its
/// ordering column, its metadata exactly); `false` if that version was copied before.
async fn copy_item(
    source: &Client,
    dest: &Client,
    source_id: &str,
    c: &str,
    item: &str,
    version: u64,
) -> anyhow::Result<bool> {
    let info = source.item_info(c, item).await?;
    let mut write = Write::overwrite(c, item).write_id(format!("sync-{source_id}-{}", {
        let id = Sha256::digest(format!("{c}\0{item}\0{version}").as_bytes());
        hex::encode(&id[..16])
    }));
    if let Some(column) = info.settings["ordered_on"].as_str() {
        write = write.ordered_on(column);
    }
    let batches = source.read(Read::new(c, item).version(version)).await?;
    let receipt = dest.write(write, batches).await?;
    if receipt.duplicate {
        return Ok(false);
    }
    // The destination's metadata becomes the source's: its keys set, others removed.
    let wanted = source.get_metadata(c, item).await?;
    let mut patch: Map<String, Value> = dest
        .get_metadata(c, item)
        .await?
        .into_iter()
        .filter(|(k, _)| !wanted.contains_key(k))
        .map(|(k, _)| (k, Value::Null))
        .collect();
    patch.extend(wanted);
    if !patch.is_empty() {
        dest.update_metadata(c, item, &patch).await?;
    }
    Ok(true)
}
