//! The data service of one deployment: resources, their rows and roles, and the path
//! from a request to an unwrapped resource key (cache, vault, `KeyInaccessible`).

use crate::blobstore::BlobStore;
use crate::cache::{KeyCache, Lookup, Slot};
use crate::error::{Result, StoreError};
use crate::hierarchy;
use crate::keyvault::{InProcessVault, KeyRef, KeyVault, WrappedKey};
use crate::layers::{InfraLayer, NameHasher, derive};
use crate::metrics::StoreMetrics;
use crate::model::{DataRole, KeySource, Resource, ResourceState};
use crate::remote::HttpVault;
use atrest_crypto::{SecretKey, record};
use atrest_infra::clock::Clock;
use atrest_infra::db::{Db, Engine};
use atrest_infra::rowmac::{Field, RowMac};
use atrest_vault::platform::{PLATFORM, PLATFORM_KEK, PlatformNamespace};
use atrest_vault::{Principal, PrincipalKind, Role, VaultError, VaultService};
use sqlx::Row;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// The data service's schema (versions 1001 and up, beside the vault's).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1001, include_str!("schema/1001_store.sql")),
    (1002, include_str!("schema/1002_infra_master.sql")),
    (1003, include_str!("schema/1003_blob_removals.sql")),
    (1004, include_str!("schema/1004_blob_writes.sql")),
];

