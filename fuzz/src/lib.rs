//! What the fuzz targets run, shared with the seed generator (`examples/seeds.rs`) and the
//! replay tests (`tests/replay.rs`, which run every checked-in corpus and regression input
//! through these on stable, without cargo-fuzz).
//!
//! Each `check_*` function takes untrusted bytes the way the server receives them and runs
//! them through the decoders the server calls. Decoding may fail (that is an
//! `INVALID_ARGUMENT` for the client); it must never panic. Where the wire contract
//! promises a property (a message reads back from its encodings, a formatted time parses
//! back), the check asserts it too.
//!
//! | target    | bytes are                                   | decoders                                    |
//! |-----------|---------------------------------------------|---------------------------------------------|
//! | `ticket`  | a `DoGet` ticket                            | `decode::<ReadRequest>`, times              |
//! | `command` | a `FlightDescriptor.cmd` / ListFlights criteria | `decode` of ReadRequest, WriteRequest, ListCriteria |
//! | `action`  | a `DoAction` body                           | `decode` of every action's message          |
//! | `time`    | a time string (or 8 bytes of nanoseconds)   | `parse_time`, `format_time`                 |
//! | `do_put`  | a `DoPut` request stream on the wire        | prost `FlightData`, arrow-flight `FlightDataDecoder` (Arrow IPC) |

use std::fmt::Debug;

use flightstore_client::codec::JsonForm;
use flightstore_client::proto;
use flightstore_client::time::{format_time, optional_time, parse_time, required_time};
use flightstore_client::{decode, encode_json};
use serde::de::DeserializeOwned;

pub mod do_put;

