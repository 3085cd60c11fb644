//! Errors of the SQL layer. DataFusion's errors are sorted by whose fault they are: the
//! engine's own errors travel inside them (`DataFusionError::External`) and come back out
//! here with their kind, so an unknown item is still "not found".

use datafusion::error::DataFusionError;

use crate::auth;
use crate::storage;

/// A result of the SQL layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong planning or running SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused or failed (an unknown item, a bad range, a failed read).
    #[error(transparent)]
    Storage(#[from] storage::Error),

    /// The SQL does not parse or plan, or fails on its data (a bad cast): the caller's.
    #[error("{0}")]
    Invalid(Box<DataFusionError>),

    /// The query needs more memory than `--sql-memory-mb` allows, even spilling.
    #[error("{0}")]
    ResourcesExhausted(Box<DataFusionError>),

    /// DataFusion failed where the query was fine.
    #[error("{0}")]
    Internal(Box<DataFusionError>),

    /// A table named without its collection.
    #[error("table {table:?} needs its collection (schema): {hint}")]
    Unqualified {
        /// The name as written.
        table: String,
        /// Where it is, or how to name it.
        hint: String,
    },

    /// A table the caller may not read, or write to.
    #[error(transparent)]
    Denied(#[from] Box<auth::Denied>),

    /// A statement or clause Flightstore does not run.
    #[error("{what} is not supported: {hint}")]
    Unsupported {
        /// What was asked.
        what: String,
        /// What is supported.
        hint: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Unsupported`].
    pub(crate) fn unsupported(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Unsupported {
            what: what.into(),
            hint: hint.into(),
        }
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<storage::Error>() {
                Ok(storage) => Self::Storage(*storage),
                Err(inner) => match inner.downcast::<Error>() {
                    Ok(sql) => *sql,
                    Err(inner) => Self::Internal(Box::new(DataFusionError::External(inner))),
                },
            },
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                Self::from(*inner)
            }
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Self::from(inner),
                // Still shared (a join's build side fails every probe): sort by reference.
                Err(shared) => {
                    let exhausted = matches!(root(&shared), DataFusionError::ResourcesExhausted(_));
                    let e = Box::new(DataFusionError::Shared(shared));
                    if exhausted {
                        Self::ResourcesExhausted(e)
                    } else {
                        Self::Internal(e)
                    }
                }
            },
            DataFusionError::ResourcesExhausted(_) => Self::ResourcesExhausted(Box::new(e)),
            DataFusionError::Internal(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::ExecutionJoin(_) => Self::Internal(Box::new(e)),
            _ => Self::Invalid(Box::new(e)),
        }
    }
}

/// The innermost error of wrappers (context, diagnostics, sharing).
fn root(e: &DataFusionError) -> &DataFusionError {
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => root(inner),
        DataFusionError::Shared(inner) => root(inner),
        other => other,
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(e) | Error::ResourcesExhausted(e) | Error::Internal(e) => *e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// An engine error as DataFusion's (it comes back out with its kind, see above).
pub(crate) fn external(e: storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
