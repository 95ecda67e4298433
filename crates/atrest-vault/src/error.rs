//! Vault errors: typed, with stable machine codes (the AKV `error.code` values) and
//! messages that say what to do next. Each front end maps [`VaultError::kind`] to its wire format.

use atrest_crypto::CryptoError;
use atrest_infra::ErrorKind;

/// Why an operation was refused although the caller may be authorized in general.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key version is disabled.
    KeyDisabled,
    /// The secret version is disabled (its value is not released).
    SecretDisabled,
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
            Refusal::SecretDisabled => "SecretDisabled",
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
    /// No such secret, secret version or deleted secret.
    #[error("{0}")]
    SecretNotFound(String),
    /// The name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The name is soft-deleted: recover or purge it first.
    #[error("{0}")]
    DeletedButRecoverable(String),
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
        VaultError::Storage(atrest_infra::describe_db_error(&e))
    }
}

impl From<atrest_infra::InfraError> for VaultError {
    fn from(e: atrest_infra::InfraError) -> Self {
        use atrest_infra::InfraError as I;
        match e {
            I::BadParameter(m) => VaultError::BadParameter(m),
            I::Integrity { what } => VaultError::Integrity { what },
            I::Storage(m) => VaultError::Storage(m),
            I::Crypto(c) => VaultError::Crypto(c),
        }
    }
}

impl VaultError {
    /// Stable machine code (AKV `error.code`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::BadParameter(_) => "BadParameter",
            VaultError::NotFound(_) => "KeyNotFound",
            VaultError::SecretNotFound(_) => "SecretNotFound",
            VaultError::Conflict(_) | VaultError::DeletedButRecoverable(_) => "Conflict",
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
            VaultError::NotFound(_) | VaultError::SecretNotFound(_) => ErrorKind::NotFound,
            VaultError::Conflict(_) | VaultError::DeletedButRecoverable(_) => ErrorKind::Conflict,
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

    /// The AKV `innererror.code` of this error, where it has one.
    #[must_use]
    pub fn inner_code(&self) -> Option<&'static str> {
        match self {
            VaultError::Forbidden { reason, .. } => Some(reason.code()),
            VaultError::DeletedButRecoverable(_) => Some("ObjectIsDeletedButRecoverable"),
            _ => None,
        }
    }

    pub(crate) fn secret_not_found(name: &str) -> Self {
        VaultError::SecretNotFound(format!("A secret with (name/id) {name} was not found in this key vault."))
    }

    /// A refusal with a message that says what to do.
    pub fn forbidden(reason: Refusal, message: impl Into<String>) -> Self {
        VaultError::Forbidden { reason, message: message.into() }
    }
}

/// Result alias.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;
