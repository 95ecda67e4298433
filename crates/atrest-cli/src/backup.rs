//! `atrest backup`, `atrest restore` and `atrest anchor reset`: local commands on a data
//! directory of the embedded default (they need the root secrets, like the server).
//! `backup` runs while the server serves; `restore` and `anchor reset` while it is
//! stopped.

use crate::Output;
use crate::error::CliResult;
use atrest_server::ServeConfig;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Where the data and the root secrets are (the same settings as `serve`).
#[derive(Args)]
pub(crate) struct Deployment {
    /// Data directory.
    #[arg(long, env = "ATREST_DATA_DIR", default_value = "atrest-data")]
    data_dir: PathBuf,
    /// The vault's SQLite database URL, when not <data-dir>/atrest.db.
    #[arg(long = "database", env = "ATREST_DATABASE_URL")]
    database_url: Option<String>,
    /// The data service's SQLite database URL, when not <data-dir>/store.db.
    #[arg(long = "store-database", env = "ATREST_STORE_DATABASE_URL")]
    store_database_url: Option<String>,
    /// Root key file (`ATREST_ROOT_KEY` takes the key itself) [default: <data-dir>/root.key].
    #[arg(long, env = "ATREST_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// Root passphrase file (`ATREST_ROOT_PASSPHRASE` takes the passphrase itself).
    #[arg(long, env = "ATREST_ROOT_PASSPHRASE_FILE", conflicts_with = "root_key_file")]
    root_passphrase_file: Option<PathBuf>,
    /// Infrastructure root file (`ATREST_INFRA_ROOT_KEY` takes the key itself)
    /// [default: <data-dir>/infra.key].
    #[arg(long, env = "ATREST_INFRA_ROOT_KEY_FILE")]
    infra_root_key_file: Option<PathBuf>,
    /// Blob store, when not <data-dir>/blobs: a directory or `s3://…` (bodies in S3 are
    /// listed in the manifest, not copied).
    #[arg(long, env = "ATREST_BLOB_STORE")]
    blob_store: Option<String>,
    /// The rollback anchor file [default: <data-dir>/anchor].
    #[arg(long, env = "ATREST_ANCHOR_FILE")]
    anchor_file: Option<PathBuf>,
    /// Output format (set from the global --output).
    #[arg(skip)]
    pub(crate) output: Output,
}

impl Deployment {
    fn config(&self) -> ServeConfig {
        ServeConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            store_database_url: self.store_database_url.clone(),
            root_key_file: self.root_key_file.clone(),
            root_passphrase_file: self.root_passphrase_file.clone(),
            infra_root_key_file: self.infra_root_key_file.clone(),
            blob_store: self.blob_store.clone(),
            anchor_file: self.anchor_file.clone(),
            ..ServeConfig::default()
        }
    }
}

/// `atrest anchor …`.
#[derive(Subcommand)]
pub(crate) enum AnchorCommand {
    /// Accept the databases as they are after a detected rollback (acknowledged data is
    /// then lost for good): moves the anchor to their commit sequences and records
    /// `accept-rollback` in the deployment's audit chain. Run with the server stopped;
    /// prefer `atrest restore` from a backup.
    Reset {
        #[command(flatten)]
        deployment: Deployment,
    },
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?)
}

fn print<T: serde::Serialize>(output: Output, value: &T, table: String) -> CliResult {
    match output {
        Output::Table => Ok(table),
        Output::Json => Ok(format!("{}\n", serde_json::to_string_pretty(value).map_err(|e| e.to_string())?)),
    }
}

pub(crate) fn backup(deployment: &Deployment, to: &std::path::Path) -> CliResult {
    let cfg = deployment.config();
    let r = runtime()?.block_on(atrest_server::backup::backup(&cfg, to)).map_err(|e| e.to_string())?;
    let mut t = format!(
        "backup written to {}: {} files, {} bytes, {} blob bodies\n",
        r.dir.display(),
        r.files,
        r.bytes,
        r.blobs
    );
    if !r.dropped.is_empty() {
        t.push_str(&format!("left out (deleted or replaced while the backup ran): {}\n", r.dropped.join(", ")));
    }
    t.push_str("the root secrets are not in it: keep them apart, offline\n");
    print(deployment.output, &r, t)
}

pub(crate) fn restore(deployment: &Deployment, from: &std::path::Path) -> CliResult {
    let cfg = deployment.config();
    let r = runtime()?.block_on(atrest_server::backup::restore(&cfg, from)).map_err(|e| e.to_string())?;
    let t = format!(
        "restored {} files into {} ({} audit chains verified against the backup's checkpoints; rollback anchor \
         re-set, recorded as `restore` in the audit trail)\nstart it with: atrest serve --data-dir {}\n",
        r.files,
        cfg.data_dir.display(),
        r.chains,
        cfg.data_dir.display()
    );
    print(deployment.output, &r, t)
}

pub(crate) fn anchor(cmd: &AnchorCommand) -> CliResult {
    let AnchorCommand::Reset { deployment } = cmd;
    let cfg = deployment.config();
    let (before, now) = runtime()?.block_on(atrest_server::backup::accept_rollback(&cfg)).map_err(|e| e.to_string())?;
    let v = serde_json::json!({"previous": before, "now": now});
    let t = format!(
        "anchor {} now at commit {} (vault) and {} (data service){}; recorded as accept-rollback\n",
        cfg.anchor_path().display(),
        now[0],
        now[1],
        before.map_or_else(String::new, |b| format!(", was {} and {}", b[0], b[1]))
    );
    print(deployment.output, &v, t)
}

/// `atrest verify`: the running server scans every data-service row (resource and
/// object rows against their MACs, objects against their resources); exit status 1 when
/// anything fails.
pub(crate) fn verify(conn: &crate::client::Conn) -> CliResult {
    let api = conn.api()?;
    let output = conn.output;
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(api.admin(reqwest::Method::POST, "/verify", None))?;
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let mut table = format!(
        "{} resource rows and {} object rows scanned: {}\n",
        report["resources"],
        report["objects"],
        if problems.is_empty() { "all verify".to_string() } else { format!("{} problems", problems.len()) }
    );
    for p in &problems {
        table.push_str(&format!("  {p}\n"));
    }
    let text = print(output, &report, table)?;
    if problems.is_empty() {
        Ok(text)
    } else {
        print!("{text}");
        Err(format!("{} data-service rows failed verification", problems.len()).into())
    }
}
