//! The errors of the wire protocol: a message that does not decode, a time that does not
//! parse.
//!
//! Each variant carries what its message needs to tell the caller what was wrong and what
//! to do. All of them are caller mistakes: the server answers them with
//! `INVALID_ARGUMENT`.

/// An error of the wire protocol.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A body that starts with `{` is not the JSON form of the expected message: bad JSON,
    /// an unknown field (the message names it), a value of the wrong type.
    #[error("invalid JSON: {source}")]
    InvalidJson {
        /// serde_json's error, with the field and the position.
        #[source]
        source: serde_json::Error,
    },

    /// A body that does not start with `{` is not the protobuf binary of the expected
    /// message.
    #[error("invalid protobuf message: {source}")]
    InvalidProtobuf {
        /// prost's error.
        #[source]
        source: prost::DecodeError,
    },

    /// A time string that is neither ISO-8601 nor integer nanoseconds.
    #[error(
        "bad time {input:?}: expected ISO-8601 (e.g. \"2024-01-01T00:00:00Z\") or integer nanoseconds"
    )]
    InvalidTime {
        /// The string as given (trimmed).
        input: String,
    },

    /// A valid ISO-8601 time that nanoseconds since the epoch in an `i64` cannot hold.
    #[error("time {input:?} is outside 1677..2262 (the range of i64 nanoseconds)")]
    TimeOutOfRange {
        /// The string as given (trimmed).
        input: String,
    },

    /// A required time field is absent.
    #[error("{field} is required (an ISO-8601 string or integer nanoseconds)")]
    MissingTime {
        /// The field's name, e.g. `"start"`.
        field: &'static str,
    },

    /// A `Time` message with neither of its forms set (possible in protobuf binary only).
    #[error("a time holds neither integer nanoseconds nor an ISO-8601 string")]
    EmptyTime,
}

/// A result whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

// Results of every decode carry it: box a large payload rather than grow this.
const _: () = assert!(std::mem::size_of::<Error>() <= 64);
