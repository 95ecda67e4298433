//! `atrest tenant|vault|principal|token|policy|key …`: administration over HTTPS, through
//! the server's admin API and its AKV-compatible keys API.

use crate::client::{Api, Managed, render};
use crate::error::CliResult;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum TenantCmd {
    /// List the tenants you can see.
    List,
    /// Create a tenant (deployment admin only).
    Create {
        /// Tenant name.
        name: String,
    },
    /// Show a tenant.
    Show {
        /// Tenant name.
        name: String,
    },
    /// Who the token belongs to.
    Whoami,
}

#[derive(Subcommand)]
pub(crate) enum VaultCmd {
    /// List a tenant's vaults.
    List {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create a vault in a tenant.
    Create {
        /// Vault name.
        name: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Soft-delete retention in days (7-90, default 90).
        #[arg(long)]
        retention_days: Option<i64>,
        /// Turn purge protection on (it can never be turned off).
        #[arg(long)]
        purge_protection: bool,
        /// Allow RSA1_5 unwrap (legacy).
        #[arg(long)]
        allow_rsa1_5: bool,
    },
    /// Show a vault's settings and URL.
    Show {
        /// Vault name.
        name: String,
    },
    /// Change a vault's settings.
    Update {
        /// Vault name.
        name: String,
        /// Soft-delete retention in days (7-90).
        #[arg(long)]
        retention_days: Option<i64>,
        /// Turn purge protection on (irreversible).
        #[arg(long)]
        purge_protection: bool,
        /// Allow (true) or refuse (false) legacy RSA1_5 unwrap.
        #[arg(long)]
        allow_rsa1_5: Option<bool>,
    },
}

#[derive(Subcommand)]
pub(crate) enum PrincipalCmd {
    /// List a tenant's principals.
    List {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create a principal (a user, or a service identity).
    Create {
        /// Principal name.
        name: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// user or service.
        #[arg(long, default_value = "service", value_parser = ["user", "service"])]
        kind: String,
        /// member, tenant-admin or deployment-admin.
        #[arg(long, default_value = "member", value_parser = ["member", "tenant-admin", "deployment-admin"])]
        role: String,
    },
    /// Show a principal.
    Show {
        /// Principal name.
        name: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Disable a principal (its tokens stop working at once).
    Disable {
        /// Principal name.
        name: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Enable a principal again.
    Enable {
        /// Principal name.
        name: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCmd {
    /// List a principal's tokens (ids and dates; secrets are never stored).
    List {
        /// Principal name.
        principal: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Issue a token; it is printed once.
    Issue {
        /// Principal name.
        principal: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Lifetime in seconds (default: until revoked).
        #[arg(long)]
        ttl: Option<i64>,
        /// Write the token to this file (0600, created new) instead of printing it: for
        /// `--token-file` / `ATREST_TOKEN_FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a token.
    Revoke {
        /// Principal name.
        principal: String,
        /// Token id (from token list).
        id: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Replace a token by a new one (same lifetime unless --ttl) and revoke the old one.
    Rotate {
        /// Principal name.
        principal: String,
        /// Token id (from token list; without it, the token in --out's file is rotated).
        #[arg(required_unless_present = "out")]
        id: Option<String>,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Lifetime in seconds (at most 10 years; default: until revoked, or for rotate the old token's).
        #[arg(long)]
        ttl: Option<i64>,
        /// Write the new token to this file (0600) instead of printing it; without an id,
        /// the token this file holds is the one rotated, and the new one replaces it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum S3KeyCmd {
    /// List a principal's S3 access keys (ids and dates; secrets are never shown again).
    List {
        /// Principal name.
        principal: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Issue an S3 access key (id and secret) acting as the principal; the secret is printed once.
    Issue {
        /// Principal name.
        principal: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Revoke an S3 access key: the next request signed with it is refused, on every node.
    Revoke {
        /// Principal name.
        principal: String,
        /// Access key id (from s3-key list).
        id: String,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum PolicyCmd {
    /// List a vault's access policies.
    List {
        /// Vault name.
        vault: String,
    },
    /// Grant permissions (replacing the principal's earlier policy on the vault).
    Set {
        /// Vault name.
        vault: String,
        /// Principal name.
        principal: String,
        /// Key permissions, comma-separated: get,list,create,…,wrapKey,unwrapKey,… or `all`.
        #[arg(long, value_delimiter = ',', required_unless_present = "secret_permissions")]
        permissions: Vec<String>,
        /// Secret permissions, a list of their own (key permissions never imply one),
        /// comma-separated: get,list,set,delete,recover,backup,restore,purge or `all`.
        #[arg(long, value_delimiter = ',')]
        secret_permissions: Vec<String>,
    },
    /// Remove a principal's policy on a vault (takes effect on the next request).
    Remove {
        /// Vault name.
        vault: String,
        /// Principal name.
        principal: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyCmd {
    /// Which data-service resources use which key versions, and which versions no
    /// resource needs any more.
    Usage,
    /// Create a key (RSA 2048/3072/4096, EC P-256/P-384, oct 256).
    Create {
        /// Key name.
        name: String,
        /// Key type.
        #[arg(long, value_parser = ["RSA", "EC", "oct"])]
        kty: String,
        /// RSA: 2048, 3072 or 4096; oct: 256.
        #[arg(long)]
        size: Option<u32>,
        /// EC: P-256 or P-384.
        #[arg(long)]
        curve: Option<String>,
        #[command(flatten)]
        attrs: KeyAttrs,
    },
    /// Import a key: a JWK file with private members, or (secure import) key material
    /// wrapped under one of the vault's import keys.
    Import {
        /// Key name.
        name: String,
        /// JWK (JSON) with the private key.
        #[arg(long, conflicts_with_all = ["byok", "wrapped"], required_unless_present_any = ["byok", "wrapped"])]
        jwk: Option<PathBuf>,
        /// Secure import: a BYOK file (JSON: header.kid, header.enc CKM_RSA_AES_KEY_WRAP, ciphertext).
        #[arg(long, conflicts_with = "wrapped")]
        byok: Option<PathBuf>,
        /// Secure import: the raw CKM_RSA_AES_KEY_WRAP ciphertext (RSA-OAEP-256 of an AES-256
        /// key, then AES-KWP of the material), as the README's openssl recipe makes it.
        #[arg(long, requires = "import_key")]
        wrapped: Option<PathBuf>,
        /// The import key the material is wrapped under (NAME, NAME/VERSION or its kid).
        #[arg(long)]
        import_key: Option<String>,
        /// Type of the wrapped key (secure import).
        #[arg(long, value_parser = ["RSA", "EC", "oct"])]
        kty: Option<String>,
        #[command(flatten)]
        attrs: KeyAttrs,
    },
    /// Show a key (latest version, or --version).
    Show {
        /// Key name.
        name: String,
        #[arg(long)]
        version: Option<String>,
        /// Print only the RSA public key as PEM (SubjectPublicKeyInfo), e.g. an import key
        /// for `openssl pkeyutl -pubin`.
        #[arg(long)]
        pem: bool,
    },
    /// List keys.
    List,
    /// List a key's versions.
    Versions {
        /// Key name.
        name: String,
    },
    /// List soft-deleted keys.
    ListDeleted,
    /// Change a version's attributes (latest version unless --version).
    Update {
        /// Key name.
        name: String,
        #[arg(long)]
        version: Option<String>,
        /// Enable the key (version).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the key (version): it refuses every operation until enabled.
        #[arg(long)]
        disable: bool,
        #[command(flatten)]
        attrs: KeyAttrs,
    },
    /// Create a new version now.
    Rotate {
        /// Key name.
        name: String,
    },
    /// Soft-delete a key (all versions).
    Delete {
        /// Key name.
        name: String,
    },
    /// Recover a soft-deleted key.
    Recover {
        /// Key name.
        name: String,
    },
    /// Purge a soft-deleted key for good.
    Purge {
        /// Key name.
        name: String,
    },
    /// Write an encrypted backup of a key (all versions) to a file.
    Backup {
        /// Key name.
        name: String,
        /// File to write the backup blob to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a key from a backup file (same deployment only).
    Restore {
        /// Backup blob file (from key backup).
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Show a key's rotation policy, or set it with the flags.
    RotationPolicy {
        /// Key name.
        name: String,
        /// Rotate this long after creation (ISO-8601, e.g. P90D).
        #[arg(long)]
        rotate_after: Option<String>,
        /// Rotate this long before expiry (e.g. P30D).
        #[arg(long, conflicts_with = "rotate_after")]
        rotate_before_expiry: Option<String>,
        /// Notify this long before expiry (e.g. P30D).
        #[arg(long)]
        notify_before_expiry: Option<String>,
        /// Expiry of new versions, relative to their creation (e.g. P1Y).
        #[arg(long)]
        expiry: Option<String>,
    },
}

/// Attributes shared by create, import and update.
#[derive(Args)]
pub(crate) struct KeyAttrs {
    /// Permitted operations (comma-separated, e.g. wrapKey,unwrapKey).
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Not before: Unix seconds, or +DURATION from now (e.g. +1h, +30d); `none` clears it
    /// (key update).
    #[arg(long)]
    nbf: Option<String>,
    /// Expiry: Unix seconds, or +DURATION from now; `none` clears it (key update).
    #[arg(long)]
    exp: Option<String>,
    /// Tag NAME=VALUE (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

pub(crate) fn when(s: &str) -> CliResult<i64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let now = i64::try_from(now).map_err(|e| e.to_string())?;
    if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| format!("{s}: expected +N followed by s, m, h or d"))?;
        let mult = match unit {
            "s" | "" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(format!("{s}: unit must be s, m, h or d").into()),
        };
        return Ok(now + n * mult);
    }
    Ok(s.parse().map_err(|_| format!("{s}: expected Unix seconds or +DURATION (e.g. +30d)"))?)
}

impl KeyAttrs {
    fn apply(&self, body: &mut Value, enabled: Option<bool>) -> CliResult<()> {
        let mut attrs = serde_json::Map::new();
        if let Some(e) = enabled {
            attrs.insert("enabled".into(), json!(e));
        }
        // `none`: null, which an update reads as "clear" (and a create as "not set").
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
        if !self.ops.is_empty() {
            body["key_ops"] = json!(self.ops);
        }
        if !self.tags.is_empty() {
            let mut tags = serde_json::Map::new();
            for t in &self.tags {
                let (k, v) = t.split_once('=').ok_or_else(|| format!("--tag {t}: expected NAME=VALUE"))?;
                tags.insert(k.into(), json!(v));
            }
            body["tags"] = Value::Object(tags);
        }
        Ok(())
    }
}

const KEY_COLS: &[&str] = &["kid", "/attributes/enabled", "/attributes/exp", "/attributes/updated"];

fn seg(s: &str) -> String {
    // Names are restricted to [0-9A-Za-z-] by the server; refuse anything that would
    // change the path instead of sending it.
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

pub(crate) fn run_async<F: std::future::Future<Output = CliResult>>(f: F) -> CliResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(f)
}

pub(crate) fn check_names(names: &[&str]) -> CliResult<()> {
    for n in names {
        if seg(n) != *n || n.is_empty() {
            return Err(format!("{n:?} is not a valid name: use letters, digits and '-'").into());
        }
    }
    Ok(())
}

pub(crate) fn tenant(m: Managed<TenantCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move {
        Ok(match m.cmd {
            TenantCmd::List => render(&api.admin(Method::GET, "/tenants", None).await?, out, &["name", "id"]),
            TenantCmd::Create { name } => {
                render(&api.admin(Method::POST, "/tenants", Some(json!({"name": name}))).await?, out, &[])
            }
            TenantCmd::Show { name } => {
                check_names(&[&name])?;
                render(&api.admin(Method::GET, &format!("/tenants/{name}"), None).await?, out, &[])
            }
            TenantCmd::Whoami => render(&api.admin(Method::GET, "/whoami", None).await?, out, &[]),
        })
    })
}

pub(crate) fn vault(m: Managed<VaultCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move {
        let v = match m.cmd {
            VaultCmd::List { tenant } => {
                check_names(&[&tenant])?;
                let v = api.admin(Method::GET, &format!("/tenants/{tenant}/vaults"), None).await?;
                return Ok(render(&v, out, &["name", "url", "retention_days", "purge_protection"]));
            }
            VaultCmd::Create { name, tenant, retention_days, purge_protection, allow_rsa1_5 } => {
                check_names(&[&tenant])?;
                let body = json!({"name": name, "retention_days": retention_days, "purge_protection": purge_protection, "allow_rsa1_5": allow_rsa1_5});
                api.admin(Method::POST, &format!("/tenants/{tenant}/vaults"), Some(body)).await?
            }
            VaultCmd::Show { name } => {
                check_names(&[&name])?;
                api.admin(Method::GET, &format!("/vaults/{name}"), None).await?
            }
            VaultCmd::Update { name, retention_days, purge_protection, allow_rsa1_5 } => {
                check_names(&[&name])?;
                let mut body = json!({"retention_days": retention_days, "allow_rsa1_5": allow_rsa1_5});
                if purge_protection {
                    body["purge_protection"] = json!(true);
                }
                api.admin(Method::PATCH, &format!("/vaults/{name}"), Some(body)).await?
            }
        };
        Ok(render(&v, out, &[]))
    })
}

pub(crate) fn principal(m: Managed<PrincipalCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    let disabling = matches!(m.cmd, PrincipalCmd::Disable { .. });
    run_async(async move {
        let v = match m.cmd {
            PrincipalCmd::List { tenant } => {
                check_names(&[&tenant])?;
                let v = api.admin(Method::GET, &format!("/tenants/{tenant}/principals"), None).await?;
                return Ok(render(&v, out, &["name", "kind", "role", "disabled", "id"]));
            }
            PrincipalCmd::Create { name, tenant, kind, role } => {
                check_names(&[&tenant])?;
                let body = json!({"name": name, "kind": kind, "role": role});
                api.admin(Method::POST, &format!("/tenants/{tenant}/principals"), Some(body)).await?
            }
            PrincipalCmd::Show { name, tenant } => {
                check_names(&[&tenant, &name])?;
                api.admin(Method::GET, &format!("/tenants/{tenant}/principals/{name}"), None).await?
            }
            PrincipalCmd::Disable { name, tenant } | PrincipalCmd::Enable { name, tenant } => {
                check_names(&[&tenant, &name])?;
                let body = json!({ "disabled": disabling });
                api.admin(Method::PATCH, &format!("/tenants/{tenant}/principals/{name}"), Some(body)).await?
            }
        };
        Ok(render(&v, out, &[]))
    })
}

pub(crate) fn token(m: Managed<TokenCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move {
        let v = match m.cmd {
            TokenCmd::List { principal, tenant } => {
                check_names(&[&tenant, &principal])?;
                let v =
                    api.admin(Method::GET, &format!("/tenants/{tenant}/principals/{principal}/tokens"), None).await?;
                return Ok(render(&v, out, &["id", "created", "expires", "revoked"]));
            }
            TokenCmd::Issue { principal, tenant, ttl, out: file } => {
                check_names(&[&tenant, &principal])?;
                let body = json!({ "ttl_seconds": ttl });
                // The file first: a token issued that has nowhere to go would be live and unknown.
                let target = file.map(|f| TokenFile::prepare(&f, true)).transpose()?;
                let v = api
                    .admin(Method::POST, &format!("/tenants/{tenant}/principals/{principal}/tokens"), Some(body))
                    .await;
                TokenFile::finish(target, v)?
            }
            TokenCmd::Revoke { principal, id, tenant } => {
                check_names(&[&tenant, &principal, &id])?;
                api.admin(Method::DELETE, &format!("/tenants/{tenant}/principals/{principal}/tokens/{id}"), None)
                    .await?;
                return Ok(render(&json!({"revoked": id}), out, &[]));
            }
            TokenCmd::Rotate { principal, id, tenant, ttl, out: file } => {
                let id = match (id, &file) {
                    (Some(id), _) => id,
                    (None, Some(f)) => token_id_in(f)?,
                    (None, None) => return Err("give the token id, or --out FILE holding the token".into()),
                };
                check_names(&[&tenant, &principal, &id])?;
                let body = json!({ "ttl_seconds": ttl });
                let path = format!("/tenants/{tenant}/principals/{principal}/tokens/{id}/rotate");
                // The rotation revokes the old token at once: the new one's file is made
                // first, and replaces the old file only once written.
                let target = file.map(|f| TokenFile::prepare(&f, false)).transpose()?;
                let v = api.admin(Method::POST, &path, Some(body)).await;
                TokenFile::finish(target, v)?
            }
        };
        Ok(render(&v, out, &[]))
    })
}

/// Where `--out` puts a token: a 0600 file made before the request (so a token is never
/// issued with nowhere to go), written and moved into place after it.
struct TokenFile {
    path: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
}

impl TokenFile {
    /// `new`: `path` must not exist yet (issue); else it is replaced (rotate).
    fn prepare(path: &std::path::Path, new: bool) -> CliResult<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        if new && path.exists() {
            return Err(
                format!("{} exists: choose another file (a token is never written over)", path.display()).into()
            );
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write next to {}: {e}", path.display()))?;
        Ok(Self { path: path.to_path_buf(), tmp, file })
    }

    /// Writes the answer's token, moves it into place; returns the answer without it.
    fn commit(mut self, mut v: Value) -> CliResult<Value> {
        use std::io::Write as _;
        let token = v["token"].as_str().ok_or("the server's answer has no token")?.to_string();
        let done = self
            .file
            .write_all(token.as_bytes())
            .and_then(|()| self.file.sync_all())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&self.tmp);
            // The last resort: the only copy of a live token must not be lost.
            return Err(format!("cannot write {} ({e}); the token, shown once: {token}", self.path.display()).into());
        }
        v["token"] = json!(format!("written to {}", self.path.display()));
        Ok(v)
    }

    fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }

    /// The answer to an issue or rotate request, its token moved into `target` if any
    /// (the prepared file dropped when the request failed).
    fn finish(target: Option<Self>, v: CliResult<Value>) -> CliResult<Value> {
        match (target, v) {
            (Some(t), Ok(v)) => t.commit(v),
            (Some(t), Err(e)) => {
                t.abandon();
                Err(e)
            }
            (None, v) => v,
        }
    }
}

/// The id of the token held in `path` (`atr1.<id>.<secret>`).
fn token_id_in(path: &std::path::Path) -> CliResult<String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let id = text.trim().strip_prefix("atr1.").and_then(|r| r.split('.').next()).filter(|id| !id.is_empty());
    Ok(id.ok_or_else(|| format!("{} does not hold an atrest token (atr1.ID.SECRET)", path.display()))?.to_string())
}

pub(crate) fn s3_key(m: Managed<S3KeyCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move {
        let v = match m.cmd {
            S3KeyCmd::List { principal, tenant } => {
                check_names(&[&tenant, &principal])?;
                let path = format!("/tenants/{tenant}/principals/{principal}/s3-keys");
                let v = api.admin(Method::GET, &path, None).await?;
                return Ok(render(&v, out, &["id", "created", "revoked"]));
            }
            S3KeyCmd::Issue { principal, tenant } => {
                check_names(&[&tenant, &principal])?;
                let path = format!("/tenants/{tenant}/principals/{principal}/s3-keys");
                api.admin(Method::POST, &path, None).await?
            }
            S3KeyCmd::Revoke { principal, id, tenant } => {
                check_names(&[&tenant, &principal, &id])?;
                let path = format!("/tenants/{tenant}/principals/{principal}/s3-keys/{id}");
                api.admin(Method::DELETE, &path, None).await?;
                return Ok(render(&json!({"revoked": id}), out, &[]));
            }
        };
        Ok(render(&v, out, &[]))
    })
}

pub(crate) fn policy(m: Managed<PolicyCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move {
        let v = match m.cmd {
            PolicyCmd::List { vault } => {
                check_names(&[&vault])?;
                let v = api.admin(Method::GET, &format!("/vaults/{vault}/policies"), None).await?;
                return Ok(render(&v, out, &["principal", "permissions", "secret_permissions"]));
            }
            PolicyCmd::Set { vault, principal, permissions, secret_permissions } => {
                check_names(&[&vault, &principal])?;
                let body = json!({ "permissions": permissions, "secret_permissions": secret_permissions });
                api.admin(Method::PUT, &format!("/vaults/{vault}/policies/{principal}"), Some(body)).await?
            }
            PolicyCmd::Remove { vault, principal } => {
                check_names(&[&vault, &principal])?;
                api.admin(Method::DELETE, &format!("/vaults/{vault}/policies/{principal}"), None).await?;
                return Ok(render(&json!({"removed": principal, "vault": vault}), out, &[]));
            }
        };
        Ok(render(&v, out, &[]))
    })
}

fn read_json(path: &PathBuf) -> CliResult<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?)
}

pub(crate) fn key(m: Managed<KeyCmd>) -> CliResult {
    let api = m.conn.api()?;
    let out = m.conn.output;
    run_async(async move { key_cmd(&api, m.cmd, out).await })
}

async fn key_cmd(api: &Api, cmd: KeyCmd, out: crate::Output) -> CliResult {
    let v = match cmd {
        KeyCmd::Usage => return crate::data::key_usage(api, out).await,
        KeyCmd::Create { name, kty, size, curve, attrs } => {
            check_names(&[&name])?;
            let mut body = json!({ "kty": kty });
            if let Some(s) = size {
                body["key_size"] = json!(s);
            }
            if let Some(c) = curve {
                body["crv"] = json!(c);
            }
            attrs.apply(&mut body, None)?;
            api.keys(Method::POST, &format!("/keys/{name}/create"), Some(body)).await?
        }
        KeyCmd::Import { name, jwk, byok, wrapped, import_key, kty, attrs } => {
            check_names(&[&name])?;
            use base64::Engine as _;
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
            let secure_kty =
                || kty.clone().ok_or("secure import needs --kty (RSA, EC or oct): the type of the wrapped key");
            let key = match (jwk, byok, wrapped) {
                (Some(j), _, _) => read_json(&j)?,
                (None, Some(b), _) => json!({"kty": secure_kty()?, "key_hsm": b64(&read(&b)?)}),
                (None, None, Some(w)) => {
                    let blob = json!({
                        "schema_version": "1.0.0",
                        "header": {"kid": import_key, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
                        "ciphertext": b64(&read(&w)?),
                        "generator": "atrest cli"
                    });
                    json!({"kty": secure_kty()?, "key_hsm": b64(blob.to_string().as_bytes())})
                }
                (None, None, None) => {
                    return Err("pass --jwk FILE, --byok FILE, or --wrapped FILE --import-key KEY".into());
                }
            };
            let mut body = json!({ "key": key });
            let ops = attrs.ops.clone();
            attrs.apply(&mut body, None)?;
            if !ops.is_empty() {
                body["key"]["key_ops"] = json!(ops);
                if let Some(o) = body.as_object_mut() {
                    o.remove("key_ops");
                }
            }
            api.keys(Method::PUT, &format!("/keys/{name}"), Some(body)).await?
        }
        KeyCmd::Show { name, version, pem } => {
            check_names(&[&name])?;
            let v = version.unwrap_or_default();
            if !v.is_empty() {
                check_names(&[&v])?;
            }
            let bundle = api.keys(Method::GET, &format!("/keys/{name}/{v}"), None).await?;
            if pem {
                return rsa_pem(&bundle);
            }
            bundle
        }
        KeyCmd::List => return Ok(render(&api.keys_all("/keys").await?, out, KEY_COLS)),
        KeyCmd::Versions { name } => {
            check_names(&[&name])?;
            return Ok(render(&api.keys_all(&format!("/keys/{name}/versions")).await?, out, KEY_COLS));
        }
        KeyCmd::ListDeleted => {
            let v = api.keys_all("/deletedkeys").await?;
            return Ok(render(&v, out, &["recoveryId", "deletedDate", "scheduledPurgeDate"]));
        }
        KeyCmd::Update { name, version, enable, disable, attrs } => {
            check_names(&[&name])?;
            let enabled = if enable {
                Some(true)
            } else if disable {
                Some(false)
            } else {
                None
            };
            let mut body = json!({});
            attrs.apply(&mut body, enabled)?;
            let v = version.unwrap_or_default();
            if !v.is_empty() {
                check_names(&[&v])?;
            }
            api.keys(Method::PATCH, &format!("/keys/{name}/{v}"), Some(body)).await?
        }
        KeyCmd::Rotate { name } => {
            check_names(&[&name])?;
            api.keys(Method::POST, &format!("/keys/{name}/rotate"), None).await?
        }
        KeyCmd::Delete { name } => {
            check_names(&[&name])?;
            api.keys(Method::DELETE, &format!("/keys/{name}"), None).await?
        }
        KeyCmd::Recover { name } => {
            check_names(&[&name])?;
            api.keys(Method::POST, &format!("/deletedkeys/{name}/recover"), None).await?
        }
        KeyCmd::Purge { name } => {
            check_names(&[&name])?;
            api.keys(Method::DELETE, &format!("/deletedkeys/{name}"), None).await?;
            return Ok(render(&json!({"purged": name}), out, &[]));
        }
        KeyCmd::Backup { name, out: file } => {
            check_names(&[&name])?;
            let v = api.keys(Method::POST, &format!("/keys/{name}/backup"), None).await?;
            let blob = v.get("value").and_then(Value::as_str).ok_or("the server returned no backup")?;
            std::fs::write(&file, blob).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            return Ok(render(&json!({"key": name, "backup": file.display().to_string()}), out, &[]));
        }
        KeyCmd::Restore { input } => {
            let blob = std::fs::read_to_string(&input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
            api.keys(Method::POST, "/keys/restore", Some(json!({"value": blob.trim()}))).await?
        }
        KeyCmd::RotationPolicy { name, rotate_after, rotate_before_expiry, notify_before_expiry, expiry } => {
            check_names(&[&name])?;
            let path = format!("/keys/{name}/rotationpolicy");
            if rotate_after.is_none()
                && rotate_before_expiry.is_none()
                && notify_before_expiry.is_none()
                && expiry.is_none()
            {
                api.keys(Method::GET, &path, None).await?
            } else {
                let mut actions = Vec::new();
                if let Some(d) = rotate_after {
                    actions.push(json!({"trigger": {"timeAfterCreate": d}, "action": {"type": "Rotate"}}));
                }
                if let Some(d) = rotate_before_expiry {
                    actions.push(json!({"trigger": {"timeBeforeExpiry": d}, "action": {"type": "Rotate"}}));
                }
                if let Some(d) = notify_before_expiry {
                    actions.push(json!({"trigger": {"timeBeforeExpiry": d}, "action": {"type": "Notify"}}));
                }
                let mut body = json!({ "lifetimeActions": actions });
                if let Some(e) = expiry {
                    body["attributes"] = json!({ "expiryTime": e });
                }
                api.keys(Method::PUT, &path, Some(body)).await?
            }
        }
    };
    Ok(match out {
        crate::Output::Json => render(&v, out, &[]),
        crate::Output::Table => render(&flatten_bundle(v), out, &[]),
    })
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of an RSA or EC public JWK.
fn jwk_thumbprint(jwk: &serde_json::Map<String, Value>) -> Option<String> {
    use base64::Engine as _;
    let m = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match m("kty")?.trim_end_matches("-HSM") {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e")?, m("n")?),
        "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, m("crv")?, m("x")?, m("y")?),
        _ => return None,
    };
    let digest = atrest_crypto::hash::sha256(&[canonical.as_bytes()]);
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

/// A key bundle as `field: value` lines: the JWK and attributes one level up, the
/// public key summarized as its size or curve and its RFC 7638 thumbprint (the modulus or
/// point is in `--output json` and `key show --pem`).
fn flatten_bundle(v: Value) -> Value {
    let Value::Object(map) = v else { return v };
    let mut flat = serde_json::Map::new();
    for (k, val) in map {
        match (k.as_str(), val) {
            ("key", Value::Object(inner)) => {
                if let Some(t) = jwk_thumbprint(&inner) {
                    flat.insert("thumbprint".into(), json!(t));
                }
                for (ik, iv) in inner {
                    match ik.as_str() {
                        "n" => {
                            let bits = iv.as_str().map_or(0, |n| n.trim_end_matches('=').len() * 6 / 8 * 8);
                            flat.insert("size".into(), json!(bits));
                        }
                        "e" | "x" | "y" => {}
                        _ => {
                            flat.insert(ik, iv);
                        }
                    }
                }
            }
            ("attributes", Value::Object(inner)) => {
                for (ik, iv) in inner {
                    flat.insert(ik, iv);
                }
            }
            (_, val) => {
                flat.insert(k, val);
            }
        }
    }
    Value::Object(flat)
}

/// The RSA public key of a bundle as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
fn rsa_pem(bundle: &Value) -> CliResult {
    use base64::Engine as _;
    let member = |m: &str| -> CliResult<Vec<u8>> {
        let s = bundle.pointer(&format!("/key/{m}")).and_then(Value::as_str).ok_or("--pem needs an RSA key")?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|e| e.to_string())?)
    };
    let key =
        atrest_crypto::rsa::RsaPublicKey::from_components(&member("n")?, &member("e")?).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.spki_der());
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).map_err(|e| e.to_string())?);
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    Ok(out)
}
