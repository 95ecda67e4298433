//! RSA keys: generation (2048/3072/4096), OAEP encryption and decryption with SHA-1 or
//! SHA-256, legacy PKCS#1 v1.5 decryption (opt-in, uniform errors), and RS256/PS256
//! signatures over caller-supplied SHA-256 digests (the Key Vault `sign` contract).
//!
//! Everything runs in AWS-LC. RSA1_5 decryption is offered only because some clients
//! still wrap keys that way; it is never implemented with RustCrypto's `rsa` crate
//! (the Marvin timing attack), and it uses **implicit rejection**: an invalid ciphertext
//! does not produce an error but a pseudo-random value of the expected length, derived
//! from a per-key secret and the ciphertext, selected in constant time. A caller
//! therefore cannot use the vault as a Bleichenbacher padding oracle.

use crate::secret::SecretBytes;
use crate::{CryptoError, Result};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    self as lc_rsa, KeyPairComponents, KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    Pkcs1PrivateDecryptingKey, PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};

/// Modulus sizes offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaBits {
    /// 2048-bit modulus.
    B2048,
    /// 3072-bit modulus.
    B3072,
    /// 4096-bit modulus.
    B4096,
}

impl RsaBits {
    /// Size in bits.
    #[must_use]
    pub fn bits(self) -> usize {
        match self {
            RsaBits::B2048 => 2048,
            RsaBits::B3072 => 3072,
            RsaBits::B4096 => 4096,
        }
    }
}

/// Hash of RSA-OAEP (the MGF1 hash is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// SHA-1 (JOSE `RSA-OAEP`).
    Sha1,
    /// SHA-256 (JOSE `RSA-OAEP-256`).
    Sha256,
}

impl OaepHash {
    fn alg(self) -> &'static lc_rsa::OaepAlgorithm {
        match self {
            OaepHash::Sha1 => &lc_rsa::OAEP_SHA1_MGF1SHA1,
            OaepHash::Sha256 => &lc_rsa::OAEP_SHA256_MGF1SHA256,
        }
    }
}

/// RSA signature schemes (JOSE names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaSignature {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    Ps256,
}

/// An RSA private key.
pub struct RsaPrivateKey {
    signer: lc_rsa::KeyPair,
    decrypter: PrivateDecryptingKey,
    public: RsaPublicKey,
    /// Secret for RSA1_5 implicit rejection, derived from the private key.
    rejection_key: crate::SecretKey,
}

/// The public components of an RSA key (JWK `n`, `e`).
#[derive(Clone)]
pub struct RsaPublicKey {
    n: Vec<u8>,
    e: Vec<u8>,
    spki: Vec<u8>,
}

