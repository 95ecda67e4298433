//! First start and every start: the data directory, the root key, the database, the
//! default tenant, vault and admin, and TLS material.

use crate::config::ServeConfig;
use crate::{ServerError, tls};
use atrest_crypto::SecretKey;
use atrest_crypto::backend::software::SoftwareBackend;
use atrest_infra::clock::SystemClock;
use atrest_infra::db::Db;
use atrest_vault::audit::DEPLOYMENT_CHAIN;
use atrest_vault::model::{VaultInfo, VaultSettings};
use atrest_vault::{Permission, PrincipalKind, Role, SecretPermission, VaultError, VaultService};
use std::path::PathBuf;
use std::sync::Arc;

/// Name of the default tenant and of its default vault.
pub const DEFAULT: &str = "default";
/// Name of the deployment administrator principal.
pub const ADMIN: &str = "admin";

/// Everything a running server needs, ready.
pub struct Bootstrapped {
    /// The vault service.
    pub svc: Arc<VaultService>,
    /// rustls configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// The default vault.
    pub default_vault: VaultInfo,
    /// `<data-dir>/tls/ca.pem` when the certificate is generated.
    pub ca_pem: Option<PathBuf>,
    /// `<data-dir>/admin.token`.
    pub admin_token: PathBuf,
    /// Operational warnings (shown at start and in `/readyz`).
    pub warnings: Vec<String>,
    /// The data service.
    pub store: Arc<atrest_store::StoreService>,
    /// The rollback anchor (a no-op on PostgreSQL).
    pub anchor: crate::anchor::Anchor,
}

fn parse_key(text: &str, origin: &str) -> Result<SecretKey, ServerError> {
    use base64::Engine as _;
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).ok()
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')).ok()
    };
    let bytes = zeroize::Zeroizing::new(bytes.unwrap_or_default());
    SecretKey::from_slice(&bytes).map_err(|_| {
        ServerError::Config(format!("{origin}: the root key must be 32 bytes, as 64 hex digits or base64url"))
    })
}

/// Reads a key file (64 hex digits or base64url).
fn read_key_file(path: &std::path::Path) -> Result<SecretKey, ServerError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ServerError::io(path, e))?);
    parse_key(&text, &path.display().to_string())
}

/// Reads `path`, or on first start generates a key there (0600).
fn load_or_generate(path: &std::path::Path) -> Result<SecretKey, ServerError> {
    if path.exists() {
        return read_key_file(path);
    }
    let k = SecretKey::generate()?;
    crate::files::write_private(path, zeroize::Zeroizing::new(hex::encode(k.expose_secret())).as_bytes())?;
    Ok(k)
}

/// Argon2id parameters for a passphrase root key: 64 MiB, 3 passes, 1 lane (about half a
/// second here), recorded with the salt in `<data-dir>/root.salt` so they can change
/// later without locking out existing deployments.
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;

/// Derives the root key from a passphrase with Argon2id and the deployment's salt
/// (created on first use; not secret, but it must be kept with the data).
fn passphrase_key(data_dir: &std::path::Path, passphrase: &str) -> Result<SecretKey, ServerError> {
    if passphrase.chars().count() < 12 {
        return Err(ServerError::Config("the root passphrase must be at least 12 characters".into()));
    }
    let path = data_dir.join("root.salt");
    let line = if path.exists() {
        std::fs::read_to_string(&path).map_err(|e| ServerError::io(&path, e))?
    } else {
        let salt = hex::encode(atrest_crypto::rand::bytes::<16>()?);
        let line = format!("argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}${salt}\n");
        crate::files::write_private(&path, line.as_bytes())?;
        line
    };
    let bad = || ServerError::Config(format!("{} is not a valid atrest salt file", path.display()));
    let parts: Vec<&str> = line.trim().split('$').collect();
    let ["argon2id", "v=19", params, salt] = parts.as_slice() else { return Err(bad()) };
    let mut m = 0;
    let mut t = 0;
    let mut p = 0;
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("m", v)) => m = v.parse().map_err(|_| bad())?,
            Some(("t", v)) => t = v.parse().map_err(|_| bad())?,
            Some(("p", v)) => p = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    let salt = hex::decode(salt).map_err(|_| bad())?;
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|_| bad())?;
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &salt, &mut out[..])
        .map_err(|e| ServerError::Config(format!("Argon2id failed: {e}")))?;
    Ok(SecretKey::from_slice(&out[..])?)
}

