//! Row shapes shared by the code that reads objects (`objects.rs`, `blobs.rs`, `jobs.rs`)
//! and the group commit that writes them (`commit.rs`), so neither depends on the other.

/// One object row, as written.
#[derive(Debug, Clone)]
pub(crate) struct ObjectRow {
    pub resource_id: String,
    pub kind: &'static str,
    pub name_hash: Vec<u8>,
    pub id: String,
    pub generation: i64,
    pub size: i64,
    pub rk_epoch: i64,
    pub enc_epoch: i64,
    pub name_sealed: Vec<u8>,
    pub wrapped_dek: Vec<u8>,
    pub body: Option<Vec<u8>>,
    pub created: i64,
    pub updated: i64,
    pub mac: Vec<u8>,
}
