//! `atrest serve`: every setting is a flag, an environment variable (`ATREST_…`) and an
//! entry of the TOML config file (`--config`), in that order of precedence, then the
//! built-in default. Config keys are the flag names (`rate-limit = 500`).

use crate::error::CliResult;
use atrest_server::ServeConfig;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `atrest serve`; each has an environment variable and a config-file key.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below (keys are the flag names).
    #[arg(long, env = "ATREST_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, root key, TLS material, admin token) [default: atrest-data].
    #[arg(long, env = "ATREST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "ATREST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the S3 front end (path-style, SigV4, TLS) [default: the --listen IP, its port + 1000: 127.0.0.1:9443].
    #[arg(long, env = "ATREST_S3_LISTEN")]
    s3_listen: Option<SocketAddr>,
    /// The rollback anchor file; on another volume than the data directory it also
    /// catches a whole data directory put back [default: <data-dir>/anchor].
    #[arg(long, env = "ATREST_ANCHOR_FILE")]
    anchor_file: Option<PathBuf>,
    /// Seconds a client has to complete the TLS handshake [default: 10].
    #[arg(long, env = "ATREST_HANDSHAKE_TIMEOUT")]
    handshake_timeout: Option<u64>,
    /// Seconds a client has to send a request's headers [default: 30].
    #[arg(long, env = "ATREST_HEADER_TIMEOUT")]
    header_timeout: Option<u64>,
    /// Seconds a connection may sit with no byte moving before it is closed (idle
    /// keep-alive, stalled transfers; a transfer that moves is never cut) [default: 60].
    #[arg(long, env = "ATREST_IDLE_TIMEOUT")]
    idle_timeout: Option<u64>,
    /// Connections served at once; more wait in the listen backlog [default: 1000].
    #[arg(long, env = "ATREST_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Extra host name for the generated certificate (repeatable; config: a list).
    #[arg(long = "hostname", env = "ATREST_HOSTNAMES", value_delimiter = ',')]
    hostnames: Vec<String>,
    /// Vault NAME answers at https://NAME.DOMAIN (the default vault at the bare host).
    #[arg(long, env = "ATREST_VAULT_DOMAIN")]
    vault_domain: Option<String>,
    /// Without a vault domain, each vault answers on a port of its own from this range,
    /// FIRST-LAST (default: the 100 ports after the --listen port).
    #[arg(long, env = "ATREST_VAULT_PORTS", value_name = "FIRST-LAST", value_parser = parse_port_range)]
    vault_ports: Option<(u16, u16)>,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long = "database", env = "ATREST_DATABASE_URL")]
    database_url: Option<String>,
    /// File holding the 32-byte root key (hex or base64url). ATREST_ROOT_KEY takes the key
    /// itself. Default: <data-dir>/root.key, generated on first start.
    #[arg(long, env = "ATREST_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// File holding a passphrase (12+ characters) to derive the root key from with
    /// Argon2id; ATREST_ROOT_PASSPHRASE takes the passphrase itself. The salt is kept in
    /// <data-dir>/root.salt.
    #[arg(long, env = "ATREST_ROOT_PASSPHRASE_FILE", conflicts_with = "root_key_file")]
    root_passphrase_file: Option<PathBuf>,
    /// Certificate chain (PEM) to use instead of the generated one; reloaded when it changes.
    #[arg(long, env = "ATREST_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "ATREST_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM): clients must present a certificate issued by one of them,
    /// in addition to their bearer token.
    #[arg(long, env = "ATREST_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// How often to check --tls-cert/--tls-key (and --client-ca) for changes, in seconds [default: 30].
    #[arg(long, env = "ATREST_TLS_RELOAD_INTERVAL")]
    tls_reload_interval: Option<u64>,
    /// Requests per second each principal may make; 0 = unlimited [default: 1000].
    #[arg(long, env = "ATREST_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Burst allowance of the rate limit [default: 2000].
    #[arg(long, env = "ATREST_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Serve Prometheus metrics at /metrics [default: true].
    #[arg(long, env = "ATREST_METRICS")]
    metrics: Option<bool>,
    /// File holding the bearer secret a Prometheus scraper sends to /metrics (16+
    /// characters); without it /metrics needs a deployment admin's token.
    #[arg(long, env = "ATREST_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Purge sweeper interval in seconds [default: 60].
    #[arg(long, env = "ATREST_SWEEP_INTERVAL")]
    sweep_interval: Option<u64>,
    /// Rotation scheduler interval in seconds [default: 60].
    #[arg(long, env = "ATREST_ROTATION_INTERVAL")]
    rotation_interval: Option<u64>,
    /// Audit checkpoint interval in seconds [default: 300].
    #[arg(long, env = "ATREST_CHECKPOINT_INTERVAL")]
    checkpoint_interval: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "ATREST_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// File holding the infrastructure root, the data service's second secret (64 hex
    /// digits or base64url) [default: <data-dir>/infra.key, generated]. ATREST_INFRA_ROOT_KEY
    /// gives the key itself.
    #[arg(long, env = "ATREST_INFRA_ROOT_KEY_FILE")]
    infra_root_key_file: Option<PathBuf>,
    /// While rotating the infrastructure root: a file holding the previous one (the data
    /// service's master secret is re-sealed under the new root at start).
    #[arg(long, env = "ATREST_INFRA_ROOT_PREVIOUS_KEY_FILE")]
    infra_root_previous_key_file: Option<PathBuf>,
    /// Database URL of the data service [default: <data-dir>/store.db, or --database when
    /// that is PostgreSQL].
    #[arg(long = "store-database", env = "ATREST_STORE_DATABASE_URL")]
    store_database_url: Option<String>,
    /// How long an unwrapped resource key is cached, in seconds [default: 60].
    #[arg(long, env = "ATREST_KEY_CACHE_TTL")]
    key_cache_ttl: Option<u64>,
    /// How long a cached resource key stays usable while its vault is unreachable (not
    /// refusing), in seconds [default: 300].
    #[arg(long, env = "ATREST_VAULT_GRACE")]
    vault_grace: Option<u64>,
    /// How often versionless keys are checked for a new latest version, in seconds
    /// [default: 300].
    #[arg(long, env = "ATREST_KEY_FOLLOW_INTERVAL")]
    key_follow_interval: Option<u64>,
    /// Platform key rotation period, ISO-8601 [default: P90D].
    #[arg(long, env = "ATREST_PLATFORM_KEY_ROTATION")]
    platform_key_rotation: Option<String>,
    /// CA bundle (PEM) trusted for vaults on other servers [default: the system bundle].
    #[arg(long, env = "ATREST_REMOTE_VAULT_CA")]
    remote_vault_ca: Option<PathBuf>,
    /// Hosts customer keys on other servers may be on: HOST[:PORT] or *.DOMAIN[:PORT], no
    /// port meaning 443 (repeatable or comma-separated) [default: any host].
    #[arg(long = "remote-vault-hosts", env = "ATREST_REMOTE_VAULT_HOSTS", value_delimiter = ',')]
    remote_vault_hosts: Vec<String>,
    /// Objects per transaction in re-key and re-encrypt jobs [default: 500].
    #[arg(long, env = "ATREST_JOB_BATCH")]
    job_batch: Option<usize>,
    /// Seconds a node holds a job's lease without renewing it; with several nodes, how
    /// soon another takes over the jobs of one that died [default: 30].
    #[arg(long, env = "ATREST_JOB_LEASE")]
    job_lease: Option<u64>,
    /// Where blob bodies go: a directory, or `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`
    /// with credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [default: <data-dir>/blobs].
    #[arg(long, env = "ATREST_BLOB_STORE")]
    blob_store: Option<String>,
    /// Seconds the body of a replaced or deleted blob stays in the blob store so that
    /// running downloads finish [default: 0 for a directory, 300 for S3].
    #[arg(long, env = "ATREST_BLOB_RETIRE_DELAY")]
    blob_retire_delay: Option<u64>,
}

