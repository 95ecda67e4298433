//! Key backup and restore (AKV `backup` / `restore`).
//!
//! A backup holds every version of a key (sealed key material, attributes, tags) and its
//! rotation policy, as JSON (`"format": "atrest-key-backup/1"`) sealed in the record
//! format under a key derived from the root key (context `atrest/key-backup/v1`). It
//! therefore restores only into a vault of the same deployment (same root key), and any
//! change to it is refused. Restoring keeps the version ids; the material is rebound by
//! the key backend to the target vault, so a backup taken in one vault can be restored
//! into another of the same deployment.

use crate::error::{Result, VaultError};
use crate::keys::VersionRow;
use crate::model::{KeyBundle, VaultInfo, b64u, b64u_decode};
use crate::rotation::RotationPolicy;
use crate::service::VaultService;
use serde::{Deserialize, Serialize};

const FORMAT: &str = "atrest-key-backup/1";
const CONTEXT: &[&[u8]] = &[b"atrest/key-backup/v1"];

#[derive(Serialize, Deserialize)]
struct Blob {
    format: String,
    vault_id: String,
    name: String,
    versions: Vec<BlobVersion>,
    rotation_policy: Option<RotationPolicy>,
}

#[derive(Serialize, Deserialize)]
struct BlobVersion {
    version: String,
    seq: i64,
    kty: String,
    key_ops: String,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
    tags: String,
    public_jwk: String,
    material: String,
    gcm_count: i64,
}

impl VaultService {
    /// Backs up a live key: all versions and its rotation policy, sealed.
    ///
    /// # Errors
    /// `NotFound`, integrity errors of the stored rows.
    pub async fn backup_key(&self, vault: &VaultInfo, name: &str) -> Result<Vec<u8>> {
        let (k, _) = self.live_version(vault, name, None).await?;
        let mut versions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_versions(vault, name, None, token.as_deref()).await?;
            for b in &page.items {
                let v = self.version_row(vault, &k.name_lc, &b.version).await?.ok_or_else(|| {
                    VaultError::Integrity { what: format!("version {} of key {}", b.version, k.name) }
                })?;
                versions.push(BlobVersion {
                    version: v.version.clone(),
                    seq: v.seq,
                    kty: v.kty.clone(),
                    key_ops: v.key_ops.clone(),
                    enabled: v.enabled,
                    nbf: v.nbf,
                    exp: v.exp,
                    created: v.created,
                    updated: v.updated,
                    tags: v.tags.clone(),
                    public_jwk: v.public_jwk.clone(),
                    material: b64u(&v.material),
                    gcm_count: v.gcm_count,
                });
            }
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let policy = self.stored_rotation_policy(vault, &k.name_lc).await?;
        let blob = Blob {
            format: FORMAT.into(),
            vault_id: vault.id.clone(),
            name: k.name.clone(),
            versions,
            rotation_policy: policy,
        };
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&blob).map_err(|e| VaultError::bad(e.to_string()))?);
        Ok(atrest_crypto::record::seal(&self.backup_key, CONTEXT, &json)?)
    }

    /// Restores a backup into `vault` under its original name and version ids.
    ///
    /// # Errors
    /// `BadParameter` for a corrupt or foreign blob; `Conflict` if the name exists, live
    /// or soft-deleted.
    pub async fn restore_key(&self, vault: &VaultInfo, backup: &[u8]) -> Result<KeyBundle> {
        let refused = || {
            VaultError::bad(
                "the backup is corrupted or was not made by this deployment (it opens only with the same root key)",
            )
        };
        let json = zeroize::Zeroizing::new(
            atrest_crypto::record::open(&self.backup_key, CONTEXT, backup).map_err(|_| refused())?,
        );
        let blob: Blob = serde_json::from_slice(&json).map_err(|_| refused())?;
        if blob.format != FORMAT || blob.versions.is_empty() {
            return Err(refused());
        }
        crate::model::check_name(&blob.name, "key")?;
        let name_lc = blob.name.to_ascii_lowercase();
        let _g = self.write_guard().await;
        if self.key_row(vault, &blob.name).await?.is_some() {
            return Err(VaultError::Conflict(format!(
                "a key named {} already exists in this vault (live or soft-deleted); delete and purge it, or restore elsewhere",
                blob.name
            )));
        }
        // Rebind every version first: a blob that fails here leaves nothing behind.
        let mut rows = Vec::with_capacity(blob.versions.len());
        for bv in &blob.versions {
            let mut row = VersionRow {
                vault_id: blob.vault_id.clone(),
                name_lc: name_lc.clone(),
                version: bv.version.clone(),
                seq: bv.seq,
                kty: bv.kty.clone(),
                key_ops: bv.key_ops.clone(),
                enabled: bv.enabled,
                nbf: bv.nbf,
                exp: bv.exp,
                created: bv.created,
                updated: bv.updated,
                tags: bv.tags.clone(),
                public_jwk: bv.public_jwk.clone(),
                material: b64u_decode(&bv.material, "material")?,
                gcm_count: bv.gcm_count,
                display_name: blob.name.clone(),
            };
            let key = row.backend_key()?;
            let from = row.binding();
            let to = [vault.id.as_bytes(), name_lc.as_bytes(), bv.version.as_bytes()];
            let moved = self.custody(|be| be.rebind(&key, &from, &to)).map_err(|_| refused())?;
            row.vault_id = vault.id.clone();
            row.material = moved.handle;
            rows.push(row);
        }
        // Then write; if a write fails, remove what was written so a retry starts clean.
        for row in &rows {
            if let Err(e) = self.store_version(row).await {
                self.discard_versions(vault, &name_lc).await;
                return Err(e);
            }
        }
        let latest = rows.into_iter().max_by_key(|r| r.seq);
        let latest = latest.ok_or_else(refused)?;
        let key = crate::keys::KeyRow {
            vault_id: vault.id.clone(),
            name_lc: name_lc.clone(),
            name: blob.name.clone(),
            latest_version: latest.version.clone(),
            deleted_at: None,
            scheduled_purge: None,
        };
        if let Err(e) = self.insert_key_row(&key).await {
            self.discard_versions(vault, &name_lc).await;
            return Err(e);
        }
        drop(_g);
        if let Some(p) = blob.rotation_policy {
            self.set_rotation_policy(vault, &blob.name, p).await?;
        }
        self.bundle(vault, &key, &latest)
    }

    /// Best-effort removal of the versions a failed restore wrote (no key row points to
    /// them), so that a retry starts clean.
    async fn discard_versions(&self, vault: &VaultInfo, name_lc: &str) {
        let _ = crate::repo::keys::delete_versions(&self.db, &vault.id, name_lc).await;
    }
}