impl RsaPrivateKey {
    /// Generates a key.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate(bits: RsaBits) -> Result<Self> {
        let size = match bits {
            RsaBits::B2048 => KeySize::Rsa2048,
            RsaBits::B3072 => KeySize::Rsa3072,
            RsaBits::B4096 => KeySize::Rsa4096,
        };
        let k = PrivateDecryptingKey::generate(size).map_err(|_| CryptoError::Internal("RSA key generation failed"))?;
        let der = k.as_der().map_err(|_| CryptoError::Internal("RSA key encoding failed"))?;
        Self::from_pkcs8(der.as_ref())
    }

    /// Loads a PKCS#8 (`PrivateKeyInfo`) DER encoding.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if it is not an RSA key of 2048 to 4096 bits.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let signer =
            lc_rsa::KeyPair::from_pkcs8(der).map_err(|_| CryptoError::InvalidKey("not a usable RSA PKCS#8 key"))?;
        let decrypter = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| CryptoError::InvalidKey("not a usable RSA PKCS#8 key"))?;
        Self::assemble(signer, decrypter, der)
    }

    /// Builds a key from its components (JWK import), big-endian unsigned integers.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if the components are inconsistent or the size is unsupported.
    pub fn from_components(c: &RsaComponents<'_>) -> Result<Self> {
        let comps = KeyPairComponents {
            public_key: PublicKeyComponents { n: c.n, e: c.e },
            d: c.d,
            p: c.p,
            q: c.q,
            dP: c.dp,
            dQ: c.dq,
            qInv: c.qi,
        };
        let signer = lc_rsa::KeyPair::from_components(&comps)
            .map_err(|_| CryptoError::InvalidKey("inconsistent RSA key components"))?;
        let der = SecretBytes::new(
            signer.as_der().map_err(|_| CryptoError::Internal("RSA key encoding failed"))?.as_ref().to_vec(),
        );
        let decrypter = PrivateDecryptingKey::from_pkcs8(der.expose_secret())
            .map_err(|_| CryptoError::InvalidKey("not a usable RSA key"))?;
        Self::assemble(signer, decrypter, der.expose_secret())
    }

    fn assemble(signer: lc_rsa::KeyPair, decrypter: PrivateDecryptingKey, pkcs8: &[u8]) -> Result<Self> {
        let bits = decrypter.key_size_bits();
        if ![2048, 3072, 4096].contains(&bits) {
            return Err(CryptoError::InvalidKey("RSA keys must be 2048, 3072 or 4096 bits"));
        }
        let pk = signer.public_key();
        let n = strip_zeros(pk.modulus().big_endian_without_leading_zero());
        let e = strip_zeros(pk.exponent().big_endian_without_leading_zero());
        let public = RsaPublicKey::from_components(&n, &e)?;
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        crate::kdf::hkdf_sha256(pkcs8, b"atrest/v1/rsa1_5-implicit-rejection", &[], &mut k[..])?;
        let rejection_key = crate::SecretKey::from_slice(&k[..])?;
        Ok(Self { signer, decrypter, public, rejection_key })
    }

    /// PKCS#8 DER encoding, for sealing at rest.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8(&self) -> Result<SecretBytes> {
        let der: Pkcs8V1Der<'_> =
            self.decrypter.as_der().map_err(|_| CryptoError::Internal("RSA key encoding failed"))?;
        Ok(SecretBytes::new(der.as_ref().to_vec()))
    }

    /// Modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.decrypter.key_size_bits()
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// RSA-OAEP decryption with an optional label.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for every failure.
    pub fn decrypt_oaep(&self, hash: OaepHash, ciphertext: &[u8], label: Option<&[u8]>) -> Result<SecretBytes> {
        let key = OaepPrivateDecryptingKey::new(self.decrypter.clone()).map_err(|_| CryptoError::Decrypt)?;
        let mut out = SecretBytes::new(vec![0u8; key.min_output_size()]);
        let n = key.decrypt(hash.alg(), ciphertext, out.as_mut_slice(), label).map_err(|_| CryptoError::Decrypt)?.len();
        Ok(out.truncated(n))
    }

    /// Legacy RSAES-PKCS1-v1_5 decryption (JOSE `RSA1_5`), only for vaults that opt in,
    /// with implicit rejection: the result always has `expected_len` bytes. It is the
    /// message when the ciphertext is valid and holds exactly `expected_len` bytes;
    /// otherwise it is HKDF(per-key secret, ciphertext) — deterministic, unpredictable
    /// without the private key, and chosen in constant time, so nothing tells a caller
    /// whether the padding was valid (RFC 7516 §11.5; the remaining data-dependent step
    /// is the single check of AWS-LC's result).
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] if `expected_len` is 0 or longer than the key allows
    /// (a property of the call, not of the ciphertext).
    pub fn decrypt_pkcs1v15_implicit(&self, ciphertext: &[u8], expected_len: usize) -> Result<SecretBytes> {
        use subtle::{ConditionallySelectable, ConstantTimeEq};
        let max = self.decrypter.key_size_bytes() - 11;
        if expected_len == 0 || expected_len > max {
            return Err(CryptoError::InvalidInput("RSA1_5 expected length must be 1 to (modulus bytes - 11)"));
        }
        let mut out = SecretBytes::new(vec![0u8; expected_len]);
        crate::kdf::hkdf_sha256(
            self.rejection_key.expose_secret(),
            ciphertext,
            &[b"synthetic", &(expected_len as u32).to_be_bytes()],
            out.as_mut_slice(),
        )?;
        let key = Pkcs1PrivateDecryptingKey::new(self.decrypter.clone()).map_err(|_| CryptoError::Decrypt)?;
        let mut real = SecretBytes::new(vec![0u8; key.min_output_size()]);
        let (decrypted, len) = match key.decrypt(ciphertext, real.as_mut_slice()) {
            Ok(p) => (1u8, p.len()),
            Err(_) => (0u8, 0),
        };
        let ok = subtle::Choice::from(decrypted) & (len as u64).ct_eq(&(expected_len as u64));
        for (o, r) in out.as_mut_slice().iter_mut().zip(real.expose_secret()) {
            *o = u8::conditional_select(o, r, ok);
        }
        Ok(out)
    }

    /// Signs a SHA-256 digest.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] unless `digest` is 32 bytes.
    pub fn sign_digest(&self, alg: RsaSignature, digest: &[u8]) -> Result<Vec<u8>> {
        let d = Digest::import_less_safe(digest, &digest::SHA256)
            .map_err(|_| CryptoError::InvalidInput("RS256/PS256 sign a 32-byte SHA-256 digest"))?;
        let enc: &'static dyn signature::RsaEncoding = match alg {
            RsaSignature::Rs256 => &signature::RSA_PKCS1_SHA256,
            RsaSignature::Ps256 => &signature::RSA_PSS_SHA256,
        };
        let mut sig = vec![0u8; self.signer.public_modulus_len()];
        self.signer.sign_digest(enc, &d, &mut sig).map_err(|_| CryptoError::Internal("RSA signing failed"))?;
        Ok(sig)
    }
}