/// The config file: the same settings, by flag name.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    s3_listen: Option<SocketAddr>,
    anchor_file: Option<PathBuf>,
    handshake_timeout: Option<u64>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    max_connections: Option<usize>,
    #[serde(default)]
    hostname: Vec<String>,
    vault_domain: Option<String>,
    vault_ports: Option<String>,
    database: Option<String>,
    root_key_file: Option<PathBuf>,
    root_passphrase_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    tls_reload_interval: Option<u64>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    metrics: Option<bool>,
    metrics_token_file: Option<PathBuf>,
    sweep_interval: Option<u64>,
    rotation_interval: Option<u64>,
    checkpoint_interval: Option<u64>,
    log_format: Option<String>,
    infra_root_key_file: Option<PathBuf>,
    infra_root_previous_key_file: Option<PathBuf>,
    store_database: Option<String>,
    key_cache_ttl: Option<u64>,
    vault_grace: Option<u64>,
    key_follow_interval: Option<u64>,
    platform_key_rotation: Option<String>,
    remote_vault_ca: Option<PathBuf>,
    #[serde(default)]
    remote_vault_hosts: Vec<String>,
    job_batch: Option<usize>,
    job_lease: Option<u64>,
    blob_store: Option<String>,
    blob_retire_delay: Option<u64>,
}

