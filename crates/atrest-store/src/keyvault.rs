//! The one seam through which the data service reaches a vault: wrap and unwrap a
//! resource key with a key-encryption key, as the resource's identity. One
//! implementation per kind of vault: [`InProcessVault`] here, `HttpVault` (a vault on
//! another server, over HTTPS) in `remote.rs`; both run `keyvault_conformance`. The
//! data service gets them from a [`VaultClients`] injected at open.

use crate::error::{Result, StoreError};
use atrest_crypto::{SecretBytes, SecretKey};
use atrest_vault::model::{KeyBundle, Kty, VaultInfo};
use atrest_vault::{KeyOp, OpInput, Principal, Refusal, VaultError, VaultService};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Makes the vault clients the data service talks to (one seam, injected at open): this
/// deployment's vault as a resource's identity, and a vault on another server reached
/// with a credential. `DeploymentClients` (in `clients.rs`) is the deployment's.
pub trait VaultClients: Send + Sync {
    /// This deployment's vault, acting as `identity` for `resource`.
    fn local(&self, identity: Principal, resource: &str) -> Box<dyn KeyVault>;

    /// The vault at `key_uri`'s origin on another server, with a bearer `credential`.
    ///
    /// # Errors
    /// A URI that is not a key URI.
    fn remote(&self, key_uri: &str, credential: SecretBytes) -> Result<Box<dyn KeyVault>>;
}

/// A boxed future (the trait is used as `dyn KeyVault`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key-encryption key: a vault, a key name, and a version (`None` = follow the latest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Vault name.
    pub vault: String,
    /// Key name.
    pub name: String,
    /// Pinned version, or `None` for the latest.
    pub version: Option<String>,
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}/keys/{}/{v}", self.vault, self.name),
            None => write!(f, "{}/keys/{}", self.vault, self.name),
        }
    }
}

/// A resource key wrapped by a vault key, with the exact version that wrapped it (so
/// unwrapping never depends on what "latest" means later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key version that wrapped it.
    pub version: String,
    /// The algorithm used (`RSA-OAEP-256` or `A256KW`).
    pub alg: String,
    /// The wrapped bytes.
    pub bytes: Vec<u8>,
}

/// What the data service needs to know about a key-encryption key version (from `get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The version `get` returned (the latest, for a versionless reference).
    pub version: String,
    /// `RSA`, `EC` or `oct` (an `-HSM` suffix is dropped).
    pub kty: String,
    /// RSA modulus bits, or 256 for oct; 0 when unknown.
    pub size_bits: u32,
    /// Enabled.
    pub enabled: bool,
    /// Not before.
    pub nbf: Option<i64>,
    /// Expiry.
    pub exp: Option<i64>,
    /// AKV `recoveryLevel`: `Recoverable` means soft delete with purge protection.
    pub recovery_level: String,
    /// Permitted operations.
    pub key_ops: Vec<String>,
}

impl KeyInfo {
    /// The wrap algorithm for this key type.
    #[must_use]
    pub fn wrap_alg(&self) -> Option<&'static str> {
        match self.kty.as_str() {
            "RSA" => Some("RSA-OAEP-256"),
            "oct" => Some("A256KW"),
            _ => None,
        }
    }
}

/// Get, wrap and unwrap through a vault, as the resource's identity.
pub trait KeyVault: Send + Sync {
    /// Reads the key (its pinned version, or the latest): what `get` permits.
    fn get<'a>(&'a self, kek: &'a KeyRef) -> BoxFuture<'a, Result<KeyInfo>>;
    /// Wraps `key` with `kek`.
    fn wrap<'a>(&'a self, kek: &'a KeyRef, key: &'a SecretKey) -> BoxFuture<'a, Result<WrappedKey>>;
    /// Unwraps with the version recorded in `wrapped`.
    fn unwrap<'a>(&'a self, kek: &'a KeyRef, wrapped: &'a WrappedKey) -> BoxFuture<'a, Result<SecretBytes>>;
}

/// A vault in the same process, used as `identity` (the resource's principal): the
/// vault's access policies apply exactly as over HTTP, and every use is audited on the
/// vault's chain with the resource named.
pub struct InProcessVault {
    svc: Arc<VaultService>,
    identity: Principal,
    resource: String,
}

impl InProcessVault {
    /// The vault service, acting as `identity` for `resource` (named in audit entries).
    #[must_use]
    pub fn new(svc: Arc<VaultService>, identity: Principal, resource: &str) -> Self {
        Self { svc, identity, resource: resource.to_string() }
    }

