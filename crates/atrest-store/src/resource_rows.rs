//! Resource rows: their MACs, compare-and-swap saves and verified lookups (the SQL is
//! in `repo/resources.rs`).

use crate::error::{Result, StoreError};
use crate::model::Resource;
use crate::repo::resources as repo;
use crate::rows::encode_wrapped;
use crate::service::StoreService;
use atrest_infra::rowmac::Field;

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

    /// Checks a resource row's MAC (a row edited outside atrest is an integrity error,
    /// counted and logged).
    pub(crate) fn verify_resource(&self, r: Resource) -> Result<Resource> {
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
        if !repo::save_if_unchanged(exec, r, self.resource_mac(r)).await? {
            return Err(StoreError::Conflict(format!(
                "resource {} was changed or deleted concurrently; read it again and retry",
                r.name
            )));
        }
        Ok(())
    }

    pub(crate) async fn insert_resource(&self, r: &Resource) -> Result<()> {
        repo::insert(&self.db, r, self.resource_mac(r)).await
    }

    /// A resource of `tenant_id` by name (row verified).
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn resource_in(&self, tenant_id: &str, name: &str) -> Result<Resource> {
        let r = repo::by_name(&self.db, tenant_id, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no resource named {name}")))?;
        self.verify_resource(r)
    }

    pub(crate) async fn resource_by_id(&self, id: &str) -> Result<Resource> {
        let r = repo::by_id(&self.db, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no resource with id {id}")))?;
        self.verify_resource(r)
    }

    /// Every resource (rows that fail their check are reported and skipped).
    pub(crate) async fn all_resources(&self) -> Result<Vec<Resource>> {
        Ok(repo::all(&self.db)
            .await?
            .into_iter()
            .filter_map(|(_, r)| r.and_then(|r| self.verify_resource(r)).ok())
            .collect())
    }
}