/// Loads (or on first start, with `generate`, creates) the root key; returns it and an
/// optional warning.
fn root_key(cfg: &ServeConfig, generate: bool) -> Result<(SecretKey, Option<String>), ServerError> {
    if let Ok(v) = std::env::var("ATREST_ROOT_KEY") {
        return Ok((parse_key(&v, "ATREST_ROOT_KEY")?, None));
    }
    let passphrase = match (&cfg.root_passphrase_file, std::env::var("ATREST_ROOT_PASSPHRASE")) {
        (_, Ok(p)) => Some(zeroize::Zeroizing::new(p)),
        (Some(path), _) => Some(zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| ServerError::io(path, e))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        )),
        (None, Err(_)) => None,
    };
    if let Some(p) = passphrase {
        return Ok((passphrase_key(&cfg.data_dir, &p)?, None));
    }
    if let Some(path) = &cfg.root_key_file {
        return Ok((read_key_file(path)?, None));
    }
    let path = cfg.data_dir.join("root.key");
    if !generate && !path.exists() {
        return Err(missing_root(&path, "--root-key-file, ATREST_ROOT_KEY or a root passphrase"));
    }
    let key = load_or_generate(&path)?;
    let warning = format!(
        "the root key is stored in {} next to the data: a copy of the data directory is a copy of every key; \
         for production keep it elsewhere (--root-key-file on another volume, or ATREST_ROOT_KEY)",
        path.display()
    );
    Ok((key, Some(warning)))
}

/// Loads (or on first start generates) the infrastructure root, the data service's
/// second secret; returns it and an optional warning.
fn infra_root(
    cfg: &ServeConfig,
    vault_root: &SecretKey,
    generate: bool,
) -> Result<(SecretKey, Option<String>), ServerError> {
    let (key, warning) = if let Ok(v) = std::env::var("ATREST_INFRA_ROOT_KEY") {
        (parse_key(&v, "ATREST_INFRA_ROOT_KEY")?, None)
    } else if let Some(path) = &cfg.infra_root_key_file {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ServerError::io(path, e))?);
        (parse_key(&text, &path.display().to_string())?, None)
    } else {
        let path = cfg.data_dir.join("infra.key");
        if !generate && !path.exists() {
            return Err(missing_root(&path, "--infra-root-key-file or ATREST_INFRA_ROOT_KEY"));
        }
        let key = if path.exists() {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| ServerError::io(&path, e))?);
            parse_key(&text, &path.display().to_string())?
        } else {
            let k = SecretKey::generate()?;
            crate::files::write_private(&path, zeroize::Zeroizing::new(hex::encode(k.expose_secret())).as_bytes())?;
            k
        };
        let warning = format!(
            "the infrastructure root is stored in {} next to the data: keep it elsewhere in production \
             (--infra-root-key-file on another volume, or ATREST_INFRA_ROOT_KEY), apart from the vault's root key",
            path.display()
        );
        (key, Some(warning))
    };
    if atrest_crypto::secret::constant_time_eq(key.expose_secret(), vault_root.expose_secret()) {
        return Err(ServerError::Config(
            "the infrastructure root must differ from the vault's root key: two layers need two secrets".into(),
        ));
    }
    Ok((key, warning))
}

fn missing_root(path: &std::path::Path, how: &str) -> ServerError {
    ServerError::Config(format!(
        "no {} and no other source given: this command never generates a root secret. Put this deployment's \
         file there, or give it with {how}",
        path.display()
    ))
}

/// The deployment's two root secrets (vault root, infrastructure root), as `serve` finds
/// them, but never generated: for commands that work on existing data (backup, restore).
///
/// # Errors
/// A root that is missing or malformed.
pub fn existing_roots(cfg: &ServeConfig) -> Result<(SecretKey, SecretKey), ServerError> {
    let (root, _) = root_key(cfg, false)?;
    let (infra, _) = infra_root(cfg, &root, false)?;
    Ok((root, infra))
}