impl ServeArgs {
    /// Merges flags/environment over the config file over the defaults.
    fn resolve(self) -> Result<(ServeConfig, String), String> {
        let file = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| {
                    // Only where and why: the offending line may hold a database password.
                    let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                    format!("{}: line {line}: {}", p.display(), e.message())
                })?
            }
            None => FileConfig::default(),
        };
        let d = ServeConfig::default();
        let (tls_cert, tls_key) = (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key));
        if tls_cert.is_some() != tls_key.is_some() {
            return Err("tls-cert and tls-key go together: give both or neither".into());
        }
        let root_key_file = self.root_key_file.or(file.root_key_file);
        let root_passphrase_file = self.root_passphrase_file.or(file.root_passphrase_file);
        if root_key_file.is_some() && root_passphrase_file.is_some() {
            return Err("give root-key-file or root-passphrase-file, not both".into());
        }
        let log_format = self.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            return Err(format!("log-format must be text or json, not {log_format}"));
        }
        let cfg = ServeConfig {
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            listen: self.listen.or(file.listen).unwrap_or(d.listen),
            s3_listen: self.s3_listen.or(file.s3_listen),
            anchor_file: self.anchor_file.or(file.anchor_file),
            rollback_anchor: true,
            handshake_timeout_secs: self
                .handshake_timeout
                .or(file.handshake_timeout)
                .unwrap_or(d.handshake_timeout_secs)
                .max(1),
            header_timeout_secs: self.header_timeout.or(file.header_timeout).unwrap_or(d.header_timeout_secs).max(1),
            idle_timeout_secs: self.idle_timeout.or(file.idle_timeout).unwrap_or(d.idle_timeout_secs).max(1),
            max_connections: self.max_connections.or(file.max_connections).unwrap_or(d.max_connections).max(1),
            hostnames: if self.hostnames.is_empty() { file.hostname } else { self.hostnames },
            vault_domain: self.vault_domain.or(file.vault_domain),
            vault_ports: match (self.vault_ports, file.vault_ports) {
                (Some(r), _) => Some(r),
                (None, Some(s)) => {
                    Some(parse_port_range(&s).map_err(|e| format!("vault_ports in the config file: {e}"))?)
                }
                (None, None) => None,
            },
            database_url: self.database_url.or(file.database),
            root_key_file,
            root_passphrase_file,
            tls_cert,
            tls_key,
            client_ca: self.client_ca.or(file.client_ca),
            tls_reload_interval_secs: self
                .tls_reload_interval
                .or(file.tls_reload_interval)
                .unwrap_or(d.tls_reload_interval_secs),
            rate_limit: self.rate_limit.or(file.rate_limit).unwrap_or(d.rate_limit),
            rate_burst: self.rate_burst.or(file.rate_burst).unwrap_or(d.rate_burst),
            metrics: self.metrics.or(file.metrics).unwrap_or(d.metrics),
            metrics_token_file: self.metrics_token_file.or(file.metrics_token_file),
            sweep_interval_secs: self.sweep_interval.or(file.sweep_interval).unwrap_or(d.sweep_interval_secs),
            rotation_interval_secs: self
                .rotation_interval
                .or(file.rotation_interval)
                .unwrap_or(d.rotation_interval_secs),
            checkpoint_interval_secs: self
                .checkpoint_interval
                .or(file.checkpoint_interval)
                .unwrap_or(d.checkpoint_interval_secs),
            infra_root_key_file: self.infra_root_key_file.or(file.infra_root_key_file),
            infra_root_previous_key_file: self.infra_root_previous_key_file.or(file.infra_root_previous_key_file),
            store_database_url: self.store_database_url.or(file.store_database),
            key_cache_ttl_secs: self.key_cache_ttl.or(file.key_cache_ttl).unwrap_or(d.key_cache_ttl_secs),
            vault_grace_secs: self.vault_grace.or(file.vault_grace).unwrap_or(d.vault_grace_secs),
            key_follow_interval_secs: self
                .key_follow_interval
                .or(file.key_follow_interval)
                .unwrap_or(d.key_follow_interval_secs),
            platform_key_rotation: self
                .platform_key_rotation
                .or(file.platform_key_rotation)
                .unwrap_or(d.platform_key_rotation),
            remote_vault_ca: self.remote_vault_ca.or(file.remote_vault_ca),
            remote_vault_hosts: if self.remote_vault_hosts.is_empty() {
                file.remote_vault_hosts
            } else {
                self.remote_vault_hosts
            },
            job_batch: self.job_batch.or(file.job_batch).unwrap_or(d.job_batch),
            job_lease_secs: self.job_lease.or(file.job_lease).unwrap_or(d.job_lease_secs),
            blob_store: self.blob_store.or(file.blob_store),
            blob_retire_delay_secs: self.blob_retire_delay.or(file.blob_retire_delay),
        };
        Ok((cfg, log_format))
    }
}

