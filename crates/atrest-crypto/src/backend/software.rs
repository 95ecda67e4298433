//! Software key custody: key material lives at rest only as a record sealed under a key
//! derived from the root key, with the key's binding (vault, name, version) as context.
//! In memory, the keys of the last [`OPENED_KEYS`] handles used stay opened for at most
//! [`OPENED_FOR`] (parsing and checking an RSA private key costs more than the
//! operation): in zeroizing types, found only by the SHA-256 of (binding, sealed handle)
//! — so a handle moved to another key's row, or edited, never finds a cached key — and
//! dropped, zeroized, when pushed out or expired. A purged key's material is gone from
//! memory within that time at the latest.

use super::{BackendKey, Capabilities, ImportKey, KeyBackend, KeySpec, Protection, PublicKey, SignAlg, WrapAlg};
use crate::aead::AeadKey;
use crate::ec::{EcCurve, EcPrivateKey};
use crate::rsa::{OaepHash, RsaBits, RsaPrivateKey, RsaSignature};
use crate::secret::{SecretBytes, SecretKey};
use crate::{CryptoError, Result, kdf, keywrap, record};

/// Length of the key an `RSA1_5` unwrap returns (AES-256). With implicit rejection the
/// length must be fixed in advance: any other length yields a pseudo-random value.
pub const RSA1_5_KEY_LEN: usize = 32;

const TAG_RSA: u8 = 1;
const TAG_EC_P256: u8 = 2;
const TAG_EC_P384: u8 = 3;
const TAG_AES: u8 = 4;

/// How many opened keys the backend keeps (see the module's documentation).
pub const OPENED_KEYS: usize = 256;

/// How long an opened key is kept after it was opened.
pub const OPENED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Opened keys by SHA-256(binding, handle), oldest first, with when each was opened.
type Opened = std::collections::VecDeque<([u8; 32], std::time::Instant, std::sync::Arc<Material>)>;

/// Keys sealed by a root key.
pub struct SoftwareBackend {
    sealing_key: SecretKey,
    /// Opened keys (see [`Opened`]).
    opened: std::sync::Mutex<Opened>,
}

enum Material {
    Rsa(RsaPrivateKey),
    Ec(EcPrivateKey),
    Aes(SecretKey),
}

