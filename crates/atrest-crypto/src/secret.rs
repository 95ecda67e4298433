//! Types that hold secrets.
//!
//! Both types zeroize their bytes on drop, print as `[REDACTED]` in `Debug`, and
//! implement neither `Display` nor `Serialize`, so a secret cannot reach a log line,
//! an error message or a JSON body by accident. Reading the bytes takes an explicit
//! `expose_secret()` call, which is easy to find in review.
//!
//! ```compile_fail
//! // A secret has no Display: this does not compile.
//! let k = atrest_crypto::SecretKey::generate().unwrap();
//! println!("{k}");
//! ```
//! ```compile_fail
//! let b = atrest_crypto::SecretBytes::new(vec![1, 2, 3]);
//! let s = b.to_string();
//! ```

use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit symmetric key (AES-256, HMAC, HKDF input).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Box<[u8; 32]>);

impl SecretKey {
    /// Key length in bytes.
    pub const LEN: usize = 32;

    /// A fresh key from the CSPRNG.
    ///
    /// # Errors
    /// When the system RNG fails.
    pub fn generate() -> crate::Result<Self> {
        let mut k = Box::new([0u8; 32]);
        crate::rand::fill(&mut k[..])?;
        Ok(Self(k))
    }

    /// Takes a key from bytes; the caller's copy should be zeroized by the caller.
    ///
    /// # Errors
    /// [`crate::CryptoError::InvalidKey`] unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> crate::Result<Self> {
        let arr: [u8; 32] =
            bytes.try_into().map_err(|_| crate::CryptoError::InvalidKey("a 256-bit key must be exactly 32 bytes"))?;
        Ok(Self(Box::new(arr)))
    }

    /// The key bytes.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

/// Secret bytes of any length: unwrapped keys, private-key encodings, decrypted secrets.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends bytes (the buffer should be reserved up front: a reallocation would leave
    /// an unzeroized copy behind).
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Mutable access for code that fills a secret buffer in place.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Keeps the first `n` bytes; the dropped tail is zeroized first.
    #[must_use]
    pub(crate) fn truncated(mut self, n: usize) -> Self {
        if n < self.0.len() {
            self.0[n..].zeroize();
            self.0.truncate(n);
        }
        self
    }

    /// Whether empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let k = SecretKey::from_slice(&[0x41; 32]).unwrap();
        let s = format!("{k:?}");
        assert_eq!(s, "SecretKey([REDACTED])");
        let b = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{b:?}"), "SecretBytes([REDACTED; 7])");
    }

    #[test]
    fn wrong_length_refused() {
        assert!(SecretKey::from_slice(&[0; 31]).is_err());
        assert!(SecretKey::from_slice(&[0; 33]).is_err());
    }

    #[test]
    fn generated_keys_differ() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert!(!constant_time_eq(a.expose_secret(), b.expose_secret()));
    }

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
