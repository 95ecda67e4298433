//! The HTTPS client behind the administrative commands: where the server is, which
//! token and CA to use (flags, environment, or the local data directory), and how
//! results are printed.

use crate::Output;
use crate::error::{CliError, CliResult};
use clap::{Args, Subcommand};
use reqwest::{Client, Method};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// API version the CLI speaks on the keys API.
const API_VERSION: &str = "7.5";

/// How to reach the server. Each setting also reads an environment variable; token and
/// CA default to the files `atrest serve` wrote into the data directory.
#[derive(Args, Clone)]
pub(crate) struct Conn {
    /// Server URL.
    #[arg(long, env = "ATREST_URL", default_value = "https://127.0.0.1:8443", global = true)]
    url: String,
    /// Bearer token (prefer ATREST_TOKEN or --token-file: flags show up in `ps`).
    #[arg(long, env = "ATREST_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the bearer token (default <data-dir>/admin.token).
    #[arg(long, env = "ATREST_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate(s) to trust (PEM; default <data-dir>/tls/ca.pem, else the system bundle).
    #[arg(long, env = "ATREST_CA", global = true)]
    ca: Option<PathBuf>,
    /// Data directory of a local server (for the default token and CA).
    #[arg(long, env = "ATREST_DATA_DIR", default_value = "atrest-data", global = true)]
    data_dir: PathBuf,
    /// Vault for `key` commands (default: the vault at the URL). Without --vault-domain the
    /// CLI asks the server for the vault's own port; with --vault-domain D it addresses
    /// https://NAME.D and connects to the URL's address.
    #[arg(long = "vault", id = "conn_vault", env = "ATREST_VAULT", global = true)]
    vault: Option<String>,
    /// The server's --vault-domain.
    #[arg(long, env = "ATREST_VAULT_DOMAIN", global = true)]
    vault_domain: Option<String>,
    /// Output format (set from the global --output).
    #[arg(skip)]
    pub output: Output,
}

/// A connected client.
pub(crate) struct Api {
    client: Client,
    /// Base URL of the admin API.
    base: String,
    /// Base URL of the selected vault's keys API (asked of the server for `--vault NAME`
    /// without a vault domain: the vault's own port).
    vault_base: std::sync::OnceLock<String>,
    /// The vault whose URL is to be asked for.
    vault: Option<String>,
    /// The bearer token: zeroized on drop, never printed.
    token: atrest_crypto::SecretBytes,
}

fn read_roots(path: &Path) -> CliResult<rustls::RootCertStore> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
        roots.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()).into());
    }
    Ok(roots)
}

impl Api {
    /// The token as a header value; a token that is not UTF-8 sends nothing valid (the
    /// server answers 401).
    fn bearer(&self) -> &str {
        std::str::from_utf8(self.token.expose_secret()).unwrap_or("")
    }
}

impl Conn {
    /// Connects (lazily: the first request opens the connection).
    pub(crate) fn api(&self) -> CliResult<Api> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => atrest_crypto::SecretBytes::new(t.trim().as_bytes().to_vec()),
            (None, file) => {
                let f = file.clone().unwrap_or_else(|| self.data_dir.join("admin.token"));
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(&f).map_err(|e| {
                    format!("no token: pass --token-file, set ATREST_TOKEN, or run where {} exists ({e})", f.display())
                })?);
                atrest_crypto::SecretBytes::new(text.trim().as_bytes().to_vec())
            }
        };
        let ca = match &self.ca {
            Some(c) => c.clone(),
            None => {
                let local = self.data_dir.join("tls").join("ca.pem");
                if local.exists() { local } else { PathBuf::from("/etc/ssl/certs/ca-certificates.crt") }
            }
        };
        let roots = read_roots(&ca)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("--url {}: {e}", self.url))?;
        if url.scheme() != "https" {
            return Err(format!("--url {} must be https://", self.url).into());
        }
        let host = url.host_str().ok_or_else(|| format!("--url {} has no host", self.url))?.to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let mut builder = Client::builder().use_preconfigured_tls(tls);
        let base = self.url.trim_end_matches('/').to_string();
        let vault_base = std::sync::OnceLock::new();
        let mut vault = None;
        match (&self.vault, &self.vault_domain) {
            (Some(v), Some(d)) => {
                let name = format!("{}.{d}", v.to_ascii_lowercase());
                // Connect to the URL's address whatever DNS says about NAME.D.
                if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                    builder = builder.resolve(&name, std::net::SocketAddr::new(ip, port));
                }
                let _ = vault_base.set(format!("https://{name}:{port}"));
            }
            (Some(v), None) => vault = Some(v.to_ascii_lowercase()),
            _ => {
                let _ = vault_base.set(base.clone());
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Api { client, base, vault_base, vault, token })
    }
}