impl core::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RsaPrivateKey({} bits, [REDACTED])", self.bits())
    }
}

/// RSA private components (JWK names), big-endian.
#[allow(missing_docs)]
pub struct RsaComponents<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub qi: &'a [u8],
}

impl RsaPublicKey {
    /// From modulus and exponent (big-endian).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if AWS-LC refuses them.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self> {
        let (n, e) = (strip_zeros(n), strip_zeros(e));
        let comps = PublicKeyComponents { n: &n[..], e: &e[..] };
        let spki: PublicKeyX509Der<'_> =
            comps.as_der().map_err(|_| CryptoError::InvalidKey("invalid RSA public key"))?;
        let spki = spki.as_ref().to_vec();
        // Parse once so an invalid key is refused here rather than at first use.
        PublicEncryptingKey::from_der(&spki).map_err(|_| CryptoError::InvalidKey("invalid RSA public key"))?;
        Ok(Self { n, e, spki })
    }

    /// X.509 `SubjectPublicKeyInfo` DER (what `openssl -pubin` reads, PEM-armoured).
    #[must_use]
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Modulus, big-endian without leading zeros (JWK `n`).
    #[must_use]
    pub fn n(&self) -> &[u8] {
        &self.n
    }

    /// Public exponent, big-endian without leading zeros (JWK `e`).
    #[must_use]
    pub fn e(&self) -> &[u8] {
        &self.e
    }

    /// Modulus size in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        match self.n.first() {
            Some(b) => self.n.len() * 8 - b.leading_zeros() as usize,
            None => 0,
        }
    }

    /// RSA-OAEP encryption with an optional label.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] if the plaintext is too long for the key.
    pub fn encrypt_oaep(&self, hash: OaepHash, plaintext: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>> {
        let pk =
            PublicEncryptingKey::from_der(&self.spki).map_err(|_| CryptoError::InvalidKey("invalid RSA public key"))?;
        let key = OaepPublicEncryptingKey::new(pk).map_err(|_| CryptoError::InvalidKey("invalid RSA public key"))?;
        if plaintext.len() > key.max_plaintext_size(hash.alg()) {
            return Err(CryptoError::InvalidInput("plaintext too long for RSA-OAEP with this key"));
        }
        let mut out = vec![0u8; key.ciphertext_size()];
        let n = key
            .encrypt(hash.alg(), plaintext, &mut out, label)
            .map_err(|_| CryptoError::Internal("RSA-OAEP encryption failed"))?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// Verifies a signature over a SHA-256 digest.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] if the signature does not verify.
    pub fn verify_digest(&self, alg: RsaSignature, digest: &[u8], sig: &[u8]) -> Result<()> {
        let d = Digest::import_less_safe(digest, &digest::SHA256)
            .map_err(|_| CryptoError::InvalidInput("RS256/PS256 verify a 32-byte SHA-256 digest"))?;
        let params: &'static signature::RsaParameters = match alg {
            RsaSignature::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaSignature::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(params, &self.spki).verify_digest(&d, sig).map_err(|_| CryptoError::Integrity)
    }
}

impl core::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.bits())
    }
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[i..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn key() -> &'static RsaPrivateKey {
        static K: OnceLock<RsaPrivateKey> = OnceLock::new();
        K.get_or_init(|| RsaPrivateKey::generate(RsaBits::B2048).unwrap())
    }

    #[test]
    fn oaep_round_trip_both_hashes_and_label() {
        let k = key();
        assert_eq!(k.bits(), 2048);
        for h in [OaepHash::Sha1, OaepHash::Sha256] {
            let ct = k.public_key().encrypt_oaep(h, b"a data key", Some(b"lbl")).unwrap();
            assert_eq!(k.decrypt_oaep(h, &ct, Some(b"lbl")).unwrap().expose_secret(), b"a data key");
            assert!(matches!(k.decrypt_oaep(h, &ct, None), Err(CryptoError::Decrypt)));
        }
        let ct = k.public_key().encrypt_oaep(OaepHash::Sha1, b"x", None).unwrap();
        assert!(k.decrypt_oaep(OaepHash::Sha256, &ct, None).is_err());
    }

    #[test]
    fn sign_verify_and_round_trip_encodings() {
        let k = key();
        let digest = digest::digest(&digest::SHA256, b"message");
        for alg in [RsaSignature::Rs256, RsaSignature::Ps256] {
            let sig = k.sign_digest(alg, digest.as_ref()).unwrap();
            k.public_key().verify_digest(alg, digest.as_ref(), &sig).unwrap();
            let other = digest::digest(&digest::SHA256, b"other");
            assert!(k.public_key().verify_digest(alg, other.as_ref(), &sig).is_err());
        }
        let again = RsaPrivateKey::from_pkcs8(k.to_pkcs8().unwrap().expose_secret()).unwrap();
        assert_eq!(again.public_key().n(), k.public_key().n());
        let pubk = RsaPublicKey::from_components(k.public_key().n(), k.public_key().e()).unwrap();
        assert_eq!(pubk.bits(), 2048);
        assert!(format!("{k:?}").contains("REDACTED"));
    }

    #[test]
    fn pkcs1v15_implicit_rejection() {
        let k = key();
        // A valid ciphertext, made with AWS-LC's public-key PKCS#1 v1.5 encryption.
        let pk = PublicEncryptingKey::from_der(&k.public_key().spki).unwrap();
        let enc = aws_lc_rs::rsa::Pkcs1PublicEncryptingKey::new(pk).unwrap();
        let mut ct = vec![0u8; enc.ciphertext_size()];
        let ct = enc.encrypt(&[7u8; 32], &mut ct).unwrap().to_vec();
        assert_eq!(k.decrypt_pkcs1v15_implicit(&ct, 32).unwrap().expose_secret(), &[7u8; 32]);
        // Wrong expected length, garbage, or a short ciphertext: a pseudo-random value of
        // the expected length, deterministic per ciphertext, never an error.
        let wrong_len = k.decrypt_pkcs1v15_implicit(&ct, 16).unwrap();
        assert_eq!(wrong_len.len(), 16);
        assert_ne!(wrong_len.expose_secret(), &[7u8; 16]);
        let g1 = k.decrypt_pkcs1v15_implicit(&[0x42; 256], 32).unwrap();
        let g2 = k.decrypt_pkcs1v15_implicit(&[0x43; 256], 32).unwrap();
        assert_ne!(g1.expose_secret(), g2.expose_secret());
        assert_eq!(g1.expose_secret(), k.decrypt_pkcs1v15_implicit(&[0x42; 256], 32).unwrap().expose_secret());
        assert_eq!(k.decrypt_pkcs1v15_implicit(&[1; 10], 32).unwrap().len(), 32);
        assert!(k.decrypt_pkcs1v15_implicit(&ct, 0).is_err());
        assert!(k.decrypt_pkcs1v15_implicit(&ct, 246).is_err());
    }
}
