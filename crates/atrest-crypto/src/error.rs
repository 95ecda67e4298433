//! One error type for the crypto core, with stable machine codes.
//!
//! Messages never contain key material, plaintext or ciphertext bytes. Failures that
//! an attacker could use as an oracle (RSA decryption, key unwrap, AEAD open) are
//! deliberately uniform: one variant, one message, whatever went wrong inside.

use atrest_format::FormatError;

/// Errors of the crypto core.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The bytes are not a valid header or length for the format.
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The key commitment in the header does not match the key and context given.
    #[error(
        "key commitment mismatch: this object was sealed under a different data key or context, or its header was modified"
    )]
    CommitmentMismatch,
    /// Authentication failed: the ciphertext, its header, or its position was changed.
    #[error("integrity check failed: the data was modified, truncated, reordered or moved")]
    Integrity,
    /// Decryption or unwrap of a key-wrapping ciphertext failed (uniform on purpose).
    #[error("decryption failed")]
    Decrypt,
    /// Stored key material did not open under its own identity: modified, moved between
    /// keys, or sealed under another root key. A fault of the storage, never of the
    /// caller's input, so key backends report it apart.
    #[error("stored key material failed its integrity check (modified, moved, or sealed under another root key)")]
    StoredKeyIntegrity,
    /// A key was refused (wrong length, malformed encoding, unsupported size).
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// An argument was refused before any cryptography ran.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The algorithm or parameter is not offered by this build.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A usage limit of the format or key was reached (segments, object size).
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// The underlying library failed without detail (e.g. key generation).
    #[error("cryptographic operation failed: {0}")]
    Internal(&'static str),
    /// I/O of a stream adapter.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CryptoError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::Format(_) => "FormatInvalid",
            CryptoError::CommitmentMismatch => "KeyCommitmentMismatch",
            CryptoError::Integrity => "IntegrityCheckFailed",
            CryptoError::Decrypt => "DecryptionFailed",
            CryptoError::StoredKeyIntegrity => "StoredKeyIntegrityFailed",
            CryptoError::InvalidKey(_) => "InvalidKey",
            CryptoError::InvalidInput(_) => "InvalidInput",
            CryptoError::Unsupported(_) => "Unsupported",
            CryptoError::LimitExceeded(_) => "LimitExceeded",
            CryptoError::Internal(_) => "CryptoInternal",
            CryptoError::Io(_) => "IoError",
        }
    }

    /// Converts to an `io::Error` for the `Read`/`Write` adapters; the original error is
    /// kept as the source so callers can downcast to it.
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            CryptoError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// Result alias for the crypto core.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
