//! `DoPut` streams: the bytes of the request body on the wire, decoded as the server
//! does (`src/flight/do_put.rs`, `open_upload`).
//!
//! ```text
//! fuzz bytes = gRPC frames:  [compressed: u8][length: u32 BE][FlightData protobuf] ...
//!      │  tonic: each frame a prost FlightData (an error ends the stream)
//!      ▼
//! first message: its descriptor (a cmd is decoded as a WriteRequest); alone if empty
//!      │
//!      ▼  arrow_flight::decode::FlightDataDecoder (Arrow IPC: schema, dictionaries, batches)
//! the schema first, then the record batches, until the end or the first error
//! ```
//!
//! Malformed Arrow IPC must give an error, never a panic; and a batch the decoder
//! returns must be valid (`ArrayData::validate_full`), since the engine trusts it.
//!
//! One exception, so that CI stays green on what we cannot fix here and still catches
//! the rest: arrow 59.3 (what the server is pinned to) panics on many malformed IPC
//! messages (a 60 s run finds several; some fixed upstream after 59.3, see
//! [`KNOWN_UPSTREAM_PANICS`]). A panic raised inside the arrow crates
//! ([`TOLERATED_CRATES`]) is tolerated and reported on stderr once per source line as
//! `upstream panic`; one anywhere else (this crate's checks: an invalid batch returned as
//! valid; the client codec) is a crash, as is any ASan error, hang or OOM.
//! `FLIGHTSTORE_FUZZ_STRICT=1` turns the tolerance off, to hunt the arrow panics
//! themselves. Shrink the list once the server is on an arrow with the fixes.

use arrow_array::{Array, RecordBatch};
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::FlightData;
use bytes::Bytes;
use futures::{executor::block_on, stream, StreamExt};
use prost::Message;
use std::cell::Cell;
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, Once};

/// The most frames read from one input (the fuzzer's inputs are small anyway).
const MAX_FRAMES: usize = 64;

/// Split a gRPC request body into its messages as tonic does: a frame that is compressed
/// (none is negotiated), truncated or not a `FlightData` ends the stream with an error.
pub fn frames(bytes: &[u8]) -> Vec<Result<FlightData, FlightError>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() && out.len() < MAX_FRAMES {
        let Some((&[compressed, a, b, c, d], tail)) = rest.split_first_chunk::<5>() else {
            out.push(Err(FlightError::protocol("truncated frame header")));
            break;
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if compressed != 0 {
            out.push(Err(FlightError::protocol("compressed frame")));
            break;
        }
        let Some(payload) = tail.get(..len) else {
            out.push(Err(FlightError::protocol("truncated frame")));
            break;
        };
        match FlightData::decode(Bytes::copy_from_slice(payload)) {
            Ok(data) => out.push(Ok(data)),
            Err(e) => {
                out.push(Err(FlightError::DecodeError(e.to_string())));
                break;
            }
        }
        rest = &tail[len..];
    }
    out
}

/// Frame messages as a gRPC request body (the inverse of [`frames`], for seeds).
pub fn frame(messages: &[FlightData]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let payload = m.encode_to_vec();
        out.push(0);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

/// A decoded batch must be valid: the engine (and Parquet, DataFusion) rely on it.
fn check_batch(batch: &RecordBatch) {
    assert_eq!(batch.num_columns(), batch.schema().fields().len());
    for column in batch.columns() {
        assert_eq!(column.len(), batch.num_rows());
        if let Err(e) = column.to_data().validate_full() {
            panic!("the decoder returned an invalid array: {e}\n{column:?}");
        }
    }
}

/// A panic of the arrow the server uses on malformed input: where it is raised, and
/// why it is tolerated.
#[derive(Debug)]
pub struct KnownPanic {
    /// The crate folder in the path of the panicking source file, e.g. `/arrow-ipc-`.
    pub krate: &'static str,
    /// The end of that path.
    pub file: &'static str,
    /// The start of the panic message (empty: any).
    pub message: &'static str,
    /// The upstream issue.
    pub issue: &'static str,
}

/// The arrow 59.3 panics on malformed IPC that the fuzzer found and that match an
/// upstream issue (for the report; all of [`TOLERATED_CRATES`] is tolerated).
pub const KNOWN_UPSTREAM_PANICS: &[KnownPanic] = &[
    KnownPanic {
        // `fb_to_schema`: `fb.fields().unwrap()` on a Schema message without `fields`, and
        // the `panic!` / `unimplemented!` / `unwrap` of `get_data_type` on bad types.
        krate: "/arrow-ipc-",
        file: "/src/convert.rs",
        message: "",
        issue: "arrow-ipc 59.3 schema conversion panics on malformed schema messages: \
                apache/arrow-rs#10575 and #10437, fixed by apache/arrow-rs#10647 (after 59.3)",
    },
    KnownPanic {
        // `reader::read_buffer` slices the body at a buffer's offset and length from the
        // RecordBatch / DictionaryBatch header without checking them against the body.
        krate: "/arrow-buffer-",
        file: "/src/buffer/immutable.rs",
        message: "the offset of the new Buffer cannot exceed the existing length",
        issue: "arrow-ipc 59.3 read_buffer panics on a buffer outside the message body \
                (Buffer::slice_with_length assert); no upstream issue found",
    },
    KnownPanic {
        // `ArrayDataBuilder::build` makes the validity `BooleanBuffer` (which asserts its
        // size) before validating, so a short validity buffer panics.
        krate: "/arrow-buffer-",
        file: "/src/buffer/boolean.rs",
        message: "buffer not large enough",
        issue: "ArrayDataBuilder::build panics on an undersized validity buffer: \
                apache/arrow-rs#7124, fixed by apache/arrow-rs#11044 (after 59.3)",
    },
    KnownPanic {
        // `read_dictionary_impl`: `batch.data().unwrap()` on a DictionaryBatch without data.
        krate: "/arrow-ipc-",
        file: "/src/reader.rs",
        message: "called `Option::unwrap()` on a `None` value",
        issue: "arrow-ipc 59.3 panics on a DictionaryBatch without data: apache/arrow-rs#11019",
    },
];

/// The crates (source folders) whose panics on malformed IPC are tolerated.
pub const TOLERATED_CRATES: &[&str] = &[
    "/arrow-ipc-",
    "/arrow-buffer-",
    "/arrow-data-",
    "/arrow-array-",
    "/arrow-schema-",
    "/flatbuffers-",
];

/// What a panic raised in `file` with `message` is, if it is tolerated: the known
/// upstream issue, or a generic note.
fn known_upstream_panic(file: &str, message: &str) -> Option<&'static str> {
    let known = KNOWN_UPSTREAM_PANICS
        .iter()
        .find(|k| file.contains(k.krate) && file.ends_with(k.file) && message.starts_with(k.message));
    match known {
        Some(k) => Some(k.issue),
        None if TOLERATED_CRATES.iter().any(|c| file.contains(c)) => {
            Some("an arrow 59.3 panic on malformed IPC (no upstream issue matched)")
        }
        None => None,
    }
}

