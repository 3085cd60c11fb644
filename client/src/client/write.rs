//! Writes: a [`Write`] (the WriteRequest, built) and a stream of RecordBatches become one
//! `DoPut` upload; its [`Receipt`] arrives after the commit.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{Client, Error, Result};
use crate::proto::{self, row_group_target, RowGroupTarget};

/// A write: the WriteRequest of DESIGN.md ("Wire contract"), built.
///
/// ```
/// use flightstore_client::Write;
/// let w = Write::upsert("NASDAQ", "AAPL", ["ts", "trade_id"]).keep("last").write_id("feed-42");
/// assert_eq!(w.request().mode.as_deref(), Some("upsert"));
/// assert_eq!(w.request().dedup_on, ["ts", "trade_id"]);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Write {
    req: proto::WriteRequest,
}

impl Write {
    fn with_mode(collection: &str, item: &str, mode: &str) -> Self {
        Self {
            req: proto::WriteRequest {
                collection: collection.into(),
                item: item.into(),
                mode: Some(mode.into()),
                ..Default::default()
            },
        }
    }

    /// Append rows (creates the item on its first write); rows land in order.
    pub fn append(collection: &str, item: &str) -> Self {
        Self::with_mode(collection, item, "append")
    }

    /// Insert or replace rows by a key (`dedup_on`).
    pub fn upsert<S: Into<String>>(
        collection: &str,
        item: &str,
        dedup_on: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::with_mode(collection, item, "upsert").dedup_on(dedup_on)
    }

    /// Replace the item's rows with the upload's (creates it if missing).
    pub fn overwrite(collection: &str, item: &str) -> Self {
        Self::with_mode(collection, item, "overwrite")
    }

    /// Create the item; `AlreadyExists` if it exists.
    pub fn create(collection: &str, item: &str) -> Self {
        Self::with_mode(collection, item, "create")
    }

    /// Replace the rows in `[start, end)` with the upload's.
    pub fn replace_range(
        collection: &str,
        item: &str,
        start: impl Into<proto::Time>,
        end: impl Into<proto::Time>,
    ) -> Self {
        let mut w = Self::with_mode(collection, item, "replace_range");
        w.req.start = Some(start.into());
        w.req.end = Some(end.into());
        w
    }

    /// A batch write: each row goes to the item named in its `item_column` (appends).
    pub fn batch(collection: &str, item_column: &str) -> Self {
        Self {
            req: proto::WriteRequest {
                collection: collection.into(),
                item_column: Some(item_column.into()),
                ..Default::default()
            },
        }
    }

    /// Set the mode (`append`, `upsert`, `overwrite`, `create`, `replace_range`).
    pub fn mode(mut self, mode: &str) -> Self {
        self.req.mode = Some(mode.into());
        self
    }

    /// The ordering column (default: the first timestamp column).
    pub fn ordered_on(mut self, column: &str) -> Self {
        self.req.ordered_on = Some(column.into());
        self
    }

    /// The key of exact de-duplication.
    pub fn dedup_on<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.req.dedup_on = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Which duplicate stays: `last` (default) or `first`.
    pub fn keep(mut self, keep: &str) -> Self {
        self.req.keep = Some(keep.into());
        self
    }

    /// Metadata keys to merge into the item's (a `null` removes a key).
    pub fn metadata(mut self, metadata: &Map<String, Value>) -> Self {
        self.req.metadata = Some(Value::Object(metadata.clone()).to_string());
        self
    }

    /// Row groups of about `rows` rows.
    pub fn row_group_rows(mut self, rows: u64) -> Self {
        self.req.row_group_target = Some(RowGroupTarget {
            value: Some(row_group_target::Value::Rows(rows)),
        });
        self
    }

    /// Row groups of one calendar period each (`"1D"`, `"1M"`).
    pub fn row_group_period(mut self, period: &str) -> Self {
        self.req.row_group_target = Some(RowGroupTarget {
            value: Some(row_group_target::Value::Period(period.into())),
        });
        self
    }

    /// `strict` (default), `add_columns` or `widen`.
    pub fn schema_evolution(mut self, rule: &str) -> Self {
        self.req.schema_evolution = Some(rule.into());
        self
    }

    /// A data-rules preset (`market_data`, `iot`, `eod`, ...).
    pub fn preset(mut self, preset: &str) -> Self {
        self.req.preset = Some(preset.into());
        self
    }

    /// Make the write safe to retry: a second write with the same id (1 to 128 bytes)
    /// commits nothing and returns the first one's receipt with `duplicate` set.
    pub fn write_id(mut self, id: impl Into<String>) -> Self {
        self.req.write_id = Some(id.into());
        self
    }

    /// The WriteRequest so far.
    pub fn request(&self) -> &proto::WriteRequest {
        &self.req
    }

