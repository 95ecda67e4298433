//! The two layers of encryption every stored object goes through.
//!
//! 1. **Service layer**: the object sealed under its fresh data key, which the resource
//!    key wraps (see `hierarchy`). This is the layer the customer's key controls. The
//!    object's name is sealed under the same data key.
//! 2. **Infrastructure layer**: that ciphertext sealed again under a key derived from
//!    the data service's master secret, which the platform's infrastructure root (a
//!    second secret, configured apart from the vault's root key) seals. Records use the record format and blobs the stream format, both
//!    of which derive a working key per object from a random salt, so the infrastructure
//!    key never seals data directly either.
//!
//! Both layers bind the object's id (resource, object, generation) as context, with
//! distinct labels for bodies, names and the two layers.

use crate::error::{Result, StoreError};
use crate::hierarchy::{ObjectId, new_data_key, open_data_key};
use atrest_crypto::kdf::{MacKey, hkdf_sha256};
use atrest_crypto::{SecretKey, record};

/// The infrastructure layer's key (derived from the master secret).
pub struct InfraLayer {
    pub(crate) key: SecretKey,
}

/// Derives a 32-byte key from a root for `label` (HKDF-SHA256, salt `atrest/v1/infra`).
pub(crate) fn derive(root: &SecretKey, label: &[u8]) -> Result<SecretKey> {
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    hkdf_sha256(root.expose_secret(), b"atrest/v1/infra", &[label], &mut k[..])?;
    Ok(SecretKey::from_slice(&k[..])?)
}

impl InfraLayer {
    /// Derives the layer key from the infrastructure root (domain-separated from every
    /// vault root derivation by its salt and label).
    ///
    /// # Errors
    /// Derivation failure (never in practice).
    pub fn new(infra_root: &SecretKey) -> Result<Self> {
        Ok(Self { key: derive(infra_root, b"object-layer")? })
    }
}

/// The keyed hash that finds an object by name without storing the name: a database
/// thief without the infrastructure root cannot even test guesses.
pub struct NameHasher(MacKey);

impl NameHasher {
    /// Derives the name-hash key from the infrastructure root.
    ///
    /// # Errors
    /// Derivation failure (never in practice).
    pub fn new(infra_root: &SecretKey) -> Result<Self> {
        Ok(Self(MacKey::new(&derive(infra_root, b"name-hash")?)))
    }

    /// `HMAC(resource ‖ 0 ‖ kind ‖ 0 ‖ name)`.
    #[must_use]
    pub fn hash(&self, resource: &str, kind: &str, name: &str) -> Vec<u8> {
        self.0.sign(&[resource.as_bytes(), &[0], kind.as_bytes(), &[0], name.as_bytes()]).to_vec()
    }
}

/// A sealed record: the bytes for storage and the wrapped data key for its metadata row.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Both layers applied.
    pub body: Vec<u8>,
    /// The data key, wrapped by the resource key.
    pub wrapped_dek: Vec<u8>,
}

/// Seals `data` as object `id` under both layers, with `dek` and the context label.
pub(crate) fn seal_with(
    infra: &InfraLayer,
    dek: &SecretKey,
    id: ObjectId<'_>,
    label: &[u8],
    data: &[u8],
) -> Result<Vec<u8>> {
    let inner = id.with_context(label, |ctx| record::seal(dek, ctx, data))?;
    Ok(id.with_context(b"atrest/infra", |ctx| record::seal(&infra.key, ctx, &inner))?)
}

/// Opens what [`seal_with`] sealed.
pub(crate) fn open_with(
    infra: &InfraLayer,
    dek: &SecretKey,
    id: ObjectId<'_>,
    label: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let what = || StoreError::Integrity(format!("object {}/{} generation {}", id.resource, id.object, id.generation));
    let inner = id.with_context(b"atrest/infra", |ctx| record::open(&infra.key, ctx, sealed)).map_err(|_| what())?;
    id.with_context(label, |ctx| record::open(dek, ctx, &inner)).map_err(|_| what())
}

/// Seals a name under the object's data key and the infrastructure layer.
pub(crate) fn seal_name(infra: &InfraLayer, dek: &SecretKey, id: ObjectId<'_>, name: &str) -> Result<Vec<u8>> {
    seal_with(infra, dek, id, b"atrest/name", name.as_bytes())
}

/// Opens a sealed name.
pub(crate) fn open_name(infra: &InfraLayer, dek: &SecretKey, id: ObjectId<'_>, sealed: &[u8]) -> Result<String> {
    String::from_utf8(open_with(infra, dek, id, b"atrest/name", sealed)?)
        .map_err(|_| StoreError::Integrity(format!("the name of object {}/{}", id.resource, id.object)))
}

/// Seals `plaintext` as object `id` under both layers, with a fresh data key.
///
/// # Errors
/// Crypto failures (RNG).
pub fn seal(infra: &InfraLayer, resource_key: &SecretKey, id: ObjectId<'_>, plaintext: &[u8]) -> Result<Sealed> {
    let (dek, wrapped_dek) = new_data_key(resource_key, id)?;
    Ok(Sealed { body: seal_with(infra, &dek, id, b"atrest/object", plaintext)?, wrapped_dek })
}

/// Opens object `id`.
///
/// # Errors
/// `Integrity` for any modified byte, a body or key moved from another object or
/// generation, or a wrong key.
pub fn open(infra: &InfraLayer, resource_key: &SecretKey, id: ObjectId<'_>, sealed: &Sealed) -> Result<Vec<u8>> {
    let dek = open_data_key(resource_key, id, &sealed.wrapped_dek)?;
    open_with(infra, &dek, id, b"atrest/object", &sealed.body)
}
