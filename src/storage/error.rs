//! Errors of the storage engine.
//!
//! Every variant says what was wrong in terms the user can act on; the Flight layer maps
//! each variant to exactly one gRPC status code (see `flight::error`).

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// A result of the storage engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A collection or item name that is not allowed (it could escape the root, or is empty).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// A request argument that is malformed or inconsistent (bad time, bad period, ...).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A row of the upload breaks one of the item's validation rules.
    #[error("validation failed: {message}")]
    Validation {
        /// The rule, the column and the first offending row (index and value).
        message: String,
    },

    /// The uploaded data does not fit the item's schema under its evolution policy.
    #[error("schema mismatch for {collection}/{item}: {message}")]
    SchemaMismatch {
        /// Collection of the item.
        collection: String,
        /// Item name.
        item: String,
        /// Which columns differ and how.
        message: String,
    },

    /// The ordering column is missing from the data, has an unsupported type, or holds nulls.
    #[error("ordering column {column:?}: {message}")]
    OrderingColumn {
        /// The ordering column name.
        column: String,
        /// What is wrong with it.
        message: String,
    },

    /// A write would change a setting that is fixed for the item's lifetime.
    #[error("{collection}/{item}: {message}")]
    FailedPrecondition {
        /// Collection of the item.
        collection: String,
        /// Item name.
        item: String,
        /// Which setting conflicts.
        message: String,
    },

    /// The collection does not exist.
    #[error("collection {collection:?} not found")]
    CollectionNotFound {
        /// Collection name.
        collection: String,
    },

    /// The item does not exist (or was deleted).
    #[error("item {collection}/{item} not found")]
    ItemNotFound {
        /// Collection name.
        collection: String,
        /// Item name.
        item: String,
    },

    /// The requested version of an item does not exist (never did, or was vacuumed).
    #[error("version {version} of {collection}/{item} not found")]
    VersionNotFound {
        /// Collection name.
        collection: String,
        /// Item name.
        item: String,
        /// The version asked for.
        version: u64,
    },

    /// The snapshot does not exist, or does not hold the item.
    #[error("snapshot {snapshot:?} of collection {collection:?} not found{detail}")]
    SnapshotNotFound {
        /// Collection name.
        collection: String,
        /// Snapshot name.
        snapshot: String,
        /// Extra context (e.g. the item it does not hold), may be empty.
        detail: String,
    },

    /// Something that must not exist already exists (`create` mode, a snapshot name, ...).
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists, e.g. `item NASDAQ/AAPL`.
        what: String,
    },

    /// A commit lost the race against other writers more often than the retry budget allows.
    #[error("commit to {collection}/{item} conflicted {attempts} times with concurrent writers; retry the write")]
    CommitConflict {
        /// Collection name.
        collection: String,
        /// Item name.
        item: String,
        /// How many attempts were made.
        attempts: u32,
    },

    /// The upload stream failed (undecodable data, client went away): nothing was
    /// committed. The Flight layer keeps the transport's own status beside it.
    #[error("upload failed: {message}")]
    Upload {
        /// What the transport or decoder reported.
        message: String,
    },

    /// The server is at a limit (the upload memory budget) and the request waited for it
    /// longer than allowed; nothing was changed.
    #[error("server busy: {message}; retry later")]
    Busy {
        /// Which limit and how long the request waited.
        message: String,
    },

    /// A stored file could not be read back as expected (corrupt manifest, missing file).
    #[error("corrupt store at {path}: {message}")]
    Corrupt {
        /// Object path.
        path: String,
        /// What was wrong.
        message: String,
    },

    /// The underlying object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),

    /// An Arrow kernel failed.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),

    /// An engine task panicked or was cancelled (details in the server log).
    #[error("{task} task failed: {message}")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// The panic message.
        message: String,
    },

    /// The write-ahead log failed (writing, syncing or reading it back).
    #[error("write-ahead log: {message}")]
    Wal {
        /// What went wrong.
        message: String,
    },

    /// A local I/O call failed outside the object store (starting threads, runtimes,
    /// spooling a batch write).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub(crate) fn corrupt(path: impl ToString, message: impl ToString) -> Self {
        Self::Corrupt {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

// Errors travel through every stream; keep them cheap to move.
const _: () = assert!(std::mem::size_of::<Error>() <= 80);
