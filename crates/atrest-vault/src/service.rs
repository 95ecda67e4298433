//! The vault service: one per deployment, holding the database, the key backend, the
//! row-MAC key and the clock. Key lifecycle is in `keys.rs`, key operations in `ops.rs`.

use crate::clock::Clock;
use crate::db::{Db, Engine};
use crate::error::{Result, VaultError};
use crate::model::{VaultInfo, VaultSettings};
use crate::repo::vaults as repo;
use crate::rowmac::{Field, RowMac};
use atrest_crypto::SecretKey;
use atrest_crypto::backend::KeyBackend;
use atrest_crypto::kdf::{MacKey, hkdf_sha256};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

/// The key vault of one deployment.
pub struct VaultService {
    pub(crate) db: Db,
    pub(crate) backend: Arc<dyn KeyBackend>,
    /// The backend's calls block on a device (its capabilities say so).
    backend_blocks: bool,
    pub(crate) mac: RowMac,
    /// Keyed hash for API tokens (derived from the root key): a stolen database does not
    /// even let an attacker test token guesses offline.
    pub(crate) token_hash: MacKey,
    /// Seals key backups, so they restore only into this deployment.
    pub(crate) backup_key: SecretKey,
    /// Seals the secrets of S3 access keys (`s3keys.rs`).
    pub(crate) s3_secret_key: SecretKey,
    pub(crate) clock: Arc<dyn Clock>,
    /// SQLite allows one writer; serializing write transactions in-process avoids
    /// `SQLITE_BUSY` on lock upgrades. PostgreSQL relies on row locks instead.
    write_lock: Arc<Mutex<()>>,
    /// Group commit of audit entries.
    pub(crate) audit_commit: Arc<crate::audit_commit::AuditCommit>,
    /// A256GCM uses reserved by this node (`ops.rs`).
    pub(crate) gcm_blocks: crate::usage::GcmBlocks,
    /// Audit appends that succeeded and failed (for metrics).
    pub(crate) audit_counts: [std::sync::atomic::AtomicU64; 2],
}

