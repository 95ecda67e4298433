//! Secrets, their versions and the per-vault secrets keys.

use crate::db::Db;
use crate::error::Result;
use atrest_infra::columns::Columns;
use sqlx::any::AnyRow;

/// A `secrets` row.
pub(crate) struct SecretRow {
    pub vault_id: String,
    pub name_lc: String,
    pub name: String,
    pub latest_version: String,
    pub deleted_at: Option<i64>,
    pub scheduled_purge: Option<i64>,
    /// The MAC it was read with (empty for a row not yet stored): conditional writes
    /// compare it.
    pub stored_mac: Vec<u8>,
}

/// A `secret_versions` row.
#[derive(Clone)]
pub(crate) struct SecretVersionRow {
    pub vault_id: String,
    pub name_lc: String,
    pub version: String,
    pub seq: i64,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    /// `""` when unset.
    pub content_type: String,
    pub tags: String,
    pub wrapped_key: Vec<u8>,
    pub sealed: Vec<u8>,
    /// The MAC it was read with (empty for a row not yet stored).
    pub stored_mac: Vec<u8>,
}

/// A `secret_keks` row: the vault's secrets key as the key backend's handle.
pub(crate) struct KekRow {
    pub vault_id: String,
    pub material: Vec<u8>,
    pub created: i64,
}

pub(crate) const SECRET_COLS: &str = "vault_id, name_lc, name, latest_version, deleted_at, scheduled_purge, mac";
pub(crate) const VERSION_COLS: &str = "vault_id, name_lc, version, seq, enabled, nbf, exp, created, updated, content_type, tags, \
                            wrapped_key, sealed, mac";

fn secret_row(r: &AnyRow) -> Result<(SecretRow, Vec<u8>)> {
    secret_row_at(r, "")
}

/// A `secrets` row from columns named `{p}vault_id`, … (a joined read names them apart).
pub(crate) fn secret_row_at(r: &impl Columns, p: &str) -> Result<(SecretRow, Vec<u8>)> {
    let mac = r.bytes(p, "mac")?;
    Ok((
        SecretRow {
            vault_id: r.text(p, "vault_id")?,
            name_lc: r.text(p, "name_lc")?,
            name: r.text(p, "name")?,
            latest_version: r.text(p, "latest_version")?,
            deleted_at: r.opt_int(p, "deleted_at")?,
            scheduled_purge: r.opt_int(p, "scheduled_purge")?,
            stored_mac: mac.clone(),
        },
        mac,
    ))
}

fn version_row(r: &AnyRow) -> Result<(SecretVersionRow, Vec<u8>)> {
    version_row_at(r, "")
}

/// A `secret_versions` row from columns named `{p}vault_id`, ….
pub(crate) fn version_row_at(r: &impl Columns, p: &str) -> Result<(SecretVersionRow, Vec<u8>)> {
    let mac = r.bytes(p, "mac")?;
    Ok((
        SecretVersionRow {
            vault_id: r.text(p, "vault_id")?,
            name_lc: r.text(p, "name_lc")?,
            version: r.text(p, "version")?,
            seq: r.int(p, "seq")?,
            enabled: r.int(p, "enabled")? != 0,
            nbf: r.opt_int(p, "nbf")?,
            exp: r.opt_int(p, "exp")?,
            created: r.int(p, "created")?,
            updated: r.int(p, "updated")?,
            content_type: r.text(p, "content_type")?,
            tags: r.text(p, "tags")?,
            wrapped_key: r.bytes(p, "wrapped_key")?,
            sealed: r.bytes(p, "sealed")?,
            stored_mac: mac.clone(),
        },
        mac,
    ))
}

/// A `secret_keks` row from columns named `{p}vault_id`, … (`None` when NULL).
pub(crate) fn kek_at(r: &impl Columns, p: &str) -> Result<Option<(KekRow, Vec<u8>)>> {
    let Some(vault_id) = r.opt_text(p, "vault_id")? else { return Ok(None) };
    Ok(Some((
        KekRow { vault_id, material: r.bytes(p, "material")?, created: r.int(p, "created")? },
        r.bytes(p, "mac")?,
    )))
}

