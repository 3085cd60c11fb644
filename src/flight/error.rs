//! Errors of the Flight layer, and the one place that turns any error into a gRPC status.
//!
//! [`From<Error> for Status`] is an exhaustive match (no catch-all arm): a new error
//! variant, here or in storage, must be given its code. A client's mistake is logged at
//! `info`, a server fault at `warn`, once, here; messages are bounded in length.

use arrow::error::ArrowError;
use tonic::{Code, Status};
use tracing::{info, warn};

use crate::{auth, sql, storage};

/// Longest message a status carries (a schema mismatch of a wide table can be long).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 4096;

/// A result of the Flight layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong serving a Flight call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused or failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),

    /// SQL that does not plan, or fails running.
    #[error(transparent)]
    Sql(#[from] sql::Error),

    /// A command, ticket or action body that does not decode (JSON or protobuf), or holds
    /// a bad time.
    #[error("{what}: {source}")]
    BadMessage {
        /// Which message (`ticket (ReadRequest)`, `create_snapshot body`, ...).
        what: String,
        /// What the codec found wrong.
        #[source]
        source: flightstore_client::WireError,
    },

    /// A path descriptor that is not `[collection, item, ...]`.
    #[error("a path descriptor is [collection, item, ...]: at least two segments, got {segments}")]
    BadPath {
        /// How many segments it had.
        segments: usize,
    },

    /// A descriptor with neither a path nor a command.
    #[error("{call}: the descriptor has no type (use a path or a command)")]
    UntypedDescriptor {
        /// The call it was sent with.
        call: &'static str,
    },

    /// A `DoPut` stream that does not start with a descriptor and a schema.
    #[error("DoPut: {problem}")]
    BadUploadStart {
        /// What is missing or wrong.
        problem: String,
    },

    /// Two fields of a request that exclude each other were both given.
    #[error("{first} and {second} exclude each other")]
    Exclusive {
        /// One field.
        first: &'static str,
        /// The other.
        second: &'static str,
    },

    /// A field that must hold a JSON object does not.
    #[error("{field} must be a JSON object")]
    NotAnObject {
        /// The field (`metadata`).
        field: &'static str,
    },

    /// A setting with a value it cannot take.
    #[error("{field}: {message}")]
    BadSetting {
        /// The setting (`keep`, `schema_evolution`, `mode`).
        field: &'static str,
        /// The accepted values.
        message: String,
    },

    /// A Flight SQL message that does not decode.
    #[error("{type_url}: not a Flight SQL message that decodes")]
    UnknownSqlCommand {
        /// Its type URL.
        type_url: String,
    },

    /// A Flight SQL command this server does not serve in this call.
    #[error("{command} is not supported here: {hint}")]
    UnsupportedSqlCommand {
        /// The command's type URL.
        command: String,
        /// What to use instead.
        hint: &'static str,
    },

    /// An action the server does not have.
    #[error("unknown action {action:?}; actions: {known}")]
    UnknownAction {
        /// The action asked for.
        action: String,
        /// The actions there are.
        known: String,
    },

    /// The transport of an upload failed (the client cancelled or went away, or a message
    /// was too large): its own status, code included.
    #[error("upload failed: {}", .0.message())]
    Transport(Box<Status>),

    /// A limit of the server is reached.
    #[error("the server is serving its limit of {what} at once ({flag}): retry later")]
    TooMany {
        /// What is limited.
        what: &'static str,
        /// The flag that sets the limit.
        flag: &'static str,
    },

    /// A call its caller may not make.
    #[error(transparent)]
    Denied(#[from] Box<auth::Denied>),

    /// A call without valid credentials.
    #[error(transparent)]
    Unauthenticated(#[from] auth::Unauthenticated),

    /// A call Flightstore does not serve.
    #[error("{call} is not supported: {hint}")]
    Unimplemented {
        /// The call.
        call: &'static str,
        /// What to use instead.
        hint: &'static str,
    },

    /// A schema or batch could not be encoded for the wire.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: ArrowError,
    },
}

impl Error {
    /// Shorthand for [`Error::BadMessage`].
    pub(crate) fn bad_message(
        what: impl Into<String>,
        source: flightstore_client::WireError,
    ) -> Self {
        Self::BadMessage {
            what: what.into(),
            source,
        }
    }

    /// The status code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::Storage(e) => storage_code(e),
            Self::Sql(e) => sql_code(e),
            Self::BadMessage { .. }
            | Self::BadPath { .. }
            | Self::UntypedDescriptor { .. }
            | Self::BadUploadStart { .. }
            | Self::Exclusive { .. }
            | Self::NotAnObject { .. }
            | Self::BadSetting { .. }
            | Self::UnknownAction { .. }
            | Self::UnknownSqlCommand { .. } => Code::InvalidArgument,
            Self::Transport(status) => {
                transport(Status::new(status.code(), status.message())).code()
            }
            Self::Denied(_) => Code::PermissionDenied,
            Self::TooMany { .. } => Code::ResourceExhausted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Unimplemented { .. } | Self::UnsupportedSqlCommand { .. } => Code::Unimplemented,
            Self::Encode { .. } => Code::Internal,
        }
    }
}

