//! Batch writes (PyStore's `write_batch`, holcstore's bulk set): one upload of many items'
//! rows, split by an item column into one write per item.
//!
//! ```text
//! upload ─► split by the item column ─► per item: rules, schema and ordering checks
//!        ─► spool (Arrow IPC, a temporary file per item)
//! every part checked ─► per item, in order of first appearance: the ordinary write
//! ```
//!
//! Every part is checked before any is committed, and the upload is never held in
//! memory. The commits are one per item: a failure while committing (a lost race after
//! its retries, storage failing) leaves the items before it committed, and says so.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tracing::{info, warn};

use super::stage::check_batch;
use super::{WriteMode, WriteOptions};
use crate::storage::error::{Error, Result};
use crate::storage::names::{CollectionName, ItemName};
use crate::storage::rules::{Rules, Shaper};
use crate::storage::schema::adapt;
use crate::storage::Engine;

/// Most items one batch write may hold (each is spooled to a file of its own).
pub const MAX_BATCH_ITEMS: usize = 10_000;

/// What a batch write committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchReceipt {
    /// Each item's commit.
    pub items: BTreeMap<String, ItemReceipt>,
    /// Rows received in the upload.
    pub rows_received: u64,
    /// The batch's `write_id` had committed on every item already (a retry): nothing
    /// was written now. (After a failure part way, a retry writes only the items whose
    /// commit is missing: those that had committed are marked in `items`.)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// One item's commit in a batch write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ItemReceipt {
    /// The committed version.
    pub version: u64,
    /// Rows of the item now stored.
    pub rows_written: u64,
    /// The batch's `write_id` had committed on this item already (a retry): the first
    /// commit's figures, nothing written now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// One item's part of the upload, spooled.
struct Part {
    item: ItemName,
    shaper: Option<Shaper>,
    /// Where checked rows go, in the item's schema as this write leaves it.
    target: SchemaRef,
    prepared: super::prepare::Prepared,
    writer: StreamWriter<BufWriter<File>>,
    path: std::path::PathBuf,
}

impl Engine {
    /// Write an upload of many items' rows, split by `item_column` (dropped from the
    /// stored rows), each part written with `opts`.
    pub async fn write_batch(
        &self,
        c: &CollectionName,
        item_column: &str,
        opts: WriteOptions,
        schema: SchemaRef,
        input: BoxStream<'static, Result<RecordBatch>>,
    ) -> Result<BatchReceipt> {
        let (engine, c, column) = (self.clone(), c.clone(), item_column.to_string());
        let task = async move {
            engine
                .write_batch_here(&c, &column, opts, schema, input)
                .await
        };
        self.inner.cpu.run("write_batch", task).await
    }