thread_local! {
    /// Inside `tolerate`.
    static TOLERATING: Cell<bool> = const { Cell::new(false) };
    /// The hook let the last panic unwind as a known upstream one.
    static TOLERATED: Cell<bool> = const { Cell::new(false) };
}

/// Install (once) a panic hook in front of libFuzzer's (which aborts): a known upstream
/// panic raised while `tolerate` runs unwinds to it instead, reported once per location.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let strict = std::env::var_os("FLIGHTSTORE_FUZZ_STRICT").is_some_and(|v| v == "1");
        let seen: Mutex<HashSet<String>> = Mutex::default();
        let next = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().unwrap_or("");
            let known = info
                .location()
                .and_then(|l| known_upstream_panic(l.file(), message).map(|issue| (l, issue)));
            match known {
                Some((location, issue)) if !strict && TOLERATING.with(Cell::get) => {
                    TOLERATED.with(|t| t.set(true));
                    let at = location.to_string();
                    if seen.lock().map(|mut s| s.insert(at.clone())).unwrap_or(false) {
                        eprintln!("upstream panic at {at} (tolerated): {message}: {issue}");
                    }
                }
                _ => next(info),
            }
        }));
    });
}

/// Run `f`; a known upstream panic is `None`, any other panic goes on (a crash).
fn tolerate<T>(f: impl FnOnce() -> T) -> Option<T> {
    install_hook();
    TOLERATING.with(|t| t.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    TOLERATING.with(|t| t.set(false));
    match result {
        Ok(value) => Some(value),
        // Under libFuzzer only a known panic gets here (libFuzzer's hook aborts on any
        // other); elsewhere (the replay tests) any other is raised again.
        Err(_) if TOLERATED.with(|t| t.replace(false)) => None,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// Decode a `DoPut` request body as the server does; the number of batches decoded
/// (0 also when a known upstream panic was tolerated).
pub fn check_do_put(bytes: &[u8]) -> usize {
    tolerate(|| decode_do_put(bytes)).unwrap_or(0)
}

fn decode_do_put(bytes: &[u8]) -> usize {
    let mut messages = frames(bytes).into_iter();
    let Some(Ok(first)) = messages.next() else {
        return 0;
    };
    let Some(descriptor) = first.flight_descriptor.clone() else {
        return 0;
    };
    if descriptor.r#type() == DescriptorType::Cmd {
        crate::check_message::<flightstore_client::proto::WriteRequest>(&descriptor.cmd);
    }
    let descriptor_only = first.data_header.is_empty() && first.data_body.is_empty();
    let first = (!descriptor_only).then_some(Ok(first));
    let rest: Vec<_> = messages.collect();
    let decoder = FlightDataDecoder::new(stream::iter(first.into_iter().chain(rest)));
    block_on(drain(decoder))
}

async fn drain(mut decoder: FlightDataDecoder) -> usize {
    match decoder.next().await {
        Some(Ok(d)) => match d.payload {
            DecodedPayload::Schema(_) => {}
            _ => return 0,
        },
        _ => return 0,
    }
    let mut batches = 0;
    while let Some(next) = decoder.next().await {
        match next {
            Ok(d) => {
                if let DecodedPayload::RecordBatch(b) = d.payload {
                    check_batch(&b);
                    batches += 1;
                }
            }
            Err(_) => break,
        }
    }
    batches
}
