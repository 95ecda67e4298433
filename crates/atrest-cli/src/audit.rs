//! `atrest audit verify|list|export|checkpoint`: local commands on a data directory (they
//! need the database and the root key, like the server), so verification does not depend
//! on a running server.

use crate::Output;
use crate::error::CliResult;
use atrest_server::ServeConfig;
use atrest_vault::VaultService;
use atrest_vault::audit::{AuditFilter, Checkpoint, DEPLOYMENT_CHAIN};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;

/// Where the data lives (the same settings as `serve`).
#[derive(Args)]
pub(crate) struct DataArgs {
    /// Data directory.
    #[arg(long, env = "ATREST_DATA_DIR", default_value = "atrest-data")]
    data_dir: PathBuf,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long = "database", env = "ATREST_DATABASE_URL")]
    database_url: Option<String>,
    /// Root key file (`ATREST_ROOT_KEY` takes the key itself).
    #[arg(long, env = "ATREST_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
    /// Root passphrase file (`ATREST_ROOT_PASSPHRASE` takes the passphrase itself).
    #[arg(long, env = "ATREST_ROOT_PASSPHRASE_FILE")]
    root_passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify every chain (or one): edited, deleted, inserted or reordered entries, and,
    /// against the latest checkpoint of each chain, a cut tail. Exit status 1 on any problem.
    Verify {
        #[command(flatten)]
        data: DataArgs,
        /// Checkpoints file (JSON lines); default <data-dir>/audit/checkpoints.jsonl if present.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// Only this vault (by name), or `deployment`.
        #[arg(long)]
        vault: Option<String>,
        /// Output format (set from the global --output).
        #[arg(skip)]
        output: Output,
    },
    /// List entries, filtered.
    List {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format (set from the global --output).
        #[arg(skip)]
        output: Output,
    },
    /// Export entries as JSON lines (with hashes), filtered.
    Export {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Sign the current head of every chain now and append to the checkpoints file.
    Checkpoint {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Args)]
pub(crate) struct FilterArgs {
    /// Only this vault (by name), or `deployment`.
    #[arg(long)]
    vault: Option<String>,
    /// Only entries about this key (name, or name/version).
    #[arg(long)]
    key: Option<String>,
    /// Only this principal.
    #[arg(long)]
    principal: Option<String>,
    /// Only this operation (e.g. unwrapKey, create, set-policy).
    #[arg(long)]
    operation: Option<String>,
    /// From this Unix time.
    #[arg(long)]
    since: Option<i64>,
    /// Before this Unix time.
    #[arg(long)]
    until: Option<i64>,
}

async fn open(d: &DataArgs) -> CliResult<std::sync::Arc<VaultService>> {
    let cfg = ServeConfig {
        data_dir: d.data_dir.clone(),
        database_url: d.database_url.clone(),
        root_key_file: d.root_key_file.clone(),
        root_passphrase_file: d.root_passphrase_file.clone(),
        ..ServeConfig::default()
    };
    Ok(atrest_server::bootstrap::open_service(&cfg).await.map_err(|e| e.to_string())?.0)
}

/// (chain id, display name) of the chains to look at.
async fn chains(svc: &VaultService, only: Option<&str>) -> CliResult<Vec<(String, String)>> {
    let names: HashMap<String, String> =
        svc.verified_vaults().await.map_err(|e| e.to_string())?.0.into_iter().map(|v| (v.id, v.name)).collect();
    let mut out = Vec::new();
    for c in svc.audit_chains().await.map_err(|e| e.to_string())? {
        let name = names.get(&c).cloned().unwrap_or_else(|| c.clone());
        if only.is_none_or(|o| o == name) {
            out.push((c, name));
        }
    }
    if let Some(o) = only
        && out.is_empty()
    {
        return Err(format!("no audit chain for vault {o:?} (use a vault name or {DEPLOYMENT_CHAIN})").into());
    }
    Ok(out)
}

fn latest_checkpoints(path: &std::path::Path) -> CliResult<HashMap<String, Checkpoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cp: Checkpoint =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: not a checkpoint: {e}", path.display(), i + 1))?;
        out.insert(cp.chain.clone(), cp);
    }
    Ok(out)
}

