//! The path from a resource to its unwrapped keys: which vault client speaks for it
//! (platform, in-process as its identity, or another server), the key cache,
//! `KeyInaccessible` and recovery, and the periodic re-check.

use crate::cache::{Lookup, Slot};
use crate::error::{Result, StoreError};
use crate::hierarchy;
use crate::keyvault::{KeyRef, KeyVault};
use crate::model::{KeySource, Resource, ResourceState};
use crate::service::StoreService;
use atrest_crypto::{SecretKey, record};
use atrest_vault::platform::{PLATFORM, PLATFORM_KEK};
use std::sync::Arc;

impl StoreService {
    // ---- vault access ----

    /// The vault seam for a resource's key-encryption key.
    pub(crate) async fn kek_vault(&self, r: &Resource) -> Result<Box<dyn KeyVault>> {
        if r.key_source == KeySource::Platform {
            return Ok(self.platform_vault(&r.name));
        }
        if !r.remote_cred.is_empty() {
            // Also for resources set up before the allow-list was (re)configured.
            let (origin, _, _) = crate::remote::parse_key_uri(&r.key_uri)?;
            let host = origin.trim_start_matches("https://");
            if !self.cfg.remote_vault_hosts.is_empty()
                && !crate::remote::host_allowed(&self.cfg.remote_vault_hosts, host)
            {
                return Err(StoreError::KeyInaccessible {
                    key: r.key_uri.clone(),
                    operation: "any operation".into(),
                    reason: format!("its vault is on {host}, which --remote-vault-hosts does not allow"),
                    fix: "move the resource to a key on an allowed host, or ask the operator to allow this one".into(),
                    transient: false,
                });
            }
            let token = self.open_credential(&r.id, &r.remote_cred)?;
            return self.vaults.remote(&r.key_uri, token);
        }
        let identity = self.vault.principal(&r.identity_id).await?;
        Ok(self.vaults.local(identity, &r.name))
    }

    pub(crate) fn platform_vault(&self, resource: &str) -> Box<dyn KeyVault> {
        self.vaults.local(self.platform.identity.clone(), resource)
    }

    pub(crate) fn platform_kek() -> KeyRef {
        KeyRef { vault: PLATFORM.into(), name: PLATFORM_KEK.into(), version: None }
    }

    pub(crate) fn seal_credential(&self, resource_id: &str, token: &[u8]) -> Result<Vec<u8>> {
        Ok(record::seal(&self.cred_key, &[b"atrest/remote-credential", resource_id.as_bytes()], token)?)
    }

    fn open_credential(&self, resource_id: &str, sealed: &[u8]) -> Result<atrest_crypto::SecretBytes> {
        record::open(&self.cred_key, &[b"atrest/remote-credential", resource_id.as_bytes()], sealed)
            .map(atrest_crypto::SecretBytes::new)
            .map_err(|_| StoreError::Integrity("the sealed vault credential".into()))
    }