/// The form `decode` reads `bytes` in: JSON if the first non-blank byte is `{`.
pub fn is_json_form(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A request message: decodable by `flightstore_client::decode`, with a JSON form.
pub trait Wire: prost::Message + Default + DeserializeOwned + JsonForm + PartialEq + Debug {
    /// What the server does with a decoded message that is pure (no storage): its times,
    /// its metadata text. Must not panic.
    fn server_checks(&self) {}
}

/// Decode `bytes` as a `T` as the server does; on success, check its encodings read back.
pub fn check_message<T: Wire>(bytes: &[u8]) -> Option<T> {
    let msg = decode::<T>(bytes).ok()?;
    msg.server_checks();

    // The JSON form (what `ticket` and `encode_json` write) never fails to encode, and
    // `decode` reads it back to an equal message (its doc promises it). A message that came
    // in as protobuf may hold what JSON cannot say (a `Time` with neither form, `metadata`
    // text that is not a JSON object): then the round trip is only required not to panic.
    let json = encode_json(&msg);
    assert!(is_json_form(&json), "encode_json wrote no JSON object: {json:?}");
    let back = decode::<T>(&json);
    // Came in as JSON (a body that starts like JSON but is not is read as protobuf).
    if is_json_form(bytes) && serde_json::from_slice::<T>(bytes).is_ok() {
        let back = back.unwrap_or_else(|e| {
            panic!(
                "the JSON form of {msg:?} does not decode: {e}\njson: {}",
                String::from_utf8_lossy(&json)
            )
        });
        assert_eq!(back, msg, "JSON round trip changed the message");
    }

    // The protobuf form reads back, also when it starts like JSON (after ASCII blanks,
    // `{`: field 1 a string of exactly 123 or 10 bytes): `decode` reads it as protobuf
    // once it is not JSON (a finding of these targets, fixed). Only protobuf bytes that
    // are themselves a JSON object of the message (`\n\n{}` + 8 blanks: field 1 =
    // "{}        ") read as JSON: the sniffing rule's one ambiguity, left as it is.
    let binary = msg.encode_to_vec();
    if !(is_json_form(&binary) && serde_json::from_slice::<T>(&binary).is_ok()) {
        match decode::<T>(&binary) {
            Ok(back) => assert_eq!(back, msg, "protobuf round trip changed the message"),
            Err(e) => panic!("the protobuf form of {msg:?} does not decode: {e}"),
        }
    }
    Some(msg)
}

/// A time field: converts without panicking; a parsed ISO string formats and parses back.
fn check_time(t: Option<&proto::Time>, field: &'static str) {
    let _ = optional_time(t);
    if let Ok(ns) = required_time(t, field) {
        assert_eq!(parse_time(&format_time(ns)).ok(), Some(ns), "{field}: {t:?}");
    }
}

/// A `metadata` text as the server reads it (`request::object`): any JSON value.
fn check_metadata(text: Option<&str>) {
    if let Some(text) = text {
        let _ = serde_json::from_str::<serde_json::Value>(text);
    }
}

impl Wire for proto::ReadRequest {
    fn server_checks(&self) {
        check_time(self.start.as_ref(), "start");
        check_time(self.end.as_ref(), "end");
    }
}

impl Wire for proto::WriteRequest {
    fn server_checks(&self) {
        check_time(self.start.as_ref(), "start");
        check_time(self.end.as_ref(), "end");
        check_metadata(self.metadata.as_deref());
    }
}

impl Wire for proto::ListCriteria {
    fn server_checks(&self) {
        check_metadata(self.metadata.as_deref());
    }
}

impl Wire for proto::Empty {}
impl Wire for proto::CollectionRequest {}
impl Wire for proto::ItemRequest {}
impl Wire for proto::SnapshotRequest {}
impl Wire for proto::VacuumRequest {}

impl Wire for proto::ListItemsRequest {
    fn server_checks(&self) {
        check_metadata(self.metadata.as_deref());
    }
}

impl Wire for proto::DeleteRangeRequest {
    fn server_checks(&self) {
        check_time(self.start.as_ref(), "start");
        check_time(self.end.as_ref(), "end");
    }
}

impl Wire for proto::UpdateMetadataRequest {
    fn server_checks(&self) {
        check_metadata(Some(&self.metadata));
    }
}

impl Wire for proto::MissingIntervalsRequest {
    fn server_checks(&self) {
        check_time(self.start.as_ref(), "start");
        check_time(self.end.as_ref(), "end");
    }
}

impl Wire for proto::ChangesSinceRequest {
    fn server_checks(&self) {
        check_time(self.since.as_ref(), "since");
    }
}

/// `DoGet`: a ticket is a `ReadRequest` (JSON from `ticket`, or protobuf).
pub fn check_ticket(bytes: &[u8]) {
    check_message::<proto::ReadRequest>(bytes);
}

/// A command descriptor: `ReadRequest` (GetFlightInfo, GetSchema), `WriteRequest`
/// (DoPut); and the `ListFlights` criteria, which are decoded the same way.
pub fn check_command(bytes: &[u8]) {
    check_message::<proto::ReadRequest>(bytes);
    check_message::<proto::WriteRequest>(bytes);
    check_message::<proto::ListCriteria>(bytes);
}

/// A `DoAction` body, as each action's message (`src/flight/actions.rs`: a blank body
/// is `{}`).
pub fn check_action(body: &[u8]) {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    check_message::<proto::Empty>(body);
    check_message::<proto::CollectionRequest>(body);
    check_message::<proto::ListItemsRequest>(body);
    check_message::<proto::ItemRequest>(body);
    check_message::<proto::DeleteRangeRequest>(body);
    check_message::<proto::UpdateMetadataRequest>(body);
    check_message::<proto::SnapshotRequest>(body);
    check_message::<proto::VacuumRequest>(body);
    check_message::<proto::MissingIntervalsRequest>(body);
    check_message::<proto::ChangesSinceRequest>(body);
}

/// A time string: `parse_time` never panics, and what it parses formats and parses back.
/// The first 8 bytes are also taken as nanoseconds: `format_time` of any `i64` parses back.
pub fn check_time_text(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(ns) = parse_time(text) {
            let formatted = format_time(ns);
            assert_eq!(parse_time(&formatted).ok(), Some(ns), "{text:?} -> {formatted}");
        }
        // The same string as a JSON time and as a protobuf `Time.iso`.
        let time = proto::Time {
            value: Some(proto::time::Value::Iso(text.to_string())),
        };
        check_time(Some(&time), "time");
    }
    if let Some(head) = bytes.get(..8) {
        let ns = i64::from_le_bytes(head.try_into().expect("8 bytes"));
        assert_eq!(parse_time(&format_time(ns)).ok(), Some(ns), "{ns}");
    }
}
