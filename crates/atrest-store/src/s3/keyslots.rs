//! Key slots: the objects of a bucket under keys other than the bucket's own.
//!
//! S3 lets each object name its key (`x-amz-server-side-encryption-aws-kms-key-id`). Each
//! (bucket, key) pair gets a resource key of its own, held in a *key slot*: a resource row
//! named `BUCKET-ID/key/VAULT/NAME[/VERSION]` — by the bucket's id, so a bucket made again
//! under the same name never finds its predecessor's slots; a name nobody can create or
//! address, since resource names have no `/` — with the bucket's tenant and identity,
//! no roles and no objects. The objects stay rows of the bucket (listings, roles, names);
//! their sealed metadata names the slot whose resource key wraps their data key. So a slot
//! is everything a resource key is: rotating its vault key re-wraps 32 bytes (O(distinct
//! keys), never O(objects)); revoking the key marks the slot, and only its objects,
//! `KeyInaccessible`, and the access checker brings it back; the follow-the-latest-version
//! sweeper re-wraps it. A slot is erased with its bucket. The bucket's re-key and
//! re-encrypt jobs pass slot objects by, as they pass SSE-C ones (their epochs are
//! `NO_RESOURCE_KEY`).

use crate::cache::Slot;
use crate::encryption::{EncryptionRequest, Wrapping};
use crate::error::{Result, StoreError};
use crate::hierarchy;
use crate::model::{KeySource, Resource};
use crate::repo::resources as repo;
use crate::rows::{NO_RESOURCE_KEY, ObjectRow};
use crate::service::StoreService;
use atrest_crypto::SecretKey;
use atrest_vault::model::VaultInfo;
use atrest_vault::{Permission, Principal, VaultService};
use std::sync::Arc;

/// The key-slot name of the bucket whose id is `bucket` for the key `req` names.
fn slot_name(bucket: &str, req: &EncryptionRequest) -> String {
    match req {
        EncryptionRequest::Platform => format!("{bucket}/key/platform"),
        EncryptionRequest::Customer { kek, .. } | EncryptionRequest::Remote { kek, .. } => match &kek.version {
            Some(v) => format!("{bucket}/key/{}/{}/{v}", kek.vault, kek.name),
            None => format!("{bucket}/key/{}/{}", kek.vault, kek.name),
        },
    }
}

/// A grant `grant_key_use` made: what to put back if the key is refused after all.
pub(crate) struct Grant {
    bucket: Resource,
    vault: VaultInfo,
    identity: Principal,
    before: Vec<Permission>,
    actor: String,
}

/// Whether a resource name is a key slot's (never a name a caller can give).
pub(crate) fn is_slot(name: &str) -> bool {
    name.contains('/')
}

impl StoreService {
    /// Bucket `r`'s key slot for the key `req` names: found, or made — the key validated
    /// as the bucket's identity (as for a bucket's own key), a fresh resource key wrapped
    /// under it.
    ///
    /// # Errors
    /// `KeyRejected` with what to fix, `Forbidden` (the caller may not use the key),
    /// `KeyInaccessible`.
    pub(crate) async fn key_slot(&self, actor: &Principal, r: &Resource, req: EncryptionRequest) -> Result<Resource> {
        let name = slot_name(&r.id, &req);
        let existing = repo::by_name(&self.db, &r.tenant_id, &name).await?;
        // Only a slot's making may grant (see `grant_key_use`): after that the identity's
        // access is the operator's to take away, never given back by a put.
        let granted = self.grant_key_use(actor, r, &req, existing.is_none()).await?;
        if let Some(row) = existing {
            return self.verify_resource(row);
        }
        match self.make_slot(actor, r, name, req).await {
            Ok(s) => Ok(s),
            Err(e) => {
                // A key refused leaves no grant behind.
                if let Some(g) = granted {
                    self.take_back(g).await;
                }
                Err(e)
            }
        }
    }

