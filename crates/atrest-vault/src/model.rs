//! The vault's data model, independent of HTTP: key types, operations, attributes,
//! public JWKs, bundles and pages. JSON shapes follow the AKV keys API
//! (`../shared/akv-keys-api.md`), so the HTTP layer can serialize these directly.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Base64url without padding (JOSE).
#[must_use]
pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url; accepts padding and the standard alphabet too (lenient on input).
///
/// # Errors
/// A message naming `what`.
pub fn b64u_decode(s: &str, what: &str) -> Result<Vec<u8>, crate::VaultError> {
    atrest_wire::b64::decode(s).ok_or_else(|| crate::VaultError::bad(format!("{what} is not valid base64url")))
}

/// Key types (`kty`) as stored. A request's `-HSM` variants are checked against the key
/// backend's capabilities (`VaultService::create_key`, `import_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kty {
    /// RSA.
    Rsa,
    /// Elliptic curve.
    Ec,
    /// Symmetric (AES).
    Oct,
}

impl Kty {
    /// JWK name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kty::Rsa => "RSA",
            Kty::Ec => "EC",
            Kty::Oct => "oct",
        }
    }

    /// Parses a JWK `kty`.
    ///
    /// # Errors
    /// `BadParameter` for unknown types.
    pub fn parse(s: &str) -> Result<Self, crate::VaultError> {
        match s {
            "RSA" => Ok(Kty::Rsa),
            "EC" => Ok(Kty::Ec),
            "oct" => Ok(Kty::Oct),
            other => Err(crate::VaultError::bad(format!(
                "unknown key type {other:?}: use RSA, EC or oct (RSA-HSM, EC-HSM or oct-HSM with an HSM backend)"
            ))),
        }
    }

    /// Operations a key of this type may be given.
    #[must_use]
    pub fn allowed_ops(self) -> &'static [&'static str] {
        match self {
            Kty::Rsa => &["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import"],
            Kty::Ec => &["sign", "verify"],
            Kty::Oct => &["encrypt", "decrypt", "wrapKey", "unwrapKey"],
        }
    }
}

/// Public half of a key as a JWK (no private members, ever).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicJwk {
    /// RSA modulus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// Attributes of a key version (AKV `attributes`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyAttributes {
    /// Usable at all.
    pub enabled: bool,
    /// Not before (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expires (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Created.
    pub created: i64,
    /// Last updated.
    pub updated: i64,
    /// Recovery level from the vault's settings.
    #[serde(rename = "recoveryLevel")]
    pub recovery_level: String,
    /// Soft-delete retention in days.
    #[serde(rename = "recoverableDays")]
    pub recoverable_days: i64,
}

/// A key version with its public half and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBundle {
    /// Key name as first created.
    pub name: String,
    /// Version id (32 lowercase hex).
    pub version: String,
    /// Type.
    pub kty: Kty,
    /// Permitted operations.
    pub key_ops: Vec<String>,
    /// Public JWK members.
    pub public: PublicJwk,
    /// Attributes.
    pub attributes: KeyAttributes,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A soft-deleted key (its latest version) and when it will be purged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedKey {
    /// The latest version as it was at deletion.
    pub key: KeyBundle,
    /// Deletion time.
    pub deleted_date: i64,
    /// When the sweeper purges it.
    pub scheduled_purge_date: i64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Opaque, URL-safe token for the next page, if any.
    pub next: Option<String>,
}

/// Largest page the API returns.
pub const MAX_PAGE: usize = 25;

/// Vault settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    /// Soft-delete retention, 7..=90 days.
    pub retention_days: i64,
    /// Once on, never off: purge before the scheduled date is refused.
    pub purge_protection: bool,
    /// Whether `RSA1_5` unwrap/decrypt is allowed (legacy clients only).
    pub allow_rsa1_5: bool,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self { retention_days: 90, purge_protection: false, allow_rsa1_5: false }
    }
}

impl VaultSettings {
    /// AKV `recoveryLevel` for these settings.
    #[must_use]
    pub fn recovery_level(&self) -> &'static str {
        match (self.purge_protection, self.retention_days < 90) {
            (true, false) => "Recoverable",
            (true, true) => "CustomizedRecoverable",
            (false, false) => "Recoverable+Purgeable",
            (false, true) => "CustomizedRecoverable+Purgeable",
        }
    }
}

/// A vault as stored (row verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultInfo {
    /// Stable id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name (the `NAME` in `https://NAME.domain`).
    pub name: String,
    /// Settings.
    pub settings: VaultSettings,
}

/// The `key_ops` of an import key (secure import, see `byok.rs`).
pub const IMPORT_OP: &str = "import";

/// Checks a key or vault name: `^[0-9a-zA-Z-]{1,127}$`.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), crate::VaultError> {
    if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(crate::VaultError::bad(format!(
            "invalid {what} name {name:?}: use 1 to 127 letters, digits and '-'"
        )));
    }
    Ok(())
}

/// A fresh 32-hex-character id (key versions, vault ids).
pub(crate) fn new_id() -> Result<String, crate::VaultError> {
    Ok(hex::encode(atrest_crypto::rand::bytes::<16>()?))
}

/// A secret version's attributes: the same shape as a key's (`enabled`, `nbf`, `exp`,
/// `created`, `updated`, `recoveryLevel`, `recoverableDays`).
pub type SecretAttributes = KeyAttributes;

/// A secret version as the API returns it. `value` is there only where the operation
/// releases it (set and get); it is never printed by `Debug`.
#[derive(Clone)]
pub struct SecretBundle {
    /// The secret's name as first set.
    pub name: String,
    /// This version's id (32 lowercase hex characters).
    pub version: String,
    /// The value, when released.
    pub value: Option<atrest_wire::akv::SecretText>,
    /// Free text set by the client (e.g. a MIME type).
    pub content_type: Option<String>,
    /// Attributes.
    pub attributes: SecretAttributes,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBundle")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &self.value.as_ref().map(|_| "[REDACTED]"))
            .field("content_type", &self.content_type)
            .field("attributes", &self.attributes)
            .field("tags", &self.tags)
            .finish()
    }
}

/// A soft-deleted secret: its latest version (never its value) and its dates.
#[derive(Debug, Clone)]
pub struct DeletedSecret {
    /// The latest version, without its value.
    pub secret: SecretBundle,
    /// When it was deleted.
    pub deleted_date: i64,
    /// When the purge sweeper erases it.
    pub scheduled_purge_date: i64,
}

/// A page size from `maxresults` (default and most: [`MAX_PAGE`]).
pub(crate) fn page_size(max: Option<usize>) -> Result<usize, crate::VaultError> {
    match max {
        None => Ok(MAX_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(crate::VaultError::bad("maxresults must be between 1 and 25")),
    }
}

/// The lowercase name a listing of names resumes after: its `$skiptoken` is the name in
/// hex (never `+`, which a client re-quoting the nextLink would turn into a space).
pub(crate) fn name_after(token: Option<&str>) -> Result<String, crate::VaultError> {
    let bad = || crate::VaultError::bad("invalid $skiptoken");
    match token {
        Some(t) => String::from_utf8(hex::decode(t).map_err(|_| bad())?).map_err(|_| bad()),
        None => Ok(String::new()),
    }
}

/// The version number a listing of versions resumes after (its `$skiptoken`).
pub(crate) fn seq_after(token: Option<&str>) -> Result<i64, crate::VaultError> {
    token.map_or(Ok(0), |t| t.parse().map_err(|_| crate::VaultError::bad("invalid $skiptoken")))
}
