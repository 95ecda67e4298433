//! Infrastructure the vault (`atrest-vault`) and the data service (`atrest-store`) share,
//! so neither borrows it from the other: the database seam ([`db`]: one sqlx pool,
//! SQLite or PostgreSQL, migrations under an advisory lock, the commit sequence of the
//! rollback anchor), row MACs ([`rowmac`]), the clock seam ([`clock`]) and the job-lease
//! seam ([`lease`]). Errors are [`InfraError`]; each domain crate converts them into
//! its own, and every error kind is an [`ErrorKind`] that front ends map to their wire
//! format. No domain logic and no HTTP here.

#![forbid(unsafe_code)]

pub mod clock;
pub mod columns;
pub mod db;
mod error;
pub mod lease;
pub mod reader;
pub mod rowmac;

pub use error::{ErrorKind, InfraError, Result, describe_db_error};
