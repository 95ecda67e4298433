//! Persistence: the only place in the data service with SQL. One module per use case;
//! each function is one statement or one transaction (a few take the caller's
//! transaction, so a batch spans several) and returns rows as stored. Row MACs, locking
//! and the meaning of rows stay with the callers.

pub(crate) mod blobs;
pub(crate) mod infra;
pub(crate) mod jobs;
pub(crate) mod messages;
pub(crate) mod objects;
pub(crate) mod resources;
pub(crate) mod s3parts;
