//! atrest's HTTPS server: the Azure Key Vault–compatible keys API at each vault's origin,
//! the admin API and the data API over TLS, and their background tasks, on the
//! embedded default (SQLite and files in a data directory, generated root key and local
//! CA) or a database given by URL.
//!
//! [`start`] brings a server up and returns a handle (used by `atrest serve` and by the
//! integration tests, which run the real server on loopback with real TLS).

#![forbid(unsafe_code)]

pub mod anchor;
pub mod api;
pub mod backup;
pub mod bootstrap;
pub mod config;
mod conn;
mod files;
pub mod metrics;
pub mod ratelimit;
pub mod tls;
mod vault_ports;

pub use config::ServeConfig;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting or file is wrong; the message says what to fix.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The vault failed.
    #[error("{0}")]
    Vault(#[from] atrest_vault::VaultError),
    /// The crypto core failed.
    #[error("{0}")]
    Crypto(#[from] atrest_crypto::CryptoError),
    /// The database is older than what the deployment acknowledged.
    #[error("{0}")]
    Rollback(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
}

impl From<atrest_infra::InfraError> for ServerError {
    fn from(e: atrest_infra::InfraError) -> Self {
        ServerError::Vault(e.into())
    }
}

impl ServerError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ServerError::Io { path: path.to_path_buf(), source }
    }
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The S3 front end's address.
    pub s3_addr: SocketAddr,
    s3_task: tokio::task::JoinHandle<()>,
    /// The CA certificate to trust, when the certificate is generated.
    pub ca_pem: Option<PathBuf>,
    /// The deployment administrator's token file.
    pub admin_token: PathBuf,
    /// Warnings (also served at `/readyz`).
    pub warnings: Vec<String>,
    svc: Arc<atrest_vault::VaultService>,
    store: Arc<atrest_store::StoreService>,
    anchor: Arc<anchor::Anchor>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    listeners: Arc<vault_ports::PortListeners>,
}

impl Server {
    /// The vault service behind the API (for local inspection, e.g. of the audit trail).
    #[must_use]
    pub fn service(&self) -> &Arc<atrest_vault::VaultService> {
        &self.svc
    }

    /// The data service behind the API.
    #[must_use]
    pub fn store(&self) -> &Arc<atrest_store::StoreService> {
        &self.store
    }

    /// Graceful shutdown: stops accepting connections, lets requests in flight finish
    /// (up to 10 s), records the final commit sequences in the rollback anchor, then
    /// checkpoints and closes both databases (background passes still running finish
    /// first), so the database files alone hold everything committed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.s3_task.await;
        for t in self.listeners.take_tasks() {
            let _ = t.await;
        }
        if let Err(e) = self.anchor.sync().await {
            tracing::error!(error = %e, "could not record the final commit sequence in the rollback anchor");
        }
        self.store.db().close().await;
        self.svc.db().close().await;
        self.anchor.release();
        tracing::info!("databases checkpointed and closed");
    }
}

/// Signs the head of every chain that grew since the last run, appends the checkpoints
/// to `file` (JSON lines) and logs them, so a copy lives outside the database.
///
/// # Errors
/// Database, signing and file errors.
pub async fn write_checkpoints(
    svc: &atrest_vault::VaultService,
    file: &Path,
    last: &mut std::collections::HashMap<String, i64>,
) -> Result<usize, ServerError> {
    use std::io::Write as _;
    let mut written = 0;
    for chain in svc.audit_chains().await? {
        let cp = svc.audit_checkpoint(&chain).await?;
        if last.get(&chain) == Some(&cp.count) {
            continue;
        }
        let line = serde_json::to_string(&cp).map_err(|e| ServerError::Config(e.to_string()))?;
        if let Some(dir) = file.parent() {
            files::create_private_dir(dir)?;
        }
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(file).map_err(|e| ServerError::io(file, e))?;
        writeln!(f, "{line}").and_then(|()| f.sync_data()).map_err(|e| ServerError::io(file, e))?;
        tracing::info!(target: "atrest::audit::checkpoint", checkpoint = %line, "audit checkpoint");
        last.insert(chain, cp.count);
        written += 1;
    }
    Ok(written)
}

