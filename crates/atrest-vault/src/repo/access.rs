//! Tenants, principals, tokens and access policies.

use crate::db::Db;
use crate::error::Result;
use atrest_infra::columns::Columns;
use sqlx::Row as _;

/// A tenant row as stored.
pub(crate) struct TenantRow {
    pub id: String,
    pub name: String,
    pub created: i64,
    pub mac: Vec<u8>,
}

pub(crate) async fn insert_tenant(db: &Db, id: &str, name: &str, created: i64, mac: &[u8]) -> Result<()> {
    sqlx::query("INSERT INTO tenants (id, name, created, mac) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(name)
        .bind(created)
        .bind(mac)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub(crate) async fn tenant_by_name(db: &Db, name: &str) -> Result<Option<TenantRow>> {
    let Some(r) = sqlx::query("SELECT id, name, created, mac FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(TenantRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created: r.try_get("created")?,
        mac: r.try_get("mac")?,
    }))
}

pub(crate) async fn tenant_name(db: &Db, id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1").bind(id).fetch_optional(db.pool()).await?)
}

/// Every tenant's name, by name.
pub(crate) async fn tenant_names(db: &Db) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM tenants ORDER BY name").fetch_all(db.pool()).await?)
}

/// A principal row as stored (kind and role as their stored names).
pub(crate) struct PrincipalRow {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub role: String,
    pub disabled: bool,
    pub created: i64,
    pub mac: Vec<u8>,
}

pub(crate) async fn principal_id(db: &Db, tenant_id: &str, name: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM principals WHERE tenant_id = $1 AND name = $2")
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(db.pool())
        .await?)
}

