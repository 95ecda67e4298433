//! Errors of the shared infrastructure, and the protocol-free error kinds.

/// Errors of the database, row-MAC and lease code.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// A setting is wrong (e.g. a database URL); the message says what to fix.
    #[error("{0}")]
    BadParameter(String),
    /// A row failed its MAC: edited or moved outside atrest.
    #[error("integrity check failed: {what} was modified or moved outside atrest")]
    Integrity {
        /// The row, by its identifiers (never secrets).
        what: String,
    },
    /// The database failed or is unreachable; the message says so and what to do.
    #[error("{0}")]
    Storage(String),
    /// The crypto core failed.
    #[error("{0}")]
    Crypto(#[from] atrest_crypto::CryptoError),
}

impl From<sqlx::Error> for InfraError {
    fn from(e: sqlx::Error) -> Self {
        InfraError::Storage(describe_db_error(&e))
    }
}

/// Result alias.
pub type Result<T, E = InfraError> = std::result::Result<T, E>;

/// A database error as users should read it: an unreachable database says so and what
/// to do. (sqlx messages name tables and constraints, never bound values.)
#[must_use]
pub fn describe_db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => format!(
            "the database is unreachable or every connection is busy ({e}); committed data is safe: retry when it is back"
        ),
        sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            format!("the database is unreachable ({e}); committed data is safe: retry when it is back")
        }
        e => e.to_string(),
    }
}

/// The kind of a failure, free of any protocol: the core crates classify their errors
/// with it, and each front end (AKV, admin, data, S3, …) maps it to its own status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; the message says how.
    InvalidInput,
    /// Nothing by that name (or not visible to the caller).
    NotFound,
    /// The name is taken, or the state does not allow it.
    Conflict,
    /// A precondition the caller set (`If-Match`…) does not hold.
    PreconditionFailed,
    /// A byte range outside the object.
    RangeNotSatisfiable,
    /// The caller may not do this.
    Forbidden,
    /// No valid credential.
    Unauthenticated,
    /// Stored state failed its integrity check.
    Corrupted,
    /// A backend (database, blob store, vault) is unavailable; retry later.
    Unavailable,
    /// A fault of the service itself.
    Internal,
}
