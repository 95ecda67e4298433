//! `atrest secret …`: a vault's secrets, through its AKV-compatible secrets API. A value is
//! read from a file or stdin, never from a flag (flags end up in shell history and `ps`),
//! and printed only when asked for (`show --value`).

use crate::client::{Api, Managed, render};
use crate::error::CliResult;
use crate::manage::{check_names, run_async, when};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::io::Read as _;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum SecretCmd {
    /// Set a secret: a new version holding the value read from --file or stdin, byte for
    /// byte (`printf %s "$PW" | atrest secret set db-password`; `echo` would add a newline).
    Set {
        /// Secret name.
        name: String,
        /// Read the value from this file (default: stdin).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Create the version disabled (its value is not released until enabled).
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        attrs: SecretAttrs,
    },
    /// Show a secret's attributes (latest version, or --version) without reading its value;
    /// with --value, read the value (a `get-secret`: audited, needs the get permission,
    /// refused for a disabled version).
    Show {
        /// Secret name.
        name: String,
        /// Version id (default: the latest).
        #[arg(long)]
        version: Option<String>,
        /// Print the value: alone, exactly as stored (table output), or as `value` in JSON.
        #[arg(long)]
        value: bool,
    },
    /// List secrets (latest version of each; never values).
    List,
    /// List a secret's versions.
    Versions {
        /// Secret name.
        name: String,
    },
    /// List soft-deleted secrets.
    ListDeleted,
    /// Change a version's attributes, content type or tags (never its value).
    Update {
        /// Secret name.
        name: String,
        /// Version id (default: the latest).
        #[arg(long)]
        version: Option<String>,
        /// Enable the version.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the version: reads of its value are refused until it is enabled.
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        attrs: SecretAttrs,
    },
    /// Soft-delete a secret (all versions); recoverable until the vault's retention ends.
    Delete {
        /// Secret name.
        name: String,
    },
    /// Recover a soft-deleted secret with all its versions.
    Recover {
        /// Secret name.
        name: String,
    },
    /// Purge a soft-deleted secret for good.
    Purge {
        /// Secret name.
        name: String,
    },
    /// Write an encrypted backup of a secret (all versions) to a file.
    Backup {
        /// Secret name.
        name: String,
        /// File to write the backup blob to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a secret from a backup file (same deployment only; same version ids).
    Restore {
        /// Backup blob file (from secret backup).
        #[arg(long = "in")]
        input: PathBuf,
    },
}

/// Attributes shared by set and update.
#[derive(Args)]
pub(crate) struct SecretAttrs {
    /// Content type: free text, e.g. text/plain (`""` clears it on update).
    #[arg(long)]
    content_type: Option<String>,
    /// Not before (informational): Unix seconds, or +DURATION from now; `none` clears it (update).
    #[arg(long)]
    nbf: Option<String>,
    /// Expiry (informational: an expired secret is still returned): Unix seconds, or
    /// +DURATION from now; `none` clears it (update).
    #[arg(long)]
    exp: Option<String>,
    /// Tag NAME=VALUE (repeatable; at most 15). Replaces every tag on update.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

impl SecretAttrs {
    fn apply(&self, body: &mut Value, enabled: Option<bool>) -> CliResult<()> {
        let mut attrs = Map::new();
        if let Some(e) = enabled {
            attrs.insert("enabled".into(), json!(e));
        }
        let date = |s: &str| -> CliResult<Value> { if s == "none" { Ok(Value::Null) } else { Ok(json!(when(s)?)) } };
        if let Some(n) = &self.nbf {
            attrs.insert("nbf".into(), date(n)?);
        }
        if let Some(x) = &self.exp {
            attrs.insert("exp".into(), date(x)?);
        }
        if !attrs.is_empty() {
            body["attributes"] = Value::Object(attrs);
        }
        if let Some(c) = &self.content_type {
            body["contentType"] = json!(c);
        }
        if !self.tags.is_empty() {
            let mut tags = Map::new();
            for t in &self.tags {
                let (k, v) = t.split_once('=').ok_or_else(|| format!("--tag {t}: expected NAME=VALUE"))?;
                tags.insert(k.into(), json!(v));
            }
            body["tags"] = Value::Object(tags);
        }
        Ok(())
    }
}

const SECRET_COLS: &[&str] = &["id", "contentType", "/attributes/enabled", "/attributes/exp", "/attributes/updated"];

pub(crate) fn secret(m: Managed<SecretCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move { secret_cmd(&api, m.cmd, out).await })
}

/// The value, from a file or stdin, as UTF-8 text (a secret is a JSON string).
fn read_value(file: Option<&PathBuf>) -> CliResult<String> {
    let bytes = match file {
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).map_err(|e| format!("cannot read the value from stdin: {e}"))?;
            b
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        "the value is not UTF-8 text: a secret holds text; base64-encode binary data first (and say so with \
         --content-type)"
            .into()
    })
}

