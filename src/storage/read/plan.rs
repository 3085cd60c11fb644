//! Read plans: a read pinned to one version, with what it returns and how it splits.
//!
//! The Flight layer (and the SQL table provider) plan through [`Engine::plan_read`] and
//! run a plan, or one of its splits, with [`Engine::execute`]; they never look at
//! manifest entries themselves.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use super::piece::pieces;
use super::scan::{limit_stream, ScanCtx};
use super::{At, ReadOptions, ReadStream, RowFilter};
use crate::storage::error::{Error, Result};
use crate::storage::key::KeyRange;
use crate::storage::manifest::{rows_with, Delta, FileEntry, Manifest};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::schema::project;
use crate::storage::Engine;

/// A read pinned to one version of an item.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    collection: CollectionName,
    item: ItemName,
    manifest: Arc<Manifest>,
    options: ReadOptions,
    /// The schema of the batches (after projection).
    schema: SchemaRef,
}

/// A part of a read plan: the rows of a key range. Splits of one plan are disjoint and in
/// key order; together they are the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSplit {
    /// The keys this part reads (inside the plan's range).
    pub range: KeyRange,
    /// Whether `limit`, `last` and `n_prev` apply to this part: only a split that is the
    /// whole read carries them.
    pub whole: bool,
}

impl ReadPlan {
    /// Collection of the item read.
    pub fn collection(&self) -> &CollectionName {
        &self.collection
    }

    /// The item read.
    pub fn item(&self) -> &ItemName {
        &self.item
    }

    /// The version read.
    pub fn version(&self) -> u64 {
        self.manifest.version
    }

    /// The schema of the batches (after projection).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The item's schema at the version read (before projection): what a filter is
    /// written against.
    pub fn item_schema(&self) -> &SchemaRef {
        self.manifest.live_schema()
    }

    /// The ordering column of the item.
    pub fn ordered_on(&self) -> &str {
        &self.manifest.live_settings().ordered_on
    }

    /// The options of the read (with `at` pinned to the version).
    pub fn options(&self) -> &ReadOptions {
        &self.options
    }

    /// Return only `columns` (checked against the item's schema).
    pub fn with_columns(mut self, columns: Vec<String>) -> Result<Self> {
        self.schema = project(self.manifest.live_schema(), Some(&columns))?;
        self.options.columns = Some(columns);
        Ok(self)
    }

    /// Apply `filter` too (it was compiled against [`ReadPlan::item_schema`]).
    pub fn with_filter(mut self, filter: Arc<dyn RowFilter>) -> Self {
        self.options.filter = Some(filter);
        self
    }

    /// Read only the keys of `range` (inside the plan's own range).
    pub fn with_range(mut self, range: KeyRange) -> Self {
        self.options.range = self.options.range.intersect(range);
        self
    }

    /// Prepend up to `n_prev` rows before the range.
    pub fn with_n_prev(mut self, n_prev: usize) -> Self {
        self.options.n_prev = n_prev;
        self
    }

    /// Keep only the first `limit` rows (in place of any `last`).
    pub fn with_limit(mut self, limit: Option<usize>) -> Self {
        self.options.limit = limit;
        if limit.is_some() {
            self.options.last = None;
        }
        self
    }

    /// Keep only the last `last` rows (in place of any `limit`).
    pub fn with_last(mut self, last: Option<usize>) -> Self {
        self.options.last = last;
        if last.is_some() {
            self.options.limit = None;
        }
        self
    }

    /// Rows of the files (and log rows) the range overlaps: an upper bound of the rows
    /// read.
    pub fn rows_upper_bound(&self) -> u64 {
        self.files().map(|f| f.rows).sum::<u64>()
            + self.deltas().map(|d| d.rows.num_rows() as u64).sum::<u64>()
    }

    /// Log entries that merge into the range (upserts not persisted yet).
    fn deltas(&self) -> impl Iterator<Item = &Arc<Delta>> {
        let range = self.options.range;
        self.manifest
            .deltas
            .iter()
            .filter(move |d| range.overlaps(d.min, d.max))
    }

    /// Files the read opens, and files of the version.
    pub fn file_counts(&self) -> (usize, usize) {
        let all: std::collections::HashSet<_> = self
            .manifest
            .files
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        let kept: std::collections::HashSet<_> = self.files().map(|f| f.name.as_str()).collect();
        (kept.len(), all.len())
    }

    /// Files (or runs of row groups) the range overlaps.
    fn files(&self) -> impl Iterator<Item = &FileEntry> {
        let range = self.options.range;
        self.manifest
            .files
            .iter()
            .filter(move |f| range.overlaps(f.min, f.max))
    }

    /// Rows the read returns, where the manifest decides it (`None` where a filter, a
    /// file the range cuts, or `n_prev` does).
    pub fn rows(&self) -> Option<u64> {
        let o = &self.options;
        if o.filter.is_some() || o.n_prev > 0 {
            return None;
        }
        let mut rows = 0;
        for f in self.files() {
            if !o.range.covers(f.min, f.max) {
                return None;
            }
            rows += f.rows;
        }
        if !self.deltas().all(|d| o.range.covers(d.min, d.max)) {
            return None;
        }
        let rows = rows_with(rows, &mut self.deltas());
        Some(match o.limit.or(o.last) {
            Some(n) => rows.min(n as u64),
            None => rows,
        })
    }

