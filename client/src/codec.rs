//! The one codec of the wire messages, for the server and every Rust client.
//!
//! Decoding accepts both forms of a message (DESIGN.md, "Wire contract"): a body whose
//! first non-blank byte is `{` is the JSON form, anything else is protobuf binary.
//! Encoding writes the JSON form, which leaves out absent optional fields and empty lists,
//! so tickets stay short and human-readable (pyarrow users print them).
//!
//! ```text
//!  JSON  {"collection": ..}  ──┐                      ┌── encode_json / ticket ──> JSON
//!                              ├── decode ──> message ┤
//!  protobuf binary  ───────────┘                      └── prost::Message::encode_to_vec ──> binary
//! ```
//!
//! In the JSON form a time is an integer (nanoseconds) or a string (ISO-8601), a
//! row-group target an integer (rows) or a string (a period), and a `metadata` field a
//! JSON object; in the binary form that field holds the object's JSON text.

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::proto::{self, row_group_target, time, RowGroupTarget, Time};

/// Decode a message from its JSON form or its protobuf binary.
///
/// # Errors
///
/// [`Error::InvalidJson`] (bad JSON, unknown field, wrong type: the message names it) or
/// [`Error::InvalidProtobuf`], depending on the form the body is in.
///
/// # Example
///
/// ```
/// use flightstore_client::{decode, proto::ReadRequest};
/// let json = br#"{"collection": "NASDAQ", "item": "AAPL", "start": "2024-01-01", "limit": 10}"#;
/// let req: ReadRequest = decode(json).unwrap();
/// assert_eq!(req.limit, Some(10));
/// ```
pub fn decode<T: prost::Message + Default + DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        // Protobuf whose first field is a string of 123 bytes starts `\n{` too: JSON
        // that does not parse gets a second reading as protobuf (a JSON text never
        // decodes as protobuf: `{` opens a group, which these messages do not have).
        Some(b'{') => serde_json::from_slice(bytes)
            .or_else(|source| T::decode(bytes).map_err(|_| Error::InvalidJson { source })),
        _ => T::decode(bytes).map_err(|source| Error::InvalidProtobuf { source }),
    }
}

/// A message with a JSON form: the messages a client sends, and `PutReceipt`.
///
/// Sealed: encoding these cannot fail, which is what lets [`encode_json`] return bytes.
pub trait JsonForm: Serialize + sealed::Sealed {}

mod sealed {
    /// Implemented for the messages of [`super::JsonForm`] only.
    pub trait Sealed {}
}

/// `impl JsonForm` for these messages of [`proto`].
macro_rules! json_forms {
    ($($message:ident),* $(,)?) => {
        $(
            impl sealed::Sealed for proto::$message {}
            impl JsonForm for proto::$message {}
        )*
    };
}

json_forms!(
    ReadRequest,
    WriteRequest,
    ListCriteria,
    Empty,
    CollectionRequest,
    ListItemsRequest,
    ItemRequest,
    DeleteRangeRequest,
    UpdateMetadataRequest,
    SnapshotRequest,
    VacuumRequest,
    MissingIntervalsRequest,
    ChangesSinceRequest,
    PutReceipt,
);

/// The JSON form of a message, without absent optional fields and empty lists;
/// [`decode`] reads it back to an equal message.
///
/// # Example
///
/// ```
/// use flightstore_client::{encode_json, proto::ItemRequest};
/// let body = encode_json(&ItemRequest { collection: "NASDAQ".into(), item: "AAPL".into() });
/// assert_eq!(body, br#"{"collection":"NASDAQ","item":"AAPL"}"#);
/// ```
pub fn encode_json<T: JsonForm>(msg: &T) -> Vec<u8> {
    // Cannot fail: these messages hold strings, integers, lists and objects with string
    // keys, and their `metadata` text is written as a string when it is not JSON.
    serde_json::to_vec(msg).expect("wire messages always serialize to JSON")
}

/// A `DoGet` ticket for a read: the JSON form of the `ReadRequest`.
///
/// Tickets are JSON, not binary, so that a ticket printed by a client (pyarrow users print
/// them) says what it reads.
///
/// # Example
///
/// ```
/// use flightstore_client::{proto::ReadRequest, ticket};
/// let req = ReadRequest {
///     collection: "NASDAQ".into(),
///     item: "AAPL".into(),
///     start: Some(1_704_067_200_000_000_000.into()),
///     version: Some(12),
///     ..Default::default()
/// };
/// assert_eq!(
///     ticket(&req),
///     br#"{"collection":"NASDAQ","item":"AAPL","start":1704067200000000000,"version":12}"#
/// );
/// ```
pub fn ticket(req: &proto::ReadRequest) -> Vec<u8> {
    encode_json(req)
}

impl Serialize for Time {
    /// Integer nanoseconds as a JSON integer, an ISO-8601 string as a string (`null` if
    /// neither is set).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Some(time::Value::Nanos(ns)) => s.serialize_i64(*ns),
            Some(time::Value::Iso(iso)) => s.serialize_str(iso),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    /// `"2024-01-01T00:00:00Z"` or `1704067200000000000`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Nanos(i64),
            Iso(String),
        }
        let value = match Form::deserialize(d)
            .map_err(|_| D::Error::custom("a time is an ISO-8601 string or integer nanoseconds"))?
        {
            Form::Nanos(n) => time::Value::Nanos(n),
            Form::Iso(s) => time::Value::Iso(s),
        };
        Ok(Time { value: Some(value) })
    }
}

impl Serialize for RowGroupTarget {
    /// A row count as a JSON integer, a period as a string (`null` if neither is set).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Some(row_group_target::Value::Rows(n)) => s.serialize_u64(*n),
            Some(row_group_target::Value::Period(p)) => s.serialize_str(p),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for RowGroupTarget {
    /// `1000000` (rows) or `"1D"` (a period).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Rows(u64),
            Period(String),
        }
        let value = match Form::deserialize(d).map_err(|_| {
            D::Error::custom("row_group_target is a row count or a period such as \"1D\"")
        })? {
            Form::Rows(n) => row_group_target::Value::Rows(n),
            Form::Period(s) => row_group_target::Value::Period(s),
        };
        Ok(RowGroupTarget { value: Some(value) })
    }
}

/// Write JSON text as the JSON value it holds; text that is not JSON as a string, which
/// [`decode`] then rejects as it would any non-object (never a failed encoding).
fn serialize_json_text<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => value.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

/// serde `with` module of the optional `metadata` fields: a JSON object in the JSON form,
/// its JSON text in the message.
pub(crate) mod optional_json_object_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match text {
            Some(text) => super::serialize_json_text(text, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let object = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)?;
        Ok(object.map(|m| serde_json::Value::Object(m).to_string()))
    }
}

/// serde `with` module of the required `metadata` fields: a JSON object in the JSON
/// form, its JSON text in the message (absent: empty text, which the server rejects).
pub(crate) mod json_object_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_json_text(text, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        Ok(serde_json::Value::Object(object).to_string())
    }
}

/// `skip_serializing_if` of repeated and map fields: left out when empty.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[cfg(test)]
mod tests;