/// A root secret's fingerprint: 16 bytes of HKDF output under it, in hex. Names the
/// secret (backup manifests, restore checks) without revealing it.
///
/// # Errors
/// Never in practice.
pub fn fingerprint(key: &SecretKey) -> Result<String, ServerError> {
    let mut out = [0u8; 16];
    atrest_crypto::kdf::hkdf_sha256(key.expose_secret(), b"atrest/v1/root", &[b"fingerprint"], &mut out)?;
    Ok(hex::encode(out))
}

/// The data service's database URL: its own SQLite file beside a SQLite vault, the same
/// database as a PostgreSQL vault.
pub(crate) fn store_url(cfg: &ServeConfig) -> String {
    if let Some(u) = &cfg.store_database_url {
        return u.clone();
    }
    match &cfg.database_url {
        Some(u) if u.starts_with("postgres") => u.clone(),
        _ => format!("sqlite://{}?mode=rwc", cfg.data_dir.join("store.db").display()),
    }
}

/// Opens the data service beside `svc`.
async fn open_store(
    cfg: &ServeConfig,
    svc: &Arc<VaultService>,
    root: &SecretKey,
) -> Result<(Arc<atrest_store::StoreService>, Option<String>), ServerError> {
    let (infra, warning) = infra_root(cfg, root, true)?;
    let previous = cfg.infra_root_previous_key_file.as_deref().map(read_key_file).transpose()?;
    let roots: Vec<&SecretKey> = std::iter::once(&infra).chain(previous.as_ref()).collect();
    let db = Db::connect(&store_url(cfg)).await?;
    // Leases live in the vault's database: one deployment, one set of leases.
    let leases = atrest_infra::lease::Leases::for_db(svc.db())?;
    let secs = std::time::Duration::from_secs;
    let scfg = atrest_store::StoreConfig {
        key_cache_ttl: secs(cfg.key_cache_ttl_secs.max(1)),
        vault_grace: secs(cfg.vault_grace_secs),
        follow_interval: secs(cfg.key_follow_interval_secs.max(1)),
        platform_rotation: cfg.platform_key_rotation.clone(),
        remote_vault_hosts: cfg.remote_vault_hosts.clone(),
        origins: atrest_store::Origins::new(cfg.listen, &cfg.hostnames, cfg.vault_domain.as_deref()),
        job_batch: cfg.job_batch.max(1),
        job_lease: secs(cfg.job_lease_secs.max(1)),
        blob_retire_delay: cfg.blob_retire_delay_secs.map(secs),
        ..atrest_store::StoreConfig::default()
    };
    let blobs = match &cfg.blob_store {
        Some(location) => atrest_store::blobstore::BlobStore::from_location(location)
            .map_err(|e| ServerError::Config(format!("--blob-store {location}: {e}")))?,
        None => atrest_store::blobstore::BlobStore::Local(atrest_store::blobstore::local::LocalDir::new(
            cfg.data_dir.join("blobs"),
        )),
    };
    let vaults = Arc::new(
        atrest_store::DeploymentClients::new(svc.clone(), cfg.remote_vault_ca.as_deref())
            .map_err(|e| ServerError::Config(format!("--remote-vault-ca: {e}")))?,
    );
    let seams = atrest_store::Seams { blobs: Arc::new(blobs), clock: Arc::new(SystemClock), leases, vaults };
    let store = atrest_store::StoreService::open(db, svc.clone(), &roots, scfg, seams)
        .await
        .map_err(|e| ServerError::Config(format!("the data service cannot start: {e}")))?;
    Ok((Arc::new(store), warning))
}

/// Opens the vault service of a data directory (root key, database, migrations) without
/// creating anything else; used by `serve` and by local commands such as `audit verify`.
///
/// # Errors
/// Configuration, file and database errors.
pub async fn open_service(cfg: &ServeConfig) -> Result<(Arc<VaultService>, Option<String>), ServerError> {
    let (svc, _root, warning, _) = open(cfg, false).await?;
    Ok((svc, warning))
}

pub(crate) fn vault_url(cfg: &ServeConfig) -> String {
    cfg.database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", cfg.data_dir.join("atrest.db").display()))
}

