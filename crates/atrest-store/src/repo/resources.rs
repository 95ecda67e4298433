//! Resource rows (every column, compare-and-swap saves), roles, and a resource's
//! erasure.

use crate::error::{Result, StoreError};
use crate::keyvault::{KeyRef, WrappedKey};
use crate::model::{KeySource, Resource, ResourceState};
use crate::rows::{decode_wrapped, encode_wrapped};
use atrest_infra::db::Db;
use sqlx::Row as _;
use sqlx::any::AnyRow;

const RES_COLS: &str = "id, tenant_id, name, identity_id, state, state_reason, key_source, key_uri, kek_vault, \
     kek_name, kek_version, remote_cred, wrapped_version, wrapped_alg, wrapped_key, rk_epoch, old_wrapped, enc_epoch, \
     msg_version, msg_alg, msg_key, diagnostics, created, updated, mac";

/// A resource as stored; its MAC (`loaded_mac`) is checked by the caller.
fn parse(row: &AnyRow) -> Result<Resource> {
    let bad = |what: &str| StoreError::Integrity(format!("the resource row ({what})"));
    let kek_version: String = row.try_get("kek_version")?;
    let old: Vec<u8> = row.try_get("old_wrapped")?;
    Ok(Resource {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        identity_id: row.try_get("identity_id")?,
        state: ResourceState::parse(&row.try_get::<String, _>("state")?).ok_or_else(|| bad("state"))?,
        state_reason: row.try_get("state_reason")?,
        key_source: KeySource::parse(&row.try_get::<String, _>("key_source")?).ok_or_else(|| bad("key source"))?,
        key_uri: row.try_get("key_uri")?,
        kek: KeyRef {
            vault: row.try_get("kek_vault")?,
            name: row.try_get("kek_name")?,
            version: (!kek_version.is_empty()).then_some(kek_version),
        },
        remote_cred: row.try_get("remote_cred")?,
        wrapped: WrappedKey {
            version: row.try_get("wrapped_version")?,
            alg: row.try_get("wrapped_alg")?,
            bytes: row.try_get("wrapped_key")?,
        },
        rk_epoch: row.try_get("rk_epoch")?,
        old_wrapped: if old.is_empty() { None } else { Some(decode_wrapped(&old).ok_or_else(|| bad("old key"))?) },
        enc_epoch: row.try_get("enc_epoch")?,
        msg_wrapped: WrappedKey {
            version: row.try_get("msg_version")?,
            alg: row.try_get("msg_alg")?,
            bytes: row.try_get("msg_key")?,
        },
        diagnostics: row.try_get::<i64, _>("diagnostics")? != 0,
        created: row.try_get("created")?,
        updated: row.try_get("updated")?,
        loaded_mac: row.try_get("mac")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds every column of `r` in `RES_COLS` order, with `mac` as its MAC.
fn bind<'q>(q: AnyQuery<'q>, r: &Resource, mac: Vec<u8>) -> AnyQuery<'q> {
    q.bind(r.id.clone())
        .bind(r.tenant_id.clone())
        .bind(r.name.clone())
        .bind(r.identity_id.clone())
        .bind(r.state.as_str())
        .bind(r.state_reason.clone())
        .bind(r.key_source.as_str())
        .bind(r.key_uri.clone())
        .bind(r.kek.vault.clone())
        .bind(r.kek.name.clone())
        .bind(r.kek.version.clone().unwrap_or_default())
        .bind(r.remote_cred.clone())
        .bind(r.wrapped.version.clone())
        .bind(r.wrapped.alg.clone())
        .bind(r.wrapped.bytes.clone())
        .bind(r.rk_epoch)
        .bind(r.old_wrapped.as_ref().map(encode_wrapped).unwrap_or_default())
        .bind(r.enc_epoch)
        .bind(r.msg_wrapped.version.clone())
        .bind(r.msg_wrapped.alg.clone())
        .bind(r.msg_wrapped.bytes.clone())
        .bind(i64::from(r.diagnostics))
        .bind(r.created)
        .bind(r.updated)
        .bind(mac)
}

pub(crate) async fn insert(db: &Db, r: &Resource, mac: Vec<u8>) -> Result<()> {
    let params: Vec<String> = (1..=RES_COLS.split(',').count()).map(|i| format!("${i}")).collect();
    let sql = format!("INSERT INTO store_resources ({RES_COLS}) VALUES ({})", params.join(", "));
    bind(sqlx::query(&sql), r, mac).execute(db.pool()).await?;
    Ok(())
}

/// Writes every column of `r` (with `mac`) over its row if the row still carries the MAC
/// it was read with (`r.loaded_mac`); `false` when it changed or went meanwhile.
pub(crate) async fn save_if_unchanged<'e, E>(exec: E, r: &Resource, mac: Vec<u8>) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let set: Vec<String> =
        RES_COLS.split(',').map(str::trim).enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
    let n = RES_COLS.split(',').count() + 1;
    let sql = format!("UPDATE store_resources SET {} WHERE id = $1 AND mac = ${n}", set.join(", "));
    let done = bind(sqlx::query(&sql), r, mac).bind(r.loaded_mac.clone()).execute(exec).await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn by_name(db: &Db, tenant_id: &str, name: &str) -> Result<Option<Resource>> {
    let row = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE tenant_id = $1 AND name = $2"))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(parse).transpose()
}

pub(crate) async fn by_id(db: &Db, id: &str) -> Result<Option<Resource>> {
    let row = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(parse).transpose()
}

/// Every resource row, by tenant and name: (id, the row, or why it does not parse).
pub(crate) async fn all(db: &Db) -> Result<Vec<(String, Result<Resource>)>> {
    let rows = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources ORDER BY tenant_id, name"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, parse(r)))).collect()
}

/// A tenant's resources, by name (rows that do not parse as errors).
pub(crate) async fn of_tenant(db: &Db, tenant_id: &str) -> Result<Vec<Result<Resource>>> {
    let rows = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE tenant_id = $1 ORDER BY name"))
        .bind(tenant_id)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(parse).collect())
}