    /// The unwrapped key of `slot`: from the cache while fresh, else from the vault. A
    /// refusal makes the resource `KeyInaccessible` and zeroizes its cached keys; an
    /// unreachable vault keeps a cached key usable for the grace period.
    pub(crate) async fn key(&self, r: &Resource, slot: Slot) -> Result<Arc<SecretKey>> {
        Self::check_usable(r)?;
        let label = Self::label(r);
        let stale = match self.cache.get(&r.id, slot, self.cfg.key_cache_ttl, self.cfg.vault_grace) {
            Lookup::Fresh(k) => {
                self.metrics.cache(&label, true);
                return Ok(k);
            }
            Lookup::Stale(k) => Some(k),
            Lookup::Miss => None,
        };
        self.metrics.cache(&label, false);
        match self.unwrap_slot(r, slot).await {
            Ok(k) => {
                let k = Arc::new(k);
                self.cache.put(&r.id, slot, k.clone());
                Ok(k)
            }
            Err(StoreError::KeyInaccessible { transient: true, .. }) if stale.is_some() => {
                tracing::warn!(resource = %r.name, "vault unreachable; using the cached key within the grace period");
                Ok(stale.unwrap_or_else(|| unreachable!()))
            }
            Err(e @ StoreError::KeyInaccessible { .. }) => {
                self.mark_inaccessible(r, &e).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the vault to unwrap a slot's key (counted as a vault call).
    pub(crate) async fn unwrap_slot(&self, r: &Resource, slot: Slot) -> Result<SecretKey> {
        let label = Self::label(r);
        let (vault, kek, wrapped) = match slot {
            Slot::Messages => (self.platform_vault(&r.name), Self::platform_kek(), r.msg_wrapped.clone()),
            Slot::Resource(e) if e == r.rk_epoch => (self.kek_vault(r).await?, r.kek.clone(), r.wrapped.clone()),
            Slot::Resource(e) if e == r.rk_epoch - 1 && r.old_wrapped.is_some() => {
                (self.kek_vault(r).await?, r.kek.clone(), r.old_wrapped.clone().unwrap_or_else(|| unreachable!()))
            }
            Slot::Resource(e) => {
                return Err(StoreError::Integrity(format!(
                    "resource {}: an object names resource-key epoch {e}, which the resource does not hold",
                    r.name
                )));
            }
        };
        let out = hierarchy::open_resource_key(vault.as_ref(), &kek, &wrapped).await;
        self.metrics.vault_call(&label, "unwrapKey", out.is_ok());
        if slot == Slot::Messages {
            return out;
        }
        out.map_err(|e| Self::named_by_uri(r, e))
    }

    /// One way of naming a customer key in every message: the URI `r` was configured by
    /// (the vault's own refusal names it as vault/keys/name).
    pub(crate) fn named_by_uri(r: &Resource, e: StoreError) -> StoreError {
        match e {
            StoreError::KeyInaccessible { operation, reason, fix, transient, .. }
                if r.key_source == crate::model::KeySource::Customer =>
            {
                StoreError::KeyInaccessible { key: r.key_uri.clone(), operation, reason, fix, transient }
            }
            e => e,
        }
    }

    /// Records `KeyInaccessible` in the resource row (so every node and restart sees it)
    /// and drops the cached keys.
    pub(crate) async fn mark_inaccessible(&self, r: &Resource, e: &StoreError) {
        self.cache.forget(&r.id);
        self.metrics.state(&Self::label(r), true);
        tracing::error!(resource = %r.name, error = %e, "resource is now KeyInaccessible");
        let _g = self.write_guard().await;
        let Ok(mut cur) = self.resource_by_id(&r.id).await else { return };
        if cur.state == ResourceState::KeyInaccessible {
            return;
        }
        cur.state = ResourceState::KeyInaccessible;
        cur.state_reason = e.to_string();
        cur.updated = self.now();
        if let Err(err) = self.save_resource(self.db.pool(), &cur).await {
            tracing::error!(resource = %r.name, error = %err, "could not record KeyInaccessible");
        }
        drop(_g);
        let _ = self
            .audit(
                &cur,
                "system",
                "key-inaccessible",
                &cur.key_uri,
                "refused",
                serde_json::json!({"reason": e.to_string()}),
            )
            .await;
    }

    /// One pass of the access checker: every `KeyInaccessible` resource is tried again
    /// and recovers when the vault unwraps its key; cached keys past lifetime + grace are
    /// dropped. Returns the resources that recovered.
    ///
    /// # Errors
    /// Database errors.
    pub async fn recheck(&self) -> Result<Vec<String>> {
        self.cache.expire(self.cfg.key_cache_ttl, self.cfg.vault_grace);
        let rows = crate::repo::resources::in_state(&self.db, ResourceState::KeyInaccessible).await?;
        let inaccessible: Vec<Resource> =
            rows.into_iter().filter_map(|r| r.and_then(|r| self.verify_resource(r)).ok()).collect();
        // Another node (or an earlier run) may have changed states: the gauge follows the rows.
        self.metrics.sync_inaccessible(&inaccessible.iter().map(Self::label).collect());
        let mut recovered = Vec::new();
        for r in inaccessible {
            let label = Self::label(&r);
            let Ok(key) = self.unwrap_slot(&r, Slot::Resource(r.rk_epoch)).await else { continue };
            let _g = self.write_guard().await;
            let mut cur = self.resource_by_id(&r.id).await?;
            cur.state = ResourceState::Active;
            cur.state_reason.clear();
            cur.updated = self.now();
            self.save_resource(self.db.pool(), &cur).await?;
            drop(_g);
            self.cache.put(&r.id, Slot::Resource(r.rk_epoch), Arc::new(key));
            self.metrics.state(&label, false);
            tracing::info!(resource = %r.name, "key access restored; resource is active again");
            self.audit(&cur, "system", "key-accessible", &cur.key_uri, "ok", serde_json::json!({})).await?;
            recovered.push(r.name.clone());
        }
        Ok(recovered)
    }
}
