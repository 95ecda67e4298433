//! HKDF-SHA256 and HMAC-SHA256.

use crate::secret::SecretKey;
use crate::{CryptoError, Result};
use aws_lc_rs::{hkdf, hmac};

/// Output length of HMAC-SHA256.
pub const MAC_LEN: usize = 32;

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869): fills `out` from `ikm`, `salt` and the concatenation of `info`.
///
/// # Errors
/// [`CryptoError::InvalidInput`] when `out` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| CryptoError::InvalidInput("HKDF output too long"))
}

/// An HMAC-SHA256 key.
pub struct MacKey(hmac::Key);

impl MacKey {
    /// Key from a 256-bit secret.
    #[must_use]
    pub fn new(key: &SecretKey) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret()))
    }

    /// Key from raw bytes of any length, for protocols that fix the key themselves (the
    /// SigV4 key chain).
    #[must_use]
    pub fn from_raw(key: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// HMAC over the concatenation of `parts`.
    #[must_use]
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Checks `tag` in constant time.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] on mismatch.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> Result<()> {
        let expect = self.sign(parts);
        if crate::secret::constant_time_eq(&expect, tag) { Ok(()) } else { Err(CryptoError::Integrity) }
    }
}

impl core::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MacKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 5869, test case 1.
    #[test]
    fn hkdf_rfc5869_case1() {
        let ikm = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf_sha256(&ikm, &salt, &[&info[..5], &info[5..]], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    /// RFC 4231, test case 2 ("Jefe"), with the key zero-padded to 32 bytes (HMAC pads
    /// short keys with zeros, so the result is the same).
    #[test]
    fn hmac_rfc4231_case2() {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(b"Jefe");
        let key = MacKey::new(&SecretKey::from_slice(&k).unwrap());
        let tag = key.sign(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        key.verify(&[b"what do ya want for nothing?"], &tag).unwrap();
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(key.verify(&[b"what do ya want for nothing?"], &bad).is_err());
    }
}