/// One pass of the rotation scheduler: runs due lifetime actions and audits each.
///
/// # Errors
/// Database errors.
pub async fn run_rotations(svc: &atrest_vault::VaultService) -> Result<usize, ServerError> {
    use atrest_vault::RotationOutcome as O;
    let actions = svc.run_due_rotations().await?;
    for a in &actions {
        let (op, result, version) = match &a.outcome {
            O::Rotated { version } => ("scheduled-rotate", "ok", version.as_str()),
            O::Failed { code } => ("scheduled-rotate", *code, ""),
            O::Notified { version } => ("notify", "ok", version.as_str()),
        };
        tracing::info!(vault = %a.vault.name, key = %a.key, action = %op, result, version, "rotation policy action");
        svc.audit(&a.vault.id, "system", op, &a.key, result, &serde_json::json!({"version": version})).await?;
    }
    Ok(actions.len())
}

/// Runs `f` every `every` until the server stops, on one node of the deployment: each
/// pass first takes (or renews) the lease `name` for three periods, so when the node
/// holding it dies another one carries on.
fn every<F, Fut>(
    stop: &watch::Sender<bool>,
    leases: &atrest_infra::lease::Leases,
    name: &'static str,
    every: std::time::Duration,
    mut f: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut stopped = stop.subscribe();
    let leases = leases.clone();
    let ttl = i64::try_from(every.as_secs().max(1) * 3).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            let now = atrest_infra::clock::Clock::now(&atrest_infra::clock::SystemClock);
            match leases.acquire(name, now, ttl).await {
                Ok(true) => f().await,
                Ok(false) => {}
                Err(e) => tracing::warn!(task = name, error = %e, "could not take the task's lease"),
            }
        }
    });
}

/// The data service's background work: access re-checks (and recovery) every key-cache
/// lifetime, following the latest version of versionless keys (the platform key
/// included), the message sweeper, the removal of retired blob bodies and of bodies no
/// object refers to, and jobs (resumed at start).
fn spawn_store_tasks(store: &Arc<atrest_store::StoreService>, stop: &watch::Sender<bool>, cfg: &ServeConfig) {
    let leases = store.leases().clone();
    let s = store.clone();
    every(stop, &leases, "store:recheck", store.config().key_cache_ttl, move || {
        let s = s.clone();
        async move {
            if let Err(e) = s.recheck().await {
                tracing::error!(error = %e, "key access re-check failed");
            }
        }
    });
    let s = store.clone();
    every(stop, &leases, "store:follow", store.config().follow_interval, move || {
        let s = s.clone();
        async move {
            if let Err(e) = s.follow_latest().await {
                tracing::error!(error = %e, "following the latest key versions failed");
            }
        }
    });
    let s = store.clone();
    every(stop, &leases, "store:messages", std::time::Duration::from_secs(cfg.sweep_interval_secs.max(1)), move || {
        let s = s.clone();
        async move {
            match s.sweep_messages().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "message sweeper removed expired messages"),
                Err(e) => tracing::error!(error = %e, "message sweeper failed"),
            }
        }
    });
    let s = store.clone();
    every(
        stop,
        &leases,
        "store:blob-removals",
        std::time::Duration::from_secs(cfg.sweep_interval_secs.max(1)),
        move || {
            let s = s.clone();
            async move {
                match s.sweep_blob_removals().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "removed retired blob bodies"),
                    Err(e) => tracing::error!(error = %e, "removing retired blob bodies failed"),
                }
            }
        },
    );
    // Bodies a crash left without their row: hourly, bodies older than an hour.
    let s = store.clone();
    let grace = store.config().orphan_blob_grace;
    every(stop, &leases, "store:orphan-blobs", grace, move || {
        let s = s.clone();
        async move {
            match s.sweep_orphan_blobs(grace).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed blob bodies no object refers to"),
                Err(e) => tracing::error!(error = %e, "removing unreferenced blob bodies failed"),
            }
        }
    });
    // Passes never overlap: `every` awaits each before sleeping again. Jobs take a lease
    // each (several nodes may run different jobs); jobs a crash interrupted resume here.
    let s = store.clone();
    every(stop, &atrest_infra::lease::Leases::Local, "store:jobs", std::time::Duration::from_millis(500), move || {
        let s = s.clone();
        async move {
            if let Err(e) = s.run_jobs().await {
                tracing::error!(error = %e, "job runner failed");
            }
        }
    });
}

/// Builds a fresh TLS configuration from the watched files (keeping the generated
/// certificate when only the client CA is user-supplied).
fn reload_tls(
    files: &tls::TlsFiles,
    current: &Arc<rustls::ServerConfig>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    match (&files.cert, &files.key) {
        (Some(c), Some(k)) => tls::server_config(tls::load_certs(c)?, tls::load_key(k)?, files.client_ca.as_deref()),
        _ => tls::with_current_cert(current, files.client_ca.as_deref()),
    }
}

