//! What `atrest serve` is told.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of `atrest serve` (flags, environment variables and the config file map here).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory (default `./atrest-data`).
    pub data_dir: PathBuf,
    /// Listen address (default `127.0.0.1:8443`).
    pub listen: SocketAddr,
    /// The S3 front end's listen address (default: the listen address's IP, its port +
    /// 1000, so 9443; with listen port 0, a port the system picks).
    pub s3_listen: Option<SocketAddr>,
    /// The rollback anchor of the embedded default (default `<data-dir>/anchor`); on
    /// another volume it also catches a whole data directory put back.
    pub anchor_file: Option<PathBuf>,
    /// Keep the rollback anchor (always, but for the benchmark that measures its cost; not
    /// a flag).
    pub rollback_anchor: bool,
    /// Seconds a client has to complete the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers once it started one.
    pub header_timeout_secs: u64,
    /// Seconds a connection may sit without a byte moving either way (idle keep-alive,
    /// a stalled upload or download) before it is closed; a long transfer that keeps
    /// moving is never cut.
    pub idle_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Extra host names for the generated certificate.
    pub hostnames: Vec<String>,
    /// With `D`, vault `NAME` answers at `https://NAME.D`.
    pub vault_domain: Option<String>,
    /// Ports a customer vault may be given as its own origin when there is no vault
    /// domain (default: the 100 ports after the listen port; with listen port 0, ports
    /// the system picks, for tests).
    pub vault_ports: Option<(u16, u16)>,
    /// Database URL (default SQLite in the data directory).
    pub database_url: Option<String>,
    /// Root key file (default `<data-dir>/root.key`, generated).
    pub root_key_file: Option<PathBuf>,
    /// File holding a passphrase the root key is derived from (Argon2id).
    pub root_passphrase_file: Option<PathBuf>,
    /// User-supplied certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// User-supplied private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Clients must present a certificate from one of these CAs (PEM).
    pub client_ca: Option<PathBuf>,
    /// How often user-supplied TLS files are checked for changes, in seconds.
    pub tls_reload_interval_secs: u64,
    /// How often the purge sweeper runs, in seconds.
    pub sweep_interval_secs: u64,
    /// How often signed audit checkpoints are written, in seconds.
    pub checkpoint_interval_secs: u64,
    /// How often rotation policies are checked for due actions, in seconds.
    pub rotation_interval_secs: u64,
    /// Requests per second each principal may make (0 = unlimited).
    pub rate_limit: u32,
    /// Burst size of the rate limit.
    pub rate_burst: u32,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
    /// File holding the bearer secret a scraper sends to `/metrics` (else a deployment
    /// admin's token is required).
    pub metrics_token_file: Option<PathBuf>,
    /// The infrastructure root (the data service's second secret), as 64 hex digits or
    /// base64url in a file (default `<data-dir>/infra.key`, generated).
    pub infra_root_key_file: Option<PathBuf>,
    /// The previous infrastructure root, while rotating it (the master secret is
    /// re-sealed under the current one at start).
    pub infra_root_previous_key_file: Option<PathBuf>,
    /// The data service's database (default: `<data-dir>/store.db` beside a SQLite vault
    /// database, or the vault's database when that is PostgreSQL).
    pub store_database_url: Option<String>,
    /// How long an unwrapped resource key is cached, in seconds.
    pub key_cache_ttl_secs: u64,
    /// How long a cached resource key stays usable while its vault is unreachable.
    pub vault_grace_secs: u64,
    /// How often versionless keys (and the platform key) are checked for a new version.
    pub key_follow_interval_secs: u64,
    /// Platform key rotation period (ISO-8601 duration).
    pub platform_key_rotation: String,
    /// CA bundle trusted when resources use a vault on another server.
    pub remote_vault_ca: Option<PathBuf>,
    /// Hosts (`HOST[:PORT]`, `*.DOMAIN[:PORT]`; no port = 443) customer keys on other
    /// servers may be on (empty: any).
    pub remote_vault_hosts: Vec<String>,
    /// Objects per transaction in re-key and re-encrypt jobs.
    pub job_batch: usize,
    /// Seconds a node holds a job's lease without renewing it (several nodes: how soon
    /// another node takes over the jobs of one that died).
    pub job_lease_secs: u64,
    /// Where blob bodies go: a directory or `s3://BUCKET?endpoint=…&region=…` (default
    /// `<data-dir>/blobs`).
    pub blob_store: Option<String>,
    /// Seconds the body of a replaced or deleted blob stays, so running downloads finish
    /// (default 0 for a directory, 300 for S3).
    pub blob_retire_delay_secs: Option<u64>,
}

