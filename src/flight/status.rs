//! The one place that maps engine errors to gRPC statuses.

use tonic::{Code, Status};
use tracing::error;

use crate::storage::Error;

/// The status a client sees for an engine error.
///
/// The user's mistakes keep their message; the server's own failures are logged in
/// full and reported as `INTERNAL` with the same text.
pub(crate) fn to_status(e: Error) -> Status {
    let code = match &e {
        Error::InvalidName { .. }
        | Error::InvalidArgument { .. }
        | Error::SchemaMismatch { .. }
        | Error::OrderingColumn { .. } => Code::InvalidArgument,
        Error::FailedPrecondition { .. } => Code::FailedPrecondition,
        Error::CollectionNotFound { .. }
        | Error::ItemNotFound { .. }
        | Error::VersionNotFound { .. }
        | Error::SnapshotNotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::CommitConflict { .. } => Code::Aborted,
        Error::Upload { source } => match source.downcast_ref::<Status>() {
            Some(s) => s.code(),
            None => Code::InvalidArgument,
        },
        _ => Code::Internal,
    };
    if code == Code::Internal {
        error!(error = %e, "internal error");
    }
    Status::new(code, e.to_string())
}

/// An `INVALID_ARGUMENT` status.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}