impl SoftwareBackend {
    /// A backend whose sealing key is derived from `root` (domain-separated, so the root
    /// key itself never seals anything).
    ///
    /// # Errors
    /// HKDF failure (never, for this length).
    pub fn new(root: &SecretKey) -> Result<Self> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        kdf::hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"software-backend/key-material"], &mut k[..])?;
        Ok(Self { sealing_key: SecretKey::from_slice(&k[..])?, opened: std::sync::Mutex::default() })
    }

    fn seal(&self, m: &Material, binding: &[&[u8]]) -> Result<Vec<u8>> {
        let (tag, body) = match m {
            Material::Rsa(k) => (TAG_RSA, k.to_pkcs8()?),
            Material::Ec(k) => {
                (if k.public_key().curve() == EcCurve::P256 { TAG_EC_P256 } else { TAG_EC_P384 }, k.to_pkcs8()?)
            }
            Material::Aes(k) => (TAG_AES, SecretBytes::new(k.expose_secret().to_vec())),
        };
        let mut plain = SecretBytes::new(Vec::with_capacity(body.len() + 1));
        plain.extend(&[tag]);
        plain.extend(body.expose_secret());
        record::seal(&self.sealing_key, binding, plain.expose_secret())
    }

    /// An opened key, from the cache or opened now (and cached).
    fn opened(&self, handle: &[u8], binding: &[&[u8]]) -> Result<std::sync::Arc<Material>> {
        // Every part length-prefixed, the number of parts first: no two (binding, handle)
        // pairs frame alike.
        let count = (binding.len() as u64).to_be_bytes();
        let lens: Vec<[u8; 8]> =
            binding.iter().chain(std::iter::once(&handle)).map(|b| (b.len() as u64).to_be_bytes()).collect();
        let mut parts: Vec<&[u8]> = vec![&count];
        for (b, l) in binding.iter().chain(std::iter::once(&handle)).zip(&lens) {
            parts.push(l);
            parts.push(b);
        }
        let id = crate::hash::sha256(&parts);
        if let Ok(mut cache) = self.opened.lock() {
            while cache.front().is_some_and(|(_, at, _)| at.elapsed() > OPENED_FOR) {
                cache.pop_front();
            }
            if let Some((_, _, m)) = cache.iter().find(|(k, _, _)| k == &id) {
                return Ok(m.clone());
            }
        }
        let m = std::sync::Arc::new(self.open(handle, binding)?);
        if let Ok(mut cache) = self.opened.lock() {
            if cache.len() >= OPENED_KEYS {
                cache.pop_front();
            }
            cache.push_back((id, std::time::Instant::now(), m.clone()));
        }
        Ok(m)
    }

    fn open(&self, handle: &[u8], binding: &[&[u8]]) -> Result<Material> {
        // Any failure here is stored material that does not open under its own identity:
        // a modified row, a handle moved between keys, or another root key. It must not
        // look like the caller's bad ciphertext, so it gets its own error.
        let plain = SecretBytes::new(
            record::open(&self.sealing_key, binding, handle).map_err(|_| CryptoError::StoredKeyIntegrity)?,
        );
        let (&tag, body) = plain.expose_secret().split_first().ok_or(CryptoError::Integrity)?;
        Ok(match tag {
            TAG_RSA => Material::Rsa(RsaPrivateKey::from_pkcs8(body)?),
            TAG_EC_P256 => Material::Ec(EcPrivateKey::from_pkcs8(EcCurve::P256, body)?),
            TAG_EC_P384 => Material::Ec(EcPrivateKey::from_pkcs8(EcCurve::P384, body)?),
            TAG_AES => Material::Aes(SecretKey::from_slice(body)?),
            _ => return Err(CryptoError::Integrity),
        })
    }

    fn store(&self, m: Material, binding: &[&[u8]]) -> Result<BackendKey> {
        let (spec, public) = match &m {
            Material::Rsa(k) => (KeySpec::Rsa(bits(k.bits())?), Some(PublicKey::Rsa(k.public_key().clone()))),
            Material::Ec(k) => (KeySpec::Ec(k.public_key().curve()), Some(PublicKey::Ec(k.public_key().clone()))),
            Material::Aes(_) => (KeySpec::Aes256, None),
        };
        Ok(BackendKey { spec, handle: self.seal(&m, binding)?, public })
    }
}

fn bits(n: usize) -> Result<RsaBits> {
    match n {
        2048 => Ok(RsaBits::B2048),
        3072 => Ok(RsaBits::B3072),
        4096 => Ok(RsaBits::B4096),
        _ => Err(CryptoError::InvalidKey("RSA keys must be 2048, 3072 or 4096 bits")),
    }
}