/// A bundle as a table shows it: its members with `attributes` flattened, and no value
/// unless `value` is set.
fn shown(mut b: Value, value: bool) -> Value {
    let Some(m) = b.as_object_mut() else { return b };
    if !value {
        m.remove("value");
    }
    if let Some(Value::Object(a)) = m.remove("attributes") {
        m.extend(a);
    }
    b
}

async fn secret_cmd(api: &Api, cmd: SecretCmd, out: crate::Output) -> CliResult {
    let version_path = |name: &str, version: Option<String>| -> CliResult<String> {
        let v = version.unwrap_or_default();
        if !v.is_empty() {
            check_names(&[&v])?;
        }
        Ok(format!("/secrets/{name}/{v}"))
    };
    let v = match cmd {
        SecretCmd::Set { name, file, disabled, attrs } => {
            check_names(&[&name])?;
            let mut body = json!({ "value": read_value(file.as_ref())? });
            attrs.apply(&mut body, disabled.then_some(false))?;
            shown(api.keys(Method::PUT, &format!("/secrets/{name}"), Some(body)).await?, false)
        }
        SecretCmd::Show { name, version, value: true } => {
            check_names(&[&name])?;
            let b = api.keys(Method::GET, &version_path(&name, version)?, None).await?;
            if matches!(out, crate::Output::Table) {
                return Ok(b.get("value").and_then(Value::as_str).unwrap_or_default().to_string());
            }
            shown(b, true)
        }
        SecretCmd::Show { name, version, value: false } => {
            // Attributes only: from the versions list, so the value is not read (nor the read
            // audited as one), and a disabled version shows too. The latest is listed last.
            check_names(&[&name])?;
            let all = api.keys_all(&format!("/secrets/{name}/versions")).await?;
            let items = all.get("value").and_then(Value::as_array).cloned().unwrap_or_default();
            let found = match &version {
                Some(v) => {
                    items.into_iter().find(|i| i["id"].as_str().is_some_and(|id| id.ends_with(&format!("/{v}"))))
                }
                None => items.into_iter().last(),
            };
            shown(found.ok_or_else(|| format!("secret {name} has no version {}", version.unwrap_or_default()))?, false)
        }
        SecretCmd::List => return Ok(render(&api.keys_all("/secrets").await?, out, SECRET_COLS)),
        SecretCmd::Versions { name } => {
            check_names(&[&name])?;
            return Ok(render(&api.keys_all(&format!("/secrets/{name}/versions")).await?, out, SECRET_COLS));
        }
        SecretCmd::ListDeleted => {
            let v = api.keys_all("/deletedsecrets").await?;
            return Ok(render(&v, out, &["recoveryId", "deletedDate", "scheduledPurgeDate"]));
        }
        SecretCmd::Update { name, version, enable, disable, attrs } => {
            check_names(&[&name])?;
            let enabled = match (enable, disable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let mut body = json!({});
            attrs.apply(&mut body, enabled)?;
            shown(api.keys(Method::PATCH, &version_path(&name, version)?, Some(body)).await?, false)
        }
        SecretCmd::Delete { name } => {
            check_names(&[&name])?;
            shown(api.keys(Method::DELETE, &format!("/secrets/{name}"), None).await?, false)
        }
        SecretCmd::Recover { name } => {
            check_names(&[&name])?;
            shown(api.keys(Method::POST, &format!("/deletedsecrets/{name}/recover"), None).await?, false)
        }
        SecretCmd::Purge { name } => {
            check_names(&[&name])?;
            api.keys(Method::DELETE, &format!("/deletedsecrets/{name}"), None).await?;
            json!({"purged": name})
        }
        SecretCmd::Backup { name, out: file } => {
            check_names(&[&name])?;
            let v = api.keys(Method::POST, &format!("/secrets/{name}/backup"), None).await?;
            let blob = v.get("value").and_then(Value::as_str).ok_or("the server returned no backup")?;
            std::fs::write(&file, blob).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            json!({"secret": name, "backup": file.display().to_string()})
        }
        SecretCmd::Restore { input } => {
            let blob = std::fs::read_to_string(&input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
            shown(api.keys(Method::POST, "/secrets/restore", Some(json!({"value": blob.trim()}))).await?, false)
        }
    };
    Ok(render(&v, out, &[]))
}