pub(crate) fn run(args: ServeArgs) -> CliResult {
    let (cfg, log_format) = args.resolve()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATREST_LOG").unwrap_or_else(|_| "info".into());
    if log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        // Colour only on a terminal: a log file or journal gets plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).init();
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let server = atrest_server::start(cfg).await.map_err(|e| e.to_string())?;
        for w in &server.warnings {
            tracing::warn!("{w}");
        }
        println!("atrest is serving the default vault at https://{}", server.addr);
        println!("  S3 endpoint:        https://{} (access keys: atrest s3-key issue)", server.s3_addr);
        if let Some(ca) = &server.ca_pem {
            println!("  trust this CA:      {}", ca.display());
        }
        if server.admin_token.exists() {
            println!("  admin token:        {}", server.admin_token.display());
            println!(
                "  try: curl --cacert {} -H \"Authorization: Bearer $(cat {})\" \"https://{}/keys?api-version=7.5\"",
                server.ca_pem.as_ref().map_or_else(|| "<your CA>".into(), |p| p.display().to_string()),
                server.admin_token.display(),
                server.addr
            );
        } else {
            // Another node created the deployment, and its admin token, in its data dir.
            println!(
                "  admin token:        none here: the node that created this deployment wrote it to its own data \
                 directory (admin.token); use that one, or a token issued with `atrest token issue`"
            );
        }
        shutdown_signal().await?;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(String::new())
    })
}

/// Ctrl-C, or SIGTERM (what service managers and container runtimes send).
async fn shutdown_signal() -> Result<(), String> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot wait for SIGTERM: {e}"))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(|e| format!("cannot wait for Ctrl-C: {e}")),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))
}