/// Resources in `state` (rows that do not parse as errors).
pub(crate) async fn in_state(db: &Db, state: ResourceState) -> Result<Vec<Result<Resource>>> {
    let rows = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE state = $1"))
        .bind(state.as_str())
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(parse).collect())
}

/// Erases a resource: its objects, messages, roles, jobs, blob bookkeeping and its row
/// (with it, the wrapped resource and message keys), in one transaction.
pub(crate) async fn erase(db: &Db, id: &str) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    for table in [
        "store_objects",
        "store_s3_parts",
        "store_messages",
        "store_roles",
        "store_jobs",
        "store_blob_removals",
        "store_blob_writes",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE resource_id = $1")).bind(id).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM store_resources WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A principal's role on a resource: (role, MAC).
pub(crate) async fn role(db: &Db, resource_id: &str, principal_id: &str) -> Result<Option<(String, Vec<u8>)>> {
    let row = sqlx::query("SELECT role, mac FROM store_roles WHERE resource_id = $1 AND principal_id = $2")
        .bind(resource_id)
        .bind(principal_id)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| Ok((r.try_get("role")?, r.try_get("mac")?))).transpose()
}

/// Every role on a resource: (principal id, role, MAC).
pub(crate) async fn roles(db: &Db, resource_id: &str) -> Result<Vec<(String, String, Vec<u8>)>> {
    let rows = sqlx::query("SELECT principal_id, role, mac FROM store_roles WHERE resource_id = $1")
        .bind(resource_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|r| Ok((r.try_get("principal_id")?, r.try_get("role")?, r.try_get("mac")?))).collect()
}

/// Replaces a principal's role on a resource (`None`: removes it), in one transaction.
pub(crate) async fn set_role(
    db: &Db,
    resource_id: &str,
    principal_id: &str,
    role: Option<(&str, Vec<u8>)>,
) -> Result<()> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM store_roles WHERE resource_id = $1 AND principal_id = $2")
        .bind(resource_id)
        .bind(principal_id)
        .execute(&mut *tx)
        .await?;
    if let Some((role, mac)) = role {
        sqlx::query("INSERT INTO store_roles (resource_id, principal_id, role, mac) VALUES ($1, $2, $3, $4)")
            .bind(resource_id)
            .bind(principal_id)
            .bind(role)
            .bind(mac)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