/// The vault's secrets key and its stored MAC.
pub(crate) async fn kek(db: &Db, vault_id: &str) -> Result<Option<(KekRow, Vec<u8>)>> {
    let row = sqlx::query("SELECT vault_id, material, created, mac FROM secret_keks WHERE vault_id = $1")
        .bind(vault_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) => kek_at(&r, "")?,
        None => None,
    })
}

/// Stores a vault's secrets key unless one is there already (two nodes may race to
/// make it: the first one's stays, and both then read it back).
pub(crate) async fn insert_kek(db: &Db, k: &KekRow, mac: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO secret_keks (vault_id, material, created, mac) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (vault_id) DO NOTHING",
    )
    .bind(&k.vault_id)
    .bind(&k.material)
    .bind(k.created)
    .bind(mac)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A secret row and its stored MAC.
pub(crate) async fn secret(db: &Db, vault_id: &str, name_lc: &str) -> Result<Option<(SecretRow, Vec<u8>)>> {
    let row = sqlx::query(&format!("SELECT {SECRET_COLS} FROM secrets WHERE vault_id = $1 AND name_lc = $2"))
        .bind(vault_id)
        .bind(name_lc)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(secret_row).transpose()
}

/// A page of a vault's secrets, live or soft-deleted, after `after` by lowercase name.
pub(crate) async fn secrets_page(
    db: &Db,
    vault_id: &str,
    deleted: bool,
    after: &str,
    limit: i64,
) -> Result<Vec<(SecretRow, Vec<u8>)>> {
    let cond = if deleted { "deleted_at IS NOT NULL" } else { "deleted_at IS NULL" };
    let rows = sqlx::query(&format!(
        "SELECT {SECRET_COLS} FROM secrets WHERE vault_id = $1 AND {cond} AND name_lc > $2 ORDER BY name_lc LIMIT $3"
    ))
    .bind(vault_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(secret_row).collect()
}

/// Soft-deleted secrets whose purge date is at or before `now`, in every vault.
pub(crate) async fn secrets_due(db: &Db, now: i64) -> Result<Vec<(SecretRow, Vec<u8>)>> {
    let rows = sqlx::query(&format!(
        "SELECT {SECRET_COLS} FROM secrets WHERE scheduled_purge IS NOT NULL AND scheduled_purge <= $1"
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(secret_row).collect()
}

/// Updates a secret row (delete, recover) if it is still as read (its MAC `was`): on
/// PostgreSQL nothing serializes writers, so a change made meanwhile is never
/// overwritten. `false`: it changed; read it again.
pub(crate) async fn update_secret_if(db: &Db, s: &SecretRow, mac: &[u8], was: &[u8]) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE secrets SET name = $1, latest_version = $2, deleted_at = $3, scheduled_purge = $4, mac = $5 \
         WHERE vault_id = $6 AND name_lc = $7 AND mac = $8",
    )
    .bind(&s.name)
    .bind(&s.latest_version)
    .bind(s.deleted_at)
    .bind(s.scheduled_purge)
    .bind(mac)
    .bind(&s.vault_id)
    .bind(&s.name_lc)
    .bind(was)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A secret version row and its stored MAC.
pub(crate) async fn version(
    db: &Db,
    vault_id: &str,
    name_lc: &str,
    version: &str,
) -> Result<Option<(SecretVersionRow, Vec<u8>)>> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLS} FROM secret_versions WHERE vault_id = $1 AND name_lc = $2 AND version = $3"
    ))
    .bind(vault_id)
    .bind(name_lc)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(version_row).transpose()
}

/// A page of a secret's versions after sequence number `after`, oldest first.
pub(crate) async fn versions_page(
    db: &Db,
    vault_id: &str,
    name_lc: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(SecretVersionRow, Vec<u8>)>> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLS} FROM secret_versions WHERE vault_id = $1 AND name_lc = $2 AND seq > $3 \
         ORDER BY seq LIMIT $4"
    ))
    .bind(vault_id)
    .bind(name_lc)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(version_row).collect()
}