    /// Makes the slot `name` of bucket `r` under the key `req` names.
    async fn make_slot(
        &self,
        actor: &Principal,
        r: &Resource,
        name: String,
        req: EncryptionRequest,
    ) -> Result<Resource> {
        let (mut s, rk) = self.new_platform_resource(&r.tenant_id, &name, &r.identity_id).await?;
        if !matches!(req, EncryptionRequest::Platform) {
            let Wrapping { source, uri, kek, remote_cred, wrapped } = self.wrap_under(&s, req, &rk).await?;
            (s.key_source, s.key_uri, s.kek, s.remote_cred, s.wrapped) = (source, uri, kek, remote_cred, wrapped);
        }
        let inserted = {
            let _g = self.write_guard().await;
            // Not for a bucket deleted meanwhile (its delete erased the slots it saw).
            if repo::by_id(&self.db, &r.id).await?.is_none() {
                return Err(StoreError::NotFound(format!("no bucket named {}", r.name)));
            }
            self.insert_resource(&s).await
        };
        match inserted {
            Ok(()) => {}
            // Made by a concurrent request meanwhile: that one is the slot.
            Err(StoreError::Storage(m)) if m.contains("UNIQUE") || m.contains("unique") => {
                let row = repo::by_name(&self.db, &r.tenant_id, &s.name).await?;
                return self.verify_resource(row.ok_or(StoreError::Storage(m))?);
            }
            Err(e) => return Err(e),
        }
        self.cache.put(&s.id, Slot::Resource(s.rk_epoch), Arc::new(rk));
        self.audit(r, &actor.name, "create-key-slot", &s.key_uri, "ok", serde_json::json!({"slot": s.name})).await?;
        Ok(s)
    }

