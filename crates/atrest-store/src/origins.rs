//! This deployment's own origins, which a customer key URI without a credential must
//! name (the settings hold them; the encryption code checks against them).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// This deployment's own origins: the hosts at which a key URI names one of its own
/// vaults (and nothing else: a URI naming another host is never silently mapped to a
/// local vault).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// The port served.
    pub port: u16,
    /// Addresses and names served only on [`Self::port`] (`localhost`, `127.0.0.1`, the
    /// listen address), lowercase.
    pub loopback: Vec<String>,
    /// Names of the deployment (`--hostname`s), on [`Self::port`] or 443 (behind a proxy
    /// or port forward), lowercase.
    pub names: Vec<String>,
    /// With `--vault-domain D`: `D` and `NAME.D`, on [`Self::port`] or 443.
    pub vault_domain: Option<String>,
    /// Vaults with a port of their own (served under the loopback names and the
    /// deployment's names).
    pub vault_ports: VaultPorts,
}

/// Which vault answers on which port of its own, as every node serves them: shared by the
/// listeners that serve them and the checks of key URIs.
#[derive(Debug, Clone, Default)]
pub struct VaultPorts(Arc<RwLock<BTreeMap<u16, String>>>);

impl VaultPorts {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u16, String>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The vault answering on `port`.
    #[must_use]
    pub fn vault(&self, port: u16) -> Option<String> {
        self.read().get(&port).cloned()
    }

    /// The port of vault `name`.
    #[must_use]
    pub fn port_of(&self, name: &str) -> Option<u16> {
        self.read().iter().find(|(_, v)| v.as_str() == name).map(|(p, _)| *p)
    }

    /// Records that vault `name` answers on `port`.
    pub fn insert(&self, port: u16, name: &str) {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port, name.to_string());
    }
}

impl Origins {
    /// The origins of a deployment listening on `listen`, with extra certificate names
    /// `hostnames` and the vault domain, if any.
    #[must_use]
    pub fn new(listen: std::net::SocketAddr, hostnames: &[String], vault_domain: Option<&str>) -> Self {
        let mut loopback = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if listen.is_ipv6() && (listen.ip().is_unspecified() || listen.ip().is_loopback()) {
            loopback.push("[::1]".to_string());
        }
        if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
            loopback.push(match listen.ip() {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
        Self {
            port: listen.port(),
            loopback,
            names: hostnames.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            vault_domain: vault_domain.map(str::to_ascii_lowercase),
            vault_ports: VaultPorts::default(),
        }
    }

    /// Whether `authority` (`HOST[:PORT]` of a key URI) is this deployment.
    #[must_use]
    pub fn is_local(&self, authority: &str) -> bool {
        let Some((host, port)) = crate::remote::split_authority(authority) else { return false };
        if port == self.port && self.loopback.contains(&host) {
            return true;
        }
        if self.vault_ports.vault(port).is_some() && (self.loopback.contains(&host) || self.names.contains(&host)) {
            return true;
        }
        if port != self.port && port != 443 {
            return false;
        }
        self.names.contains(&host)
            || self.vault_domain.as_deref().is_some_and(|d| {
                host == d
                    || host
                        .strip_suffix(d)
                        .and_then(|n| n.strip_suffix('.'))
                        .is_some_and(|n| !n.is_empty() && !n.contains('.'))
            })
    }

    /// This deployment's default vault URL, for messages.
    #[must_use]
    pub fn example(&self) -> String {
        match self.names.first() {
            Some(n) => format!("https://{n}:{}", self.port),
            None => format!("https://127.0.0.1:{}", self.port),
        }
    }
}
