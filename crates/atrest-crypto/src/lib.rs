//! atrest's crypto core.
//!
//! - Primitives, all from AWS-LC through `aws-lc-rs` (bulk AES-256-GCM may run on
//!   *ring* outside `fips` builds, see [`aead`]): [`aead`], [`keywrap`], [`rsa`], [`ec`],
//!   [`kdf`], [`rand`].
//! - Secret types that zeroize and redact: [`secret`].
//! - A seam for whoever holds long-lived keys (software now, PKCS#11 later): [`backend`].
//! - The two at-rest formats: [`record`] and [`stream`], whose byte layouts live in the
//!   C-free `atrest-format` crate and are specified in `docs/formats.md`.
//!
//! # Key discipline
//! Data is never sealed directly under a long-lived key. Each write brings a fresh data
//! key; each object gets a working key and a key commitment derived from it with HKDF
//! and a random salt (see `docs/formats.md`); nonces are counters under that key.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aead;
pub mod backend;
mod derive;
pub mod ec;
mod error;
pub mod hash;
pub mod kdf;
pub mod keywrap;
pub mod rand;
pub mod record;
pub mod rsa;
pub mod secret;
pub mod stream;
#[cfg(test)]
mod vectors;

pub use derive::MAX_CONTEXT_LEN;
pub use error::{CryptoError, Result};
pub use secret::{SecretBytes, SecretKey};

/// Whether this build uses only the FIPS 140-3 validated AWS-LC module.
#[must_use]
pub const fn is_fips_build() -> bool {
    cfg!(feature = "fips")
}
