//! What readers see of the log: an item's stored manifest with its durable tail entries
//! on top (rows after the end as in-memory files, rows merging into place as deltas).

use super::*;

/// The manifest readers see: `base` with `entries` (newer than it) on top: rows after
/// the end as in-memory files, rows merged into place as deltas.
pub(super) fn overlay(base: Arc<Manifest>, entries: &[Arc<TailEntry>]) -> Arc<Manifest> {
    let newer: Vec<&Arc<TailEntry>> = entries
        .iter()
        .filter(|e| e.version > base.version)
        .collect();
    let Some(last) = newer.last() else {
        return base;
    };
    let mut m = (*base).clone();
    m.version = last.version;
    m.committed_at = last.committed_at;
    m.operation = last.mode.as_str().into();
    for e in newer {
        match &e.merge {
            None => m.files.push(FileEntry {
                name: format!("(write-ahead log, version {})", e.version),
                min: e.min,
                max: e.max,
                rows: e.batch.num_rows() as u64,
                bytes: e.bytes as u64,
                row_groups: None,
                memory: Some(MemoryRows(e.batch.clone())),
            }),
            Some(merge) => m.deltas.push(Arc::new(Delta {
                rows: e.batch.clone(),
                min: e.min,
                max: e.max,
                key: merge.key.clone(),
                replaced: merge.replaced,
            })),
        }
    }
    Arc::new(m)
}

/// The rows of an in-memory entry inside `range`, in `schema` (a subset of its columns).
pub(crate) fn scan_memory(
    batch: &RecordBatch,
    schema: &SchemaRef,
    ordered_on: &str,
    range: KeyRange,
) -> Result<Option<RecordBatch>> {
    let column = batch
        .column_by_name(ordered_on)
        .expect("entries hold the ordering column");
    let keys = crate::storage::key::order_keys(ordered_on, column.as_ref())?;
    let from = range.start.map_or(0, |s| keys.partition_point(|&k| k < s));
    let to = range
        .end
        .map_or(keys.len(), |e| keys.partition_point(|&k| k < e));
    if from >= to {
        return Ok(None);
    }
    let indices = schema
        .fields()
        .iter()
        .map(|f| batch.schema().index_of(f.name()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(batch.project(&indices)?.slice(from, to - from)))
}

impl Engine {
    /// The latest manifest with the item's durable tail entries on top (what readers see).
    pub(crate) async fn with_tail(
        &self,
        c: &CollectionName,
        i: &ItemName,
        up_to: Option<u64>,
    ) -> Result<Option<Arc<Manifest>>> {
        let Some(wal) = &self.inner.wal else {
            return self.persisted_latest(c, i).await;
        };
        // The tail first: an entry persisted meanwhile is then in the manifest read next.
        let mut tail = wal.entries(&(c.clone(), i.clone()), true);
        if let Some(v) = up_to {
            tail.retain(|e| e.version <= v);
        }
        let base = self.persisted_latest(c, i).await?;
        Ok(match base {
            Some(m) if !m.deleted => Some(overlay(m, &tail)),
            other => other,
        })
    }

    /// Whether `version` of the item is a durable entry of its log's tail.
    pub(crate) fn tail_holds(&self, c: &CollectionName, i: &ItemName, version: u64) -> bool {
        self.inner.wal.as_ref().is_some_and(|wal| {
            wal.entries(&(c.clone(), i.clone()), true)
                .iter()
                .any(|e| e.version == version)
        })
    }
}