    /// Before a bucket (or a key slot of it) is put under a vault key, with `grant`: a
    /// tenant admin of the vault's tenant (who could grant it anyway) has get, wrapKey and
    /// unwrapKey on that vault granted to the bucket's identity, audited on the bucket —
    /// but only while neither the bucket nor any of its slots uses a key of that vault:
    /// a grant there is the operator's to take away, and a put naming another key of the
    /// vault must not give back what a revocation removed (it is refused, saying so).
    /// Anyone else must hold wrapKey there (as S3 asks `kms:GenerateDataKey` of the
    /// caller), and the identity's grants must be there already. Returns the grant made,
    /// to be taken back if the key is then refused.
    ///
    /// # Errors
    /// `Forbidden`; `KeyRejected` (the vault is in use and the grant is missing).
    pub(crate) async fn grant_key_use(
        &self,
        actor: &Principal,
        r: &Resource,
        req: &EncryptionRequest,
        grant: bool,
    ) -> Result<Option<Grant>> {
        let EncryptionRequest::Customer { uri, kek } = req else { return Ok(None) };
        let v = match self.vault.vault(&kek.vault).await {
            Ok(v) if v.tenant_id == r.tenant_id => v,
            // Refused with what to do when the key is validated.
            Ok(_) | Err(atrest_vault::VaultError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !VaultService::administers(actor, &v.tenant_id) {
            self.vault.authorize(&v, actor, Permission::WrapKey, Some(&kek.name)).await.map_err(|e| {
                StoreError::Forbidden(format!(
                    "principal {} may not encrypt under key {uri}: {e} (a tenant admin can)",
                    actor.name
                ))
            })?;
            return Ok(None);
        }
        if !grant {
            return Ok(None);
        }
        let identity = self.vault.principal(&r.identity_id).await?;
        // Secret permissions (if any) are kept as they are.
        // A resource identity holds no secret permission (the vault refuses to give it one).
        let before = self.vault.permissions(&v, &identity).await?;
        let need = [Permission::Get, Permission::WrapKey, Permission::UnwrapKey];
        if need.iter().all(|p| before.contains(p)) {
            return Ok(None);
        }
        let in_use = (r.key_source == KeySource::Customer && r.kek.vault == kek.vault)
            || self.key_slots(r).await?.iter().any(|s| s.key_source == KeySource::Customer && s.kek.vault == kek.vault);
        if in_use {
            return Err(StoreError::KeyRejected(format!(
                "the identity {} of bucket {} lacks get, wrapKey or unwrapKey on vault {}, whose keys the bucket \
                 already uses: that access was taken away, and a put does not give it back. Restore it (`atrest \
                 policy set {} {} --permissions get,wrapKey,unwrapKey`) to use key {uri}",
                identity.name, r.name, v.name, v.name, identity.name
            )));
        }
        let mut perms = before.clone();
        for p in need {
            if !perms.contains(&p) {
                perms.push(p);
            }
        }
        self.vault.set_policy(&v, &identity, &perms).await?;
        self.audit(
            r,
            &actor.name,
            "grant-key-use",
            uri,
            "ok",
            serde_json::json!({"identity": identity.name, "vault": v.name, "permissions": Permission::names(&perms)}),
        )
        .await?;
        Ok(Some(Grant { bucket: r.clone(), vault: v, identity, before, actor: actor.name.clone() }))
    }

    /// Takes back a grant `grant_key_use` made (the key was then refused), audited.
    pub(crate) async fn take_back(&self, g: Grant) {
        let out = if g.before.is_empty() {
            self.vault.remove_policy(&g.vault, &g.identity).await
        } else {
            self.vault.set_policy(&g.vault, &g.identity, &g.before).await
        };
        let outcome = if out.is_ok() { "ok" } else { "failed" };
        let detail = serde_json::json!({"identity": g.identity.name, "vault": g.vault.name});
        let _ = self.audit(&g.bucket, &g.actor, "take-back-key-use", &g.vault.name, outcome, detail).await;
    }

    /// The key slot `id` of bucket `r` (it must be one of that bucket's).
    pub(crate) async fn slot_of(&self, r: &Resource, id: &str) -> Result<Resource> {
        let bad = || self.integrity(r, &format!("the key slot {id} named by an object of bucket {}", r.name));
        let s = self.resource_by_id(id).await.map_err(|_| bad())?;
        if s.tenant_id != r.tenant_id || !s.name.starts_with(&format!("{}/key/", r.id)) {
            return Err(bad());
        }
        Ok(s)
    }

    /// The resource whose key wraps the data key of an object (or upload) of bucket `r`
    /// with metadata `m`: its key slot, or the bucket itself.
    pub(crate) async fn key_holder(&self, r: &Resource, m: &crate::s3meta::S3Meta) -> Result<Resource> {
        match &m.key_slot {
            Some(id) => self.slot_of(r, id).await,
            None => Ok(r.clone()),
        }
    }

    /// Wraps `dek` for `row` of bucket `r` under the resource key of `holder` (see
    /// [`Self::key_holder`]): a slot's (the row's epochs then say "no resource key of the
    /// bucket"), or the bucket's current one.
    pub(crate) async fn wrap_object_key(
        &self,
        r: &Resource,
        holder: &Resource,
        row: &mut ObjectRow,
        dek: &SecretKey,
    ) -> Result<()> {
        Self::check_usable(holder)?;
        let rk = self.key(holder, Slot::Resource(holder.rk_epoch)).await?;
        row.wrapped_dek = hierarchy::rewrap_data_key(&rk, Self::oid(r, row), dek)?;
        if holder.id == r.id {
            row.rk_epoch = r.rk_epoch;
        } else {
            row.rk_epoch = NO_RESOURCE_KEY;
            row.enc_epoch = NO_RESOURCE_KEY;
        }
        Ok(())
    }

    /// The data key of an object of bucket `r` under key slot `s`.
    pub(crate) async fn slot_data_key(&self, r: &Resource, o: &ObjectRow, s: &Resource) -> Result<SecretKey> {
        Self::check_usable(s)?;
        let rk = self.key(s, Slot::Resource(s.rk_epoch)).await?;
        hierarchy::open_data_key(&rk, Self::oid(r, o), &o.wrapped_dek)
            .map_err(|_| self.integrity(r, &format!("the wrapped data key of object {} in bucket {}", o.id, r.name)))
    }

    /// The key slots of bucket `r`.
    pub(crate) async fn key_slots(&self, r: &Resource) -> Result<Vec<Resource>> {
        let prefix = format!("{}/key/", r.id);
        let mut out = Vec::new();
        for row in repo::of_tenant(&self.db, &r.tenant_id).await? {
            let s = self.verify_resource(row?)?;
            if s.name.starts_with(&prefix) {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyvault::KeyRef;

    #[test]
    fn slot_names_cannot_be_resource_names() {
        let kek = KeyRef { vault: "payments".into(), name: "cmk".into(), version: None };
        let req = EncryptionRequest::Customer { uri: "https://h/keys/cmk".into(), kek };
        let name = slot_name("0f1e", &req);
        assert_eq!(name, "0f1e/key/payments/cmk");
        assert!(is_slot(&name) && crate::service::check_resource_name(&name).is_err());
        assert_eq!(slot_name("0f1e", &EncryptionRequest::Platform), "0f1e/key/platform");
        assert!(!is_slot("photos"));
    }
}