    /// Bytes of the files the read opens (an upper bound of what it decodes).
    pub fn bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.files()
            .filter(|f| seen.insert(f.name.as_str()))
            .map(|f| f.bytes)
            .sum()
    }

    /// The whole read as one split.
    pub fn whole(&self) -> ReadSplit {
        ReadSplit {
            range: self.options.range,
            whole: true,
        }
    }

    /// Splits of about `max_rows` rows each, cut at file bounds. A read with `limit`,
    /// `last` or `n_prev` is one split (those need the read whole).
    pub fn splits(&self, max_rows: u64) -> Vec<ReadSplit> {
        let o = &self.options;
        if o.limit.is_some() || o.last.is_some() || o.n_prev > 0 {
            return vec![self.whole()];
        }
        let range = o.range;
        let mut bounds = vec![range.start];
        let mut rows = 0u64;
        for f in self.files() {
            if rows >= max_rows.max(1) && range.start.is_none_or(|s| f.min > s) {
                bounds.push(Some(f.min));
                rows = 0;
            }
            rows += f.rows;
        }
        bounds.push(range.end);
        let single = bounds.len() == 2;
        bounds
            .windows(2)
            .map(|w| ReadSplit {
                range: KeyRange::new(w[0], w[1]),
                whole: single,
            })
            .collect()
    }
}

impl Engine {
    /// Plan a read: resolve the version (`opts.at`), check the columns and options.
    pub async fn plan_read(
        &self,
        c: &CollectionName,
        i: &ItemName,
        mut opts: ReadOptions,
    ) -> Result<ReadPlan> {
        if opts.limit.is_some() && opts.last.is_some() {
            return Err(Error::invalid("limit and last exclude each other"));
        }
        let manifest = self.manifest_at(c, i, &opts.at).await?;
        let schema = project(manifest.live_schema(), opts.columns.as_deref())?;
        opts.at = At::Version(manifest.version);
        Ok(ReadPlan {
            collection: c.clone(),
            item: i.clone(),
            manifest,
            options: opts,
            schema,
        })
    }

    /// Run `split` of `plan`: batches in key order, in the plan's schema. A part of the
    /// read that fails is an error in the stream, never a shorter stream.
    pub async fn execute(&self, plan: &ReadPlan, split: &ReadSplit) -> Result<ReadStream> {
        let mut opts = plan.options.clone();
        opts.range = split.range;
        if !split.whole {
            (opts.limit, opts.last, opts.n_prev) = (None, None, 0);
        }
        let item_schema = plan.item_schema();
        let ordered_on = plan.ordered_on().to_string();
        let out_schema = Arc::clone(&plan.schema);
        // Columns the read needs, in item order.
        let mut needed: Vec<String> = out_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        needed.push(ordered_on.clone());
        if let Some(f) = &opts.filter {
            needed.extend(f.columns());
        }
        // Log rows merge on their key.
        for d in &plan.manifest.deltas {
            needed.extend(d.key.iter().flatten().cloned());
        }
        let read_cols: Vec<String> = item_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| needed.contains(n))
            .collect();
        let ctx = ScanCtx {
            engine: self.clone(),
            collection: plan.collection.clone(),
            item: plan.item.clone(),
            read_schema: project(item_schema, Some(&read_cols))?,
            ordered_on,
            filter: opts.filter.clone(),
        };
        let (files, deltas) = (&plan.manifest.files, &plan.manifest.deltas);
        let range = opts.range;
        let empty = range.is_empty();
        let prev_range = KeyRange::new(None, range.start);
        let stream: BoxStream<'static, Result<_>> = if let Some(last) = opts.last {
            let mut batches = if empty {
                Vec::new()
            } else {
                ctx.tail(&pieces(files, deltas, range), last).await?
            };
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if rows < last && opts.n_prev > 0 && range.start.is_some() {
                let mut prev = ctx
                    .tail(
                        &pieces(files, deltas, prev_range),
                        opts.n_prev.min(last - rows),
                    )
                    .await?;
                prev.append(&mut batches);
                batches = prev;
            }
            stream::iter(batches.into_iter().map(Ok)).boxed()
        } else {
            let prev = if opts.n_prev > 0 && range.start.is_some() {
                ctx.tail(&pieces(files, deltas, prev_range), opts.n_prev)
                    .await?
            } else {
                Vec::new()
            };
            let main = if empty {
                stream::empty().boxed()
            } else {
                ctx.forward(pieces(files, deltas, range))
            };
            let s = stream::iter(prev.into_iter().map(Ok)).chain(main).boxed();
            match opts.limit {
                Some(limit) => limit_stream(s, limit),
                None => s,
            }
        };
        let out = Arc::clone(&out_schema);
        let stream = stream
            .map(move |b| {
                let b = b?;
                let indices = out
                    .fields()
                    .iter()
                    .map(|f| b.schema().index_of(f.name()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(b.project(&indices)?)
            })
            .boxed();
        Ok(ReadStream {
            schema: out_schema,
            version: plan.version(),
            stream,
        })
    }
}
