//! Resources: create, list, roles, diagnostics and delete (crypto-erasure).

use crate::error::{Result, StoreError};
use crate::hierarchy;
use crate::model::{DataRole, KeySource, Resource, ResourceState};
use crate::repo::resources as repo;
use crate::service::{StoreService, check_resource_name};
use atrest_crypto::SecretKey;
use atrest_infra::db::Engine;
use atrest_infra::rowmac::Field;
use atrest_vault::{Principal, PrincipalKind, Role, VaultError};

impl StoreService {
    // ---- resources ----

    /// Creates a resource in the actor's tenant with platform-managed keys, its identity
    /// (service principal `res-NAME`), a resource key and a message key.
    ///
    /// # Errors
    /// `Forbidden` unless a tenant admin; `Conflict` if the name exists.
    pub async fn create_resource(&self, actor: &Principal, name: &str) -> Result<Resource> {
        check_resource_name(name)?;
        if !matches!(actor.role, Role::TenantAdmin | Role::DeploymentAdmin) {
            return Err(StoreError::Forbidden(format!(
                "principal {} cannot create resources: ask a tenant admin to create it and grant you a role",
                actor.name
            )));
        }
        if self.resource_in(&actor.tenant_id, name).await.is_ok() {
            return Err(StoreError::Conflict(format!("a resource named {name} already exists")));
        }
        let tenant = self.vault.tenant_by_id(&actor.tenant_id).await?;
        let identity_name = atrest_vault::resource_identity_name(name);
        let identity =
            match self.vault.create_principal(&tenant, &identity_name, PrincipalKind::Service, Role::Member).await {
                Ok(p) => p,
                // Left over from a create that failed half-way, or from a deleted resource.
                Err(VaultError::Conflict(_)) => {
                    let p = self.vault.principal_by_name(&tenant, &identity_name).await?;
                    // Only a service identity left by an earlier resource of that name:
                    // never a user's or an admin's principal, whose tokens would act for it.
                    if p.kind != PrincipalKind::Service || p.role != Role::Member {
                        return Err(StoreError::Conflict(format!(
                            "principal {identity_name} exists and is not a service identity; the resource {name} needs \
                             that name for its identity: rename the principal or choose another resource name"
                        )));
                    }
                    // Whatever tokens it had stop working: only the data service acts as it.
                    for t in self.vault.list_tokens(&p).await? {
                        if !t.revoked {
                            self.vault.revoke_token(&t.id).await?;
                        }
                    }
                    // Nor does the new resource inherit the old one's grants (a delete
                    // removes them; this covers one that stopped half-way, or older ones).
                    self.vault.remove_all_policies(&p).await?;
                    if p.disabled { self.vault.set_principal_disabled(&p, false).await? } else { p }
                }
                Err(e) => return Err(e.into()),
            };
        let (r, _rk) = self.new_platform_resource(&actor.tenant_id, name, &identity.id).await?;
        {
            let _g = self.write_guard().await;
            self.insert_resource(&r).await.map_err(|e| match e {
                StoreError::Storage(m) if m.contains("UNIQUE") || m.contains("unique") => {
                    StoreError::Conflict(format!("a resource named {name} already exists"))
                }
                e => e,
            })?;
        }
        self.audit(&r, &actor.name, "create-resource", &r.name, "ok", serde_json::json!({"identity": identity.name}))
            .await?;
        Ok(r)
    }

    /// A new resource row (not stored yet) under a fresh platform-wrapped resource key and
    /// message key; returns the resource key too.
    pub(crate) async fn new_platform_resource(
        &self,
        tenant_id: &str,
        name: &str,
        identity_id: &str,
    ) -> Result<(Resource, SecretKey)> {
        let platform = self.platform_vault(name);
        let kek = Self::platform_kek();
        let (rk, wrapped) = hierarchy::new_resource_key(platform.as_ref(), &kek).await?;
        let (_mk, msg_wrapped) = hierarchy::new_resource_key(platform.as_ref(), &kek).await?;
        let now = self.now();
        let r = Resource {
            id: hex::encode(atrest_crypto::rand::bytes::<16>()?),
            tenant_id: tenant_id.to_string(),
            name: name.to_string(),
            identity_id: identity_id.to_string(),
            state: ResourceState::Active,
            state_reason: String::new(),
            key_source: KeySource::Platform,
            key_uri: "platform".into(),
            kek,
            remote_cred: Vec::new(),
            wrapped,
            rk_epoch: 1,
            old_wrapped: None,
            enc_epoch: 1,
            msg_wrapped,
            diagnostics: false,
            created: now,
            updated: now,
            loaded_mac: Vec::new(),
        };
        Ok((r, rk))
    }

