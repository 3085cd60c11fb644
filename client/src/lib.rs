//! Flightstore wire messages, generated from `proto/flightstore.proto`, and the one rule
//! for decoding them: a body whose first non-blank byte is `{` is the JSON form (see
//! DESIGN.md, "Wire contract"), anything else is protobuf binary.
//!
//! ```
//! use flightstore_client::{decode, proto::ReadRequest};
//! let json = br#"{"collection": "NASDAQ", "item": "AAPL", "start": "2024-01-01", "limit": 10}"#;
//! let req: ReadRequest = decode(json).unwrap();
//! assert_eq!(req.limit, Some(10));
//! ```

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

/// The generated messages (package `flightstore.v1`).
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/flightstore.v1.rs"));
}

use proto::{row_group_target, time, RowGroupTarget, Time};

/// Decode a message from its JSON form or protobuf binary.
///
/// The error says which form was tried and what was wrong (unknown field, bad type...).
pub fn decode<T: prost::Message + Default + DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}")),
        _ => T::decode(bytes).map_err(|e| format!("invalid protobuf message: {e}")),
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

/// An optional JSON object, kept as its JSON text (the binary form of `metadata` fields).
fn json_object_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? {
        None => Ok(None),
        Some(m) => Ok(Some(serde_json::Value::Object(m).to_string())),
    }
}

/// A JSON object, kept as its JSON text (absent: empty text, which the server rejects).
fn required_json_object_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let m = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    Ok(serde_json::Value::Object(m).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use proto::*;

    #[test]
    fn json_and_binary_forms_decode_to_the_same_message() {
        let json = br#"{"collection": "c", "item": "a/b", "start": "2024-01-01T00:00:00Z",
            "end": 1706745600000000000, "columns": ["ts"], "limit": 5, "snapshot": "s"}"#;
        let from_json: ReadRequest = decode(json).unwrap();
        assert_eq!(
            from_json.end.as_ref().unwrap().value,
            Some(time::Value::Nanos(1706745600000000000))
        );
        assert_eq!(
            from_json.start.as_ref().unwrap().value,
            Some(time::Value::Iso("2024-01-01T00:00:00Z".into()))
        );
        let from_binary: ReadRequest = decode(&from_json.encode_to_vec()).unwrap();
        assert_eq!(from_json, from_binary);
    }

    #[test]
    fn unknown_fields_and_bad_types_are_errors() {
        let err =
            decode::<ReadRequest>(br#"{"collection": "c", "item": "i", "limt": 5}"#).unwrap_err();
        assert!(err.contains("limt"), "{err}");
        let err = decode::<ReadRequest>(br#"{"collection": "c", "start": [1]}"#).unwrap_err();
        assert!(err.contains("ISO-8601"), "{err}");
        assert!(decode::<ReadRequest>(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn metadata_objects_travel_as_json_text() {
        let w: WriteRequest = decode(br#"{"collection": "c", "item": "i", "metadata": {"a": null}, "row_group_target": "1D"}"#).unwrap();
        assert_eq!(w.metadata.as_deref(), Some(r#"{"a":null}"#));
        assert_eq!(
            w.row_group_target.unwrap().value,
            Some(row_group_target::Value::Period("1D".into()))
        );
        assert!(decode::<UpdateMetadataRequest>(
            br#"{"collection": "c", "item": "i", "metadata": [1]}"#
        )
        .is_err());
    }
}
