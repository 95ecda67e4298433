//! AES-256-GCM behind one interface, with the fastest implementation chosen per CPU.
//!
//! Two providers implement the same operations (one file each): AWS-LC, always
//! present and the only one in a `fips` build, and *ring*, whose AES-GCM has a
//! VAES/AVX2 code path that AWS-LC lacks (AWS-LC's vectorised path needs AVX-512).
//! [`Provider::fastest`] picks per CPU; `docs/performance.md` holds the measurements
//! behind the rule.
//!
//! Callers pass explicit nonces. This module does not count them: the record and
//! stream formats do, under keys derived for one object each.

mod aws_lc;
#[cfg(all(feature = "ring-aead", not(feature = "fips")))]
mod ring;

use crate::secret::SecretKey;
use crate::{CryptoError, Result};
pub use atrest_format::{NONCE_LEN, TAG_LEN};
use std::sync::OnceLock;

/// An AES-256-GCM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// AWS-LC (the FIPS 140-3 validated module in `fips` builds).
    AwsLc,
    /// *ring* (not in `fips` builds).
    #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
    Ring,
}

impl Provider {
    /// Every provider in this build.
    #[must_use]
    pub fn all() -> &'static [Provider] {
        &[
            Provider::AwsLc,
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Provider::Ring,
        ]
    }

    /// Short name, for tables and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Provider::AwsLc => "aws-lc",
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Provider::Ring => "ring",
        }
    }

    /// The provider used by default. AWS-LC in `fips` builds. Otherwise *ring* only on
    /// CPUs where its VAES/AVX2 AES-GCM path runs and AWS-LC's AVX-512 path does not
    /// (about 1.8× faster there); on CPUs with neither (plain AES-NI) both run at the
    /// same speed and AWS-LC wins because it seals out of place without a copy; with
    /// AVX-512, AWS-LC has the wider path. `docs/performance.md` has the numbers.
    ///
    /// `ATREST_AEAD=aws-lc` or `ATREST_AEAD=ring` overrides the choice (read once, at
    /// first use; ignored in `fips` builds, which have only AWS-LC). CI uses it to run
    /// the format tests on both providers.
    #[must_use]
    pub fn fastest() -> Provider {
        static CHOICE: OnceLock<Provider> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            {
                match std::env::var("ATREST_AEAD").as_deref() {
                    Ok("ring") => return Provider::Ring,
                    Ok("aws-lc") => return Provider::AwsLc,
                    _ => {}
                }
                if cpu::has_vaes_avx2() && !cpu::has_avx512() {
                    return Provider::Ring;
                }
            }
            Provider::AwsLc
        })
    }
}

#[cfg(all(feature = "ring-aead", not(feature = "fips")))]
mod cpu {
    #[cfg(target_arch = "x86_64")]
    pub(super) fn has_vaes_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("vpclmulqdq")
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) fn has_avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw")
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn has_vaes_avx2() -> bool {
        false
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn has_avx512() -> bool {
        false
    }
}

enum Inner {
    AwsLc(aws_lc::Key),
    // Boxed: ring's key schedule is much larger than AWS-LC's handle.
    #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
    Ring(Box<ring::Key>),
}

/// An AES-256-GCM key with its expanded schedule.
pub struct AeadKey(Inner);

impl AeadKey {
    /// A key on the [`Provider::fastest`] implementation.
    ///
    /// # Errors
    /// When the library refuses the key.
    pub fn new(key: &SecretKey) -> Result<Self> {
        Self::with_provider(Provider::fastest(), key)
    }

    /// A key on a chosen implementation (benchmarks and cross-checks).
    ///
    /// # Errors
    /// When the library refuses the key.
    pub fn with_provider(provider: Provider, key: &SecretKey) -> Result<Self> {
        Self::from_bytes(provider, key.expose_secret())
    }

    pub(crate) fn from_bytes(provider: Provider, key: &[u8]) -> Result<Self> {
        if key.len() != 32 {
            return Err(CryptoError::InvalidKey("AES-256-GCM needs a 32-byte key"));
        }
        Ok(Self(match provider {
            Provider::AwsLc => Inner::AwsLc(aws_lc::Key::new(key)?),
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Provider::Ring => Inner::Ring(Box::new(ring::Key::new(key)?)),
        }))
    }

    /// Which implementation holds this key.
    #[must_use]
    pub fn provider(&self) -> Provider {
        match self.0 {
            Inner::AwsLc(_) => Provider::AwsLc,
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Inner::Ring(_) => Provider::Ring,
        }
    }

    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// # Errors
    /// [`CryptoError::LimitExceeded`] past the GCM length limit.
    pub fn seal_in_place(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        match &self.0 {
            Inner::AwsLc(k) => k.seal(nonce, aad, in_out),
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Inner::Ring(k) => k.seal(nonce, aad, in_out),
        }
    }

    /// Encrypts `input` into `out` (`input.len() + 16` bytes: ciphertext then tag) without
    /// a separate copy where the provider supports it (AWS-LC); *ring* copies, then seals
    /// in place.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] for a wrong `out` length; GCM length limit.
    pub fn seal_to(&self, nonce: [u8; NONCE_LEN], aad: &[u8], input: &[u8], out: &mut [u8]) -> Result<()> {
        if out.len() != input.len() + TAG_LEN {
            return Err(CryptoError::InvalidInput("output must be the input length plus 16"));
        }
        match &self.0 {
            Inner::AwsLc(k) => k.seal_to(nonce, aad, input, out),
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Inner::Ring(_) => {
                let (body, tag) = out.split_at_mut(input.len());
                body.copy_from_slice(input);
                tag.copy_from_slice(&self.seal_in_place(nonce, aad, body)?);
                Ok(())
            }
        }
    }