impl Api {
    /// Calls the admin API (`path` below `/admin`).
    pub(crate) async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        self.send(method, format!("{}/admin{path}", self.base), body).await
    }

    /// Calls the keys API of the selected vault (`path` like `/keys/NAME`).
    pub(crate) async fn keys(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let vault_base = self.vault_base().await?;
        self.send(method, format!("{vault_base}{path}{sep}api-version={API_VERSION}"), body).await
    }

    /// The selected vault's URL: a vault without a vault domain answers on a port of its
    /// own, which the admin API knows. The token only goes to the host of `--url`.
    async fn vault_base(&self) -> CliResult<&str> {
        if let Some(b) = self.vault_base.get() {
            return Ok(b);
        }
        let name = self.vault.as_deref().unwrap_or_default();
        let v = self.admin(Method::GET, &format!("/vaults/{name}"), None).await?;
        let url = v.get("url").and_then(Value::as_str).unwrap_or_default().trim_end_matches('/').to_string();
        let host = |u: &str| reqwest::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_string));
        if url.is_empty() || host(&url) != host(&self.base) {
            return Err(CliError::Local(format!(
                "the server says vault {name} answers at {url:?}, not on the host of --url {}; refusing to send the \
                 token there (use --url with that vault's URL)",
                self.base
            )));
        }
        Ok(self.vault_base.get_or_init(|| url))
    }

    /// Follows `nextLink` until the list ends; returns every item.
    pub(crate) async fn keys_all(&self, path: &str) -> CliResult<Value> {
        let mut page = self.keys(Method::GET, path, None).await?;
        let mut items: Vec<Value> = Vec::new();
        loop {
            if let Some(v) = page.get("value").and_then(Value::as_array) {
                items.extend(v.iter().cloned());
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    // The token goes only where the first request went.
                    let vault_base = self.vault_base().await?;
                    let same_origin = next.strip_prefix(vault_base).is_some_and(|rest| rest.starts_with('/'));
                    if !same_origin {
                        return Err(CliError::Local(format!(
                            "the server's nextLink {next} leaves {vault_base}; refusing to follow it"
                        )));
                    }
                    page = self.send(Method::GET, next.to_string(), None).await?;
                }
                _ => break,
            }
        }
        Ok(serde_json::json!({"value": items}))
    }

    async fn send(&self, method: Method, url: String, body: Option<Value>) -> CliResult<Value> {
        let mut req = self.client.request(method, &url).bearer_auth(self.bearer());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| unreachable(&url, &e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| unreachable(&url, &e))?;
        let v: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            return Ok(v);
        }
        Err(refused(status, &v))
    }

    /// Calls the data API (`path` below `/data`).
    pub(crate) async fn data(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        self.send(method, format!("{}/data{path}", self.base), body).await
    }

    /// A request to the data API, authenticated, for raw bodies and headers.
    pub(crate) fn data_request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}/data{path}", self.base)).bearer_auth(self.bearer())
    }

    /// Sends a raw request; an error status becomes the server's message.
    pub(crate) async fn raw(&self, req: reqwest::RequestBuilder) -> CliResult<reqwest::Response> {
        let resp = req.send().await.map_err(|e| unreachable(&self.base, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Err(refused(status, &v))
    }
}

/// A transport failure, with its chain of causes.
fn unreachable(url: &str, e: &reqwest::Error) -> CliError {
    let mut detail = e.to_string();
    let mut tls = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(&format!(": {s}"));
        tls = tls.or_else(|| rustls_error(s));
        src = s.source();
    }
    if let Some(hint) = tls.as_ref().and_then(|t| tls_hint(url, t)) {
        detail.push_str(&format!(" — {hint}"));
    }
    CliError::Unreachable { url: url.to_string(), detail }
}

/// The rustls error behind a handshake failure: it arrives wrapped in an io::Error,
/// possibly boxed, which `source()` does not look into.
fn rustls_error(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t.clone());
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    rustls_error(io.get_ref()?)
}