impl VaultService {
    /// A service over a migrated database. The row-MAC and token-hash keys are derived
    /// from `root` (domain-separated); `root` itself is not kept.
    ///
    /// # Errors
    /// Key derivation failure (never in practice).
    pub fn new(db: Db, backend: Arc<dyn KeyBackend>, root: &SecretKey, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"token-hash"], &mut k[..])?;
        let token_hash = MacKey::new(&SecretKey::from_slice(&k[..])?);
        hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"key-backup"], &mut k[..])?;
        let backup_key = SecretKey::from_slice(&k[..])?;
        hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"s3-key-secret"], &mut k[..])?;
        let s3_secret_key = SecretKey::from_slice(&k[..])?;
        let write_lock = Arc::new(Mutex::new(()));
        let audit_commit =
            crate::audit_commit::AuditCommit::new(db.clone(), RowMac::new(root)?, clock.clone(), write_lock.clone());
        Ok(Self {
            db,
            backend_blocks: backend.capabilities().blocking,
            backend,
            mac: RowMac::new(root)?,
            token_hash,
            backup_key,
            s3_secret_key,
            clock,
            write_lock,
            audit_commit,
            gcm_blocks: crate::usage::GcmBlocks::default(),
            audit_counts: Default::default(),
        })
    }

    /// Runs a call into the key backend. A backend whose calls block on a device (an HSM)
    /// runs them with the runtime told first, so that worker's other tasks move to another
    /// thread and no request waits behind the device; software keys only compute and run
    /// inline. (On a single-threaded runtime, tests only, there is nowhere to move to.)
    pub(crate) fn custody<T>(&self, f: impl FnOnce(&dyn KeyBackend) -> T) -> T {
        // Software keys (the hot path) never look the runtime up.
        let multi = || {
            tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        };
        if self.backend_blocks && multi() {
            tokio::task::block_in_place(|| f(self.backend.as_ref()))
        } else {
            f(self.backend.as_ref())
        }
    }

    /// Audit appends since start: (written, failed).
    #[must_use]
    pub fn audit_append_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.audit_counts[0].load(Relaxed), self.audit_counts[1].load(Relaxed))
    }

    /// The database (for components that share it, e.g. leases).
    #[must_use]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match self.db.engine() {
            Engine::Sqlite => Some(self.write_lock.lock().await),
            Engine::Postgres => None,
        }
    }

    fn vault_fields<'a>(v: &'a VaultInfo, created: i64, updated: i64) -> [Field<'a>; 8] {
        [
            Field::Text(&v.id),
            Field::Text(&v.tenant_id),
            Field::Text(&v.name),
            Field::Int(v.settings.retention_days),
            Field::Int(i64::from(v.settings.purge_protection)),
            Field::Int(i64::from(v.settings.allow_rsa1_5)),
            Field::Int(created),
            Field::Int(updated),
        ]
    }

    fn check_settings(s: &VaultSettings) -> Result<()> {
        if !(7..=90).contains(&s.retention_days) {
            return Err(VaultError::bad("retention must be between 7 and 90 days"));
        }
        Ok(())
    }

    /// Creates a vault.
    ///
    /// # Errors
    /// `Conflict` if the name exists; `BadParameter` for invalid settings or name.
    pub async fn create_vault(&self, tenant_id: &str, name: &str, settings: VaultSettings) -> Result<VaultInfo> {
        crate::model::check_name(name, "vault")?;
        if crate::platform::is_platform(name) {
            return Err(VaultError::bad(format!("the vault name {name} is reserved for the deployment")));
        }
        self.insert_vault(tenant_id, name, settings).await
    }

    pub(crate) async fn insert_vault(&self, tenant_id: &str, name: &str, settings: VaultSettings) -> Result<VaultInfo> {
        Self::check_settings(&settings)?;
        let id = crate::model::new_id()?;
        let v = VaultInfo { id, tenant_id: tenant_id.to_string(), name: name.to_ascii_lowercase(), settings };
        let now = self.now();
        let mac = self.mac.tag("vaults", &Self::vault_fields(&v, now, now));
        let _g = self.write_guard().await;
        if repo::id_by_name(&self.db, &v.name).await?.is_some() {
            return Err(VaultError::Conflict(format!("a vault named {} already exists", v.name)));
        }
        repo::insert(&self.db, &v, now, &mac).await?;
        Ok(v)
    }

    /// Loads a vault by name and verifies its row.
    ///
    /// # Errors
    /// `NotFound`, or `Integrity` if the row was modified outside atrest.
    pub async fn vault(&self, name: &str) -> Result<VaultInfo> {
        Ok(self.load_vault(name).await?.0)
    }

    /// The vault and its `created` time (needed to re-MAC the row).
    async fn load_vault(&self, name: &str) -> Result<(VaultInfo, i64)> {
        let row = repo::by_name(&self.db, &name.to_ascii_lowercase())
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no vault named {name}")))?;
        self.verified_vault(row)
    }

    /// A vault row's settings (and its `created` time), its MAC checked.
    pub(crate) fn verified_vault(&self, row: repo::VaultRow) -> Result<(VaultInfo, i64)> {
        let repo::VaultRow { info: v, created, updated, mac } = row;
        self.mac.check("vaults", &Self::vault_fields(&v, created, updated), &mac, || format!("vault {}", v.name))?;
        Ok((v, created))
    }

    /// Every vault (rows verified), by name.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn vaults(&self) -> Result<Vec<VaultInfo>> {
        let names = repo::names(&self.db).await?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.push(self.vault(&n).await?);
        }
        Ok(out)
    }

    /// Every vault whose row verifies, and the names of those that do not. Background
    /// work uses this, so one tampered vault row does not stop it for every other vault
    /// (that vault's own requests keep failing closed).
    ///
    /// # Errors
    /// Database errors.
    pub async fn verified_vaults(&self) -> Result<(Vec<VaultInfo>, Vec<String>)> {
        let names = repo::names(&self.db).await?;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for n in names {
            match self.vault(&n).await {
                Ok(v) => ok.push(v),
                Err(VaultError::Integrity { .. }) => bad.push(n),
                Err(e) => return Err(e),
            }
        }
        Ok((ok, bad))
    }

    /// Changes a vault's settings. Purge protection, once on, cannot be turned off.
    ///
    /// # Errors
    /// `BadParameter` for invalid settings, `Forbidden` to turn purge protection off.
    pub async fn update_vault_settings(&self, name: &str, settings: VaultSettings) -> Result<VaultInfo> {
        Self::check_settings(&settings)?;
        let _g = self.write_guard().await;
        let (mut v, created) = self.load_vault(name).await?;
        if v.settings.purge_protection && !settings.purge_protection {
            return Err(VaultError::forbidden(
                crate::error::Refusal::PurgeProtected,
                format!("purge protection is on for vault {} and can never be turned off", v.name),
            ));
        }
        v.settings = settings;
        let now = self.now();
        let mac = self.mac.tag("vaults", &Self::vault_fields(&v, created, now));
        repo::update_settings(&self.db, &v, now, &mac).await?;
        Ok(v)
    }
}
