//! Errors of the data service core, with stable codes.

/// Errors of the key hierarchy and the layers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The vault refused or could not be reached: the resource's data cannot be opened.
    #[error("KeyInaccessible: the vault refused {operation} for key {key}: {reason}; {fix}")]
    KeyInaccessible {
        /// The key, as a URI or vault/name.
        key: String,
        /// wrapKey, unwrapKey or get.
        operation: String,
        /// What the vault said.
        reason: String,
        /// What to do.
        fix: String,
    },
    /// A stored object, wrapped key or its metadata was modified or moved.
    #[error("IntegrityCheckFailed: {0} does not open: it was modified, truncated or moved from another object")]
    Integrity(String),
    /// The crypto core failed.
    #[error("{0}")]
    Crypto(#[from] atrest_crypto::CryptoError),
}

impl StoreError {
    /// Stable machine code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::KeyInaccessible { .. } => "KeyInaccessible",
            StoreError::Integrity(_) => "IntegrityCheckFailed",
            StoreError::Crypto(_) => "CryptoError",
        }
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
