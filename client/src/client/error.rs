//! The client's errors: one variant per gRPC code the server answers with (carrying the
//! server's message), and the client-side failures (connecting, a bad reply, the
//! caller's own upload stream).

use arrow_flight::error::FlightError;
use tonic::Code;

/// An error of a [`Client`](crate::Client) call.
///
/// The server's refusals are matched by code:
///
/// ```
/// use flightstore_client::Error;
/// let e = Error::from(tonic::Status::not_found("item \"AAPL\" not found"));
/// assert!(matches!(e, Error::NotFound(_)));
/// assert_eq!(e.code(), tonic::Code::NotFound);
/// assert_eq!(e.to_string(), "not found: item \"AAPL\" not found");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `NOT_FOUND`: unknown collection, item, snapshot or version.
    #[error("not found: {0}")]
    NotFound(String),
    /// `INVALID_ARGUMENT`: a bad name, request, time, schema or upload.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `ALREADY_EXISTS`: `create` of an existing item.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// `FAILED_PRECONDITION`: the request contradicts the item's settings.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// `ABORTED`: a commit lost a race after its retries; retrying is safe.
    #[error("aborted: {0}")]
    Aborted(String),
    /// `UNAUTHENTICATED`: no, bad or expired credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// `PERMISSION_DENIED`: the credentials' grants do not cover the call.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// `RESOURCE_EXHAUSTED`: a limit (calls, uploads, message size, disk space).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// `DEADLINE_EXCEEDED`: a call or an idle upload ran past the server's limit.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// `UNAVAILABLE`: the server cannot be reached (or is shutting down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// `INTERNAL`: the server failed; its log has the details.
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other gRPC code.
    #[error("{code:?}: {message}")]
    Status {
        /// The code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// The URL or a TLS file is not usable, or the connection could not be made.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL as given.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server's reply is not what the protocol says (a bug on one side).
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
    /// The caller's upload stream failed; nothing was committed.
    #[error("the upload's input failed: {0}")]
    Input(String),
    /// Arrow could not encode or decode a batch.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A request the client built does not encode (a bad time, for example).
    #[error(transparent)]
    Wire(#[from] crate::error::Error),
}

impl Error {
    /// The gRPC code this error is (client-side failures: `UNKNOWN`, or `UNAVAILABLE` for
    /// a failed connection, `INVALID_ARGUMENT` for a bad request).
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::InvalidArgument(_) | Error::Wire(_) => Code::InvalidArgument,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unavailable(_) | Error::Connect { .. } => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
            Error::Status { code, .. } => *code,
            Error::Protocol(_) | Error::Input(_) | Error::Arrow(_) => Code::Unknown,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_string();
        match status.code() {
            Code::NotFound => Error::NotFound(message),
            // The server's engine says "invalid argument: ..." itself: say it once.
            Code::InvalidArgument => Error::InvalidArgument(
                message
                    .strip_prefix("invalid argument: ")
                    .map_or(message.clone(), str::to_string),
            ),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::Aborted => Error::Aborted(message),
            Code::Unauthenticated => Error::Unauthenticated(message),
            Code::PermissionDenied => Error::PermissionDenied(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::Internal => Error::Internal(message),
            code => Error::Status { code, message },
        }
    }
}

impl From<FlightError> for Error {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => Error::from(*status),
            FlightError::Arrow(e) => Error::Arrow(e),
            FlightError::ExternalError(e) => Error::Input(e.to_string()),
            other => Error::Protocol(other.to_string()),
        }
    }
}

impl From<Error> for FlightError {
    /// For a read's stream passed on as an upload (a copy from one server to another).
    fn from(e: Error) -> Self {
        FlightError::ExternalError(Box::new(e))
    }
}

/// A result whose error is the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
