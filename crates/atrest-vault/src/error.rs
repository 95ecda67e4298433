//! Vault errors: typed, with stable machine codes (the AKV `error.code` values) and
//! messages that say what to do next. The HTTP layer maps [`VaultError::status`] once.

use atrest_crypto::CryptoError;

/// Why an operation was refused although the caller may be authorized in general.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key version is disabled.
    KeyDisabled,
    /// The operation is not in the key's `key_ops`.
    KeyOperationForbidden,
    /// The key is past `exp` (wrap, encrypt and sign are refused).
    KeyExpired,
    /// The key is before `nbf`.
    KeyNotYetValid,
    /// Purge before the scheduled date under purge protection.
    PurgeProtected,
    /// A usage limit of the key was reached (A256GCM encryptions).
    UsageLimitReached,
    /// The caller holds no permission for the operation on this vault.
    AccessDenied,
    /// An administrative change by a principal that does not administer the tenant.
    NotAdmin,
    /// A token for (or a principal named like) a data-service resource identity: only
    /// the data service acts as one.
    DataServiceIdentity,
}

impl Refusal {
    /// The AKV `innererror.code`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Refusal::KeyDisabled => "KeyDisabled",
            Refusal::KeyOperationForbidden => "KeyOperationForbidden",
            Refusal::KeyExpired => "KeyExpired",
            Refusal::KeyNotYetValid => "KeyNotYetValid",
            Refusal::PurgeProtected => "PurgeProtectionEnabled",
            Refusal::UsageLimitReached => "KeyUsageLimitReached",
            Refusal::AccessDenied => "AccessDenied",
            Refusal::NotAdmin => "AdminRoleRequired",
            Refusal::DataServiceIdentity => "DataServiceIdentity",
        }
    }
}

/// Errors of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The request is malformed or names something unsupported.
    #[error("{0}")]
    BadParameter(String),
    /// No such key, version, deleted key or vault.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or soft-deleted.
    #[error("{0}")]
    Conflict(String),
    /// Refused by the key's state or the vault's settings.
    #[error("{message}")]
    Forbidden {
        /// Stable reason.
        reason: Refusal,
        /// What happened and what to do.
        message: String,
    },
    /// No valid credential (missing, unknown, expired, revoked, or its principal disabled).
    #[error("{0}")]
    Unauthenticated(String),
    /// A stored row failed its integrity check: the database was modified outside atrest.
    #[error(
        "integrity check failed for stored {what}: the database was modified outside atrest; \
         the operation was refused (restore the row from a backup or investigate)"
    )]
    Integrity {
        /// Which row (table and key, never secret values).
        what: String,
    },
    /// A cryptographic failure (authentication of a ciphertext, bad key material).
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The database failed.
    #[error("storage error: {0}")]
    Storage(String),
}

impl From<sqlx::Error> for VaultError {
    fn from(e: sqlx::Error) -> Self {
        VaultError::Storage(describe_db_error(&e))
    }
}

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

impl VaultError {
    /// Stable machine code (AKV `error.code`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::BadParameter(_) => "BadParameter",
            VaultError::NotFound(_) => "KeyNotFound",
            VaultError::Conflict(_) => "Conflict",
            VaultError::Forbidden { .. } => "Forbidden",
            VaultError::Unauthenticated(_) => "Unauthorized",
            VaultError::Integrity { .. } => "IntegrityCheckFailed",
            VaultError::Crypto(_) => "BadParameter",
            VaultError::Storage(_) => "ServiceUnavailable",
        }
    }

    /// What kind of failure this is; each front end maps kinds to its own wire format.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            VaultError::BadParameter(_) => ErrorKind::InvalidInput,
            VaultError::Crypto(atrest_crypto::CryptoError::Internal(_)) => ErrorKind::Internal,
            VaultError::Crypto(_) => ErrorKind::InvalidInput,
            VaultError::NotFound(_) => ErrorKind::NotFound,
            VaultError::Conflict(_) => ErrorKind::Conflict,
            VaultError::Forbidden { .. } => ErrorKind::Forbidden,
            VaultError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            VaultError::Integrity { .. } => ErrorKind::Corrupted,
            VaultError::Storage(_) => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        VaultError::BadParameter(msg.into())
    }

    pub(crate) fn key_not_found(name: &str) -> Self {
        VaultError::NotFound(format!("A key with (name/id) {name} was not found in this key vault."))
    }

    /// A refusal with a message that says what to do.
    pub fn forbidden(reason: Refusal, message: impl Into<String>) -> Self {
        VaultError::Forbidden { reason, message: message.into() }
    }
}

/// Result alias.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;

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
