//! The seam between key *use* and key *custody*.
//!
//! A [`KeyBackend`] creates long-lived keys and performs every operation that needs
//! their private or secret half. What it returns, a [`BackendKey`], is safe to store:
//! for the [`software::SoftwareBackend`] the handle is the key material sealed under the
//! root key; a PKCS#11 backend will store an object reference instead and keep the
//! material inside the HSM. Callers (the vault) never see private key bytes.
//!
//! Every call takes a `binding`: the identifiers the key belongs to (vault, key name,
//! version). The software backend uses it as the associated context of the sealed
//! material, so a handle copied onto another key's row does not open.

pub mod conformance;
pub mod software;

use crate::Result;
use crate::ec::{EcCurve, EcPrivateKey, EcPublicKey};
use crate::rsa::{RsaBits, RsaPrivateKey, RsaPublicKey};
use crate::secret::{SecretBytes, SecretKey};

/// The kind of key to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA of the given size.
    Rsa(RsaBits),
    /// ECDSA on the given curve.
    Ec(EcCurve),
    /// A 256-bit AES key (`oct`).
    Aes256,
}

/// Private key material handed to [`KeyBackend::import`] (BYOK).
pub enum ImportKey {
    /// An RSA private key.
    Rsa(RsaPrivateKey),
    /// An EC private key.
    Ec(EcPrivateKey),
    /// A 256-bit AES key.
    Aes256(SecretKey),
}

/// Public half of a stored key, when it has one.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// RSA.
    Rsa(RsaPublicKey),
    /// EC.
    Ec(EcPublicKey),
}

/// A key as a backend returns it: safe to persist.
#[derive(Clone)]
pub struct BackendKey {
    /// What it is.
    pub spec: KeySpec,
    /// Opaque, backend-specific reference (sealed material or HSM object id).
    pub handle: Vec<u8>,
    /// Public half (none for AES).
    pub public: Option<PublicKey>,
}

impl core::fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackendKey").field("spec", &self.spec).field("handle_len", &self.handle.len()).finish()
    }
}

/// Key-wrapping algorithms (JOSE names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlg {
    /// RSA-OAEP with SHA-1.
    RsaOaep,
    /// RSA-OAEP with SHA-256.
    RsaOaep256,
    /// RSAES-PKCS1-v1_5: unwrap only, legacy, opt-in by the caller; 32-byte keys, with
    /// implicit rejection (an invalid ciphertext unwraps to a pseudo-random key).
    Rsa1_5,
    /// AES key wrap (RFC 3394) with a 256-bit key.
    A256Kw,
}

/// Signature algorithms (JOSE names); all sign caller-supplied digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlg {
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// RSASSA-PSS SHA-256.
    Ps256,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
}

/// How a backend protects the keys it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Key material sealed in software (the vault's `RSA`, `EC`, `oct` key types).
    Software,
    /// Key material inside a hardware security module (the `-HSM` key types).
    Hsm,
}

/// What a backend can do, as it reports it (probed where the device could lie): callers
/// refuse what is missing from here, naming it, instead of hard-coding what a kind of
/// backend supports.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// How its keys are protected.
    pub protection: Protection,
    /// Key types and sizes it can generate and hold.
    pub specs: Vec<KeySpec>,
    /// Wrap and unwrap algorithms.
    pub wrap_algs: Vec<WrapAlg>,
    /// Signature algorithms.
    pub sign_algs: Vec<SignAlg>,
    /// A256GCM encrypt and decrypt.
    pub gcm: bool,
    /// Whether its calls block on I/O (a device), so callers must run them off the async
    /// workers (software keys only compute).
    pub blocking: bool,
}

/// Who holds long-lived keys and performs their secret operations.
pub trait KeyBackend: Send + Sync {
    /// Short name for logs and `/readyz` (e.g. `software`, `pkcs11`).
    fn name(&self) -> &'static str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Creates a key.
    ///
    /// # Errors
    /// Generation failure.
    fn generate(&self, spec: KeySpec, binding: &[&[u8]]) -> Result<BackendKey>;

    /// Takes custody of imported material.
    ///
    /// # Errors
    /// Backend failure.
    fn import(&self, key: ImportKey, binding: &[&[u8]]) -> Result<BackendKey>;

    /// Moves a stored key to another identity (restore into another vault or name): the
    /// returned key opens only under `to`. The material never leaves the backend.
    ///
    /// # Errors
    /// The key does not open under `from`.
    fn rebind(&self, key: &BackendKey, from: &[&[u8]], to: &[&[u8]]) -> Result<BackendKey>;

    /// Wraps `plaintext` (a key) under `key`.
    ///
    /// # Errors
    /// [`crate::CryptoError::Unsupported`] for an algorithm the key cannot do.
    fn wrap_key(&self, key: &BackendKey, binding: &[&[u8]], alg: WrapAlg, plaintext: &[u8]) -> Result<Vec<u8>>;

    /// Unwraps `wrapped` with `key`. Failures are uniform.
    ///
    /// # Errors
    /// [`crate::CryptoError::Decrypt`] for any failure of the operation itself.
    fn unwrap_key(&self, key: &BackendKey, binding: &[&[u8]], alg: WrapAlg, wrapped: &[u8]) -> Result<SecretBytes>;

    /// AES-256-GCM encryption with a stored `oct` key (the Key Vault `A256GCM` operation).
    /// The caller supplies a fresh random IV and counts uses per key version.
    ///
    /// # Errors
    /// [`crate::CryptoError::Unsupported`] for a non-AES key.
    fn encrypt_gcm(
        &self,
        key: &BackendKey,
        binding: &[&[u8]],
        iv: [u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, [u8; 16])>;

    /// AES-256-GCM decryption with a stored `oct` key. Failures are uniform.
    ///
    /// # Errors
    /// [`crate::CryptoError::Decrypt`] when authentication fails.
    fn decrypt_gcm(
        &self,
        key: &BackendKey,
        binding: &[&[u8]],
        iv: [u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<SecretBytes>;

    /// Signs `digest` with `key`.
    ///
    /// # Errors
    /// [`crate::CryptoError::Unsupported`] for an algorithm the key cannot do.
    fn sign(&self, key: &BackendKey, binding: &[&[u8]], alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>>;
}
