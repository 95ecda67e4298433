//! Every vault at an origin of its own, without DNS: a customer vault gets a port of its
//! own (stored in the vault database, so every node serves it), and each node listens on
//! every stored port with the same TLS and router as the main listener; requests that
//! arrive there address that vault (see `api::vault_at`).
//!
//! A port is claimed by binding it first and then recording it, so a port is only ever
//! given out where it could be bound; a node that cannot bind a stored port (in use by
//! something else there) serves the others and says so at `/readyz`.

use atrest_store::VaultPorts;
use atrest_vault::VaultService;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

/// The listeners of the vault ports on this node.
pub(crate) struct PortListeners {
    svc: Arc<VaultService>,
    ports: VaultPorts,
    ip: IpAddr,
    /// Ports to give out; `None`: ports the system picks.
    range: Option<RangeInclusive<u16>>,
    /// Give new vaults a port (there is no vault domain).
    assign: bool,
    default_vault: String,
    serve: OnceLock<Serve>,
    tasks: Mutex<BTreeMap<u16, tokio::task::JoinHandle<()>>>,
    /// What this node could not serve (a vault, or a port whose row does not verify),
    /// with why; retried at each refresh.
    failed: Mutex<BTreeMap<String, String>>,
    /// One assignment at a time on this node (others race through the database).
    assigning: tokio::sync::Mutex<()>,
}

/// What a vault port's listener serves with (known once the router is built).
struct Serve {
    app: axum::Router,
    tls: crate::tls::LiveConfig,
    limits: crate::conn::Limits,
    stop: watch::Sender<bool>,
}

impl PortListeners {
    pub(crate) fn new(
        svc: Arc<VaultService>,
        ports: VaultPorts,
        cfg: &crate::ServeConfig,
        default_vault: &str,
    ) -> Self {
        Self {
            svc,
            ports,
            ip: cfg.listen.ip(),
            range: cfg.vault_port_range(),
            assign: cfg.vault_domain.is_none(),
            default_vault: default_vault.to_string(),
            serve: OnceLock::new(),
            tasks: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
            assigning: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts serving: listens on every stored port, then gives a port to every customer
    /// vault without one (when there is no vault domain).
    pub(crate) async fn start(
        &self,
        app: axum::Router,
        tls: crate::tls::LiveConfig,
        limits: crate::conn::Limits,
        stop: watch::Sender<bool>,
    ) -> Result<(), crate::ServerError> {
        let _ = self.serve.set(Serve { app, tls, limits, stop });
        self.refresh().await?;
        if self.assign {
            let (vaults, _) = self.svc.verified_vaults().await?;
            for v in vaults {
                if self.wants_port(&v.name)
                    && self.ports.port_of(&v.name).is_none()
                    && let Err(e) = self.assign(&v.name).await
                {
                    self.fail(&v.name, e.to_string());
                }
            }
        }
        Ok(())
    }

    fn wants_port(&self, name: &str) -> bool {
        name != self.default_vault && !atrest_vault::platform::is_platform(name)
    }

    /// Reads the stored ports and listens on those this node does not serve yet (vaults
    /// created on other nodes).
    pub(crate) async fn refresh(&self) -> Result<(), crate::ServerError> {
        let (ports, tampered) = self.svc.vault_ports().await?;
        for p in tampered {
            self.fail(
                &format!("port {p}"),
                format!("the row of vault port {p} does not verify (changed outside atrest)"),
            );
        }
        for (port, name) in ports {
            // Known even where it cannot be served here: URLs and key URIs name it.
            self.ports.insert(port, &name);
            if self.serving(port) {
                continue;
            }
            match tokio::net::TcpListener::bind(SocketAddr::new(self.ip, port)).await {
                Ok(l) => self.listen(l, port, &name),
                Err(e) => self.fail(&name, format!("vault {name} is not served on port {port} by this node: {e}")),
            }
        }
        Ok(())
    }

    fn serving(&self, port: u16) -> bool {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&port)
    }

    /// Records what could not be served; logged once per cause.
    fn fail(&self, what: &str, why: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.get(what) != Some(&why) {
            tracing::warn!("{why}");
            failed.insert(what.to_string(), why);
        }
    }

    fn listen(&self, listener: tokio::net::TcpListener, port: u16, name: &str) {
        let Some(s) = self.serve.get() else { return };
        self.ports.insert(port, name);
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let task = crate::conn::serve(listener, s.tls.clone(), s.app.clone(), s.limits, &s.stop);
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).insert(port, task);
        tracing::info!(vault = name, port, "vault answers on a port of its own");
    }

    /// Gives vault `name` a port of its own and listens on it; the port it has if it has
    /// one. Nothing when there is a vault domain (vaults are reached by name there).
    ///
    /// # Errors
    /// `Config` when no port of the range can be bound; database errors.
    pub(crate) async fn assign(&self, name: &str) -> Result<Option<u16>, crate::ServerError> {
        if !self.assign || !self.wants_port(name) {
            return Ok(self.ports.port_of(name));
        }
        let _one = self.assigning.lock().await;
        self.refresh().await?;
        if let Some(p) = self.ports.port_of(name) {
            return Ok(Some(p));
        }
        let candidates: Vec<u16> = match &self.range {
            Some(r) => r.clone().collect(),
            None => vec![0; 8],
        };
        for want in candidates {
            if want != 0 && (self.serving(want) || self.ports.vault(want).is_some()) {
                continue;
            }
            let Ok(listener) = tokio::net::TcpListener::bind(SocketAddr::new(self.ip, want)).await else { continue };
            let port = listener.local_addr().map_err(|e| crate::ServerError::Config(e.to_string()))?.port();
            if self.svc.claim_vault_port(name, port).await? {
                self.listen(listener, port, name);
                return Ok(Some(port));
            }
            // Another node gave this vault a port, or took this one: look again.
            drop(listener);
            self.refresh().await?;
            if let Some(p) = self.ports.port_of(name) {
                return Ok(Some(p));
            }
        }
        let range = self.range.as_ref().map_or_else(|| "the system's".into(), |r| format!("{}-{}", r.start(), r.end()));
        Err(crate::ServerError::Config(format!(
            "no free port for vault {name} in {range}: widen --vault-ports, or use --vault-domain"
        )))
    }

    /// What `/readyz` should say about the vault ports.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The listeners' tasks, to wait for at shutdown.
    pub(crate) fn take_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner())).into_values().collect()
    }
}
