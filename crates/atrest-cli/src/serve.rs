//! `atrest serve`.

use atrest_server::ServeConfig;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags of `atrest serve`; each has an environment variable.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Data directory (database, root key, TLS material, admin token).
    #[arg(long, env = "ATREST_DATA_DIR", default_value = "atrest-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "ATREST_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Extra host name for the generated certificate (repeatable).
    #[arg(long = "hostname", env = "ATREST_HOSTNAMES", value_delimiter = ',')]
    hostnames: Vec<String>,
    /// Vault NAME answers at https://NAME.DOMAIN (the default vault at the bare host).
    #[arg(long, env = "ATREST_VAULT_DOMAIN")]
    vault_domain: Option<String>,
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
    /// Certificate chain (PEM) to use instead of the generated one.
    #[arg(long, env = "ATREST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "ATREST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "ATREST_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

pub(crate) fn run(args: ServeArgs) -> Result<String, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATREST_LOG").unwrap_or_else(|_| "info".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let cfg = ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        hostnames: args.hostnames,
        vault_domain: args.vault_domain,
        database_url: args.database_url,
        root_key_file: args.root_key_file,
        root_passphrase_file: args.root_passphrase_file,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        ..ServeConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let server = atrest_server::start(cfg).await.map_err(|e| e.to_string())?;
        for w in &server.warnings {
            tracing::warn!("{w}");
        }
        println!("atrest is serving the default vault at https://{}", server.addr);
        if let Some(ca) = &server.ca_pem {
            println!("  trust this CA:      {}", ca.display());
        }
        println!("  admin token:        {}", server.admin_token.display());
        println!(
            "  try: curl --cacert {} -H \"Authorization: Bearer $(cat {})\" \"https://{}/keys?api-version=7.5\"",
            server.ca_pem.as_ref().map_or_else(|| "<your CA>".into(), |p| p.display().to_string()),
            server.admin_token.display(),
            server.addr
        );
        tokio::signal::ctrl_c().await.map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(String::new())
    })
}
