//! Keys and key versions.

use crate::db::Db;
use crate::error::Result;
use atrest_infra::columns::Columns;
use sqlx::any::AnyRow;

/// A `keys` row.
#[derive(Clone)]
pub(crate) struct KeyRow {
    pub vault_id: String,
    pub name_lc: String,
    pub name: String,
    pub latest_version: String,
    pub deleted_at: Option<i64>,
    pub scheduled_purge: Option<i64>,
}

/// A `key_versions` row.
#[derive(Clone)]
pub(crate) struct VersionRow {
    pub vault_id: String,
    pub name_lc: String,
    pub version: String,
    pub seq: i64,
    pub kty: String,
    pub key_ops: String,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: String,
    pub public_jwk: String,
    pub material: Vec<u8>,
    pub gcm_count: i64,
    /// The key's name as first created (from the keys row; not a column of this table).
    pub display_name: String,
}

pub(crate) const KEY_COLS: &str = "vault_id, name_lc, name, latest_version, deleted_at, scheduled_purge, mac";
pub(crate) const VERSION_COLS: &str = "vault_id, name_lc, version, seq, kty, key_ops, enabled, nbf, exp, created, updated, tags, \
                            public_jwk, material, gcm_count, mac";

fn key_row(r: &AnyRow) -> Result<(KeyRow, Vec<u8>)> {
    key_row_at(r, "")
}

/// A `keys` row from columns named `{p}vault_id`, … (a joined read names them apart).
pub(crate) fn key_row_at(r: &impl Columns, p: &str) -> Result<(KeyRow, Vec<u8>)> {
    Ok((
        KeyRow {
            vault_id: r.text(p, "vault_id")?,
            name_lc: r.text(p, "name_lc")?,
            name: r.text(p, "name")?,
            latest_version: r.text(p, "latest_version")?,
            deleted_at: r.opt_int(p, "deleted_at")?,
            scheduled_purge: r.opt_int(p, "scheduled_purge")?,
        },
        r.bytes(p, "mac")?,
    ))
}

fn version_row(r: &AnyRow) -> Result<(VersionRow, Vec<u8>)> {
    version_row_at(r, "")
}

/// A `key_versions` row from columns named `{p}vault_id`, ….
pub(crate) fn version_row_at(r: &impl Columns, p: &str) -> Result<(VersionRow, Vec<u8>)> {
    Ok((
        VersionRow {
            vault_id: r.text(p, "vault_id")?,
            name_lc: r.text(p, "name_lc")?,
            version: r.text(p, "version")?,
            seq: r.int(p, "seq")?,
            kty: r.text(p, "kty")?,
            key_ops: r.text(p, "key_ops")?,
            enabled: r.int(p, "enabled")? != 0,
            nbf: r.opt_int(p, "nbf")?,
            exp: r.opt_int(p, "exp")?,
            created: r.int(p, "created")?,
            updated: r.int(p, "updated")?,
            tags: r.text(p, "tags")?,
            public_jwk: r.text(p, "public_jwk")?,
            material: r.bytes(p, "material")?,
            gcm_count: r.int(p, "gcm_count")?,
            display_name: String::new(),
        },
        r.bytes(p, "mac")?,
    ))
}

/// A key row and its stored MAC.
pub(crate) async fn key(db: &Db, vault_id: &str, name_lc: &str) -> Result<Option<(KeyRow, Vec<u8>)>> {
    let row = sqlx::query(&format!("SELECT {KEY_COLS} FROM keys WHERE vault_id = $1 AND name_lc = $2"))
        .bind(vault_id)
        .bind(name_lc)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(key_row).transpose()
}

/// A page of a vault's keys, live or soft-deleted, after `after` by lowercase name
/// (`limit` rows at most).
pub(crate) async fn keys_page(
    db: &Db,
    vault_id: &str,
    deleted: bool,
    after: &str,
    limit: i64,
) -> Result<Vec<(KeyRow, Vec<u8>)>> {
    let cond = if deleted { "deleted_at IS NOT NULL" } else { "deleted_at IS NULL" };
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLS} FROM keys WHERE vault_id = $1 AND {cond} AND name_lc > $2 ORDER BY name_lc LIMIT $3"
    ))
    .bind(vault_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(key_row).collect()
}

/// Soft-deleted keys whose purge date is at or before `now`, in every vault.
pub(crate) async fn keys_due(db: &Db, now: i64) -> Result<Vec<(KeyRow, Vec<u8>)>> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLS} FROM keys WHERE scheduled_purge IS NOT NULL AND scheduled_purge <= $1"
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(key_row).collect()
}