/// `FIRST-LAST`, both ports, FIRST ≤ LAST.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range: write FIRST-LAST, e.g. 8444-8543");
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }

    #[test]
    fn flags_over_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("atrest-serve-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("atrest.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9999\"\nrate-limit = 5\nhostname = [\"a.example\"]\nmetrics = false\n\
             remote-vault-hosts = [\"kv.example\"]\nvault-ports = \"9100-9199\"\n",
        )
        .unwrap();
        let t = T::try_parse_from(["x", "--config", f.to_str().unwrap(), "--rate-limit", "7"]).unwrap();
        let (cfg, fmt) = t.a.resolve().unwrap();
        assert_eq!(cfg.vault_port_range(), Some(9100..=9199));
        let t = T::try_parse_from(["x", "--config", f.to_str().unwrap(), "--vault-ports", "7000-7001"]).unwrap();
        assert_eq!(t.a.resolve().unwrap().0.vault_ports, Some((7000, 7001)));
        assert_eq!(cfg.remote_vault_hosts, vec!["kv.example".to_string()]);
        let t = T::try_parse_from(["x", "--config", f.to_str().unwrap(), "--remote-vault-hosts", "a.example,b:8443"])
            .unwrap();
        assert_eq!(t.a.resolve().unwrap().0.remote_vault_hosts, vec!["a.example".to_string(), "b:8443".into()]);
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.rate_limit, 7, "the flag wins");
        assert_eq!(cfg.rate_burst, ServeConfig::default().rate_burst);
        assert_eq!(cfg.hostnames, vec!["a.example".to_string()]);
        assert!(!cfg.metrics);
        assert_eq!(fmt, "text");
        std::fs::write(&f, "lisen = \"x\"\n").unwrap();
        let t = T::try_parse_from(["x", "--config", f.to_str().unwrap()]).unwrap();
        assert!(t.a.resolve().unwrap_err().contains("unknown field"), "typos are refused");
        std::fs::write(&f, "database = postgres://u:secretpw@h/db\n").unwrap();
        let t = T::try_parse_from(["x", "--config", f.to_str().unwrap()]).unwrap();
        let err = t.a.resolve().unwrap_err();
        assert!(err.contains("line 1") && !err.contains("secretpw"), "{err}");
        std::fs::write(&f, "tls-cert = \"c.pem\"\n").unwrap();
        let t = T::try_parse_from(["x", "--config", f.to_str().unwrap()]).unwrap();
        assert!(t.a.resolve().unwrap_err().contains("together"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The configuration files in `examples/` parse, name only settings that exist, and
    /// say what the README and docs/deployment.md say they do.
    #[test]
    fn the_example_configurations_are_valid() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let load = |name: &str| {
            let f = examples.join(name);
            let t = T::try_parse_from(["x", "--config", f.to_str().unwrap()]).unwrap();
            t.a.resolve().unwrap_or_else(|e| panic!("examples/{name}: {e}"))
        };
        let (one, fmt) = load("atrest.toml");
        assert_eq!(fmt, "json");
        assert_eq!(one.data_dir, std::path::PathBuf::from("/var/lib/atrest"));
        assert!(one.database_url.is_none() && one.blob_store.is_none(), "the embedded default");
        assert!(one.root_key_file.is_some() && one.infra_root_key_file.is_some() && one.tls_cert.is_some());
        assert_eq!(one.vault_port_range(), Some(8444..=8543));
        let (node, _) = load("atrest-cluster.toml");
        assert!(node.database_url.as_deref().is_some_and(|u| u.starts_with("postgres://")));
        assert!(node.blob_store.as_deref().is_some_and(|b| b.starts_with("s3://")));
        assert_eq!(node.root_key_file, one.root_key_file, "every node: the same root secrets");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(super::parse_port_range("8444-8543"), Ok((8444, 8543)));
        assert_eq!(super::parse_port_range(" 9000 - 9000 "), Ok((9000, 9000)));
        for bad in ["8444", "0-10", "9-8", "a-b", "1-70000", ""] {
            assert!(super::parse_port_range(bad).unwrap_err().contains("FIRST-LAST"), "{bad}");
        }
    }
}
