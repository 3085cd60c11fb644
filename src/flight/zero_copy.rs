//! `DoGet` without copying column data on the way to the socket.
//!
//! The generated service encodes each `FlightData` twice in user space: arrow's IPC
//! writer copies the column buffers into one body `Vec`, then tonic's codec copies the
//! whole message into its frame buffer (PERF-NOTES.md, item 5: `memmove` was ~19% of the
//! server's time). Here `DoGet` is answered by a tower service in front of the
//! generated one, which writes the gRPC frames itself:
//!
//! ```text
//! ticket ─► FlightStore::read_batches ─► batches (≤ MAX_FLIGHT_DATA_BYTES slices)
//!        ─► arrow's StreamWriter into a ChunkSink: header bytes are copied (small);
//!           a write that lies inside one of the batch's buffers becomes a `Bytes`
//!           that shares that buffer (no copy)
//!        ─► per IPC message: gRPC prefix + FlightData fields 2 (data_header) and
//!           1000 (data_body) written by hand, body chunks as they are
//!        ─► HTTP/2 DATA frames (h2 writes large chunks with writev, uncopied)
//! ```
//!
//! Every other call, and items with dictionary columns (the stream format cannot resend
//! a dictionary; a multi-item read's `_item` keeps one and stays here), go through tonic
//! as before. Errors are the same statuses: before the
//! first frame as a trailers-only response, after it in the trailers, never a shorter
//! stream that looks complete.

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{ArrayData, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use arrow_flight::Ticket;
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::Status;

use super::read::dictionary_columns;
use super::{FlightStore, MAX_FLIGHT_DATA_BYTES};

/// The path of the `DoGet` call.
const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";
/// Largest `DoGet` request body read (a ticket).
const MAX_TICKET_BYTES: usize = 4 << 20;

/// A tower layer that answers `DoGet` with [`ZeroCopyDoGet`].
#[derive(Debug, Clone)]
pub struct ZeroCopyLayer {
    store: FlightStore,
}

impl ZeroCopyLayer {
    /// Answer `DoGet` from `store` (the same service the other calls reach).
    pub fn new(store: FlightStore) -> Self {
        Self { store }
    }
}

impl<S> tower_layer::Layer<S> for ZeroCopyLayer {
    type Service = ZeroCopyDoGet<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ZeroCopyDoGet {
            inner,
            store: self.store.clone(),
        }
    }
}

/// `DoGet` answered here, every other request passed to `inner`.
#[derive(Debug, Clone)]
pub struct ZeroCopyDoGet<S> {
    inner: S,
    store: FlightStore,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for ZeroCopyDoGet<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != DO_GET {
            let call = self.inner.call(req);
            return Box::pin(call);
        }
        let store = self.store.clone();
        Box::pin(async move { Ok(store.do_get_http(req).await) })
    }
}