pub(crate) fn run(cmd: AuditCommand) -> CliResult {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        match cmd {
            AuditCommand::Verify { data, checkpoints, vault, output } => {
                let svc = open(&data).await?;
                let cp_path =
                    checkpoints.or_else(|| Some(data.data_dir.join("audit/checkpoints.jsonl")).filter(|p| p.exists()));
                let cps = cp_path.as_deref().map(latest_checkpoints).transpose()?.unwrap_or_default();
                let mut out = String::new();
                let mut bad = 0;
                let mut reports = Vec::new();
                for (chain, name) in chains(&svc, vault.as_deref()).await? {
                    let r = svc.verify_audit_chain(&chain, cps.get(&chain)).await.map_err(|e| e.to_string())?;
                    if !r.ok() {
                        bad += 1;
                    }
                    match output {
                        Output::Table => {
                            let cp = cps
                                .get(&chain)
                                .map_or_else(|| "no checkpoint".to_string(), |c| format!("checkpoint at {}", c.count));
                            out.push_str(&format!(
                                "{:<4} {name:<20} {:>8} entries  {cp}\n",
                                if r.ok() { "ok" } else { "FAIL" },
                                r.entries
                            ));
                            for p in &r.problems {
                                out.push_str(&format!("       {p}\n"));
                            }
                        }
                        Output::Json => reports.push(serde_json::json!({"vault": name, "report": r})),
                    }
                }
                if matches!(output, Output::Json) {
                    out = format!("{}\n", serde_json::Value::Array(reports));
                }
                if bad > 0 {
                    print!("{out}");
                    return Err(format!("{bad} audit chain(s) failed verification").into());
                }
                Ok(out)
            }
            AuditCommand::List { data, filter, output } => {
                let svc = open(&data).await?;
                let mut out = String::new();
                let mut all = Vec::new();
                for (chain, name) in chains(&svc, filter.vault.as_deref()).await? {
                    for e in svc.audit_entries(&chain, &to_filter(&filter)).await.map_err(|e| e.to_string())? {
                        all.push((name.clone(), e));
                    }
                }
                match output {
                    Output::Table => {
                        out.push_str(&format!(
                            "{:<12} {:>6} {:<12} {:<14} {:<16} {:<40} {}\n",
                            "vault", "seq", "time", "principal", "operation", "target", "result"
                        ));
                        for (name, e) in &all {
                            out.push_str(&format!(
                                "{:<12} {:>6} {:<12} {:<14} {:<16} {:<40} {}\n",
                                name, e.seq, e.time, e.principal, e.operation, e.target, e.result
                            ));
                        }
                    }
                    Output::Json => {
                        let v: Vec<_> = all.iter().map(|(n, e)| serde_json::json!({"vault": n, "entry": e})).collect();
                        out = format!("{}\n", serde_json::Value::Array(v));
                    }
                }
                Ok(out)
            }
            AuditCommand::Export { data, filter } => {
                let svc = open(&data).await?;
                let mut out = String::new();
                for (chain, _) in chains(&svc, filter.vault.as_deref()).await? {
                    for e in svc.audit_entries(&chain, &to_filter(&filter)).await.map_err(|e| e.to_string())? {
                        out.push_str(&serde_json::to_string(&e).map_err(|e| e.to_string())?);
                        out.push('\n');
                    }
                }
                Ok(out)
            }
            AuditCommand::Checkpoint { data } => {
                let svc = open(&data).await?;
                let file = data.data_dir.join("audit/checkpoints.jsonl");
                let n = atrest_server::write_checkpoints(&svc, &file, &mut HashMap::new())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("wrote {n} checkpoint(s) to {}\n", file.display()))
            }
        }
    })
}

fn to_filter(f: &FilterArgs) -> AuditFilter {
    AuditFilter {
        target: f.key.clone(),
        principal: f.principal.clone(),
        operation: f.operation.clone(),
        since: f.since,
        until: f.until,
    }
}