/// What to do about a certificate the CLI refused.
fn tls_hint(url: &str, e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    match e {
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => Some(format!(
            "the server's certificate does not name {host}: use a name it was started with (--url), or restart \
             `atrest serve` with --hostname {host} (for a vault NAME.D, with --vault-domain D, and give this CLI \
             the same --vault-domain); `atrest vault show NAME` prints a URL that reaches the vault"
        )),
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => Some(
            "the server's certificate is not signed by a CA this CLI trusts: pass its CA with --ca (a local server's \
             is <data-dir>/tls/ca.pem)"
                .to_string(),
        ),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => Some(
            "the server's certificate has expired: renew it (the server reloads --tls-cert when it changes)".into(),
        ),
        _ => None,
    }
}

/// The server's error answer, typed.
fn refused(status: reqwest::StatusCode, v: &Value) -> CliError {
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    CliError::Refused {
        status: status.as_u16(),
        code: text("/error/code").unwrap_or_else(|| "Error".into()),
        inner: text("/error/innererror/code"),
        message: text("/error/message").unwrap_or_default(),
    }
}

/// Renders a result: `--output json` prints it as is; a table shows a list (`value`)
/// with the given columns, or one object as `field: value` lines.
pub(crate) fn render(v: &Value, output: Output, columns: &[&str]) -> String {
    if matches!(output, Output::Json) {
        return serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    }
    if let Some(items) = v.get("value").and_then(Value::as_array) {
        let rows: Vec<Vec<String>> =
            items.iter().map(|it| columns.iter().map(|c| time_cell(header(c), pointer(it, c))).collect()).collect();
        let mut widths: Vec<usize> = columns.iter().map(|c| header(c).len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<String>| {
            let mut s: String =
                cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}  ")).collect::<String>().trim_end().to_string();
            s.push('\n');
            s
        };
        out.push_str(&line(columns.iter().map(|c| header(c).to_uppercase()).collect()));
        for r in rows {
            out.push_str(&line(r));
        }
        return out;
    }
    match v {
        Value::Object(map) => {
            let w = map.keys().map(String::len).max().unwrap_or(0);
            map.iter().map(|(k, val)| format!("{k:<w$}  {}\n", time_cell(k, Some(val)))).collect()
        }
        Value::Null => String::new(),
        other => format!("{}\n", cell(Some(other))),
    }
}

fn header(c: &str) -> &str {
    c.rsplit('/').next().unwrap_or(c)
}

fn pointer<'a>(v: &'a Value, col: &str) -> Option<&'a Value> {
    if col.starts_with('/') { v.pointer(col) } else { v.get(col) }
}

/// Fields holding Unix seconds, shown as UTC dates in tables.
const TIME_FIELDS: &[&str] = &["created", "updated", "exp", "nbf", "expires", "deletedDate", "scheduledPurgeDate"];

fn time_cell(field: &str, v: Option<&Value>) -> String {
    if TIME_FIELDS.contains(&field)
        && let Some(secs) = v.and_then(Value::as_i64)
        && let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs)
        && let Ok(s) = t.format(&time::format_description::well_known::Rfc3339)
    {
        return s;
    }
    cell(v)
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| cell(Some(x))).collect::<Vec<_>>().join(","),
        Some(other) => other.to_string(),
    }
}

/// A client command: its subcommand and how to reach the server.
#[derive(Args)]
pub(crate) struct Managed<C: Subcommand> {
    #[command(subcommand)]
    pub(crate) cmd: C,
    #[command(flatten)]
    pub(crate) conn: Conn,
}

impl<C: Subcommand> Managed<C> {
    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    pub(crate) fn into_cmd(self) -> C {
        self.cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_and_objects() {
        let v = json!({"value": [{"name": "a", "attributes": {"enabled": true}}, {"name": "bbbb"}]});
        let t = render(&v, Output::Table, &["name", "/attributes/enabled"]);
        assert_eq!(t, "NAME  ENABLED\na     true\nbbbb  -\n");
        let o = render(&json!({"id": "x", "ops": ["a", "b"], "exp": 0}), Output::Table, &[]);
        assert_eq!(o, "exp  1970-01-01T00:00:00Z\nid   x\nops  a,b\n");
        assert!(render(&v, Output::Json, &[]).contains("\"bbbb\""));
    }
}
