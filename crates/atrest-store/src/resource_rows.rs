//! Resource rows: their columns, MACs, compare-and-swap saves and lookups (the
//! persistence of resources; objects are in `rows.rs` and `objects.rs`).

use crate::error::{Result, StoreError};
use crate::keyvault::{KeyRef, WrappedKey};
use crate::model::{KeySource, Resource, ResourceState};
use crate::service::{RES_COLS, StoreService, decode_wrapped, encode_wrapped};
use atrest_infra::rowmac::Field;
use sqlx::Row;

impl StoreService {
    // ---- rows ----

    fn resource_fields<'a>(r: &'a Resource, bufs: &'a (Vec<u8>, Vec<u8>, Vec<u8>)) -> Vec<Field<'a>> {
        vec![
            Field::Text(&r.id),
            Field::Text(&r.tenant_id),
            Field::Text(&r.name),
            Field::Text(&r.identity_id),
            Field::Text(r.state.as_str()),
            Field::Text(&r.state_reason),
            Field::Text(r.key_source.as_str()),
            Field::Text(&r.key_uri),
            Field::Text(&r.kek.vault),
            Field::Text(&r.kek.name),
            Field::Text(r.kek.version.as_deref().unwrap_or("")),
            Field::Bytes(&r.remote_cred),
            Field::Bytes(&bufs.0),
            Field::Int(r.rk_epoch),
            Field::Bytes(&bufs.1),
            Field::Int(r.enc_epoch),
            Field::Bytes(&bufs.2),
            Field::Int(i64::from(r.diagnostics)),
            Field::Int(r.created),
            Field::Int(r.updated),
        ]
    }

    fn resource_bufs(r: &Resource) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            encode_wrapped(&r.wrapped),
            r.old_wrapped.as_ref().map(encode_wrapped).unwrap_or_default(),
            encode_wrapped(&r.msg_wrapped),
        )
    }

    pub(crate) fn resource_from_row(&self, row: &sqlx::any::AnyRow) -> Result<Resource> {
        let bad = |what: &str| StoreError::Integrity(format!("the resource row ({what})"));
        let kek_version: String = row.try_get("kek_version")?;
        let old: Vec<u8> = row.try_get("old_wrapped")?;
        let r = Resource {
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
        };
        let mac = r.loaded_mac.clone();
        let bufs = Self::resource_bufs(&r);
        self.mac
            .check("store_resources", &Self::resource_fields(&r, &bufs), &mac, || format!("resource {}", r.name))
            .map_err(|_| {
            self.metrics.integrity_error(&Self::label(&r));
            tracing::error!(resource = %r.name, "resource row failed its MAC check");
            StoreError::Integrity(format!("the metadata of resource {}", r.name))
        })?;
        Ok(r)
    }

    pub(crate) fn resource_mac(&self, r: &Resource) -> Vec<u8> {
        let bufs = Self::resource_bufs(r);
        self.mac.tag("store_resources", &Self::resource_fields(r, &bufs))
    }

    /// Writes every column of `r` over the row it was read from: an UPDATE (a resource
    /// deleted meanwhile stays deleted, its keys erased) that only applies if the row is
    /// still as read (compare-and-swap on its MAC), else `Conflict`.
    pub(crate) async fn save_resource<'e, E>(&self, exec: E, r: &Resource) -> Result<()>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let set: Vec<String> =
            RES_COLS.split(',').map(str::trim).enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
        let n = RES_COLS.split(',').count() + 1;
        let sql = format!("UPDATE store_resources SET {} WHERE id = $1 AND mac = ${n}", set.join(", "));
        let done = self.bind_resource(sqlx::query(&sql), r).bind(r.loaded_mac.clone()).execute(exec).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "resource {} was changed or deleted concurrently; read it again and retry",
                r.name
            )));
        }
        Ok(())
    }

    fn insert_sql() -> String {
        let params: Vec<String> = (1..=RES_COLS.split(',').count()).map(|i| format!("${i}")).collect();
        format!("INSERT INTO store_resources ({RES_COLS}) VALUES ({})", params.join(", "))
    }

    /// Binds every column of `r`, in `RES_COLS` order.
    fn bind_resource<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        r: &Resource,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let bufs = Self::resource_bufs(r);
        let mac = self.resource_mac(r);
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
            .bind(bufs.1)
            .bind(r.enc_epoch)
            .bind(r.msg_wrapped.version.clone())
            .bind(r.msg_wrapped.alg.clone())
            .bind(r.msg_wrapped.bytes.clone())
            .bind(i64::from(r.diagnostics))
            .bind(r.created)
            .bind(r.updated)
            .bind(mac)
    }

    pub(crate) async fn insert_resource(&self, r: &Resource) -> Result<()> {
        let sql = Self::insert_sql();
        self.bind_resource(sqlx::query(&sql), r).execute(self.db.pool()).await?;
        Ok(())
    }

    /// A resource of `tenant_id` by name (row verified).
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn resource_in(&self, tenant_id: &str, name: &str) -> Result<Resource> {
        let row = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE tenant_id = $1 AND name = $2"))
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no resource named {name}")))?;
        self.resource_from_row(&row)
    }

    pub(crate) async fn resource_by_id(&self, id: &str) -> Result<Resource> {
        let row = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no resource with id {id}")))?;
        self.resource_from_row(&row)
    }

    /// Every resource (rows that fail their check are reported and skipped).
    pub(crate) async fn all_resources(&self) -> Result<Vec<Resource>> {
        let rows = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources ORDER BY tenant_id, name"))
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().filter_map(|r| self.resource_from_row(r).ok()).collect())
    }
}