    async fn write_batch_here(
        &self,
        c: &CollectionName,
        item_column: &str,
        opts: WriteOptions,
        schema: SchemaRef,
        mut input: BoxStream<'static, Result<RecordBatch>>,
    ) -> Result<BatchReceipt> {
        if opts.mode == WriteMode::DeleteRange {
            return Err(Error::invalid("delete_range takes no data"));
        }
        let column = schema.index_of(item_column).map_err(|_| {
            Error::invalid(format!("item_column {item_column:?} is not in the data"))
        })?;
        let names_type = schema.field(column).data_type();
        if !is_string(names_type) {
            return Err(Error::invalid(format!(
                "item_column {item_column:?} has type {names_type}; it must hold item names (strings)"
            )));
        }
        let spool = tempfile::tempdir().map_err(spooling)?;
        let mut parts: Vec<Part> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut rows_received = 0u64;
        // 1. Split, check and spool every part.
        while let Some(batch) = input.try_next().await? {
            let names = cast(batch.column(column), &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let mut rows: Vec<Vec<u32>> = vec![Vec::new(); parts.len()];
            for row in 0..batch.num_rows() {
                if names.is_null(row) {
                    return Err(Error::invalid(format!(
                        "item_column {item_column:?} is null at row {} of the upload",
                        rows_received + row as u64
                    )));
                }
                let name = names.value(row);
                let n = match index.get(name) {
                    Some(&n) => n,
                    None => {
                        let at = rows_received + row as u64;
                        let part = self
                            .open_part(c, name, at, &opts, &schema, column, spool.path())
                            .await?;
                        parts.push(part);
                        rows.push(Vec::new());
                        if parts.len() > MAX_BATCH_ITEMS {
                            return Err(Error::invalid(format!(
                                "a batch write holds at most {MAX_BATCH_ITEMS} items"
                            )));
                        }
                        index.insert(name.to_string(), parts.len() - 1);
                        parts.len() - 1
                    }
                };
                rows[n].push(row as u32);
            }
            let without = {
                let mut b = batch.clone();
                b.remove_column(column);
                b
            };
            for (n, rows) in rows.into_iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                let part = &mut parts[n];
                let rows = take_record_batch(&without, &UInt32Array::from(rows))?;
                let rows = match &mut part.shaper {
                    Some(s) => s.shape(rows)?,
                    None => rows,
                };
                let rows = adapt(&rows, &part.target)?;
                check_batch(&part.prepared, &rows)
                    .map_err(|e| Error::invalid(format!("item {}: {e}", part.item)))?;
                part.writer.write(&rows)?;
            }
            rows_received += batch.num_rows() as u64;
        }
        for part in &mut parts {
            part.writer.finish()?;
        }
        // 2. Every part is good: write each.
        let mut receipt = BatchReceipt {
            items: BTreeMap::new(),
            rows_received,
            duplicate: false,
        };
        for part in parts {
            let reader = StreamReader::try_new(
                BufReader::new(File::open(&part.path).map_err(spooling)?),
                None,
            )?;
            let rows = stream::iter(reader.map(|b| b.map_err(Error::from))).boxed();
            let written = self
                .write_here(c, &part.item, opts.clone(), Arc::clone(&part.target), rows)
                .await;
            match written {
                Ok(r) => {
                    receipt.items.insert(
                        part.item.to_string(),
                        ItemReceipt {
                            version: r.version,
                            rows_written: r.rows_written,
                            duplicate: r.duplicate,
                        },
                    );
                }
                Err(e) => {
                    let committed: Vec<&String> = receipt.items.keys().collect();
                    warn!(collection = %c, item = %part.item, ?committed, error = %e,
                        "batch write failed part way");
                    return Err(e);
                }
            }
        }
        receipt.duplicate =
            !receipt.items.is_empty() && receipt.items.values().all(|r| r.duplicate);
        info!(collection = %c, items = receipt.items.len(), rows_received, "batch write committed");
        Ok(receipt)
    }

    /// Check a new part (its item name, rules and schema) and open its spool file.
    #[allow(clippy::too_many_arguments)]
    async fn open_part(
        &self,
        c: &CollectionName,
        name: &str,
        row: u64,
        opts: &WriteOptions,
        schema: &SchemaRef,
        column: usize,
        spool: &std::path::Path,
    ) -> Result<Part> {
        let item = ItemName::new(name).map_err(|e| {
            Error::invalid(format!("the item name at row {row} of the upload: {e}"))
        })?;
        let current = self.live(c, &item).await?;
        if opts.mode == WriteMode::Create && current.is_some() {
            return Err(Error::AlreadyExists {
                what: format!("item {c}/{item}"),
            });
        }
        let mut fields = schema.fields().to_vec();
        fields.remove(column);
        // Each item keeps the upload's schema metadata (pandas' own, declared categories).
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        ));
        let mut o = opts.clone();
        let rules = Rules::of_write(&mut o, current.as_ref().map(|m| m.live_settings()))?;
        let checks = self.inner.options.checks.as_ref();
        let (schema, shaper) = Shaper::new(&rules, &o, current.as_deref(), checks, schema)?;
        let shaper = shaper.map(|s| s.for_item(&item));
        let prepared = self.prepare(c, &item, &o, current.as_deref(), &schema)?;
        let path = spool.join(format!("{}.arrow", index_name(name)));
        // The spool holds the rows as they are checked: in the item's schema after this
        // write.
        let target = Arc::clone(&prepared.schema);
        let file = File::create(&path).map_err(spooling)?;
        let writer = StreamWriter::try_new(BufWriter::new(file), &target)?;
        Ok(Part {
            target,
            item,
            shaper,
            prepared,
            writer,
            path,
        })
    }
}

fn spooling(source: std::io::Error) -> Error {
    Error::Io {
        what: "spooling a batch write",
        source,
    }
}

/// A file name for an item's spool (item names may hold `/`).
fn index_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}