    fn refused(&self, kek: &KeyRef, operation: &str, e: &VaultError) -> StoreError {
        let fix = match e {
            VaultError::Forbidden { reason: Refusal::AccessDenied, .. } => {
                format!("grant get, wrapKey and unwrapKey on the key to principal {}", self.identity.name)
            }
            VaultError::Forbidden { reason: Refusal::KeyExpired, .. } => {
                "the key has expired: data it already protects stays readable and writable, but it wraps nothing \
                 new; rotate the key (a new version) or extend its exp, then retry"
                    .to_string()
            }
            VaultError::Forbidden { .. } => "enable the key, or check its nbf and exp".to_string(),
            VaultError::NotFound(_) => "recover the key if it was deleted, or configure another key".to_string(),
            _ => "retry; if it persists, check the vault".to_string(),
        };
        StoreError::KeyInaccessible {
            key: kek.to_string(),
            operation: operation.into(),
            reason: e.to_string(),
            fix,
            transient: matches!(e, VaultError::Storage(_)),
        }
    }

    async fn read(&self, kek: &KeyRef, version: Option<&str>) -> Result<(VaultInfo, KeyBundle)> {
        let vault = self.svc.vault(&kek.vault).await.map_err(|e| self.refused(kek, "get", &e))?;
        self.svc
            .authorize(&vault, &self.identity, atrest_vault::Permission::Get, Some(&kek.name))
            .await
            .map_err(|e| self.refused(kek, "get", &e))?;
        let key = self.svc.get_key(&vault, &kek.name, version).await.map_err(|e| self.refused(kek, "get", &e))?;
        Ok((vault, key))
    }

    async fn call(
        &self,
        kek: &KeyRef,
        op: KeyOp,
        version: Option<&str>,
        value: &[u8],
    ) -> Result<(String, String, SecretBytes)> {
        let (vault, key) = self.read(kek, version).await?;
        let alg = match key.kty {
            Kty::Rsa => "RSA-OAEP-256",
            Kty::Oct => "A256KW",
            Kty::Ec => {
                return Err(StoreError::KeyInaccessible {
                    key: kek.to_string(),
                    operation: op.name().into(),
                    reason: "EC keys cannot wrap".into(),
                    fix: "use an RSA (2048 or more) or oct-256 key".into(),
                    transient: false,
                });
            }
        };
        self.svc
            .authorize(&vault, &self.identity, op.permission(), Some(&kek.name))
            .await
            .map_err(|e| self.refused(kek, op.name(), &e))?;
        let input = OpInput { alg: alg.into(), value: SecretBytes::new(value.to_vec()), ..OpInput::default() };
        let out = self
            .svc
            .operate(&vault, &kek.name, Some(&key.version), op, input)
            .await
            .map_err(|e| self.refused(kek, op.name(), &e))?;
        // No key use leaves the vault unrecorded: without its audit entry, no result.
        let target = format!("{}/{}", kek.name, out.version);
        let detail = serde_json::json!({"resource": self.resource});
        self.svc.audit(&vault.id, &self.identity.name, op.name(), &target, "ok", &detail).await.map_err(|e| {
            StoreError::KeyInaccessible {
                key: kek.to_string(),
                operation: op.name().into(),
                reason: format!("the vault's audit trail could not be written ({e})"),
                fix: "retry; check the vault's database".into(),
                transient: true,
            }
        })?;
        Ok((out.version, alg.to_string(), out.value))
    }
}

impl KeyVault for InProcessVault {
    fn get<'a>(&'a self, kek: &'a KeyRef) -> BoxFuture<'a, Result<KeyInfo>> {
        Box::pin(async move {
            let (_, key) = self.read(kek, kek.version.as_deref()).await?;
            let (kty, size_bits) = match key.kty {
                Kty::Rsa => ("RSA", rsa_bits(key.public.n.as_deref())),
                Kty::Ec => ("EC", 0),
                Kty::Oct => ("oct", 256),
            };
            Ok(KeyInfo {
                version: key.version,
                kty: kty.into(),
                size_bits,
                enabled: key.attributes.enabled,
                nbf: key.attributes.nbf,
                exp: key.attributes.exp,
                recovery_level: key.attributes.recovery_level,
                key_ops: key.key_ops,
            })
        })
    }

    fn wrap<'a>(&'a self, kek: &'a KeyRef, key: &'a SecretKey) -> BoxFuture<'a, Result<WrappedKey>> {
        Box::pin(async move {
            let (version, alg, bytes) =
                self.call(kek, KeyOp::WrapKey, kek.version.as_deref(), key.expose_secret()).await?;
            Ok(WrappedKey { version, alg, bytes: bytes.expose_secret().to_vec() })
        })
    }

    fn unwrap<'a>(&'a self, kek: &'a KeyRef, wrapped: &'a WrappedKey) -> BoxFuture<'a, Result<SecretBytes>> {
        Box::pin(async move { Ok(self.call(kek, KeyOp::UnwrapKey, Some(&wrapped.version), &wrapped.bytes).await?.2) })
    }
}

/// Bits of an RSA modulus given as base64url (leading zero bytes are not counted).
pub(crate) fn rsa_bits(n: Option<&str>) -> u32 {
    use base64::Engine as _;
    let Some(bytes) = n.and_then(|n| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).ok()) else {
        return 0;
    };
    let trimmed: &[u8] = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    let lead = trimmed[0];
    u32::try_from(trimmed.len() * 8).unwrap_or(u32::MAX) - lead.leading_zeros()
}