/// The scraper's bearer secret for `/metrics`, if configured (16 characters at least).
fn read_metrics_token(cfg: &ServeConfig) -> Result<Option<atrest_crypto::SecretBytes>, ServerError> {
    Ok(match &cfg.metrics_token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f).map_err(|e| ServerError::io(f, e))?;
            let t = t.trim();
            if t.len() < 16 {
                return Err(ServerError::Config(format!(
                    "{}: the metrics token must be at least 16 characters",
                    f.display()
                )));
            }
            Some(atrest_crypto::SecretBytes::new(t.as_bytes().to_vec()))
        }
        None => None,
    })
}

/// Certificate reload without restart: user-supplied files are checked every interval
/// and on SIGHUP; a file that fails to load keeps the current configuration. Always
/// running, so SIGHUP never takes its default action (ending the process); with nothing
/// user-supplied there is nothing to reload and it only logs.
fn spawn_tls_reload(
    cfg: &ServeConfig,
    live_tls: &tls::LiveConfig,
    boot_tls: &Arc<rustls::ServerConfig>,
    stop: &watch::Sender<bool>,
) {
    let files =
        tls::TlsFiles { cert: cfg.tls_cert.clone(), key: cfg.tls_key.clone(), client_ca: cfg.client_ca.clone() };
    let live = live_tls.clone();
    let mut reload_stop = stop.subscribe();
    let every = std::time::Duration::from_secs(cfg.tls_reload_interval_secs.max(1));
    let boot_tls = boot_tls.clone();
    tokio::spawn(async move {
        let mut seen = files.stamp();
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup_recv = std::future::pending::<Option<()>>();
            let forced = tokio::select! {
                () = tokio::time::sleep(every) => false,
                _ = hup_recv => true,
                _ = reload_stop.changed() => return,
            };
            let now = files.stamp();
            if now == seen && !forced {
                continue;
            }
            if files.cert.is_none() && files.client_ca.is_none() {
                tracing::info!("SIGHUP: the generated certificate is in use; nothing to reload");
                continue;
            }
            seen = now;
            match reload_tls(&files, &boot_tls) {
                Ok(new) => {
                    if let Ok(mut l) = live.write() {
                        *l = new;
                    }
                    tracing::info!("TLS configuration reloaded");
                }
                Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
            }
        }
    });
}

/// The purge sweeper and the rotation scheduler (performs due Rotate actions, reports
/// Notify ones), each on one node of the deployment.
fn spawn_vault_tasks(
    svc: &Arc<atrest_vault::VaultService>,
    leases: &atrest_infra::lease::Leases,
    stop: &watch::Sender<bool>,
    cfg: &ServeConfig,
) {
    let sweeper_svc = svc.clone();
    every(stop, leases, "vault:purge", std::time::Duration::from_secs(cfg.sweep_interval_secs.max(1)), move || {
        let svc = sweeper_svc.clone();
        async move {
            match svc.purge_due().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(purged = n, "purge sweeper removed keys and secrets past their scheduled purge date")
                }
                Err(e) => tracing::error!(error = %e, "purge sweeper failed"),
            }
        }
    });
    let rot_svc = svc.clone();
    every(
        stop,
        leases,
        "vault:rotation",
        std::time::Duration::from_secs(cfg.rotation_interval_secs.max(1)),
        move || {
            let svc = rot_svc.clone();
            async move {
                if let Err(e) = run_rotations(&svc).await {
                    tracing::error!(error = %e, "rotation scheduler failed");
                }
            }
        },
    );
}

/// The rollback anchor's check while serving (this node's own files: no lease).
fn spawn_anchor_watch(anchor: &Arc<anchor::Anchor>, stop: &watch::Sender<bool>) {
    let watched = anchor.clone();
    let mut watch_stop = stop.subscribe();
    tokio::spawn(async move {
        while watched.enabled() {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                _ = watch_stop.changed() => return,
            }
            match watched.watch().await {
                Ok(()) => {}
                Err(e @ ServerError::Rollback(_)) => {
                    tracing::error!(error = %e, "the database went back under the running server; answers are withheld");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "could not check the databases against the rollback anchor"),
            }
        }
    });
}

