//! SSE-C: the client sends a 256-bit key with every request and the server never stores
//! it, nor its MD5. What is stored, in the sealed metadata, is a random salt and a
//! verifier — HMAC-SHA256 under a key derived from the infrastructure root of (salt ‖
//! customer key) — so a later request with another key is refused (403) before anything
//! is decrypted. The object's data key is wrapped (record format) under HKDF(customer
//! key, salt, `atrest/v1/sse-c` ‖ resource), so neither the server's roots nor the vault
//! can open it; both layers of the body are as for any object. No resource key wraps it:
//! re-key and re-encrypt jobs pass these objects by, and revoking a vault key does not
//! touch them.

use super::meta::Sse;
use crate::error::{Result, StoreError};
use crate::hierarchy::{self, ObjectId};
use crate::model::Resource;
use crate::service::StoreService;
use atrest_crypto::SecretKey;
use atrest_crypto::kdf::{MacKey, hkdf_sha256};
use base64::Engine as _;

const LABEL: &[u8] = b"atrest/v1/sse-c";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl StoreService {
    fn sse_c_verifier_key(&self) -> Result<MacKey> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        hkdf_sha256(self.infra.key.expose_secret(), LABEL, &[b"verifier"], &mut k[..])?;
        Ok(MacKey::new(&SecretKey::from_slice(&k[..])?))
    }

    fn sse_c_kek(r: &Resource, key: &SecretKey, salt: &[u8]) -> Result<SecretKey> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        hkdf_sha256(key.expose_secret(), salt, &[LABEL, r.id.as_bytes()], &mut k[..])?;
        Ok(SecretKey::from_slice(&k[..])?)
    }

    /// Wraps `dek` under the customer's key: the `Sse` to record and the wrapped key.
    pub(crate) fn sse_c_wrap(&self, r: &Resource, key: &SecretKey, dek: &SecretKey) -> Result<(Sse, Vec<u8>)> {
        let salt = atrest_crypto::rand::bytes::<16>()?;
        let verifier = self.sse_c_verifier_key()?.sign(&[&salt, key.expose_secret()]);
        let kek = Self::sse_c_kek(r, key, &salt)?;
        let salt_hex = hex::encode(salt);
        let wrapped =
            hierarchy::rewrap_data_key(&kek, ObjectId { resource: &r.id, object: &salt_hex, generation: 0 }, dek)?;
        Ok((Sse::Customer { salt: b64(&salt), verifier: b64(&verifier) }, wrapped))
    }

    /// The data key of an SSE-C object, with the key the request sent.
    ///
    /// # Errors
    /// `CustomerKeyRequired` without a key; `Forbidden` for another key; `Integrity`.
    pub(crate) fn sse_c_unwrap(
        &self,
        r: &Resource,
        sse: &Sse,
        wrapped: &[u8],
        key: Option<&SecretKey>,
        what: &str,
    ) -> Result<SecretKey> {
        let Sse::Customer { salt, verifier } = sse else {
            return Err(StoreError::Integrity(format!("the encryption of {what}")));
        };
        let key = key.ok_or_else(|| {
            StoreError::CustomerKeyRequired(format!(
                "{what} is encrypted with a customer-provided key (SSE-C): send the same key with the request \
                 (x-amz-server-side-encryption-customer-algorithm, -key and -key-MD5)"
            ))
        })?;
        let dec = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).ok();
        let (Some(salt), Some(verifier)) = (dec(salt), dec(verifier)) else {
            return Err(StoreError::Integrity(format!("the SSE-C verifier of {what}")));
        };
        self.sse_c_verifier_key()?.verify(&[&salt, key.expose_secret()], &verifier).map_err(|_| {
            StoreError::Forbidden(format!("the customer-provided key is not the one {what} was stored with"))
        })?;
        let kek = Self::sse_c_kek(r, key, &salt)?;
        let salt_hex = hex::encode(&salt);
        hierarchy::open_data_key(&kek, ObjectId { resource: &r.id, object: &salt_hex, generation: 0 }, wrapped)
            .map_err(|_| self.integrity(r, &format!("the wrapped data key of {what}")))
    }
}