/// The status code of an engine error.
fn storage_code(e: &storage::Error) -> Code {
    use storage::Error as E;
    if disk_full(e) {
        return Code::ResourceExhausted;
    }
    match e {
        E::InvalidName { .. }
        | E::InvalidArgument { .. }
        | E::SchemaMismatch { .. }
        | E::OrderingColumn { .. }
        | E::Validation { .. }
        | E::Upload { .. } => Code::InvalidArgument,
        E::FailedPrecondition { .. } => Code::FailedPrecondition,
        E::CollectionNotFound { .. }
        | E::ItemNotFound { .. }
        | E::VersionNotFound { .. }
        | E::SnapshotNotFound { .. } => Code::NotFound,
        E::AlreadyExists { .. } => Code::AlreadyExists,
        E::CommitConflict { .. } => Code::Aborted,
        E::Busy { .. } => Code::ResourceExhausted,
        E::Corrupt { .. }
        | E::ObjectStore(_)
        | E::Parquet(_)
        | E::Arrow(_)
        | E::TaskFailed { .. }
        | E::Io { .. }
        | E::Wal { .. } => Code::Internal,
    }
}

/// Whether `e` comes from a full disk (`ENOSPC`): a resource exhausted, not a fault.
fn disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                return true;
            }
        }
        cause = e.source();
    }
    // Some layers keep only the text of the cause.
    e.to_string().contains("No space left on device")
}

/// The status code of a SQL error.
fn sql_code(e: &sql::Error) -> Code {
    use sql::Error as E;
    match e {
        E::Storage(e) => storage_code(e),
        E::Denied(_) => Code::PermissionDenied,
        E::Invalid(_) | E::Unqualified { .. } | E::Unsupported { .. } => Code::InvalidArgument,
        E::ResourcesExhausted(_) => Code::ResourceExhausted,
        E::Internal(_) => Code::Internal,
    }
}

/// `message`, cut to at most `max` bytes at a character boundary.
fn bounded(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max.saturating_sub(3);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// A transport status as the client gets it: a message over the size limit (which
/// tonic reports as `OUT_OF_RANGE`) is a limit reached, `RESOURCE_EXHAUSTED`.
fn transport(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().contains("too large") {
        return Status::resource_exhausted(format!(
            "{} (the server's --max-message-mb; send smaller batches)",
            status.message()
        ));
    }
    status
}

// Errors travel through every call; keep them cheap to move.
const _: () = assert!(std::mem::size_of::<Error>() <= 96);

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = e.code();
        match code {
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => {
                warn!(code = ?code, error = %e, "server fault")
            }
            _ => info!(code = ?code, error = %e, "request refused"),
        }
        if let Error::Transport(status) = e {
            return transport(*status);
        }
        Status::new(code, bounded(e.to_string(), MAX_STATUS_MESSAGE_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded() {
        let long = Error::Storage(storage::Error::SchemaMismatch {
            collection: "c".into(),
            item: "i".into(),
            message: "é".repeat(10_000),
        });
        let status = Status::from(long);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() <= MAX_STATUS_MESSAGE_BYTES);
        assert!(status.message().ends_with("..."));
    }

    #[test]
    fn an_upload_keeps_its_transport_status() {
        let e = Error::Transport(Box::new(Status::cancelled("gone")));
        assert_eq!(Status::from(e).code(), Code::Cancelled);
    }
}