/// The vault service, the root key, a warning, and the anchor's lock when `check_anchor`
/// found an anchor to keep.
type Opened = (Arc<VaultService>, SecretKey, Option<String>, Option<crate::anchor::AnchorLock>);

async fn open(cfg: &ServeConfig, check_anchor: bool) -> Result<Opened, ServerError> {
    crate::files::create_private_dir(&cfg.data_dir)?;
    let (root, warning) = root_key(cfg, true)?;
    // Read-only and before any write: a refused database keeps its WAL as it was (a
    // write, even a migration's, would overwrite the frames past a damaged one).
    let lock = if check_anchor && cfg.rollback_anchor {
        crate::anchor::precheck(&cfg.anchor_path(), &root, [&vault_url(cfg), &store_url(cfg)]).await?
    } else {
        None
    };
    let db = Db::connect(&vault_url(cfg)).await?;
    atrest_vault::schema::migrate(&db).await?;
    let backend = key_backend(cfg, &root)?;
    let svc = Arc::new(VaultService::new(db, backend, &root, Arc::new(SystemClock))?);
    Ok((svc, root, warning, lock))
}

/// The key backend the settings choose (the one place that does: `serve`, `backup` and
/// `restore` all come here). Today the software backend, which seals key material under
/// the root key; the PKCS#11 settings will choose an HSM here.
///
/// # Errors
/// A backend that cannot start.
pub(crate) fn key_backend(
    _cfg: &ServeConfig,
    root: &SecretKey,
) -> Result<Arc<dyn atrest_crypto::backend::KeyBackend>, ServerError> {
    let backend: Arc<dyn atrest_crypto::backend::KeyBackend> = Arc::new(SoftwareBackend::new(root)?);
    let caps = backend.capabilities();
    tracing::debug!(backend = backend.name(), protection = ?caps.protection, blocking = caps.blocking, "key backend");
    Ok(backend)
}

