//! Errors of the data service, with stable codes and a protocol-free `ErrorKind`.

use atrest_vault::{ErrorKind, VaultError};

/// Errors of the data service.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The vault refused or could not be reached: the resource's data cannot be opened.
    #[error("the vault refused {operation} for key {key}: {reason}; {fix}")]
    KeyInaccessible {
        /// The key, as a URI or vault/name.
        key: String,
        /// wrapKey, unwrapKey or get.
        operation: String,
        /// What the vault said.
        reason: String,
        /// What to do.
        fix: String,
        /// The vault could not be reached (as opposed to refusing): cached keys stay
        /// usable for the grace period.
        transient: bool,
    },
    /// A stored object, wrapped key or its metadata was modified or moved.
    #[error("{0} does not open: it was modified, truncated or moved from another object")]
    Integrity(String),
    /// Nothing by that name (or outside the caller's tenant).
    #[error("{0}")]
    NotFound(String),
    /// The resource exists, the object in it does not (front ends that tell the two
    /// apart, such as S3's `NoSuchKey` and `NoSuchBucket`, use this).
    #[error("{0}")]
    ObjectNotFound(String),
    /// An object under a customer-provided key (SSE-C) was asked for without the key.
    #[error("{0}")]
    CustomerKeyRequired(String),
    /// The name is taken, or the state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` / `If-None-Match` did not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// The caller lacks a role on the resource.
    #[error("{0}")]
    Forbidden(String),
    /// A byte range outside the blob (`RangeNotSatisfiable`, with the blob's size).
    #[error("{message}")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
        /// What was asked and what to ask instead.
        message: String,
    },
    /// A customer key cannot be used for this resource; the message says what to fix.
    #[error("{0}")]
    KeyRejected(String),
    /// The vault failed for another reason.
    #[error("{0}")]
    Vault(#[from] VaultError),
    /// The database or blob storage failed.
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// The crypto core failed.
    #[error("{0}")]
    Crypto(#[from] atrest_crypto::CryptoError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Storage(atrest_infra::describe_db_error(&e))
    }
}

impl From<atrest_infra::InfraError> for StoreError {
    fn from(e: atrest_infra::InfraError) -> Self {
        use atrest_infra::InfraError as I;
        match e {
            I::BadParameter(m) => StoreError::BadRequest(m),
            I::Integrity { what } => StoreError::Integrity(what),
            I::Storage(m) => StoreError::Storage(m),
            I::Crypto(c) => StoreError::Crypto(c),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Storage(e.to_string())
    }
}

impl StoreError {
    /// Stable machine code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::KeyInaccessible { .. } => "KeyInaccessible",
            StoreError::Integrity(_) => "IntegrityCheckFailed",
            StoreError::NotFound(_) | StoreError::ObjectNotFound(_) => "NotFound",
            StoreError::Conflict(_) => "Conflict",
            StoreError::PreconditionFailed(_) => "PreconditionFailed",
            StoreError::BadRequest(_) => "BadParameter",
            StoreError::CustomerKeyRequired(_) => "CustomerKeyRequired",
            StoreError::Forbidden(_) => "Forbidden",
            StoreError::KeyRejected(_) => "CustomerKeyRejected",
            StoreError::RangeNotSatisfiable { .. } => "InvalidRange",
            StoreError::Vault(e) => e.code(),
            StoreError::Storage(_) => "ServiceUnavailable",
            StoreError::Crypto(_) => "CryptoError",
        }
    }

    /// What kind of failure this is; each front end maps kinds to its own wire format.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::KeyInaccessible { .. } | StoreError::Forbidden(_) => ErrorKind::Forbidden,
            StoreError::Integrity(_) => ErrorKind::Corrupted,
            StoreError::Crypto(
                atrest_crypto::CryptoError::Integrity | atrest_crypto::CryptoError::CommitmentMismatch,
            ) => ErrorKind::Corrupted,
            StoreError::Crypto(_) => ErrorKind::Internal,
            StoreError::NotFound(_) | StoreError::ObjectNotFound(_) => ErrorKind::NotFound,
            StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            StoreError::RangeNotSatisfiable { .. } => ErrorKind::RangeNotSatisfiable,
            StoreError::BadRequest(_) | StoreError::KeyRejected(_) | StoreError::CustomerKeyRequired(_) => {
                ErrorKind::InvalidInput
            }
            StoreError::Vault(e) => e.kind(),
            StoreError::Storage(_) => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn bad(m: impl Into<String>) -> Self {
        StoreError::BadRequest(m.into())
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn messages_do_not_repeat_their_code() {
        let e = StoreError::KeyInaccessible {
            key: "https://v/keys/k".into(),
            operation: "unwrapKey".into(),
            reason: "disabled".into(),
            fix: "enable it".into(),
            transient: false,
        };
        assert_eq!(e.code(), "KeyInaccessible");
        assert!(!e.to_string().contains("KeyInaccessible"), "{e}");
        let e = StoreError::Integrity("the body of blob b".into());
        assert!(!e.to_string().contains(e.code()), "{e}");
    }
}