/// Opens (or on first start creates) the data service's master secret, sealed under the
/// infrastructure root. When only a previous root opens it, it is re-sealed under the
/// current one: that is how the infrastructure root rotates, without touching data.
async fn infra_master(db: &Db, roots: &[&SecretKey], now: i64) -> Result<SecretKey> {
    const CTX: &[&[u8]] = &[b"atrest/v1/infra-master"];
    let current = roots.first().ok_or_else(|| StoreError::bad("no infrastructure root given"))?;
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT sealed FROM store_infra WHERE id = 1").fetch_optional(db.pool()).await?;
    let Some(sealed) = sealed else {
        let master = SecretKey::generate()?;
        let sealed = record::seal(current, CTX, master.expose_secret())?;
        sqlx::query("INSERT INTO store_infra (id, sealed, created, updated) VALUES (1, $1, $2, $2)")
            .bind(sealed)
            .bind(now)
            .execute(db.pool())
            .await?;
        return Ok(master);
    };
    for (i, root) in roots.iter().enumerate() {
        let Ok(bytes) = record::open(root, CTX, &sealed) else { continue };
        let bytes = zeroize::Zeroizing::new(bytes);
        let master = SecretKey::from_slice(&bytes)?;
        if i > 0 {
            let resealed = record::seal(current, CTX, master.expose_secret())?;
            sqlx::query("UPDATE store_infra SET sealed = $1, updated = $2 WHERE id = 1")
                .bind(resealed)
                .bind(now)
                .execute(db.pool())
                .await?;
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
    /// CA bundle trusted for remote vaults (default: the system bundle).
    pub remote_ca: Option<PathBuf>,
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
            remote_ca: None,
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
    cred_key: SecretKey,
    pub(crate) cfg: StoreConfig,
    pub(crate) cache: KeyCache,
    pub(crate) metrics: StoreMetrics,
    pub(crate) platform: PlatformNamespace,
    write_lock: Arc<Mutex<()>>,
    pub(crate) committer: crate::commit::GroupCommit,
    pub(crate) clock: Arc<dyn Clock>,
    http: reqwest::Client,
    /// Where blob bodies live.
    pub(crate) blobs: Arc<BlobStore>,
    /// Run-once-per-deployment leases (jobs).
    pub(crate) leases: atrest_infra::lease::Leases,
    /// Warnings per resource (e.g. "the latest key version is disabled").
    pub(crate) warnings: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

pub(crate) const RES_COLS: &str = "id, tenant_id, name, identity_id, state, state_reason, key_source, key_uri, kek_vault, \
     kek_name, kek_version, remote_cred, wrapped_version, wrapped_alg, wrapped_key, rk_epoch, old_wrapped, enc_epoch, \
     msg_version, msg_alg, msg_key, diagnostics, created, updated, mac";

/// Frames a wrapped key as `0x01 ‖ u8 len ‖ version ‖ u8 len ‖ alg ‖ bytes`.
pub(crate) fn encode_wrapped(w: &WrappedKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(w.bytes.len() + 64);
    out.push(WRAPPED_FORMAT);
    for s in [&w.version, &w.alg] {
        out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&w.bytes);
    out
}

/// Version byte of the wrapped-key framing.
const WRAPPED_FORMAT: u8 = 1;

pub(crate) fn decode_wrapped(b: &[u8]) -> Option<WrappedKey> {
    let (&WRAPPED_FORMAT, mut rest) = b.split_first()? else { return None };
    let mut take = || -> Option<String> {
        let (&n, tail) = rest.split_first()?;
        let n = usize::from(n);
        if tail.len() < n {
            return None;
        }
        let s = String::from_utf8(tail[..n].to_vec()).ok()?;
        rest = &tail[n..];
        Some(s)
    };
    let version = take()?;
    let alg = take()?;
    Some(WrappedKey { version, alg, bytes: rest.to_vec() })
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
        let Seams { blobs, clock, leases } = seams;
        db.migrate_with(MIGRATIONS).await?;
        let master = infra_master(&db, infra_roots, clock.now()).await?;
        let infra_root = &master;
        let platform = vault.ensure_platform_namespace(&cfg.platform_rotation).await?;
        blobs
            .check()
            .await
            .map_err(|e| StoreError::Storage(format!("the blob store {} is not usable: {e}", blobs.describe())))?;
        let cfg_remote_ca = cfg.remote_ca.clone();
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
            http: crate::remote::http_client(cfg_remote_ca.as_deref())?,
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

    async fn insert_resource(&self, r: &Resource) -> Result<()> {
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
        let row = sqlx::query("SELECT role, mac FROM store_roles WHERE resource_id = $1 AND principal_id = $2")
            .bind(&r.id)
            .bind(&actor.id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        let mac: Vec<u8> = row.try_get("mac")?;
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
                reason: format!("resource {} is KeyInaccessible ({})", r.name, r.state_reason),
                fix: "restore the resource identity's access to the key (or enable, recover the key); the resource \
                      recovers by itself within one key-cache interval"
                    .into(),
                transient: false,
            });
        }
        Ok(())
    }

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
            return Ok(Box::new(HttpVault::new(self.http.clone(), &r.key_uri, token)?));
        }
        let identity = self.vault.principal(&r.identity_id).await?;
        Ok(Box::new(InProcessVault::new(self.vault.clone(), identity, &r.name)))
    }

    pub(crate) fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub(crate) fn platform_vault(&self, resource: &str) -> Box<dyn KeyVault> {
        Box::new(InProcessVault::new(self.vault.clone(), self.platform.identity.clone(), resource))
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
        out
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
        let rows = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE state = $1"))
            .bind(ResourceState::KeyInaccessible.as_str())
            .fetch_all(self.db.pool())
            .await?;
        let inaccessible: Vec<Resource> = rows.iter().filter_map(|r| self.resource_from_row(r).ok()).collect();
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
        let id = hex::encode(atrest_crypto::rand::bytes::<16>()?);
        let platform = self.platform_vault(name);
        let kek = Self::platform_kek();
        let (_rk, wrapped) = hierarchy::new_resource_key(platform.as_ref(), &kek).await?;
        let (_mk, msg_wrapped) = hierarchy::new_resource_key(platform.as_ref(), &kek).await?;
        let now = self.now();
        let r = Resource {
            id,
            tenant_id: actor.tenant_id.clone(),
            name: name.to_string(),
            identity_id: identity.id.clone(),
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

    /// Resources of the actor's tenant it holds a role on.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_resources(&self, actor: &Principal) -> Result<Vec<(Resource, DataRole)>> {
        let rows = sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources WHERE tenant_id = $1 ORDER BY name"))
            .bind(&actor.tenant_id)
            .fetch_all(self.db.pool())
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let r = self.resource_from_row(row)?;
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
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM store_roles WHERE resource_id = $1 AND principal_id = $2")
            .bind(&r.id)
            .bind(&p.id)
            .execute(&mut *tx)
            .await?;
        if let Some(role) = role {
            let mac =
                self.mac.tag("store_roles", &[Field::Text(&r.id), Field::Text(&p.id), Field::Text(role.as_str())]);
            sqlx::query("INSERT INTO store_roles (resource_id, principal_id, role, mac) VALUES ($1, $2, $3, $4)")
                .bind(&r.id)
                .bind(&p.id)
                .bind(role.as_str())
                .bind(mac)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
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
        let rows = sqlx::query("SELECT principal_id, role, mac FROM store_roles WHERE resource_id = $1")
            .bind(&r.id)
            .fetch_all(self.db.pool())
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let pid: String = row.try_get("principal_id")?;
            let role: String = row.try_get("role")?;
            let mac: Vec<u8> = row.try_get("mac")?;
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
        {
            let _g = self.write_guard().await;
            let mut tx = self.db.pool().begin().await?;
            for table in [
                "store_objects",
                "store_messages",
                "store_roles",
                "store_jobs",
                "store_blob_removals",
                "store_blob_writes",
            ] {
                sqlx::query(&format!("DELETE FROM {table} WHERE resource_id = $1"))
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM store_resources WHERE id = $1").bind(&r.id).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        self.forget_for_real().await;
        self.cache.forget(&r.id);
        self.metrics.remove(&Self::label(&r));
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
        match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_optional(self.db.pool()).await {
            Ok(Some(row)) if row.try_get::<i64, _>(0).unwrap_or(1) != 0 => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_framing_round_trips_and_refuses_garbage() {
        let w = WrappedKey { version: "0123abcd".into(), alg: "RSA-OAEP-256".into(), bytes: vec![9; 256] };
        let enc = encode_wrapped(&w);
        assert_eq!(enc[0], WRAPPED_FORMAT);
        assert_eq!(decode_wrapped(&enc), Some(w.clone()));
        let mut other_version = enc.clone();
        other_version[0] = 2;
        assert_eq!(decode_wrapped(&other_version), None);
        assert_eq!(decode_wrapped(&enc[..5]), None, "cut inside the version");
        assert_eq!(decode_wrapped(&[]), None);
        let empty = WrappedKey { version: String::new(), alg: String::new(), bytes: Vec::new() };
        assert_eq!(decode_wrapped(&encode_wrapped(&empty)), Some(empty));
    }

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