/// Signed audit checkpoints, written outside the database.
fn spawn_checkpoint_writer(svc: &Arc<atrest_vault::VaultService>, cfg: &ServeConfig, stop: &watch::Sender<bool>) {
    let cp_svc = svc.clone();
    let mut cp_stop = stop.subscribe();
    let cp_file = cfg.data_dir.join("audit").join("checkpoints.jsonl");
    let cp_every = std::time::Duration::from_secs(cfg.checkpoint_interval_secs.max(1));
    tokio::spawn(async move {
        let mut last: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        loop {
            tokio::select! {
                () = tokio::time::sleep(cp_every) => {}
                _ = cp_stop.changed() => return,
            }
            if let Err(e) = write_checkpoints(&cp_svc, &cp_file, &mut last).await {
                tracing::error!(error = %e, "writing audit checkpoints failed");
            }
        }
    });
}

/// Bootstraps and starts serving; returns once the listener is bound.
///
/// # Errors
/// Configuration, bootstrap and bind errors.
pub async fn start(cfg: ServeConfig) -> Result<Server, ServerError> {
    // Bound first, so the data service knows the port actually served (key URIs on this
    // deployment name it; `--listen 127.0.0.1:0` picks one).
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| {
        ServerError::Config(format!("cannot listen on {}: {e} (choose another address with --listen)", cfg.listen))
    })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Config(e.to_string()))?;
    let s3_want = cfg.s3_addr();
    let s3_listener = tokio::net::TcpListener::bind(s3_want).await.map_err(|e| {
        ServerError::Config(format!("cannot listen on {s3_want} for S3: {e} (choose another address with --s3-listen)"))
    })?;
    let s3_addr = s3_listener.local_addr().map_err(|e| ServerError::Config(e.to_string()))?;
    let cfg = ServeConfig { listen: addr, s3_listen: Some(s3_addr), ..cfg };
    let boot = bootstrap::bootstrap(&cfg).await?;
    let metrics_token = read_metrics_token(&cfg)?;
    let anchor = Arc::new(boot.anchor);
    let limits = conn::Limits::from(&cfg);
    let vault_ports = boot.store.config().origins.vault_ports.clone();
    let listeners = Arc::new(vault_ports::PortListeners::new(
        boot.svc.clone(),
        vault_ports.clone(),
        &cfg,
        &boot.default_vault.name,
    ));
    let state = Arc::new(api::AppState {
        svc: boot.svc.clone(),
        store: boot.store.clone(),
        default_vault: boot.default_vault.name.clone(),
        vault_domain: cfg.vault_domain.clone(),
        warnings: boot.warnings.clone(),
        metrics: metrics::Metrics::default(),
        metrics_enabled: cfg.metrics,
        metrics_token,
        limiter: ratelimit::RateLimiter::new(cfg.rate_limit, cfg.rate_burst),
        anchor: anchor.clone(),
        vault_ports,
        listeners: listeners.clone(),
    });
    let s3_app = api::s3_router(state.clone());
    let app = api::router(state);
    let live_tls: tls::LiveConfig = Arc::new(std::sync::RwLock::new(boot.tls.clone()));
    let (stop, _) = watch::channel(false);

    spawn_tls_reload(&cfg, &live_tls, &boot.tls, &stop);

    spawn_vault_tasks(&boot.svc, boot.store.leases(), &stop, &cfg);
    spawn_store_tasks(&boot.store, &stop, &cfg);

    spawn_anchor_watch(&anchor, &stop);
    spawn_checkpoint_writer(&boot.svc, &cfg, &stop);

    let task = conn::serve(listener, live_tls.clone(), app.clone(), limits, &stop);
    let s3_task = conn::serve(s3_listener, live_tls.clone(), s3_app, limits, &stop);
    if let Err(e) = listeners.start(app, live_tls, limits, stop.clone()).await {
        let _ = stop.send(true);
        return Err(e);
    }
    spawn_port_refresh(&listeners, &stop);
    Ok(Server {
        addr,
        s3_addr,
        s3_task,
        ca_pem: boot.ca_pem,
        admin_token: boot.admin_token,
        warnings: boot.warnings,
        svc: boot.svc,
        store: boot.store,
        anchor,
        stop,
        task,
        listeners,
    })
}

/// Vaults created on other nodes: their ports are served here within 5 s.
fn spawn_port_refresh(listeners: &Arc<vault_ports::PortListeners>, stop: &watch::Sender<bool>) {
    let listeners = listeners.clone();
    let mut stopped = stop.subscribe();
    // Every node, not one under a lease: each serves every port.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                _ = stopped.changed() => return,
            }
            if let Err(e) = listeners.refresh().await {
                tracing::warn!(error = %e, "could not read the vault ports");
            }
        }
    });
}
