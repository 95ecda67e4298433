//! Rotation policies.

use crate::db::Db;
use crate::error::Result;
use sqlx::Row as _;

/// A rotation policy row as stored (the policy as JSON).
pub(crate) struct PolicyRow {
    pub policy: String,
    pub created: i64,
    pub updated: i64,
    pub notified_version: String,
    pub mac: Vec<u8>,
}

pub(crate) async fn policy(db: &Db, vault_id: &str, name_lc: &str) -> Result<Option<PolicyRow>> {
    let row = sqlx::query(
        "SELECT policy, created, updated, notified_version, mac FROM rotation_policies \
         WHERE vault_id = $1 AND name_lc = $2",
    )
    .bind(vault_id)
    .bind(name_lc)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(PolicyRow {
            policy: r.try_get("policy")?,
            created: r.try_get("created")?,
            updated: r.try_get("updated")?,
            notified_version: r.try_get("notified_version")?,
            mac: r.try_get("mac")?,
        })
    })
    .transpose()
}

/// Replaces a key's rotation policy (one transaction).
pub(crate) async fn replace(db: &Db, vault_id: &str, name_lc: &str, p: &PolicyRow) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM rotation_policies WHERE vault_id = $1 AND name_lc = $2")
        .bind(vault_id)
        .bind(name_lc)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO rotation_policies (vault_id, name_lc, policy, created, updated, notified_version, mac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(vault_id)
    .bind(name_lc)
    .bind(&p.policy)
    .bind(p.created)
    .bind(p.updated)
    .bind(&p.notified_version)
    .bind(&p.mac)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// (vault id, lowercase key name) of every live key with a rotation policy.
pub(crate) async fn live_keys_with_policies(db: &Db) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT p.vault_id AS vault_id, p.name_lc AS name_lc FROM rotation_policies p \
         JOIN keys k ON k.vault_id = p.vault_id AND k.name_lc = p.name_lc WHERE k.deleted_at IS NULL",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| Ok((r.try_get("vault_id")?, r.try_get("name_lc")?))).collect()
}
