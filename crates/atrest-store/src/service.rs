//! The data service of one deployment: its state (`StoreService`), settings and seams,
//! its master secret (sealed under the infrastructure root) and how it opens. The
//! concerns live beside it, each an `impl StoreService` of its own: resource rows
//! (`resource_rows.rs`), authorization (`access.rs`), the key path (`keypath.rs`),
//! resources (`resources.rs`), objects, blobs, messages, jobs.

use crate::blobstore::BlobStore;
use crate::cache::KeyCache;
use crate::error::{Result, StoreError};
use crate::layers::{InfraLayer, NameHasher, derive};
use crate::metrics::StoreMetrics;
use crate::model::Resource;
use atrest_crypto::{SecretKey, record};
use atrest_infra::clock::Clock;
use atrest_infra::db::{Db, Engine};
use atrest_infra::rowmac::RowMac;
use atrest_vault::VaultService;
use atrest_vault::platform::PlatformNamespace;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// The data service's schema (versions 1001 and up, beside the vault's).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1001, include_str!("schema/1001_store.sql")),
    (1002, include_str!("schema/1002_infra_master.sql")),
    (1003, include_str!("schema/1003_blob_removals.sql")),
    (1004, include_str!("schema/1004_blob_writes.sql")),
    (1005, include_str!("schema/1005_s3_objects.sql")),
    (1006, include_str!("schema/1006_s3_parts.sql")),
];

/// Opens (or on first start creates) the data service's master secret, sealed under the
/// infrastructure root. When only a previous root opens it, it is re-sealed under the
/// current one: that is how the infrastructure root rotates, without touching data.
async fn infra_master(db: &Db, roots: &[&SecretKey], now: i64) -> Result<SecretKey> {
    const CTX: &[&[u8]] = &[b"atrest/v1/infra-master"];
    let current = roots.first().ok_or_else(|| StoreError::bad("no infrastructure root given"))?;
    let sealed = crate::repo::infra::sealed_master(db).await?;
    let Some(sealed) = sealed else {
        let master = SecretKey::generate()?;
        let sealed = record::seal(current, CTX, master.expose_secret())?;
        crate::repo::infra::insert_master(db, &sealed, now).await?;
        return Ok(master);
    };
    for (i, root) in roots.iter().enumerate() {
        let Ok(bytes) = record::open(root, CTX, &sealed) else { continue };
        let bytes = zeroize::Zeroizing::new(bytes);
        let master = SecretKey::from_slice(&bytes)?;
        if i > 0 {
            let resealed = record::seal(current, CTX, master.expose_secret())?;
            crate::repo::infra::reseal_master(db, &resealed, now).await?;
            tracing::warn!(
                "the infrastructure root was rotated: the data service's master secret is now sealed under the new \
                 root; the previous root is no longer needed once every node runs with the new one"
            );
        }
        return Ok(master);
    }
    Err(StoreError::bad(
        "the infrastructure root does not open this data service: start with the infrastructure root it was created \
         with, or pass the previous one (--infra-root-previous-key-file) to rotate",
    ))
}

/// The seams the data service is given, chosen by configuration at start (the server's
/// bootstrap): where blob bodies live, the clock, and the run-once leases.
pub struct Seams {
    /// The blob store (a directory, an S3 bucket).
    pub blobs: Arc<BlobStore>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// This node's leases.
    pub leases: atrest_infra::lease::Leases,
    /// The vault clients (in process, and over HTTPS to other servers).
    pub vaults: Arc<dyn crate::keyvault::VaultClients>,
}

/// Settings of the data service.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// How long the body of a replaced or deleted blob stays in the blob store, so
    /// downloads already running finish (`None`: 0 for a directory, where an open file
    /// outlives its removal; 300 s for S3).
    pub blob_retire_delay: Option<Duration>,
    /// How long an unwrapped resource key is used before the vault is asked again.
    pub key_cache_ttl: Duration,
    /// How long a cached key stays usable while the vault is unreachable (not refusing).
    pub vault_grace: Duration,
    /// How often versionless keys are checked for a new latest version.
    pub follow_interval: Duration,
    /// Objects per transaction in re-key and re-encrypt jobs.
    pub job_batch: usize,
    /// Longest message TTL (24 h).
    pub max_message_ttl: i64,
    /// A long stream re-checks key access every this many segments.
    pub recheck_segments: u64,
    /// Platform key rotation period (ISO-8601).
    pub platform_rotation: String,
    /// Hosts (`HOST[:PORT]`, `*.DOMAIN[:PORT]`) customer keys on other servers may be
    /// on; empty: any.
    pub remote_vault_hosts: Vec<String>,
    /// This deployment's own origins: a key URI without a credential must name one.
    pub origins: crate::origins::Origins,
    /// Blob bodies no row references are removed once this old (and the sweep runs this
    /// often): a body is committed just before its row, so it must outlast any commit.
    pub orphan_blob_grace: Duration,
    /// How long a node holds a job's lease without renewing it (it renews every batch);
    /// after a node dies, another takes its jobs over after this long.
    pub job_lease: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            blob_retire_delay: None,
            key_cache_ttl: Duration::from_secs(60),
            vault_grace: Duration::from_secs(300),
            follow_interval: Duration::from_secs(300),
            job_batch: 500,
            max_message_ttl: 86_400,
            recheck_segments: 64,
            platform_rotation: "P90D".into(),
            remote_vault_hosts: Vec::new(),
            origins: crate::origins::Origins::new(std::net::SocketAddr::from(([127, 0, 0, 1], 8443)), &[], None),
            job_lease: Duration::from_secs(30),
            orphan_blob_grace: Duration::from_secs(3600),
        }
    }
}

