//! Vault rows and vault ports.

use crate::db::Db;
use crate::error::Result;
use crate::model::{VaultInfo, VaultSettings};
use atrest_infra::columns::Columns;
use sqlx::Row as _;

/// A vault row as stored (its MAC is checked by the caller).
pub(crate) struct VaultRow {
    pub info: VaultInfo,
    pub created: i64,
    pub updated: i64,
    pub mac: Vec<u8>,
}

pub(crate) async fn id_by_name(db: &Db, name: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM vaults WHERE name = $1").bind(name).fetch_optional(db.pool()).await?)
}

pub(crate) async fn insert(db: &Db, v: &VaultInfo, now: i64, mac: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO vaults (id, tenant_id, name, retention_days, purge_protection, allow_rsa1_5, created, updated, mac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&v.id)
    .bind(&v.tenant_id)
    .bind(&v.name)
    .bind(v.settings.retention_days)
    .bind(i64::from(v.settings.purge_protection))
    .bind(i64::from(v.settings.allow_rsa1_5))
    .bind(now)
    .bind(now)
    .bind(mac)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub(crate) async fn by_name(db: &Db, name: &str) -> Result<Option<VaultRow>> {
    let Some(row) = sqlx::query(
        "SELECT id, tenant_id, name, retention_days, purge_protection, allow_rsa1_5, created, updated, mac \
         FROM vaults WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    vault_at(&row, "")
}

/// A `vaults` row from columns named `{p}id`, … (`None` when `{p}id` is NULL).
pub(crate) fn vault_at(row: &impl Columns, p: &str) -> Result<Option<VaultRow>> {
    let Some(id) = row.opt_text(p, "id")? else { return Ok(None) };
    Ok(Some(VaultRow {
        info: VaultInfo {
            id,
            tenant_id: row.text(p, "tenant_id")?,
            name: row.text(p, "name")?,
            settings: VaultSettings {
                retention_days: row.int(p, "retention_days")?,
                purge_protection: row.int(p, "purge_protection")? != 0,
                allow_rsa1_5: row.int(p, "allow_rsa1_5")? != 0,
            },
        },
        created: row.int(p, "created")?,
        updated: row.int(p, "updated")?,
        mac: row.bytes(p, "mac")?,
    }))
}

/// Every vault's name, by name.
pub(crate) async fn names(db: &Db) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM vaults ORDER BY name").fetch_all(db.pool()).await?)
}

/// A tenant's vaults' names, by name.
pub(crate) async fn names_of_tenant(db: &Db, tenant_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM vaults WHERE tenant_id = $1 ORDER BY name")
        .bind(tenant_id)
        .fetch_all(db.pool())
        .await?)
}

pub(crate) async fn update_settings(db: &Db, v: &VaultInfo, updated: i64, mac: &[u8]) -> Result<()> {
    sqlx::query(
        "UPDATE vaults SET retention_days = $1, purge_protection = $2, allow_rsa1_5 = $3, updated = $4, mac = $5 \
         WHERE id = $6",
    )
    .bind(v.settings.retention_days)
    .bind(i64::from(v.settings.purge_protection))
    .bind(i64::from(v.settings.allow_rsa1_5))
    .bind(updated)
    .bind(mac)
    .bind(&v.id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A vault port as stored, with its vault's name.
pub(crate) struct PortRow {
    pub port: i64,
    pub vault_id: String,
    pub vault_name: String,
    pub mac: Vec<u8>,
}

pub(crate) async fn ports(db: &Db) -> Result<Vec<PortRow>> {
    let rows = sqlx::query(
        "SELECT p.port, p.vault_id, p.mac, v.name FROM vault_ports p JOIN vaults v ON v.id = p.vault_id ORDER BY p.port",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PortRow {
                port: r.try_get("port")?,
                vault_id: r.try_get("vault_id")?,
                vault_name: r.try_get("name")?,
                mac: r.try_get("mac")?,
            })
        })
        .collect()
}

/// Records `port` for `vault_id`; `false` when either already has one.
pub(crate) async fn insert_port(db: &Db, port: i64, vault_id: &str, mac: &[u8]) -> Result<bool> {
    let done = sqlx::query("INSERT INTO vault_ports (port, vault_id, mac) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(port)
        .bind(vault_id)
        .bind(mac)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}
