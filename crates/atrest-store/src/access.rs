//! Who may do what on a resource: data-plane roles, tenant admins, and whether a
//! resource is usable at all.

use crate::error::{Result, StoreError};
use crate::model::{DataRole, Resource, ResourceState};
use crate::service::StoreService;
use atrest_infra::rowmac::Field;
use atrest_vault::{Principal, Role};

impl StoreService {
    // ---- authorization ----

    /// The role `actor` holds on `r`: tenant admins (and the deployment admin in its own
    /// tenant) own every resource of their tenant; others hold what was granted.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn role_of(&self, actor: &Principal, r: &Resource) -> Result<Option<DataRole>> {
        if actor.tenant_id != r.tenant_id {
            return Ok(None);
        }
        if matches!(actor.role, Role::TenantAdmin | Role::DeploymentAdmin) {
            return Ok(Some(DataRole::Owner));
        }
        let Some((role, mac)) = crate::repo::resources::role(&self.db, &r.id, &actor.id).await? else {
            return Ok(None);
        };
        self.mac
            .check("store_roles", &[Field::Text(&r.id), Field::Text(&actor.id), Field::Text(&role)], &mac, || {
                format!("a role on resource {}", r.name)
            })
            .map_err(|_| StoreError::Integrity(format!("a role on resource {}", r.name)))?;
        Ok(DataRole::parse(&role))
    }

    /// Loads resource `name` in the caller's tenant and checks `need`. A resource the
    /// caller holds no role on answers like one that does not exist.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `Integrity`.
    pub async fn authorized(&self, actor: &Principal, name: &str, need: DataRole) -> Result<Resource> {
        // A bucket's key slots are reached only through their bucket's objects.
        if crate::s3::is_slot(name) {
            return Err(StoreError::NotFound(format!("no resource named {name}")));
        }
        let r = self.resource_in(&actor.tenant_id, name).await?;
        match self.role_of(actor, &r).await? {
            None => Err(StoreError::NotFound(format!("no resource named {name}"))),
            Some(have) if have >= need => Ok(r),
            Some(have) => Err(StoreError::Forbidden(format!(
                "principal {} is {} on resource {name}; this needs {}: ask an owner to run `atrest resource role set {name} {} {}`",
                actor.name,
                have.as_str(),
                need.as_str(),
                actor.name,
                need.as_str()
            ))),
        }
    }

    /// Fails with the stored `KeyInaccessible` reason when the resource is in that state.
    pub(crate) fn check_usable(r: &Resource) -> Result<()> {
        if r.state == ResourceState::KeyInaccessible {
            return Err(StoreError::KeyInaccessible {
                key: r.key_uri.clone(),
                operation: "unwrapKey".into(),
                reason: if crate::s3::is_slot(&r.name) {
                    // A bucket's key slot: its users know the key, not the slot.
                    format!("the objects under key {} are inaccessible ({})", r.key_uri, r.state_reason)
                } else {
                    format!("resource {} is KeyInaccessible ({})", r.name, r.state_reason)
                },
                fix: "restore the resource identity's access to the key (or enable, recover the key); the resource \
                      recovers by itself within one key-cache interval"
                    .into(),
                transient: false,
            });
        }
        Ok(())
    }
}