/// The data service.
pub struct StoreService {
    pub(crate) db: Db,
    pub(crate) vault: Arc<VaultService>,
    pub(crate) infra: InfraLayer,
    pub(crate) mac: RowMac,
    pub(crate) names: NameHasher,
    pub(crate) cred_key: SecretKey,
    pub(crate) cfg: StoreConfig,
    pub(crate) cache: KeyCache,
    pub(crate) metrics: StoreMetrics,
    pub(crate) platform: PlatformNamespace,
    write_lock: Arc<Mutex<()>>,
    pub(crate) committer: crate::commit::GroupCommit,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) vaults: Arc<dyn crate::keyvault::VaultClients>,
    /// Where blob bodies live.
    pub(crate) blobs: Arc<BlobStore>,
    /// Run-once-per-deployment leases (jobs).
    pub(crate) leases: atrest_infra::lease::Leases,
    /// Warnings per resource (e.g. "the latest key version is disabled").
    pub(crate) warnings: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// Checks a resource name: 1 to 63 lowercase letters, digits and '-'.
pub(crate) fn check_resource_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(StoreError::bad(format!(
            "invalid resource name {name:?}: use 1 to 63 lowercase letters, digits and '-'"
        )));
    }
    Ok(())
}

impl StoreService {
    /// Opens the data service over `db` (migrating it), beside `vault`. `infra_roots` are
    /// the second root secret, current first, then previous ones (for a rotation): it
    /// seals the data service's master secret, from which the infrastructure layer, row
    /// MACs, name hashes and sealed credentials derive. Neither is kept beyond derivation.
    ///
    /// # Errors
    /// Database and vault errors.
    pub async fn open(
        db: Db,
        vault: Arc<VaultService>,
        infra_roots: &[&SecretKey],
        cfg: StoreConfig,
        seams: Seams,
    ) -> Result<Self> {
        let Seams { blobs, clock, leases, vaults } = seams;
        db.migrate_with(MIGRATIONS).await?;
        let master = infra_master(&db, infra_roots, clock.now()).await?;
        let infra_root = &master;
        let platform = vault.ensure_platform_namespace(&cfg.platform_rotation).await?;
        blobs
            .check()
            .await
            .map_err(|e| StoreError::Storage(format!("the blob store {} is not usable: {e}", blobs.describe())))?;
        let write_lock = Arc::new(Mutex::new(()));
        let db_for_commit = db.clone();
        Ok(Self {
            db,
            vault,
            infra: InfraLayer::new(infra_root)?,
            mac: RowMac::derive(infra_root, b"atrest/v1/infra", b"store-row-mac")?,
            names: NameHasher::new(infra_root)?,
            cred_key: derive(infra_root, b"remote-credential")?,
            cfg,
            cache: KeyCache::default(),
            metrics: StoreMetrics::default(),
            platform,
            committer: crate::commit::GroupCommit::start(db_for_commit, write_lock.clone()),
            write_lock,
            clock,
            vaults,
            blobs,
            leases,
            warnings: std::sync::Mutex::default(),
        })
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// The data service's database (for the server's shutdown and rollback anchor).
    #[must_use]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// This node's leases (shared with the server's background loops).
    #[must_use]
    pub fn leases(&self) -> &atrest_infra::lease::Leases {
        &self.leases
    }

    /// The vault service beside it.
    #[must_use]
    pub fn vault_service(&self) -> &Arc<VaultService> {
        &self.vault
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// SQLite has one writer: serializing write transactions in-process avoids
    /// `SQLITE_BUSY` on lock upgrades. PostgreSQL relies on row locks instead.
    pub(crate) async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match self.db.engine() {
            Engine::Sqlite => Some(self.write_lock.lock().await),
            Engine::Postgres => None,
        }
    }

    /// The audit chain of a resource.
    pub(crate) fn chain(r: &Resource) -> String {
        format!("resource:{}", r.id)
    }

    /// A label for metrics and logs: `tenant-id/name`.
    pub(crate) fn label(r: &Resource) -> String {
        format!("{}/{}", &r.tenant_id[..8.min(r.tenant_id.len())], r.name)
    }

    /// Appends an audit entry on the resource's chain; the operation fails without it.
    pub(crate) async fn audit(
        &self,
        r: &Resource,
        actor: &str,
        op: &str,
        target: &str,
        result: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.vault.audit(&Self::chain(r), actor, op, target, result, &detail).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_whole_statements() {
        atrest_infra::db::assert_splittable(MIGRATIONS);
    }

    #[test]
    fn resource_names() {
        for ok in ["bot", "a", "my-bot-2"] {
            assert!(check_resource_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Bot", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_resource_name(bad).is_err(), "{bad}");
        }
    }
}
