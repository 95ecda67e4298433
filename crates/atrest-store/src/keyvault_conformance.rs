//! The vault-client conformance suite: what every [`KeyVault`] implementation must do
//! for the data service, whatever carries the calls. The in-process client runs it in
//! `tests/hierarchy.rs`; the HTTPS client against a real `atrest serve` in
//! `atrest-server/tests/vault_client.rs`.
//!
//! The suite panics with a message naming the failed property; call it from a test.

use crate::StoreError;
use crate::keyvault::{KeyRef, KeyVault};
use atrest_crypto::SecretKey;

/// The keys the suite uses, in the vault behind the client, which may get, wrap and
/// unwrap with both: `oct` an oct-256 key and `rsa` an RSA-2048 key, each with at least
/// two versions (`oct_first` names the older one of `oct`); `missing` a key that does
/// not exist.
pub struct Fixture {
    /// An oct-256 key, versionless.
    pub oct: KeyRef,
    /// The older version of `oct`.
    pub oct_first: String,
    /// An RSA-2048 key, versionless.
    pub rsa: KeyRef,
    /// A key that does not exist.
    pub missing: KeyRef,
}

/// Runs every check.
///
/// # Panics
/// On the first property that does not hold.
pub async fn check(kv: &dyn KeyVault, f: &Fixture) {
    // get: the latest version and what the data service needs to know.
    let oct = kv.get(&f.oct).await.expect("get oct");
    assert_eq!((oct.kty.as_str(), oct.size_bits, oct.enabled), ("oct", 256, true), "{oct:?}");
    assert_ne!(oct.version, f.oct_first, "a versionless get returns the latest version");
    let rsa = kv.get(&f.rsa).await.expect("get rsa");
    assert_eq!((rsa.kty.as_str(), rsa.size_bits), ("RSA", 2048), "{rsa:?}");

    // wrap and unwrap round trips, with the version and algorithm recorded.
    for (kek, alg, version) in [(&f.oct, "A256KW", &oct.version), (&f.rsa, "RSA-OAEP-256", &rsa.version)] {
        let key = SecretKey::generate().expect("key");
        let wrapped = kv.wrap(kek, &key).await.unwrap_or_else(|e| panic!("wrap with {kek}: {e}"));
        assert_eq!((wrapped.alg.as_str(), &wrapped.version), (alg, version), "{kek}");
        assert!(!wrapped.bytes.windows(32).any(|w| w == key.expose_secret()), "{kek}: the key in the clear");
        let back = kv.unwrap(kek, &wrapped).await.unwrap_or_else(|e| panic!("unwrap with {kek}: {e}"));
        assert_eq!(back.expose_secret(), key.expose_secret(), "{kek}: round trip");
        // A modified wrapped key never unwraps to something else.
        let mut bad = wrapped.clone();
        bad.bytes[5] ^= 1;
        assert!(kv.unwrap(kek, &bad).await.is_err(), "{kek}: a modified wrapped key unwrapped");
    }

    // A pinned version wraps with that version, and what it wrapped unwraps later.
    let pinned = KeyRef { version: Some(f.oct_first.clone()), ..f.oct.clone() };
    let key = SecretKey::generate().expect("key");
    let wrapped = kv.wrap(&pinned, &key).await.expect("wrap with a pinned version");
    assert_eq!(wrapped.version, f.oct_first, "a pinned reference wraps with its version");
    assert_eq!(kv.unwrap(&f.oct, &wrapped).await.expect("unwrap").expose_secret(), key.expose_secret());

    // A key that does not exist: refused as inaccessible, saying what to do.
    match kv.get(&f.missing).await {
        Err(StoreError::KeyInaccessible { fix, transient: false, .. }) => assert!(!fix.is_empty()),
        other => panic!("a missing key must be KeyInaccessible, not transient: {other:?}"),
    }
    let key = SecretKey::generate().expect("key");
    assert!(
        matches!(kv.wrap(&f.missing, &key).await, Err(StoreError::KeyInaccessible { .. })),
        "wrapping with a missing key"
    );
}