impl ServeConfig {
    /// Where the rollback anchor lives.
    #[must_use]
    pub fn anchor_path(&self) -> PathBuf {
        self.anchor_file.clone().unwrap_or_else(|| self.data_dir.join("anchor"))
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("atrest-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            s3_listen: None,
            anchor_file: None,
            rollback_anchor: true,
            handshake_timeout_secs: 10,
            header_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 1000,
            hostnames: Vec::new(),
            vault_domain: None,
            vault_ports: None,
            database_url: None,
            root_key_file: None,
            root_passphrase_file: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            tls_reload_interval_secs: 30,
            sweep_interval_secs: 60,
            checkpoint_interval_secs: 300,
            rotation_interval_secs: 60,
            rate_limit: 1000,
            rate_burst: 2000,
            metrics: true,
            metrics_token_file: None,
            infra_root_key_file: None,
            infra_root_previous_key_file: None,
            store_database_url: None,
            key_cache_ttl_secs: 60,
            vault_grace_secs: 300,
            key_follow_interval_secs: 300,
            platform_key_rotation: "P90D".into(),
            remote_vault_ca: None,
            remote_vault_hosts: Vec::new(),
            job_batch: 500,
            job_lease_secs: 30,
            blob_store: None,
            blob_retire_delay_secs: None,
        }
    }
}

impl ServeConfig {
    /// Where the S3 front end listens.
    #[must_use]
    pub fn s3_addr(&self) -> SocketAddr {
        self.s3_listen.unwrap_or_else(|| {
            let port = match self.listen.port() {
                0 => 0,
                p => p.checked_add(1000).unwrap_or(0),
            };
            SocketAddr::new(self.listen.ip(), port)
        })
    }

    /// The ports vaults may be given: `None` for ports the system picks (listen port 0).
    #[must_use]
    pub fn vault_port_range(&self) -> Option<std::ops::RangeInclusive<u16>> {
        match self.vault_ports {
            Some((first, last)) => Some(first..=last),
            None if self.listen.port() == 0 => None,
            None => {
                let first = self.listen.port().saturating_add(1);
                Some(first..=first.saturating_add(99))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServeConfig;

    #[test]
    fn the_s3_listener_defaults_to_the_listen_port_plus_1000() {
        let at = |listen: &str, s3: Option<&str>| {
            ServeConfig {
                listen: listen.parse().unwrap(),
                s3_listen: s3.map(|a| a.parse().unwrap()),
                ..ServeConfig::default()
            }
            .s3_addr()
            .to_string()
        };
        assert_eq!(at("127.0.0.1:8443", None), "127.0.0.1:9443");
        assert_eq!(at("0.0.0.0:443", None), "0.0.0.0:1443");
        assert_eq!(at("127.0.0.1:0", None), "127.0.0.1:0");
        assert_eq!(at("127.0.0.1:65000", None), "127.0.0.1:0");
        assert_eq!(at("127.0.0.1:8443", Some("0.0.0.0:9000")), "0.0.0.0:9000");
    }

    #[test]
    fn vault_ports_default_to_the_hundred_after_the_listen_port() {
        let at = |listen: &str, ports| ServeConfig {
            listen: listen.parse().unwrap(),
            vault_ports: ports,
            ..ServeConfig::default()
        };
        assert_eq!(at("127.0.0.1:8443", None).vault_port_range(), Some(8444..=8543));
        assert_eq!(at("127.0.0.1:0", None).vault_port_range(), None, "port 0: the system picks");
        assert_eq!(at("127.0.0.1:0", Some((9000, 9009))).vault_port_range(), Some(9000..=9009));
        assert_eq!(at("127.0.0.1:65500", None).vault_port_range(), Some(65501..=65535));
    }
}