    /// The WriteRequest, to change a field this builder does not name.
    pub fn request_mut(&mut self) -> &mut proto::WriteRequest {
        &mut self.req
    }
}

impl From<Write> for proto::WriteRequest {
    fn from(w: Write) -> Self {
        w.req
    }
}

/// What a write committed (the `PutResult` JSON of DESIGN.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Receipt {
    /// The version committed (absent for a batch write: see `items`).
    #[serde(default)]
    pub version: Option<u64>,
    /// Rows uploaded.
    pub rows_received: u64,
    /// Rows stored (after de-duplication; absent for a batch write).
    #[serde(default)]
    pub rows_written: Option<u64>,
    /// The write's `write_id` had already committed: nothing was written again, and this
    /// is the first receipt.
    #[serde(default)]
    pub duplicate: bool,
    /// A batch write's receipt per item.
    #[serde(default)]
    pub items: BTreeMap<String, ItemReceipt>,
}

/// One item's part of a batch write's [`Receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemReceipt {
    /// The version committed.
    pub version: u64,
    /// Rows stored.
    pub rows_written: u64,
    /// Already committed under the write's id.
    #[serde(default)]
    pub duplicate: bool,
}

impl Client {
    /// Upload `batches` as one write; the receipt arrives once it is committed.
    ///
    /// The batches are streamed (never all held); if the stream yields an error, the
    /// upload is cancelled, nothing is committed, and that error is returned
    /// ([`Error::Input`], or [`Error::Arrow`]). An empty stream writes nothing and is
    /// `InvalidArgument`.
    ///
    /// # Errors
    ///
    /// The server's refusal (`InvalidArgument` for a schema mismatch, `AlreadyExists`
    /// for `create` of an existing item, ...), or the input's error.
    pub async fn write<S, E>(
        &self,
        write: impl Into<proto::WriteRequest>,
        batches: S,
    ) -> Result<Receipt>
    where
        S: Stream<Item = std::result::Result<RecordBatch, E>> + Send + 'static,
        E: Into<FlightError> + Send + 'static,
    {
        let req: proto::WriteRequest = write.into();
        let descriptor = FlightDescriptor::new_cmd(crate::encode_json(&req));
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(batches.map_err(Into::into));
        // An upload that ends cleanly commits what was sent: if the input fails, the
        // upload must not end but be cancelled (RST_STREAM), which the server takes as a
        // client gone and commits nothing.
        let (failed_tx, failed_rx) = oneshot::channel();
        let mut request = tonic::Request::new(CancelOnError {
            data: data.boxed(),
            failed: Some(failed_tx),
        });
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        let mut service = self.inner.clone();
        let call = async move {
            let mut results = service.do_put(request).await?.into_inner();
            let mut receipts = Vec::new();
            while let Some(result) = results.message().await? {
                receipts.push(result);
            }
            Ok::<_, Error>(receipts)
        };
        let results = tokio::select! {
            results = call => results?,
            // Dropping `call` cancels the upload.
            Ok(e) = failed_rx => return Err(Error::from(e)),
        };
        let [result] = results.as_slice() else {
            return Err(Error::Protocol(format!(
                "DoPut returned {} results, not 1",
                results.len()
            )));
        };
        serde_json::from_slice(&result.app_metadata)
            .map_err(|e| Error::Protocol(format!("the receipt is not the JSON expected: {e}")))
    }

    /// Append `batches` to an item (created on its first write).
    ///
    /// # Errors
    ///
    /// As [`Client::write`].
    pub async fn append<S, E>(&self, collection: &str, item: &str, batches: S) -> Result<Receipt>
    where
        S: Stream<Item = std::result::Result<RecordBatch, E>> + Send + 'static,
        E: Into<FlightError> + Send + 'static,
    {
        self.write(Write::append(collection, item), batches).await
    }

    /// Write batches held in memory (a convenience over [`Client::write`]).
    ///
    /// # Errors
    ///
    /// As [`Client::write`].
    pub async fn write_batches(
        &self,
        write: impl Into<proto::WriteRequest>,
        batches: Vec<RecordBatch>,
    ) -> Result<Receipt> {
        let stream = futures::stream::iter(batches.into_iter().map(Ok::<_, FlightError>));
        self.write(write, stream).await
    }
}

/// An upload's messages, which on the input's first error hands the error over and never
/// ends (so the call is cancelled, not completed).
struct CancelOnError {
    data: BoxStream<'static, std::result::Result<FlightData, FlightError>>,
    failed: Option<oneshot::Sender<FlightError>>,
}

impl Stream for CancelOnError {
    type Item = FlightData;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FlightData>> {
        if self.failed.is_none() {
            return Poll::Pending;
        }
        match ready!(self.data.poll_next_unpin(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(data)),
            Some(Err(e)) => {
                if let Some(failed) = self.failed.take() {
                    let _ = failed.send(e);
                }
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }
}
