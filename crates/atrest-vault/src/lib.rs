//! atrest's key vault: vaults, keys and their versions, secrets, lifecycle (soft delete, recover,
//! purge, purge protection, retention), and key operations behind the AKV rules — with
//! no HTTP. Storage goes through `repo` (the only SQL; sqlx on SQLite or PostgreSQL), key
//! custody through `atrest_crypto::backend::KeyBackend`, and time through an
//! `atrest_infra::clock::Clock` tests drive.
//!
//! # Invariants
//! - Key material is stored only as the backend's handle: for the software backend, the
//!   key sealed under a root-derived key with (vault, key name, version) as context.
//! - Every security-relevant row carries a MAC under a root-derived key and is checked on
//!   every read; a mismatch fails closed with `IntegrityCheckFailed`.
//! - Nothing is cached: a disabled key or changed setting applies to the next request.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod admin;
pub mod audit;
mod audit_commit;
mod backup;
mod byok;
pub mod commit_mark;
mod error;
mod keys;
pub mod model;
mod ops;
mod permission;
pub mod platform;
mod ports;
mod repo;
mod request;
mod rotation;
mod s3keys;
pub mod schema;
mod secrets;
mod service;
mod usage;

pub use access::{
    IssuedToken, MAX_TOKEN_TTL, Principal, PrincipalKind, RESOURCE_IDENTITY_PREFIX, Role, Tenant, is_resource_identity,
    resource_identity_name,
};
pub use admin::TokenInfo;
pub use atrest_infra::ErrorKind;
pub(crate) use atrest_infra::{clock, db, rowmac};
pub use atrest_wire::akv::ImportJwk;
pub use error::{Refusal, Result, VaultError};
pub use keys::{CreateKey, NewKeyAttributes, UpdateKey};
pub use ops::{GCM_LIMIT, KeyOp, OpInput, OpOutput};
pub use permission::{Permission, SecretPermission};
pub use request::RequestAuth;
pub use rotation::{
    Action, LifetimeAction, PolicyAttributes, RotationAction, RotationOutcome, RotationPolicy, Trigger, parse_duration,
};
pub use s3keys::{IssuedS3Key, S3_KEY_PREFIX, S3KeyInfo};
pub use secrets::{MAX_SECRET_TAGS, MAX_SECRET_VALUE, SetSecret, UpdateSecret};
pub use service::VaultService;