    /// Resources of the actor's tenant it holds a role on.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_resources(&self, actor: &Principal) -> Result<Vec<(Resource, DataRole)>> {
        let mut out = Vec::new();
        for row in repo::of_tenant(&self.db, &actor.tenant_id).await? {
            let r = self.verify_resource(row?)?;
            if crate::s3::is_slot(&r.name) {
                continue;
            }
            if let Some(role) = self.role_of(actor, &r).await? {
                out.push((r, role));
            }
        }
        Ok(out)
    }

    /// A warning about a resource's key (e.g. the latest version is disabled), if any.
    #[must_use]
    pub fn warning(&self, r: &Resource) -> Option<String> {
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&r.id).cloned()
    }

    /// Grants (or with `None` removes) a principal's role on a resource.
    ///
    /// # Errors
    /// `Forbidden` unless owner; `NotFound` for a principal outside the tenant.
    pub async fn set_role(&self, actor: &Principal, name: &str, principal: &str, role: Option<DataRole>) -> Result<()> {
        let r = self.authorized(actor, name, DataRole::Owner).await?;
        Self::check_usable(&r)?;
        let tenant = self.vault.tenant_by_id(&r.tenant_id).await?;
        let p = self.vault.principal_by_name(&tenant, principal).await.map_err(|e| match e {
            VaultError::NotFound(_) => StoreError::NotFound(format!("no principal named {principal} in this tenant")),
            e => e.into(),
        })?;
        let _g = self.write_guard().await;
        let stored = role.map(|role| {
            let mac =
                self.mac.tag("store_roles", &[Field::Text(&r.id), Field::Text(&p.id), Field::Text(role.as_str())]);
            (role.as_str(), mac)
        });
        repo::set_role(&self.db, &r.id, &p.id, stored).await?;
        drop(_g);
        let role_name = role.map_or("none", DataRole::as_str);
        self.audit(&r, &actor.name, "set-role", &p.name, "ok", serde_json::json!({"role": role_name})).await
    }

    /// Roles granted on a resource: (principal name, role).
    ///
    /// # Errors
    /// `Forbidden` unless owner.
    pub async fn roles(&self, actor: &Principal, name: &str) -> Result<Vec<(String, DataRole)>> {
        let r = self.authorized(actor, name, DataRole::Owner).await?;
        let mut out = Vec::new();
        for (pid, role, mac) in repo::roles(&self.db, &r.id).await? {
            self.mac
                .check("store_roles", &[Field::Text(&r.id), Field::Text(&pid), Field::Text(&role)], &mac, || {
                    format!("a role on resource {}", r.name)
                })
                .map_err(|_| StoreError::Integrity(format!("a role on resource {}", r.name)))?;
            let p = self.vault.principal(&pid).await?;
            if let Some(role) = DataRole::parse(&role) {
                out.push((p.name, role));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Turns data-plane audit (reads and writes on the resource's chain) on or off.
    ///
    /// # Errors
    /// `Forbidden` unless owner; `KeyInaccessible`.
    pub async fn set_diagnostics(&self, actor: &Principal, name: &str, on: bool) -> Result<Resource> {
        let r = self.authorized(actor, name, DataRole::Owner).await?;
        Self::check_usable(&r)?;
        let _g = self.write_guard().await;
        let mut cur = self.resource_by_id(&r.id).await?;
        cur.diagnostics = on;
        cur.updated = self.now();
        self.save_resource(self.db.pool(), &cur).await?;
        drop(_g);
        self.audit(&cur, &actor.name, "set-diagnostics", &cur.name, "ok", serde_json::json!({"data_audit": on}))
            .await?;
        Ok(cur)
    }

    /// Deletes a resource by crypto-erasure: its wrapped resource and message keys, its
    /// objects' wrapped data keys, messages, roles and jobs are deleted (SQLite overwrites
    /// freed pages and the WAL is checkpointed), its blob files removed, its cached keys
    /// dropped, its identity's access policies removed on every vault and the identity
    /// disabled. Allowed to an owner even when
    /// `KeyInaccessible`: erasing needs no key.
    ///
    /// # Errors
    /// `Forbidden` unless owner.
    pub async fn delete_resource(&self, actor: &Principal, name: &str) -> Result<()> {
        let r = self.authorized(actor, name, DataRole::Owner).await?;
        self.audit(&r, &actor.name, "delete-resource", &r.name, "attempt", serde_json::json!({})).await?;
        // Its key slots (S3 objects under other keys) go with it.
        let slots = self.key_slots(&r).await?;
        {
            let _g = self.write_guard().await;
            repo::erase(&self.db, &r.id).await?;
            for s in &slots {
                repo::erase(&self.db, &s.id).await?;
            }
        }
        self.forget_for_real().await;
        for s in slots.iter().chain(std::iter::once(&r)) {
            self.cache.forget(&s.id);
            self.metrics.remove(&Self::label(s));
        }
        // The resource key is gone with its row (crypto-erasure); removing the bodies
        // frees the space, and a failure here is logged rather than undoing the delete.
        if let Err(e) = self.blobs.remove_resource(&r.id).await {
            tracing::warn!(store = %self.blobs.describe(), resource = %r.name, error = %e, "could not remove a deleted resource's blob bodies");
        }
        // The identity keeps no grants: a resource created later under the same name
        // must be granted its keys anew.
        let mut policies_removed = 0;
        if let Ok(p) = self.vault.principal(&r.identity_id).await {
            match self.vault.remove_all_policies(&p).await {
                Ok(n) => policies_removed = n,
                Err(e) => {
                    tracing::warn!(resource = %r.name, error = %e, "could not remove a deleted resource identity's access policies; they are removed when a resource of that name is created again")
                }
            }
            let _ = self.vault.set_principal_disabled(&p, true).await;
        }
        self.audit(
            &r,
            &actor.name,
            "delete-resource",
            &r.name,
            "ok",
            serde_json::json!({"identity_policies_removed": policies_removed}),
        )
        .await
    }

    /// On SQLite, moves the WAL's copies of deleted rows into the main file (where
    /// `secure_delete` has zeroed them) and truncates the WAL. Runs under the write lock
    /// (so the committer cannot hold the WAL open meanwhile); a checkpoint that readers
    /// keep from finishing is reported, and the next delete tries again.
    pub(crate) async fn forget_for_real(&self) {
        if self.db.engine() != Engine::Sqlite {
            return;
        }
        let _g = self.write_guard().await;
        match crate::repo::infra::checkpoint_truncate(&self.db).await {
            Ok(false) => {
                tracing::warn!(
                    "WAL checkpoint after a delete was blocked by readers; it runs again on the next delete"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint after a delete failed; it runs again on the next delete")
            }
        }
    }
}