/// The highest version sequence number of a secret (`None`: no versions).
pub(crate) async fn max_seq(db: &Db, vault_id: &str, name_lc: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MAX(seq) FROM secret_versions WHERE vault_id = $1 AND name_lc = $2")
        .bind(vault_id)
        .bind(name_lc)
        .fetch_one(db.pool())
        .await?)
}

/// Rewrites a version's attributes, content type and tags (never its value) if the row
/// is still as read (its MAC `was`). `false`: it changed; read it again.
pub(crate) async fn update_version_if(db: &Db, v: &SecretVersionRow, mac: &[u8], was: &[u8]) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE secret_versions SET enabled = $1, nbf = $2, exp = $3, updated = $4, content_type = $5, tags = $6, \
         mac = $7 WHERE vault_id = $8 AND name_lc = $9 AND version = $10 AND mac = $11",
    )
    .bind(i64::from(v.enabled))
    .bind(v.nbf)
    .bind(v.exp)
    .bind(v.updated)
    .bind(&v.content_type)
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

/// Writes new versions and the secret's row that makes them visible, in one transaction:
/// the row is inserted (`was` = `None`: the name is new) or updated only if still as read
/// (its MAC `was`). `false` (nothing written): another writer got there first — the name
/// was made, changed, deleted or purged, or took the same version number — read again.
pub(crate) async fn commit_versions(
    db: &Db,
    versions: &[(SecretVersionRow, Vec<u8>)],
    secret: &SecretRow,
    secret_mac: &[u8],
    was: Option<&[u8]>,
) -> Result<bool> {
    let contended = |e: &sqlx::Error| matches!(e, sqlx::Error::Database(d) if d.is_unique_violation());
    let mut tx = db.pool().begin().await?;
    for (v, mac) in versions {
        let inserted = sqlx::query(&format!(
            "INSERT INTO secret_versions ({VERSION_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&v.vault_id)
        .bind(&v.name_lc)
        .bind(&v.version)
        .bind(v.seq)
        .bind(i64::from(v.enabled))
        .bind(v.nbf)
        .bind(v.exp)
        .bind(v.created)
        .bind(v.updated)
        .bind(&v.content_type)
        .bind(&v.tags)
        .bind(&v.wrapped_key)
        .bind(&v.sealed)
        .bind(mac)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if contended(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    let sql = match was {
        None => {
            "INSERT INTO secrets (name, latest_version, deleted_at, scheduled_purge, mac, vault_id, name_lc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        }
        Some(_) => {
            "UPDATE secrets SET name = $1, latest_version = $2, deleted_at = $3, scheduled_purge = $4, mac = $5 \
             WHERE vault_id = $6 AND name_lc = $7 AND mac = $8"
        }
    };
    let mut q = sqlx::query(sql)
        .bind(&secret.name)
        .bind(&secret.latest_version)
        .bind(secret.deleted_at)
        .bind(secret.scheduled_purge)
        .bind(secret_mac)
        .bind(&secret.vault_id)
        .bind(&secret.name_lc);
    if let Some(w) = was {
        q = q.bind(w);
    }
    let written = q.execute(&mut *tx).await;
    match written {
        Ok(r) if r.rows_affected() == 1 => {}
        Ok(_) => return Ok(false),
        Err(e) if contended(&e) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(true)
}

/// Erases a soft-deleted secret (its row, then its versions) in one transaction, if its
/// row is still as read (its MAC `was`: still deleted, not recovered or set meanwhile).
/// `false`: it changed, and nothing was erased.
pub(crate) async fn erase_if(db: &Db, vault_id: &str, name_lc: &str, was: &[u8]) -> Result<bool> {
    let mut tx = db.pool().begin().await?;
    let gone =
        sqlx::query("DELETE FROM secrets WHERE vault_id = $1 AND name_lc = $2 AND mac = $3 AND deleted_at IS NOT NULL")
            .bind(vault_id)
            .bind(name_lc)
            .bind(was)
            .execute(&mut *tx)
            .await?;
    if gone.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM secret_versions WHERE vault_id = $1 AND name_lc = $2")
        .bind(vault_id)
        .bind(name_lc)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