impl FlightStore {
    /// Answer one `DoGet` request.
    async fn do_get_http(&self, req: http::Request<Body>) -> http::Response<Body> {
        let access = match super::access(req.extensions()) {
            Ok(access) => access,
            Err(status) => return status.into_http(),
        };
        let ticket = match read_ticket(req.into_body()).await {
            Ok(t) => t,
            Err(status) => return status.into_http(),
        };
        let reading = match self.read_batches(&access, ticket).await {
            Ok(read) => read,
            Err(e) => return Status::from(e).into_http(),
        };
        let (schema, batches) = (reading.schema, reading.batches);
        let frames = if !reading.fixed_dictionaries && dictionary_columns(&schema) > 0 {
            super::read::encode_frames(schema, batches)
                .map(|m| m.map(|m| vec![grpc_message(&m)]))
                .boxed()
        } else {
            ipc_frames(schema, batches)
        };
        let mut response = http::Response::new(Body::new(FrameBody::new(frames)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

/// The ticket of a unary gRPC request body.
async fn read_ticket(body: Body) -> Result<Ticket, Status> {
    let limited = http_body_util::Limited::new(body, MAX_TICKET_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("cannot read the DoGet request: {e}")))?
        .to_bytes();
    if bytes.len() < 5 {
        return Err(Status::invalid_argument(
            "the DoGet request holds no message",
        ));
    }
    if bytes[0] != 0 {
        return Err(Status::unimplemented(
            "compressed DoGet requests are not supported: send the ticket uncompressed",
        ));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    let message = bytes
        .get(5..5 + len)
        .ok_or_else(|| Status::invalid_argument("the DoGet request is cut short"))?;
    Ticket::decode(message)
        .map_err(|e| Status::invalid_argument(format!("the DoGet request is not a Ticket: {e}")))
}

/// One gRPC message as chunks that go out one after the other.
type Chunks = Vec<Bytes>;

/// The gRPC messages of a read: the schema, then each batch (split to at most
/// [`MAX_FLIGHT_DATA_BYTES`]), each an IPC message turned into a `FlightData`.
fn ipc_frames(
    schema: SchemaRef,
    batches: BoxStream<'static, Result<RecordBatch, Status>>,
) -> BoxStream<'static, Result<Chunks, Status>> {
    let start = (|| {
        let mut sink = ChunkSink::default();
        let writer = StreamWriter::try_new(sink.handle(), &schema).map_err(encode_error)?;
        let first = sink.take_messages()?;
        Ok::<_, Status>((sink, writer, first))
    })();
    let (sink, writer, first) = match start {
        Ok(s) => s,
        Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
    };
    let (mut sink, mut writer) = (sink, writer);
    let rest = batches.flat_map(move |b| {
        let messages = b.and_then(|b| {
            let mut out = Vec::new();
            for part in split(&b) {
                sink.register(&part);
                writer.write(&part).map_err(encode_error)?;
                out.extend(sink.take_messages()?);
            }
            Ok(out)
        });
        match messages {
            Ok(m) => futures::stream::iter(m.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    });
    futures::stream::iter(first.into_iter().map(Ok))
        .chain(rest)
        .boxed()
}

fn encode_error(e: arrow::error::ArrowError) -> Status {
    Status::internal(format!("cannot encode a batch: {e}"))
}

/// Slices of `batch` of at most about [`MAX_FLIGHT_DATA_BYTES`] each (zero-copy).
fn split(batch: &RecordBatch) -> Vec<RecordBatch> {
    let rows = batch.num_rows();
    let bytes = batch.get_array_memory_size().max(1);
    if bytes <= MAX_FLIGHT_DATA_BYTES || rows <= 1 {
        return vec![batch.clone()];
    }
    let per = (rows * MAX_FLIGHT_DATA_BYTES / bytes).max(1);
    (0..rows)
        .step_by(per)
        .map(|at| batch.slice(at, per.min(rows - at)))
        .collect()
}

/// What arrow's IPC writer writes, as chunks: bytes inside a registered Arrow buffer
/// are shared, anything else (message headers, padding, re-based offsets) is copied.
#[derive(Debug, Default)]
struct ChunkSink {
    shared: Arc<std::sync::Mutex<SinkState>>,
}

#[derive(Debug, Default)]
struct SinkState {
    /// Buffers of the batch being written.
    buffers: Vec<Buffer>,
    chunks: Vec<Bytes>,
    copied: BytesMut,
}

impl SinkState {
    fn flush_copied(&mut self) {
        if !self.copied.is_empty() {
            let copied = self.copied.split().freeze();
            self.chunks.push(copied);
        }
    }
}

/// An Arrow buffer as the owner of `Bytes` that share it.
struct Shared(Buffer);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// The `Write` half handed to the IPC writer.
#[derive(Debug)]
struct SinkHandle(Arc<std::sync::Mutex<SinkState>>);

impl Write for SinkHandle {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock().expect("sink poisoned");
        let start = data.as_ptr() as usize;
        let end = start + data.len();
        let inside = s.buffers.iter().find(|b| {
            let b_start = b.as_ptr() as usize;
            b_start <= start && end <= b_start + b.len()
        });
        match inside {
            Some(b) if data.len() >= 256 => {
                let at = start - b.as_ptr() as usize;
                let shared = Bytes::from_owner(Shared(b.clone())).slice(at..at + data.len());
                s.flush_copied();
                s.chunks.push(shared);
            }
            _ => s.copied.put_slice(data),
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChunkSink {
    fn handle(&self) -> SinkHandle {
        SinkHandle(Arc::clone(&self.shared))
    }

    /// Remember the buffers of `batch`: writes inside them are shared, not copied.
    fn register(&mut self, batch: &RecordBatch) {
        let mut s = self.shared.lock().expect("sink poisoned");
        s.buffers.clear();
        for column in batch.columns() {
            collect_buffers(&column.to_data(), &mut s.buffers);
        }
    }

    /// The complete IPC messages written so far, each as the chunks of one gRPC
    /// message holding a `FlightData`.
    fn take_messages(&mut self) -> Result<Vec<Chunks>, Status> {
        let mut s = self.shared.lock().expect("sink poisoned");
        s.flush_copied();
        let chunks = std::mem::take(&mut s.chunks);
        s.buffers.clear();
        drop(s);
        let mut stream = ChunkCursor::new(chunks);
        let mut out = Vec::new();
        while stream.remaining() > 0 {
            out.push(next_message(&mut stream)?);
        }
        Ok(out)
    }
}

fn collect_buffers(data: &ArrayData, out: &mut Vec<Buffer>) {
    if let Some(nulls) = data.nulls() {
        out.push(nulls.buffer().clone());
    }
    out.extend(data.buffers().iter().cloned());
    for child in data.child_data() {
        collect_buffers(child, out);
    }
}

/// One IPC stream message (`0xFFFFFFFF`, metadata length, metadata, body) as a gRPC
/// message holding a `FlightData` { data_header: metadata, data_body: body }.
fn next_message(stream: &mut ChunkCursor) -> Result<Chunks, Status> {
    let broken = || Status::internal("the IPC writer wrote a message that cannot be framed");
    let prefix = stream.take(8).ok_or_else(broken)?;
    let prefix = concat(&prefix);
    if prefix[..4] != [0xff; 4] {
        return Err(broken());
    }
    let meta_len = u32::from_le_bytes(prefix[4..8].try_into().expect("4 bytes")) as usize;
    let meta = concat(&stream.take(meta_len).ok_or_else(broken)?);
    let message = arrow::ipc::root_as_message(&meta).map_err(|_| broken())?;
    let body_len = usize::try_from(message.bodyLength()).map_err(|_| broken())?;
    let body = stream.take(body_len).ok_or_else(broken)?;

    // FlightData: field 2 (data_header, bytes), field 1000 (data_body, bytes).
    let mut head = BytesMut::with_capacity(32 + meta.len());
    let proto_len = 1 + varint_len(meta.len()) + meta.len() + 2 + varint_len(body_len) + body_len;
    head.put_u8(0); // not compressed
    head.put_u32(u32::try_from(proto_len).map_err(|_| broken())?);
    head.put_u8(0x12);
    put_varint(&mut head, meta.len());
    head.put_slice(&meta);
    head.put_slice(&[0xc2, 0x3e]);
    put_varint(&mut head, body_len);
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(head.freeze());
    out.extend(body);
    Ok(out)
}

/// A `FlightData` made by the standard encoder, as one gRPC message (copied once).
fn grpc_message(data: &arrow_flight::FlightData) -> Bytes {
    let len = data.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    data.encode(&mut out).expect("BytesMut grows");
    out.freeze()
}

fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [one] => one.clone(),
        many => Bytes::from(many.concat()),
    }
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut BytesMut, mut v: usize) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Chunks read front to back, split where a message ends (splits share, not copy).
struct ChunkCursor {
    chunks: std::collections::VecDeque<Bytes>,
}

impl ChunkCursor {
    fn new(chunks: Vec<Bytes>) -> Self {
        Self {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
        }
    }

    fn remaining(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// The next `n` bytes as chunks, or `None` if fewer are left.
    fn take(&mut self, mut n: usize) -> Option<Vec<Bytes>> {
        if self.remaining() < n {
            return None;
        }
        let mut out = Vec::new();
        while n > 0 {
            let mut front = self.chunks.pop_front()?;
            if front.len() > n {
                let rest = front.split_off(n);
                self.chunks.push_front(rest);
            }
            n -= front.len();
            out.push(front);
        }
        Some(out)
    }
}

/// The response body: the chunks of each message, then the status in the trailers.
struct FrameBody {
    messages: BoxStream<'static, Result<Chunks, Status>>,
    pending: std::collections::VecDeque<Bytes>,
    done: bool,
}

impl FrameBody {
    fn new(messages: BoxStream<'static, Result<Chunks, Status>>) -> Self {
        Self {
            messages,
            pending: Default::default(),
            done: false,
        }
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let status = match Pin::new(&mut self.messages).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunks))) => {
                    self.pending.extend(chunks);
                    continue;
                }
                Poll::Ready(Some(Err(status))) => status,
                Poll::Ready(None) => Status::ok(""),
            };
            self.done = true;
            let mut trailers = http::HeaderMap::new();
            if status.add_header(&mut trailers).is_err() {
                trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow_flight::decode::FlightRecordBatchStream;
    use arrow_flight::FlightData;

    /// Parse the gRPC messages of `chunks` back into `FlightData`.
    fn parse(chunks: Vec<Chunks>) -> Vec<FlightData> {
        chunks
            .into_iter()
            .map(|c| {
                let bytes = Bytes::from(c.concat());
                let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
                assert_eq!(bytes.len(), 5 + len, "one whole gRPC message");
                FlightData::decode(bytes.slice(5..)).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn frames_decode_to_the_same_batches_and_share_column_buffers() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let rows = 200_000i64;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0)),
                )),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| (i % 5 != 0).then(|| format!("s{}", i % 11))),
                )),
            ],
        )
        .unwrap();
        let batches = vec![Ok(batch.clone()), Ok(batch.slice(10, 1000))];
        let messages: Vec<Chunks> =
            ipc_frames(Arc::clone(&schema), futures::stream::iter(batches).boxed())
                .map(|m| m.unwrap())
                .collect()
                .await;
        // Large column chunks are shared with the batch, not copied.
        let ids = batch.column(0).to_data().buffers()[0].clone();
        let (lo, hi) = (ids.as_ptr() as usize, ids.as_ptr() as usize + ids.len());
        let shared = messages
            .iter()
            .flatten()
            .filter(|c| (lo..hi).contains(&(c.as_ptr() as usize)))
            .count();
        assert!(shared > 0, "no chunk points into the id column");

        let data = parse(messages);
        let decoded: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            futures::stream::iter(data.into_iter().map(Ok)),
        )
        .map(|b| b.unwrap())
        .collect()
        .await;
        let got = arrow::compute::concat_batches(&schema, &decoded).unwrap();
        let want = arrow::compute::concat_batches(&schema, &[batch.clone(), batch.slice(10, 1000)])
            .unwrap();
        assert_eq!(got, want);
        assert!(decoded.len() > 2, "the large batch was split");
    }
}
