//! Reads: a [`Read`] (the ReadRequest, built) becomes `GetFlightInfo`, then one `DoGet`
//! per endpoint; endpoints are fetched in parallel and yielded in order, each through a
//! small channel, so memory stays bounded however large the read.
//!
//! ```text
//!  GetFlightInfo ──> [e1, e2, e3, ...]
//!                     │   │   └── DoGet task ──> channel(2) ─┐   (at most `parallelism`
//!                     │   └────── DoGet task ──> channel(2) ─┤    ahead of the one read)
//!                     └────────── DoGet task ──> channel(2) ─┴──> ReadStream, in order
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_flight::{FlightDescriptor, Ticket};
use arrow_schema::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};

use super::{Client, Error, Result};
use crate::proto;

/// A read: the ReadRequest of DESIGN.md ("Wire contract"), built. Times are ISO-8601
/// strings or integer nanoseconds; `[start, end)`.
///
/// ```
/// use flightstore_client::Read;
/// let r = Read::new("NASDAQ", "AAPL").start("2024-01-02").end(1_704_240_000_000_000_000).columns(["ts", "price"]).last(10);
/// assert_eq!(r.request().last, Some(10));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Read {
    req: proto::ReadRequest,
}

impl Read {
    /// Read an item (all of it, latest version, unless narrowed).
    pub fn new(collection: &str, item: &str) -> Self {
        Self {
            req: proto::ReadRequest {
                collection: collection.into(),
                item: item.into(),
                ..Default::default()
            },
        }
    }

    /// Read several items of a collection at once, merged in time order with an `item`
    /// column.
    pub fn items<S: Into<String>>(collection: &str, items: impl IntoIterator<Item = S>) -> Self {
        Self {
            req: proto::ReadRequest {
                collection: collection.into(),
                items: items.into_iter().map(Into::into).collect(),
                ..Default::default()
            },
        }
    }

    /// From this time on (inclusive).
    pub fn start(mut self, t: impl Into<proto::Time>) -> Self {
        self.req.start = Some(t.into());
        self
    }

    /// Up to this time (exclusive).
    pub fn end(mut self, t: impl Into<proto::Time>) -> Self {
        self.req.end = Some(t.into());
        self
    }

    /// Only these columns, in this order.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.req.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Only rows passing this SQL boolean expression (`price > 100 AND side = 1`).
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.req.filter = Some(filter.into());
        self
    }

    /// The first `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.req.limit = Some(n);
        self
    }

    /// The last `n` rows.
    pub fn last(mut self, n: u64) -> Self {
        self.req.last = Some(n);
        self
    }

    /// Also the `n` rows before `start` (that pass the filter).
    pub fn n_prev(mut self, n: u64) -> Self {
        self.req.n_prev = Some(n);
        self
    }

    /// As of this version.
    pub fn version(mut self, version: u64) -> Self {
        self.req.version = Some(version);
        self
    }

    /// As of this snapshot.
    pub fn snapshot(mut self, snapshot: impl Into<String>) -> Self {
        self.req.snapshot = Some(snapshot.into());
        self
    }

    /// On a regular grid of `freq` (`"1min"`), filled by `fill` (`null`, `ffill`, ...).
    pub fn grid(mut self, freq: &str, fill: Option<&str>) -> Self {
        self.req.grid = Some(proto::Grid {
            freq: freq.into(),
            fill: fill.map(Into::into),
        });
        self
    }

    /// The ReadRequest so far.
    pub fn request(&self) -> &proto::ReadRequest {
        &self.req
    }
}

impl From<Read> for proto::ReadRequest {
    fn from(r: Read) -> Self {
        r.req
    }
}

/// The batches of a read, in order, with the schema known before the first one.
///
/// A read that fails part way ends with that error, never early.
pub struct ReadStream {
    schema: SchemaRef,
    total_records: Option<u64>,
    batches: BoxStream<'static, Result<RecordBatch>>,
}

impl std::fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStream")
            .field("schema", &self.schema)
            .field("total_records", &self.total_records)
            .finish_non_exhaustive()
    }
}

impl ReadStream {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        std::sync::Arc::clone(&self.schema)
    }

    /// The rows the server expects to send, if it said (for progress bars).
    pub fn total_records(&self) -> Option<u64> {
        self.total_records
    }
}

impl Stream for ReadStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.batches.poll_next_unpin(cx)
    }
}

impl Client {
    /// Read: the batches of `read`, in order.
    ///
    /// # Errors
    ///
    /// The server's refusal (`NotFound`, `InvalidArgument` for a bad time or filter),
    /// here or as the stream's last item.
    pub async fn read(&self, read: impl Into<proto::ReadRequest>) -> Result<ReadStream> {
        let req: proto::ReadRequest = read.into();
        let descriptor = FlightDescriptor::new_cmd(crate::encode_json(&req));
        let info = self.flight_client().get_flight_info(descriptor).await?;
        self.fetch_info(info)
    }

    /// The batches of a FlightInfo's endpoints (from [`Client::read`], or Flight SQL), in
    /// order, fetched `parallelism` at a time.
    pub(crate) fn fetch_info(&self, info: arrow_flight::FlightInfo) -> Result<ReadStream> {
        let total_records = u64::try_from(info.total_records).ok();
        let schema = std::sync::Arc::new(info.clone().try_decode_schema()?);
        let tickets: Vec<Ticket> = info
            .endpoint
            .into_iter()
            .map(|e| {
                e.ticket
                    .ok_or_else(|| Error::Protocol("an endpoint has no ticket".into()))
            })
            .collect::<Result<_>>()?;
        let client = self.clone();
        let batches = stream::iter(tickets)
            .map(move |ticket| futures::future::ready(client.do_get(ticket)))
            .buffered(self.parallelism)
            .flatten()
            .boxed();
        Ok(ReadStream {
            schema,
            total_records,
            batches,
        })
    }

    /// One `DoGet`, run by a task of its own that stays at most two batches ahead of the
    /// reader. The task ends (and the call is cancelled) when the stream is dropped.
    fn do_get(&self, ticket: Ticket) -> BoxStream<'static, Result<RecordBatch>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let mut flight = self.flight_client();
        // Owned by the stream below, which aborts it when dropped (`AbortOnDrop`).
        #[allow(clippy::disallowed_methods)]
        let task = tokio::spawn(async move {
            let mut batches = match flight.do_get(ticket).await {
                Ok(batches) => batches,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            while let Some(batch) = batches.next().await {
                let failed = batch.is_err();
                if tx.send(batch.map_err(Into::into)).await.is_err() || failed {
                    return;
                }
            }
        });
        let task = AbortOnDrop(Some(task));
        stream::unfold((rx, task), |(mut rx, mut task)| async move {
            match rx.recv().await {
                Some(batch) => Some((batch, (rx, task))),
                // The channel closed: the task ended. If it did not end by returning
                // (it panicked), that is an error, not a shorter read.
                None => match task.0.take()?.await {
                    Ok(()) => None,
                    Err(e) => Some((
                        Err(Error::Protocol(format!("the read's task failed: {e}"))),
                        (rx, task),
                    )),
                },
            }
        })
        .boxed()
    }
}

/// A task aborted when its stream is dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