impl KeyBackend for SoftwareBackend {
    fn name(&self) -> &'static str {
        "software"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            protection: Protection::Software,
            specs: vec![
                KeySpec::Rsa(RsaBits::B2048),
                KeySpec::Rsa(RsaBits::B3072),
                KeySpec::Rsa(RsaBits::B4096),
                KeySpec::Ec(EcCurve::P256),
                KeySpec::Ec(EcCurve::P384),
                KeySpec::Aes256,
            ],
            wrap_algs: vec![WrapAlg::RsaOaep, WrapAlg::RsaOaep256, WrapAlg::Rsa1_5, WrapAlg::A256Kw],
            sign_algs: vec![SignAlg::Rs256, SignAlg::Ps256, SignAlg::Es256, SignAlg::Es384],
            gcm: true,
            blocking: false,
        }
    }

    fn generate(&self, spec: KeySpec, binding: &[&[u8]]) -> Result<BackendKey> {
        let m = match spec {
            KeySpec::Rsa(b) => Material::Rsa(RsaPrivateKey::generate(b)?),
            KeySpec::Ec(c) => Material::Ec(EcPrivateKey::generate(c)?),
            KeySpec::Aes256 => Material::Aes(SecretKey::generate()?),
        };
        self.store(m, binding)
    }

    fn import(&self, key: ImportKey, binding: &[&[u8]]) -> Result<BackendKey> {
        let m = match key {
            ImportKey::Rsa(k) => Material::Rsa(k),
            ImportKey::Ec(k) => Material::Ec(k),
            ImportKey::Aes256(k) => Material::Aes(k),
        };
        self.store(m, binding)
    }

    fn rebind(&self, key: &BackendKey, from: &[&[u8]], to: &[&[u8]]) -> Result<BackendKey> {
        let m = self.open(&key.handle, from)?;
        self.store(m, to)
    }

    fn wrap_key(&self, key: &BackendKey, binding: &[&[u8]], alg: WrapAlg, plaintext: &[u8]) -> Result<Vec<u8>> {
        match (&*self.opened(&key.handle, binding)?, alg) {
            (Material::Rsa(k), WrapAlg::RsaOaep) => k.public_key().encrypt_oaep(OaepHash::Sha1, plaintext, None),
            (Material::Rsa(k), WrapAlg::RsaOaep256) => k.public_key().encrypt_oaep(OaepHash::Sha256, plaintext, None),
            (Material::Aes(k), WrapAlg::A256Kw) => keywrap::wrap_kw(k, plaintext),
            (_, WrapAlg::Rsa1_5) => Err(CryptoError::Unsupported("RSA1_5 is accepted for unwrap only")),
            _ => Err(CryptoError::Unsupported("this key type cannot wrap with that algorithm")),
        }
    }

    fn unwrap_key(&self, key: &BackendKey, binding: &[&[u8]], alg: WrapAlg, wrapped: &[u8]) -> Result<SecretBytes> {
        match (&*self.opened(&key.handle, binding)?, alg) {
            (Material::Rsa(k), WrapAlg::RsaOaep) => k.decrypt_oaep(OaepHash::Sha1, wrapped, None),
            (Material::Rsa(k), WrapAlg::RsaOaep256) => k.decrypt_oaep(OaepHash::Sha256, wrapped, None),
            (Material::Rsa(k), WrapAlg::Rsa1_5) => k.decrypt_pkcs1v15_implicit(wrapped, RSA1_5_KEY_LEN),
            (Material::Aes(k), WrapAlg::A256Kw) => keywrap::unwrap_kw(k, wrapped),
            _ => Err(CryptoError::Unsupported("this key type cannot unwrap with that algorithm")),
        }
    }

    fn encrypt_gcm(
        &self,
        key: &BackendKey,
        binding: &[&[u8]],
        iv: [u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, [u8; 16])> {
        let m = self.opened(&key.handle, binding)?;
        let Material::Aes(k) = &*m else {
            return Err(CryptoError::Unsupported("A256GCM needs an AES key"));
        };
        let mut buf = plaintext.to_vec();
        let tag = AeadKey::new(k)?.seal_in_place(iv, aad, &mut buf)?;
        Ok((buf, tag))
    }

    fn decrypt_gcm(
        &self,
        key: &BackendKey,
        binding: &[&[u8]],
        iv: [u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<SecretBytes> {
        let m = self.opened(&key.handle, binding)?;
        let Material::Aes(k) = &*m else {
            return Err(CryptoError::Unsupported("A256GCM needs an AES key"));
        };
        let mut buf = SecretBytes::new(ciphertext.to_vec());
        AeadKey::new(k)?.open_in_place(iv, aad, buf.as_mut_slice(), tag).map_err(|_| CryptoError::Decrypt)?;
        Ok(buf)
    }

    fn sign(&self, key: &BackendKey, binding: &[&[u8]], alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>> {
        match (&*self.opened(&key.handle, binding)?, alg) {
            (Material::Rsa(k), SignAlg::Rs256) => k.sign_digest(RsaSignature::Rs256, digest),
            (Material::Rsa(k), SignAlg::Ps256) => k.sign_digest(RsaSignature::Ps256, digest),
            (Material::Ec(k), SignAlg::Es256) if k.public_key().curve() == EcCurve::P256 => k.sign_digest(digest),
            (Material::Ec(k), SignAlg::Es384) if k.public_key().curve() == EcCurve::P384 => k.sign_digest(digest),
            _ => Err(CryptoError::Unsupported("this key type cannot sign with that algorithm")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsa::RsaBits;

    fn backend() -> SoftwareBackend {
        SoftwareBackend::new(&SecretKey::from_slice(&[9; 32]).unwrap()).unwrap()
    }

    const BIND: &[&[u8]] = &[b"vault", b"key", b"v1"];

    /// An opened key is reused only for the very handle and binding it was opened from: a
    /// handle under another binding, or an edited handle, still fails to open.
    #[test]
    fn opened_keys_are_found_only_by_handle_and_binding() {
        let be = backend();
        let k = be.generate(KeySpec::Aes256, BIND).unwrap();
        let a = be.opened(&k.handle, BIND).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &be.opened(&k.handle, BIND).unwrap()), "the second use is cached");
        assert!(matches!(be.opened(&k.handle, &[b"vault", b"key", b"v2"]), Err(CryptoError::StoredKeyIntegrity)));
        let mut edited = k.handle.clone();
        let last = edited.len() - 1;
        edited[last] ^= 1;
        assert!(matches!(be.opened(&edited, BIND), Err(CryptoError::StoredKeyIntegrity)));
        for i in 0..OPENED_KEYS {
            let b = i.to_be_bytes();
            let other = be.generate(KeySpec::Aes256, &[&b]).unwrap();
            be.opened(&other.handle, &[&b]).unwrap();
        }
        assert!(!std::sync::Arc::ptr_eq(&a, &be.opened(&k.handle, BIND).unwrap()), "pushed out, opened again");
        assert!(be.opened.lock().unwrap().len() <= OPENED_KEYS);
    }

    #[test]
    fn passes_the_backend_conformance_suite() {
        crate::backend::conformance::check(&backend());
    }

    #[test]
    fn aes_wrap_unwrap_and_binding() {
        let b = backend();
        let k = b.generate(KeySpec::Aes256, BIND).unwrap();
        assert!(k.public.is_none());
        let w = b.wrap_key(&k, BIND, WrapAlg::A256Kw, &[7; 32]).unwrap();
        assert_eq!(b.unwrap_key(&k, BIND, WrapAlg::A256Kw, &w).unwrap().expose_secret(), &[7; 32]);
        // The sealed handle opens only under its own binding.
        let other: &[&[u8]] = &[b"vault", b"key", b"v2"];
        assert!(matches!(b.unwrap_key(&k, other, WrapAlg::A256Kw, &w), Err(CryptoError::StoredKeyIntegrity)));
        // A256GCM through the seam; a wrong tag is the caller's error, not an integrity one.
        let (ct, tag) = b.encrypt_gcm(&k, BIND, [1; 12], b"aad", b"hello").unwrap();
        assert_eq!(b.decrypt_gcm(&k, BIND, [1; 12], b"aad", &ct, &tag).unwrap().expose_secret(), b"hello");
        assert!(matches!(b.decrypt_gcm(&k, BIND, [1; 12], b"aax", &ct, &tag), Err(CryptoError::Decrypt)));
        assert!(b.sign(&k, BIND, SignAlg::Es256, &[0; 32]).is_err());
        // Rebinding moves the key to another identity; the old one no longer opens it.
        let other2: &[&[u8]] = &[b"vault-2", b"key", b"v1"];
        let moved = b.rebind(&k, BIND, other2).unwrap();
        assert_eq!(b.unwrap_key(&moved, other2, WrapAlg::A256Kw, &w).unwrap().expose_secret(), &[7; 32]);
        assert!(b.unwrap_key(&moved, BIND, WrapAlg::A256Kw, &w).is_err());
        // The handle does not contain the key bytes.
        let raw = b.open(&k.handle, BIND).unwrap();
        let Material::Aes(raw) = raw else { panic!() };
        assert!(!k.handle.windows(32).any(|w| w == raw.expose_secret()));
    }

    #[test]
    fn rsa_and_ec_through_the_seam() {
        let b = backend();
        let k = b.generate(KeySpec::Rsa(RsaBits::B2048), BIND).unwrap();
        let Some(PublicKey::Rsa(pubk)) = &k.public else { panic!() };
        let ct = pubk.encrypt_oaep(OaepHash::Sha256, b"dek", None).unwrap();
        assert_eq!(b.unwrap_key(&k, BIND, WrapAlg::RsaOaep256, &ct).unwrap().expose_secret(), b"dek");
        let sig = b.sign(&k, BIND, SignAlg::Ps256, &[1; 32]).unwrap();
        pubk.verify_digest(RsaSignature::Ps256, &[1; 32], &sig).unwrap();
        assert!(b.wrap_key(&k, BIND, WrapAlg::Rsa1_5, b"x").is_err());

        let e = b.generate(KeySpec::Ec(EcCurve::P384), BIND).unwrap();
        let sig = b.sign(&e, BIND, SignAlg::Es384, &[2; 48]).unwrap();
        let Some(PublicKey::Ec(ep)) = &e.public else { panic!() };
        ep.verify_digest(&[2; 48], &sig).unwrap();
        assert!(b.sign(&e, BIND, SignAlg::Es256, &[2; 32]).is_err());
    }
}