    /// Opens `buf` = `ciphertext ‖ tag` in place and returns the plaintext length; on
    /// failure the buffer is zeroed. This is the path both formats use, and the one AWS-LC's
    /// FIPS security policy approves for decryption.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] when authentication fails or `buf` is shorter than a tag.
    pub fn open_combined(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<usize> {
        let ok = buf.len() >= TAG_LEN
            && match &self.0 {
                Inner::AwsLc(k) => k.open_combined(nonce, aad, buf),
                #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
                Inner::Ring(k) => k.open_combined(nonce, aad, buf),
            };
        if ok {
            Ok(buf.len() - TAG_LEN)
        } else {
            buf.fill(0);
            Err(CryptoError::Integrity)
        }
    }

    /// Decrypts `in_out` in place after checking `tag`. On failure the buffer is
    /// zeroed, so no unauthenticated plaintext is ever visible.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] when authentication fails.
    pub fn open_in_place(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8], tag: &[u8]) -> Result<()> {
        let ok = match &self.0 {
            Inner::AwsLc(k) => k.open(nonce, aad, in_out, tag),
            #[cfg(all(feature = "ring-aead", not(feature = "fips")))]
            Inner::Ring(k) => k.open(nonce, aad, in_out, tag),
        };
        if ok {
            Ok(())
        } else {
            in_out.fill(0);
            Err(CryptoError::Integrity)
        }
    }
}

impl AeadKey {
    /// Decrypts `input` (ciphertext, then `tag`) into `out` (same length as the
    /// ciphertext) without a separate copy where the provider supports it (AWS-LC). On
    /// failure `out` is zeroed.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] when authentication fails; [`CryptoError::InvalidInput`]
    /// for a wrong `out` length.
    pub fn open_to(&self, nonce: [u8; NONCE_LEN], aad: &[u8], input: &[u8], tag: &[u8], out: &mut [u8]) -> Result<()> {
        if out.len() != input.len() {
            return Err(CryptoError::InvalidInput("output must be as long as the ciphertext"));
        }
        #[cfg(not(feature = "fips"))]
        if let Inner::AwsLc(k) = &self.0 {
            return if k.open_to(nonce, aad, input, tag, out) {
                Ok(())
            } else {
                out.fill(0);
                Err(CryptoError::Integrity)
            };
        }
        // ring has no out-of-place open, and the FIPS build uses only the approved
        // combined in-place open: assemble `ciphertext ‖ tag` in a scratch buffer.
        let mut scratch = zeroize::Zeroizing::new([input, tag].concat());
        self.open_combined(nonce, aad, &mut scratch)?;
        out.copy_from_slice(&scratch[..input.len()]);
        Ok(())
    }
}

impl core::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AeadKey({}, [REDACTED])", self.provider().name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test case 16 (AES-256, 96-bit IV, with AAD), from the GCM spec.
    #[test]
    fn gcm_spec_case_16_all_providers() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").unwrap();
        let nonce: [u8; 12] = hex::decode("cafebabefacedbaddecaf888").unwrap().try_into().unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let pt = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
        let tag = "76fc6ece0f4e1768cddf8853bb2d551b";
        for &p in Provider::all() {
            let k = AeadKey::from_bytes(p, &key).unwrap();
            let mut buf = pt.clone();
            let t = k.seal_in_place(nonce, &aad, &mut buf).unwrap();
            assert_eq!(hex::encode(&buf), ct, "{p:?}");
            assert_eq!(hex::encode(t), tag, "{p:?}");
            k.open_in_place(nonce, &aad, &mut buf, &t).unwrap();
            assert_eq!(buf, pt);
        }
    }

    #[test]
    fn seal_to_matches_seal_in_place_on_every_provider() {
        let key = SecretKey::generate().unwrap();
        for &p in Provider::all() {
            let k = AeadKey::with_provider(p, &key).unwrap();
            let input = vec![0x5a; 1000];
            let mut out = vec![0u8; 1016];
            k.seal_to([3; 12], b"aad", &input, &mut out).unwrap();
            let mut inplace = input.clone();
            let tag = k.seal_in_place([3; 12], b"aad", &mut inplace).unwrap();
            assert_eq!(&out[..1000], &inplace[..]);
            assert_eq!(&out[1000..], &tag[..]);
            assert!(k.seal_to([3; 12], b"aad", &input, &mut out[..1015]).is_err());
        }
    }

    #[test]
    fn failed_open_zeroes_buffer() {
        let k = AeadKey::new(&SecretKey::generate().unwrap()).unwrap();
        let mut buf = b"attack at dawn".to_vec();
        let mut t = k.seal_in_place([0; 12], b"", &mut buf).unwrap();
        t[0] ^= 1;
        assert!(matches!(k.open_in_place([0; 12], b"", &mut buf, &t), Err(CryptoError::Integrity)));
        assert!(buf.iter().all(|&b| b == 0));
    }
}
