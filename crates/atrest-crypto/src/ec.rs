//! ECDSA keys on P-256 and P-384: generation, import, and ES256/ES384 signatures over
//! caller-supplied digests, in the fixed-width `r ‖ s` encoding JOSE uses.

use crate::secret::SecretBytes;
use crate::{CryptoError, Result};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

/// Curves offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    /// NIST P-256, signs with ES256.
    P256,
    /// NIST P-384, signs with ES384.
    P384,
}

impl EcCurve {
    /// Bytes of one coordinate.
    #[must_use]
    pub fn coordinate_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
        }
    }

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }

    fn verifying(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            EcCurve::P256 => &digest::SHA256,
            EcCurve::P384 => &digest::SHA384,
        }
    }
}

/// An ECDSA private key.
pub struct EcPrivateKey {
    kp: EcdsaKeyPair,
    public: EcPublicKey,
}

/// An ECDSA public key (JWK `crv`, `x`, `y`).
#[derive(Clone)]
pub struct EcPublicKey {
    curve: EcCurve,
    /// Uncompressed SEC1 point `04 ‖ x ‖ y`.
    point: Vec<u8>,
}

impl EcPrivateKey {
    /// Generates a key.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate(curve: EcCurve) -> Result<Self> {
        let kp =
            EcdsaKeyPair::generate(curve.signing()).map_err(|_| CryptoError::Internal("EC key generation failed"))?;
        Ok(Self::assemble(curve, kp))
    }

    /// Loads a PKCS#8 DER encoding on `curve`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if it is not a key on that curve.
    pub fn from_pkcs8(curve: EcCurve, der: &[u8]) -> Result<Self> {
        let kp = EcdsaKeyPair::from_pkcs8(curve.signing(), der)
            .map_err(|_| CryptoError::InvalidKey("not an EC PKCS#8 key on this curve"))?;
        Ok(Self::assemble(curve, kp))
    }

    /// Builds a key from JWK components `d`, `x`, `y` (big-endian, full width).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if they do not form a key on the curve.
    pub fn from_components(curve: EcCurve, d: &[u8], x: &[u8], y: &[u8]) -> Result<Self> {
        let n = curve.coordinate_len();
        if d.len() != n || x.len() != n || y.len() != n {
            return Err(CryptoError::InvalidKey("EC key components have the wrong length for the curve"));
        }
        let point = [&[4u8][..], x, y].concat();
        let kp = EcdsaKeyPair::from_private_key_and_public_key(curve.signing(), d, &point)
            .map_err(|_| CryptoError::InvalidKey("EC private and public components do not match"))?;
        Ok(Self::assemble(curve, kp))
    }

    fn assemble(curve: EcCurve, kp: EcdsaKeyPair) -> Self {
        let point = kp.public_key().as_ref().to_vec();
        Self { kp, public: EcPublicKey { curve, point } }
    }

    /// PKCS#8 DER encoding, for sealing at rest.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8(&self) -> Result<SecretBytes> {
        let doc = self.kp.to_pkcs8v1().map_err(|_| CryptoError::Internal("EC key encoding failed"))?;
        Ok(SecretBytes::new(doc.as_ref().to_vec()))
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &EcPublicKey {
        &self.public
    }

    /// Signs a digest (32 bytes for P-256, 48 for P-384); returns `r ‖ s`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] for a digest of the wrong length.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        let d = Digest::import_less_safe(digest, self.public.curve.digest()).map_err(|_| {
            CryptoError::InvalidInput("digest length does not match the curve (ES256: 32 bytes, ES384: 48)")
        })?;
        let sig = self.kp.sign_digest(&d).map_err(|_| CryptoError::Internal("ECDSA signing failed"))?;
        Ok(sig.as_ref().to_vec())
    }
}

impl core::fmt::Debug for EcPrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EcPrivateKey({:?}, [REDACTED])", self.public.curve)
    }
}

impl EcPublicKey {
    /// From JWK coordinates.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for wrong lengths (the point is checked on use).
    pub fn from_xy(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<Self> {
        let n = curve.coordinate_len();
        if x.len() != n || y.len() != n {
            return Err(CryptoError::InvalidKey("EC coordinates have the wrong length for the curve"));
        }
        Ok(Self { curve, point: [&[4u8][..], x, y].concat() })
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> EcCurve {
        self.curve
    }

    /// JWK `x`.
    #[must_use]
    pub fn x(&self) -> &[u8] {
        &self.point[1..1 + self.curve.coordinate_len()]
    }

    /// JWK `y`.
    #[must_use]
    pub fn y(&self) -> &[u8] {
        &self.point[1 + self.curve.coordinate_len()..]
    }

    /// Verifies an `r ‖ s` signature over a digest.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] if it does not verify.
    pub fn verify_digest(&self, digest: &[u8], sig: &[u8]) -> Result<()> {
        let d = Digest::import_less_safe(digest, self.curve.digest())
            .map_err(|_| CryptoError::InvalidInput("digest length does not match the curve"))?;
        UnparsedPublicKey::new(self.curve.verifying(), &self.point)
            .verify_digest(&d, sig)
            .map_err(|_| CryptoError::Integrity)
    }
}

impl core::fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EcPublicKey({:?})", self.curve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_both_curves() {
        for (curve, alg) in [(EcCurve::P256, &digest::SHA256), (EcCurve::P384, &digest::SHA384)] {
            let k = EcPrivateKey::generate(curve).unwrap();
            let d = digest::digest(alg, b"hello");
            let sig = k.sign_digest(d.as_ref()).unwrap();
            assert_eq!(sig.len(), 2 * curve.coordinate_len());
            let pk = EcPublicKey::from_xy(curve, k.public_key().x(), k.public_key().y()).unwrap();
            pk.verify_digest(d.as_ref(), &sig).unwrap();
            let mut bad = sig.clone();
            bad[3] ^= 1;
            assert!(pk.verify_digest(d.as_ref(), &bad).is_err());
            assert!(k.sign_digest(&[0; 20]).is_err());
            let again = EcPrivateKey::from_pkcs8(curve, k.to_pkcs8().unwrap().expose_secret()).unwrap();
            assert_eq!(again.public_key().x(), k.public_key().x());
        }
    }
}
