//! The key-backend conformance suite: what every [`KeyBackend`] must do, driven by what
//! it reports in [`KeyBackend::capabilities`]. The software backend runs it in its unit
//! tests; a PKCS#11 backend runs the same against its token. Whatever the backend does
//! not report is skipped here (and refused by the vault, naming it).
//!
//! The suite panics with a message naming the failed property; call it from a test.

use super::{Capabilities, ImportKey, KeyBackend, KeySpec, PublicKey, SignAlg, WrapAlg};
use crate::CryptoError;
use crate::ec::EcCurve;
use crate::rsa::{OaepHash, RsaSignature};
use crate::secret::SecretKey;

const BIND: &[&[u8]] = &[b"vault", b"key", b"v1"];
const OTHER: &[&[u8]] = &[b"vault", b"key", b"v2"];

/// Runs every check `b`'s capabilities call for.
///
/// # Panics
/// On the first property that does not hold.
pub fn check(b: &dyn KeyBackend) {
    let caps = b.capabilities();
    assert!(!caps.specs.is_empty(), "{}: reports no key types", b.name());
    if caps.specs.contains(&KeySpec::Aes256) {
        aes(b, &caps);
    }
    // RSA operations do not depend on the size: the first size reported is enough (a
    // 4096-bit generation takes seconds in a debug build).
    if let Some(spec) = caps.specs.iter().find(|s| matches!(s, KeySpec::Rsa(_))) {
        rsa(b, &caps, *spec);
    }
    for spec in &caps.specs {
        if let KeySpec::Ec(curve) = spec {
            ec(b, &caps, *spec, *curve);
        }
    }
}

fn aes(b: &dyn KeyBackend, caps: &Capabilities) {
    let name = b.name();
    let k = b.generate(KeySpec::Aes256, BIND).unwrap_or_else(|e| panic!("{name}: AES-256 generate: {e}"));
    assert!(k.public.is_none(), "{name}: an AES key has no public part");
    if caps.wrap_algs.contains(&WrapAlg::A256Kw) {
        let w = b.wrap_key(&k, BIND, WrapAlg::A256Kw, &[7; 32]).expect("A256KW wrap");
        assert_eq!(b.unwrap_key(&k, BIND, WrapAlg::A256Kw, &w).expect("A256KW unwrap").expose_secret(), &[7; 32]);
        assert!(
            matches!(b.unwrap_key(&k, OTHER, WrapAlg::A256Kw, &w), Err(CryptoError::StoredKeyIntegrity)),
            "{name}: a key used under another identity must fail as stored-key integrity"
        );
        let mut bad = w.clone();
        bad[3] ^= 1;
        assert!(
            matches!(b.unwrap_key(&k, BIND, WrapAlg::A256Kw, &bad), Err(CryptoError::Decrypt)),
            "{name}: a damaged wrapped key is the caller's error, uniform"
        );
        let moved = b.rebind(&k, BIND, OTHER).expect("rebind");
        assert_eq!(b.unwrap_key(&moved, OTHER, WrapAlg::A256Kw, &w).expect("after rebind").expose_secret(), &[7; 32]);
    }
    if caps.gcm {
        let (ct, tag) = b.encrypt_gcm(&k, BIND, [1; 12], b"aad", b"hello").expect("A256GCM encrypt");
        assert_eq!(b.decrypt_gcm(&k, BIND, [1; 12], b"aad", &ct, &tag).expect("decrypt").expose_secret(), b"hello");
        assert!(
            matches!(b.decrypt_gcm(&k, BIND, [1; 12], b"aax", &ct, &tag), Err(CryptoError::Decrypt)),
            "{name}: wrong AAD is a uniform decryption failure"
        );
    }
    assert!(b.sign(&k, BIND, SignAlg::Es256, &[0; 32]).is_err(), "{name}: an AES key does not sign");
    // An imported key is the one used, and its handle never holds its bytes.
    let raw = [0x5a; 32];
    let imported = b
        .import(ImportKey::Aes256(SecretKey::from_slice(&raw).expect("key")), BIND)
        .unwrap_or_else(|e| panic!("{name}: AES import: {e}"));
    assert!(!imported.handle.windows(32).any(|w| w == raw), "{name}: the handle holds the key's bytes");
    if caps.wrap_algs.contains(&WrapAlg::A256Kw) {
        let local = crate::keywrap::wrap_kw(&SecretKey::from_slice(&raw).expect("key"), &[9; 32]).expect("wrap");
        let out = b.unwrap_key(&imported, BIND, WrapAlg::A256Kw, &local).expect("unwrap with the imported key");
        assert_eq!(out.expose_secret(), &[9; 32], "{name}: the imported key is not the one used");
    }
}

