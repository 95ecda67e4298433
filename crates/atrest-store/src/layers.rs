//! The two layers of encryption every stored object goes through.
//!
//! 1. **Service layer**: the object sealed (record format) under its fresh data key,
//!    which the resource key wraps (see `hierarchy`). This is the layer the customer's
//!    key controls.
//! 2. **Infrastructure layer**: that ciphertext sealed again (record format) under a key
//!    derived from the platform's infrastructure root — a second secret, configured
//!    apart from the vault's root key. The record format derives a working key per object
//!    from a random salt, so the infrastructure key never seals data directly either.
//!
//! Both layers bind the object's id (resource, object, generation) as context.

use crate::error::{Result, StoreError};
use crate::hierarchy::{ObjectId, new_data_key, open_data_key};
use atrest_crypto::kdf::hkdf_sha256;
use atrest_crypto::{SecretKey, record};

/// The infrastructure layer's key, derived from the infrastructure root.
pub struct InfraLayer {
    key: SecretKey,
}

impl InfraLayer {
    /// Derives the layer key from the infrastructure root (domain-separated from every
    /// vault root derivation by its label).
    ///
    /// # Errors
    /// Derivation failure (never in practice).
    pub fn new(infra_root: &SecretKey) -> Result<Self> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        hkdf_sha256(infra_root.expose_secret(), b"atrest/v1/infra", &[b"object-layer"], &mut k[..])?;
        Ok(Self { key: SecretKey::from_slice(&k[..])? })
    }
}

/// A sealed object: the bytes for storage and the wrapped data key for its metadata row.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Both layers applied.
    pub body: Vec<u8>,
    /// The data key, wrapped by the resource key.
    pub wrapped_dek: Vec<u8>,
}

/// Seals `plaintext` as object `id` under both layers.
///
/// # Errors
/// Crypto failures (RNG).
pub fn seal(infra: &InfraLayer, resource_key: &SecretKey, id: ObjectId<'_>, plaintext: &[u8]) -> Result<Sealed> {
    let (dek, wrapped_dek) = new_data_key(resource_key, id)?;
    let inner = id.with_context(b"atrest/object", |ctx| record::seal(&dek, ctx, plaintext))?;
    let body = id.with_context(b"atrest/infra", |ctx| record::seal(&infra.key, ctx, &inner))?;
    Ok(Sealed { body, wrapped_dek })
}

/// Opens object `id`.
///
/// # Errors
/// `Integrity` for any modified byte, a body or key moved from another object or
/// generation, or a wrong key.
pub fn open(infra: &InfraLayer, resource_key: &SecretKey, id: ObjectId<'_>, sealed: &Sealed) -> Result<Vec<u8>> {
    let what = || StoreError::Integrity(format!("object {}/{} generation {}", id.resource, id.object, id.generation));
    let inner =
        id.with_context(b"atrest/infra", |ctx| record::open(&infra.key, ctx, &sealed.body)).map_err(|_| what())?;
    let dek = open_data_key(resource_key, id, &sealed.wrapped_dek)?;
    id.with_context(b"atrest/object", |ctx| record::open(&dek, ctx, &inner)).map_err(|_| what())
}