/// Inserts (`insert`) or updates a key row.
pub(crate) async fn write_key(db: &Db, k: &KeyRow, mac: &[u8], insert: bool) -> Result<()> {
    let sql = if insert {
        "INSERT INTO keys (name, latest_version, deleted_at, scheduled_purge, mac, vault_id, name_lc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)"
    } else {
        "UPDATE keys SET name = $1, latest_version = $2, deleted_at = $3, scheduled_purge = $4, mac = $5 \
         WHERE vault_id = $6 AND name_lc = $7"
    };
    sqlx::query(sql)
        .bind(&k.name)
        .bind(&k.latest_version)
        .bind(k.deleted_at)
        .bind(k.scheduled_purge)
        .bind(mac)
        .bind(&k.vault_id)
        .bind(&k.name_lc)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A key version row and its stored MAC.
pub(crate) async fn version(
    db: &Db,
    vault_id: &str,
    name_lc: &str,
    version: &str,
) -> Result<Option<(VersionRow, Vec<u8>)>> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLS} FROM key_versions WHERE vault_id = $1 AND name_lc = $2 AND version = $3"
    ))
    .bind(vault_id)
    .bind(name_lc)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(version_row).transpose()
}

/// A page of a key's versions after sequence number `after`, oldest first.
pub(crate) async fn versions_page(
    db: &Db,
    vault_id: &str,
    name_lc: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(VersionRow, Vec<u8>)>> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLS} FROM key_versions WHERE vault_id = $1 AND name_lc = $2 AND seq > $3 ORDER BY seq LIMIT $4"
    ))
    .bind(vault_id)
    .bind(name_lc)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(version_row).collect()
}

/// The highest version sequence number of a key (`None`: no versions).
pub(crate) async fn max_seq(db: &Db, vault_id: &str, name_lc: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MAX(seq) FROM key_versions WHERE vault_id = $1 AND name_lc = $2")
        .bind(vault_id)
        .bind(name_lc)
        .fetch_one(db.pool())
        .await?)
}

pub(crate) async fn insert_version(db: &Db, v: &VersionRow, mac: &[u8]) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO key_versions ({VERSION_COLS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&v.vault_id)
    .bind(&v.name_lc)
    .bind(&v.version)
    .bind(v.seq)
    .bind(&v.kty)
    .bind(&v.key_ops)
    .bind(i64::from(v.enabled))
    .bind(v.nbf)
    .bind(v.exp)
    .bind(v.created)
    .bind(v.updated)
    .bind(&v.tags)
    .bind(&v.public_jwk)
    .bind(&v.material)
    .bind(v.gcm_count)
    .bind(mac)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Rewrites a version's attributes and tags if the row is still as read (its MAC `was`);
/// the usage count is not touched. `false`: it changed; read it again.
pub(crate) async fn update_version_if(db: &Db, v: &VersionRow, mac: &[u8], was: &[u8]) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE key_versions SET key_ops = $1, enabled = $2, nbf = $3, exp = $4, updated = $5, tags = $6, mac = $7 \
         WHERE vault_id = $8 AND name_lc = $9 AND version = $10 AND mac = $11",
    )
    .bind(&v.key_ops)
    .bind(i64::from(v.enabled))
    .bind(v.nbf)
    .bind(v.exp)
    .bind(v.updated)
    .bind(&v.tags)
    .bind(mac)
    .bind(&v.vault_id)
    .bind(&v.name_lc)
    .bind(&v.version)
    .bind(was)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a version's usage count if the row is still as read (its MAC `was`).
pub(crate) async fn set_gcm_count_if(db: &Db, v: &VersionRow, mac: &[u8], was: &[u8]) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE key_versions SET gcm_count = $1, mac = $2 WHERE vault_id = $3 AND name_lc = $4 AND version = $5 \
         AND mac = $6",
    )
    .bind(v.gcm_count)
    .bind(mac)
    .bind(&v.vault_id)
    .bind(&v.name_lc)
    .bind(&v.version)
    .bind(was)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a key's versions (a restore that failed half-way cleans up with this).
pub(crate) async fn delete_versions(db: &Db, vault_id: &str, name_lc: &str) -> Result<()> {
    sqlx::query("DELETE FROM key_versions WHERE vault_id = $1 AND name_lc = $2")
        .bind(vault_id)
        .bind(name_lc)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Erases a key: its versions, its rotation policy and its row, in one transaction.
pub(crate) async fn erase(db: &Db, vault_id: &str, name_lc: &str) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    for table in ["key_versions", "rotation_policies", "keys"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE vault_id = $1 AND name_lc = $2"))
            .bind(vault_id)
            .bind(name_lc)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
