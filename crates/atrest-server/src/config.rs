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
    /// Extra host names for the generated certificate.
    pub hostnames: Vec<String>,
    /// With `D`, vault `NAME` answers at `https://NAME.D`.
    pub vault_domain: Option<String>,
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("atrest-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            hostnames: Vec::new(),
            vault_domain: None,
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
        }
    }
}