pub(crate) async fn insert_principal(db: &Db, p: &PrincipalRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO principals (id, tenant_id, name, kind, role, disabled, created, mac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&p.id)
    .bind(&p.tenant_id)
    .bind(&p.name)
    .bind(&p.kind)
    .bind(&p.role)
    .bind(i64::from(p.disabled))
    .bind(p.created)
    .bind(&p.mac)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub(crate) async fn principal(db: &Db, id: &str) -> Result<Option<PrincipalRow>> {
    let Some(r) =
        sqlx::query("SELECT id, tenant_id, name, kind, role, disabled, created, mac FROM principals WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?
    else {
        return Ok(None);
    };
    principal_at(&r, "")
}

/// A `principals` row from columns named `{p}id`, … (`None` when `{p}id` is NULL).
pub(crate) fn principal_at(r: &impl Columns, p: &str) -> Result<Option<PrincipalRow>> {
    let Some(id) = r.opt_text(p, "id")? else { return Ok(None) };
    Ok(Some(PrincipalRow {
        id,
        tenant_id: r.text(p, "tenant_id")?,
        name: r.text(p, "name")?,
        kind: r.text(p, "kind")?,
        role: r.text(p, "role")?,
        disabled: r.int(p, "disabled")? != 0,
        created: r.int(p, "created")?,
        mac: r.bytes(p, "mac")?,
    }))
}

/// A tenant's principals' ids, by name.
pub(crate) async fn principal_ids(db: &Db, tenant_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM principals WHERE tenant_id = $1 ORDER BY name")
        .bind(tenant_id)
        .fetch_all(db.pool())
        .await?)
}

pub(crate) async fn set_principal_disabled(db: &Db, id: &str, disabled: bool, mac: &[u8]) -> Result<()> {
    sqlx::query("UPDATE principals SET disabled = $1, mac = $2 WHERE id = $3")
        .bind(i64::from(disabled))
        .bind(mac)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A token row as stored: an HMAC of the secret, never the secret.
pub(crate) struct TokenRow {
    pub id: String,
    pub principal_id: String,
    pub hash: Vec<u8>,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: bool,
    pub mac: Vec<u8>,
}

pub(crate) async fn insert_token(db: &Db, t: &TokenRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, principal_id, hash, created, expires, revoked, mac) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&t.id)
    .bind(&t.principal_id)
    .bind(&t.hash)
    .bind(t.created)
    .bind(t.expires)
    .bind(i64::from(t.revoked))
    .bind(&t.mac)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub(crate) async fn revoke_token(db: &Db, id: &str, mac: &[u8]) -> Result<()> {
    sqlx::query("UPDATE tokens SET revoked = 1, mac = $1 WHERE id = $2").bind(mac).bind(id).execute(db.pool()).await?;
    Ok(())
}

pub(crate) async fn token(db: &Db, id: &str) -> Result<Option<TokenRow>> {
    let Some(r) =
        sqlx::query("SELECT id, principal_id, hash, created, expires, revoked, mac FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?
    else {
        return Ok(None);
    };
    token_at(&r, "")
}

/// A `tokens` row from columns named `{p}id`, … (`None` when `{p}id` is NULL: a joined
/// read found no token).
pub(crate) fn token_at(r: &impl Columns, p: &str) -> Result<Option<TokenRow>> {
    let Some(id) = r.opt_text(p, "id")? else { return Ok(None) };
    Ok(Some(TokenRow {
        id,
        principal_id: r.text(p, "principal_id")?,
        hash: r.bytes(p, "hash")?,
        created: r.int(p, "created")?,
        expires: r.opt_int(p, "expires")?,
        revoked: r.int(p, "revoked")? != 0,
        mac: r.bytes(p, "mac")?,
    }))
}

/// A principal's tokens' ids, newest first.
pub(crate) async fn token_ids(db: &Db, principal_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM tokens WHERE principal_id = $1 ORDER BY created DESC, id")
        .bind(principal_id)
        .fetch_all(db.pool())
        .await?)
}

/// An access policy row as stored (permissions as their stored JSON list).
pub(crate) struct PolicyRow {
    pub permissions: String,
    pub updated: i64,
    pub mac: Vec<u8>,
}

/// Replaces a principal's policy on a vault (one transaction).
pub(crate) async fn replace_policy(
    db: &Db,
    vault_id: &str,
    principal_id: &str,
    permissions: &str,
    updated: i64,
    mac: &[u8],
) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM access_policies WHERE vault_id = $1 AND principal_id = $2")
        .bind(vault_id)
        .bind(principal_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO access_policies (vault_id, principal_id, permissions, updated, mac) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(vault_id)
    .bind(principal_id)
    .bind(permissions)
    .bind(updated)
    .bind(mac)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn remove_policy(db: &Db, vault_id: &str, principal_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM access_policies WHERE vault_id = $1 AND principal_id = $2")
        .bind(vault_id)
        .bind(principal_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Removes every policy of a principal; how many there were.
pub(crate) async fn remove_policies_of(db: &Db, principal_id: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM access_policies WHERE principal_id = $1")
        .bind(principal_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn policy(db: &Db, vault_id: &str, principal_id: &str) -> Result<Option<PolicyRow>> {
    let Some(r) =
        sqlx::query("SELECT permissions, updated, mac FROM access_policies WHERE vault_id = $1 AND principal_id = $2")
            .bind(vault_id)
            .bind(principal_id)
            .fetch_optional(db.pool())
            .await?
    else {
        return Ok(None);
    };
    policy_at(&r, "")
}

/// An `access_policies` row from columns named `{p}permissions`, … (`None` when
/// `{p}permissions` is NULL).
pub(crate) fn policy_at(r: &impl Columns, p: &str) -> Result<Option<PolicyRow>> {
    let Some(permissions) = r.opt_text(p, "permissions")? else { return Ok(None) };
    Ok(Some(PolicyRow { permissions, updated: r.int(p, "updated")?, mac: r.bytes(p, "mac")? }))
}

/// The principals holding a policy on a vault.
pub(crate) async fn policy_holders(db: &Db, vault_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT principal_id FROM access_policies WHERE vault_id = $1")
        .bind(vault_id)
        .fetch_all(db.pool())
        .await?)
}
