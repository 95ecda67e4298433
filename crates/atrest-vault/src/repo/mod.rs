//! Persistence: the only place in the vault with SQL. One module per use case; each
//! function is one statement (or one transaction) on the deployment's database and
//! returns rows as stored. Row MACs are computed and checked by the callers, which own
//! the row's meaning. `snapshot` reads a request's authorization (vault, token, principal,
//! policy, key version) in one statement.

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod rotation;
pub(crate) mod s3keys;
pub(crate) mod secrets;
pub(crate) mod snapshot;
pub(crate) mod vaults;