fn rsa(b: &dyn KeyBackend, caps: &Capabilities, spec: KeySpec) {
    let name = b.name();
    let k = b.generate(spec, BIND).unwrap_or_else(|e| panic!("{name}: {spec:?} generate: {e}"));
    let Some(PublicKey::Rsa(public)) = &k.public else { panic!("{name}: an RSA key without its public part") };
    for (alg, hash) in [(WrapAlg::RsaOaep256, OaepHash::Sha256), (WrapAlg::RsaOaep, OaepHash::Sha1)] {
        if caps.wrap_algs.contains(&alg) {
            let ct = public.encrypt_oaep(hash, b"data key", None).expect("OAEP");
            let out = b.unwrap_key(&k, BIND, alg, &ct).unwrap_or_else(|e| panic!("{name}: {alg:?} unwrap: {e}"));
            assert_eq!(out.expose_secret(), b"data key");
            assert!(
                matches!(b.unwrap_key(&k, OTHER, alg, &ct), Err(CryptoError::StoredKeyIntegrity)),
                "{name}: an RSA key used under another identity must fail as stored-key integrity"
            );
        }
    }
    for (alg, rsa_alg) in [(SignAlg::Ps256, RsaSignature::Ps256), (SignAlg::Rs256, RsaSignature::Rs256)] {
        if caps.sign_algs.contains(&alg) {
            let sig = b.sign(&k, BIND, alg, &[1; 32]).unwrap_or_else(|e| panic!("{name}: {alg:?}: {e}"));
            public.verify_digest(rsa_alg, &[1; 32], &sig).unwrap_or_else(|e| panic!("{name}: {alg:?} verify: {e}"));
        }
    }
    assert!(b.sign(&k, BIND, SignAlg::Es256, &[1; 32]).is_err(), "{name}: an RSA key does not sign ES256");
}

fn ec(b: &dyn KeyBackend, caps: &Capabilities, spec: KeySpec, curve: EcCurve) {
    let name = b.name();
    let k = b.generate(spec, BIND).unwrap_or_else(|e| panic!("{name}: {spec:?} generate: {e}"));
    let Some(PublicKey::Ec(public)) = &k.public else { panic!("{name}: an EC key without its public part") };
    let (alg, wrong, len) = match curve {
        EcCurve::P256 => (SignAlg::Es256, SignAlg::Es384, 32),
        EcCurve::P384 => (SignAlg::Es384, SignAlg::Es256, 48),
    };
    if caps.sign_algs.contains(&alg) {
        let digest = vec![2; len];
        let sig = b.sign(&k, BIND, alg, &digest).unwrap_or_else(|e| panic!("{name}: {alg:?}: {e}"));
        public.verify_digest(&digest, &sig).unwrap_or_else(|e| panic!("{name}: {alg:?} verify: {e}"));
        assert!(b.sign(&k, BIND, wrong, &digest).is_err(), "{name}: {spec:?} must refuse {wrong:?}");
    }
    assert!(b.wrap_key(&k, BIND, WrapAlg::A256Kw, &[1; 32]).is_err(), "{name}: an EC key does not wrap");
}