/// A new deployment is created only where there was none: a database without the
/// default tenant beside the leftovers of a deployment (its admin token, rollback
/// anchor, audit checkpoints, TLS material or blob bodies) is a database that lost its
/// contents — a copy taken without its write-ahead log, the wrong file — and starting
/// afresh there would bury the old deployment under a new one.
fn refuse_over_existing(cfg: &ServeConfig) -> Result<(), ServerError> {
    let dir = &cfg.data_dir;
    let mut found: Vec<String> = ["admin.token", "audit/checkpoints.jsonl", "tls/ca.pem", "tls/ca.key.sealed"]
        .iter()
        .map(|f| dir.join(f))
        .chain(std::iter::once(cfg.anchor_path()))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let blobs = dir.join("blobs");
    if std::fs::read_dir(&blobs).is_ok_and(|mut d| d.next().is_some()) {
        found.push(format!("blob bodies in {}", blobs.display()));
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(ServerError::Config(format!(
        "the database has no deployment, but {} shows signs of one: {}. Refusing to create a new deployment over \
         it. If the database was copied without its -wal file or replaced, put the right one back, or restore a \
         backup with `atrest restore`; to start afresh, use an empty data directory",
        dir.display(),
        found.join(", ")
    )))
}

/// Prepares everything `serve` needs.
///
/// # Errors
/// Configuration, file, database and TLS errors, with what to fix.
pub async fn bootstrap(cfg: &ServeConfig) -> Result<Bootstrapped, ServerError> {
    // Several nodes starting at once on one PostgreSQL race to create the same first rows
    // (default tenant and vault, platform namespace, the data service's master secret):
    // every step is "load, else create", so the loser of a race simply tries again.
    let mut attempt = 0;
    loop {
        match bootstrap_once(cfg).await {
            Err(e) if attempt < 5 && is_creation_race(&e) => {
                attempt += 1;
                tracing::info!(error = %e, "another node is bootstrapping the same database; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn is_creation_race(e: &ServerError) -> bool {
    let m = e.to_string();
    ["already exists", "duplicate key", "UNIQUE constraint"].iter().any(|s| m.contains(s))
}

async fn bootstrap_once(cfg: &ServeConfig) -> Result<Bootstrapped, ServerError> {
    // Before SQLite creates a missing database file: leftovers beside it mean it was lost.
    if cfg.database_url.is_none() && !cfg.data_dir.join("atrest.db").exists() {
        refuse_over_existing(cfg)?;
    }
    let (svc, root, warning, lock) = open(cfg, true).await?;
    match prepare(cfg, &svc, &root, warning, lock).await {
        Ok(b) => Ok(b),
        Err(e) => {
            // Checkpointed and closed: a WAL left behind would be applied to whatever
            // database file the operator puts in place next.
            svc.db().close().await;
            Err(e)
        }
    }
}

async fn prepare(
    cfg: &ServeConfig,
    svc: &Arc<VaultService>,
    root: &SecretKey,
    warning: Option<String>,
    lock: Option<crate::anchor::AnchorLock>,
) -> Result<Bootstrapped, ServerError> {
    let svc = svc.clone();
    let admin_token = cfg.data_dir.join("admin.token");

    let system = serde_json::json!({});
    let tenant = match svc.tenant(DEFAULT).await {
        Ok(t) => t,
        Err(VaultError::NotFound(_)) => {
            refuse_over_existing(cfg)?;
            let t = svc.create_tenant(DEFAULT).await?;
            svc.audit(DEPLOYMENT_CHAIN, "system", "create-tenant", &t.name, "ok", &system).await?;
            t
        }
        Err(VaultError::Integrity { .. }) => {
            return Err(ServerError::Config(
                "the database's rows do not verify under this root key: start with the root key this database was created with".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let default_vault = match svc.vault(DEFAULT).await {
        Ok(v) => v,
        Err(VaultError::NotFound(_)) => {
            let v = svc.create_vault(&tenant.id, DEFAULT, VaultSettings::default()).await?;
            svc.audit(&v.id, "system", "create-vault", &v.name, "ok", &system).await?;
            let admin = svc.create_principal(&tenant, ADMIN, PrincipalKind::User, Role::DeploymentAdmin).await?;
            svc.audit(
                DEPLOYMENT_CHAIN,
                "system",
                "create-principal",
                &admin.name,
                "ok",
                &serde_json::json!({"role": "deployment-admin"}),
            )
            .await?;
            svc.set_policy_with(&v, &admin, &Permission::ALL, &SecretPermission::ALL).await?;
            let all = Permission::names(&Permission::ALL);
            let secrets = SecretPermission::names(&SecretPermission::ALL);
            let detail = serde_json::json!({"permissions": all, "secret_permissions": secrets});
            svc.audit(&v.id, "system", "set-policy", &admin.name, "ok", &detail).await?;
            let token = svc.issue_token(&admin, None).await?;
            svc.audit(
                DEPLOYMENT_CHAIN,
                "system",
                "issue-token",
                &admin.name,
                "ok",
                &serde_json::json!({"token_id": token.id}),
            )
            .await?;
            crate::files::write_private(&admin_token, token.token.expose_secret())?;
            v
        }
        Err(e) => return Err(e.into()),
    };

    let (chain, key, ca_pem) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (tls::load_certs(c)?, tls::load_key(k)?, None),
        (None, None) => {
            let paths = tls::TlsPaths::new(&cfg.data_dir);
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            names.extend(cfg.hostnames.iter().cloned());
            if let Some(d) = &cfg.vault_domain {
                names.push(d.clone());
                names.push(format!("*.{d}"));
            }
            let (chain, key) = tls::ensure_generated(&paths, root, &names)?;
            (chain, key, Some(paths.ca_pem))
        }
        _ => return Err(ServerError::Config("--tls-cert and --tls-key go together".into())),
    };
    let (store, infra_warning) = open_store(cfg, &svc, root).await?;
    let anchor = match lock {
        Some(lock) => crate::anchor::Anchor::open(&cfg.anchor_path(), root, svc.db(), store.db(), lock).await,
        None => Ok(crate::anchor::Anchor::disabled()),
    };
    let anchor = match anchor {
        Ok(a) => a,
        Err(e) => {
            store.db().close().await;
            return Err(e);
        }
    };
    Ok(Bootstrapped {
        anchor,
        store,
        svc,
        tls: tls::server_config(chain, key, cfg.client_ca.as_deref())?,
        default_vault,
        ca_pem,
        admin_token,
        warnings: warning.into_iter().chain(infra_warning).collect(),
    })
}
