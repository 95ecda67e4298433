//! atrest's encrypted data service: resources holding records, blobs and transient
//! messages, encrypted before they touch storage, under platform- or customer-managed
//! keys.
//!
//! ```text
//! key-encryption key (in a vault: platform-managed, or the customer's key)
//!   └─ wraps ─ resource key (one per resource; stored only wrapped)
//!        └─ wraps ─ data key (fresh per write; stored wrapped in the object's metadata)
//!             └─ seals ─ the object and its name (context = resource ‖ object ‖ generation)
//! infrastructure key (from the master secret, sealed by a second, platform-owned root)
//!   └─ seals ─ what the layer above produced (same context)
//! ```
//!
//! # Invariants
//! - No long-lived key seals data directly: records use the record format and blobs the
//!   stream format, both of which derive a working key per object from a random salt.
//! - Identifiers (resource, object, generation) are the context of every seal and wrap,
//!   so a ciphertext or wrapped key moved to another object does not open.
//! - Changing the key-encryption key re-wraps the resource key and never touches data.
//! - The vault is reached only through [`keyvault::KeyVault`], as the resource's
//!   identity: a refusal there makes the resource `KeyInaccessible`, never a silent
//!   fallback. Unwrapped resource keys live in memory for at most the cache lifetime
//!   (plus the grace period while the vault is unreachable).
//! - Blob stores ([`blobstore`]) receive only bodies sealed by both layers.
//! - Every metadata row carries a MAC under a key from the master secret; names
//!   are stored only sealed, found by a keyed hash.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod blobs;
pub mod blobstore;
mod cache;
mod clients;
mod commit;
mod encryption;
mod error;
pub mod hierarchy;
mod jobs;
mod keypath;
pub mod keyvault;
pub mod keyvault_conformance;
pub mod layers;
mod messages;
mod metrics;
pub mod model;
mod objects;
mod origins;
pub mod remote;
mod repo;
mod resource_rows;
mod resources;
mod rows;
pub mod s3;
pub mod s3meta;
mod service;
mod usage;
mod verify;

pub use blobs::{BlobRead, ByteRange, blob_key};
pub use clients::DeploymentClients;
pub use encryption::EncryptionRequest;
pub use error::{Result, StoreError};
pub use jobs::KINDS as JOB_KINDS;
pub use messages::MAX_MESSAGE;
pub use metrics::StoreMetrics;
pub use objects::{MAX_NAME, MAX_RECORD, Precondition};
pub use origins::{Origins, VaultPorts};
pub use service::{MIGRATIONS, Seams, StoreConfig, StoreService};
pub use usage::{KeyUsage, VersionUsage};
pub use verify::RowReport;
