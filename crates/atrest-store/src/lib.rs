//! The core of atrest's encrypted data service, without storage or HTTP: the key
//! hierarchy and the two encryption layers every stored object goes through.
//!
//! ```text
//! key-encryption key (in a vault: platform-managed, or the customer's key)
//!   └─ wraps ─ resource key (one per resource; stored only wrapped)
//!        └─ wraps ─ data key (fresh per write; stored wrapped in the object's metadata)
//!             └─ seals ─ the object (record format, context = resource ‖ object ‖ generation)
//! infrastructure key (from a second, platform-owned root)
//!   └─ seals ─ what the layer above produced (record format, same context)
//! ```
//!
//! # Invariants
//! - No long-lived key seals data directly: both layers use the record format, which
//!   derives a working key per object from a random salt (see `atrest-crypto`).
//! - Identifiers (resource, object, generation) are the context of every seal and wrap,
//!   so a ciphertext or wrapped key moved to another object does not open.
//! - Re-wrapping the resource key under a new key-encryption key never touches data.
//! - The vault is reached only through [`keyvault::KeyVault`], as the resource's
//!   identity: a refusal there is [`StoreError::KeyInaccessible`], never a silent fallback.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod hierarchy;
pub mod keyvault;
pub mod layers;

pub use error::StoreError;
