//! Resource keys and data keys.
//!
//! - A **resource key** is 32 random bytes, stored only wrapped by the resource's
//!   key-encryption key (through [`KeyVault`]). Changing the key-encryption key (a new
//!   version, another key, platform ↔ customer) re-wraps these 32 bytes and nothing else.
//! - A **data key** is fresh for every write, stored wrapped by the resource key in the
//!   object's metadata: sealed in the record format under the resource key with context
//!   `atrest/dek ‖ resource ‖ object ‖ generation`, so a wrapped data key copied to
//!   another object or generation does not open.

use crate::error::{Result, StoreError};
use crate::keyvault::{KeyRef, KeyVault, WrappedKey};
use atrest_crypto::{SecretKey, record};

/// Which object a key or ciphertext belongs to: bound as context everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId<'a> {
    /// Resource id.
    pub resource: &'a str,
    /// Object id (never the customer's name for it, which is itself encrypted).
    pub object: &'a str,
    /// Generation: bumps on every overwrite.
    pub generation: u64,
}

impl ObjectId<'_> {
    /// Runs `f` with the seal context `label ‖ resource ‖ object ‖ generation` (the
    /// generation as 8 big-endian bytes).
    pub fn with_context<T>(&self, label: &[u8], f: impl FnOnce(&[&[u8]]) -> T) -> T {
        let generation = self.generation.to_be_bytes();
        f(&[label, self.resource.as_bytes(), self.object.as_bytes(), &generation])
    }
}

/// Creates a resource key and wraps it with `kek`.
///
/// # Errors
/// `KeyInaccessible` when the vault refuses.
pub async fn new_resource_key(vault: &dyn KeyVault, kek: &KeyRef) -> Result<(SecretKey, WrappedKey)> {
    let key = SecretKey::generate()?;
    let wrapped = vault.wrap(kek, &key).await?;
    Ok((key, wrapped))
}

/// Unwraps a resource key.
///
/// # Errors
/// `KeyInaccessible` when the vault refuses; `Integrity` when it returns something that
/// is not a 32-byte key.
pub async fn open_resource_key(vault: &dyn KeyVault, kek: &KeyRef, wrapped: &WrappedKey) -> Result<SecretKey> {
    let bytes = vault.unwrap(kek, wrapped).await?;
    SecretKey::from_slice(bytes.expose_secret())
        .map_err(|_| StoreError::Integrity(format!("the resource key wrapped by {kek}")))
}

/// Re-wraps a resource key under another key-encryption key (or version): unwrap with
/// the old one, wrap with the new one. Data is not touched.
///
/// # Errors
/// `KeyInaccessible` if either vault key refuses (the old wrapping stays valid).
pub async fn rewrap(vault: &dyn KeyVault, old: &KeyRef, wrapped: &WrappedKey, new: &KeyRef) -> Result<WrappedKey> {
    let key = open_resource_key(vault, old, wrapped).await?;
    vault.wrap(new, &key).await
}

/// A fresh data key and its wrapped form for object `id`.
///
/// # Errors
/// RNG failure.
pub fn new_data_key(resource_key: &SecretKey, id: ObjectId<'_>) -> Result<(SecretKey, Vec<u8>)> {
    let dek = SecretKey::generate()?;
    let wrapped = id.with_context(b"atrest/dek", |ctx| record::seal(resource_key, ctx, dek.expose_secret()))?;
    Ok((dek, wrapped))
}

/// Opens a wrapped data key of object `id`.
///
/// # Errors
/// `Integrity` if it was modified or belongs to another object or generation.
pub fn open_data_key(resource_key: &SecretKey, id: ObjectId<'_>, wrapped: &[u8]) -> Result<SecretKey> {
    let bytes = zeroize::Zeroizing::new(
        id.with_context(b"atrest/dek", |ctx| record::open(resource_key, ctx, wrapped))
            .map_err(|_| StoreError::Integrity(format!("the data key of object {}/{}", id.resource, id.object)))?,
    );
    SecretKey::from_slice(&bytes)
        .map_err(|_| StoreError::Integrity(format!("the data key of object {}/{}", id.resource, id.object)))
}

/// Wraps an existing data key of object `id` under another resource key (re-key).
///
/// # Errors
/// RNG failure.
pub fn rewrap_data_key(resource_key: &SecretKey, id: ObjectId<'_>, dek: &SecretKey) -> Result<Vec<u8>> {
    Ok(id.with_context(b"atrest/dek", |ctx| record::seal(resource_key, ctx, dek.expose_secret()))?)
}
