//! `atrest resource|record|blob|message|job …` and `atrest key usage`: the data service
//! over HTTPS, through the server's `/data/` API.

use crate::client::Managed;
use crate::client::{Api, render};
use crate::error::CliResult;
use clap::Subcommand;
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Everything but unreserved characters is encoded (a '/' in a name too).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Subcommand)]
pub(crate) enum ResourceCmd {
    /// Create a resource (platform-managed keys; its identity is principal res-NAME).
    Create {
        /// Resource name.
        name: String,
    },
    /// Show a resource: state, encryption, identity.
    Show {
        /// Resource name.
        name: String,
    },
    /// List the resources you hold a role on.
    List,
    /// Delete a resource by crypto-erasure (irreversible: its keys are destroyed).
    Delete {
        /// Resource name.
        name: String,
        /// Confirm that the data becomes unrecoverable.
        #[arg(long)]
        yes: bool,
    },
    /// Encryption settings.
    #[command(subcommand)]
    Encryption(EncryptionCmd),
    /// Data-plane roles (reader, writer, owner).
    #[command(subcommand)]
    Role(RoleCmd),
    /// Write data reads and writes to the resource's audit chain too.
    Diagnostics {
        /// Resource name.
        name: String,
        /// Record data-plane reads and writes on the resource's audit chain (true/false).
        #[arg(long)]
        data_audit: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum EncryptionCmd {
    /// Show the key source, key URI and version in use.
    Show {
        /// Resource name.
        name: String,
    },
    /// Use platform keys, or a customer key (validated first).
    Set {
        /// Resource name.
        name: String,
        /// Back to platform-managed keys.
        #[arg(long, conflicts_with = "key_uri")]
        platform: bool,
        /// https://HOST/keys/NAME (follows the latest version) or …/NAME/VERSION (pinned).
        #[arg(long)]
        key_uri: Option<String>,
        /// For a vault on another server: a file holding that vault's bearer token.
        #[arg(long, requires = "key_uri")]
        credential_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RoleCmd {
    /// List the roles granted on a resource.
    List {
        /// Resource name.
        name: String,
    },
    /// Grant a principal of the tenant a role.
    Set {
        /// Resource name.
        name: String,
        /// Principal name (in the resource's tenant).
        principal: String,
        /// Role to grant.
        #[arg(value_parser = ["reader", "writer", "owner"])]
        role: String,
    },
    /// Remove a principal's role.
    Remove {
        /// Resource name.
        name: String,
        /// Principal name (in the resource's tenant).
        principal: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum RecordCmd {
    /// Write a record from --value or --file.
    Put {
        /// Resource name.
        resource: String,
        /// Record key (may contain /).
        key: String,
        /// The value, as text.
        #[arg(long, conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Only if the record still has this ETag.
        #[arg(long)]
        if_match: Option<String>,
        /// Only if the record does not exist.
        #[arg(long)]
        if_none_match: bool,
    },
    /// Print a record's value (raw bytes on stdout).
    Get {
        /// Resource name.
        resource: String,
        /// Record key (may contain /).
        key: String,
    },
    /// Delete a record (crypto-erasure of its data key).
    Delete {
        /// Resource name.
        resource: String,
        /// Record key (may contain /).
        key: String,
        /// Only if the record still has this ETag (else 412).
        #[arg(long)]
        if_match: Option<String>,
    },
    /// List records.
    List {
        /// Resource name.
        resource: String,
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum BlobCmd {
    /// Upload a file as a blob (streamed; progress on a terminal).
    Put {
        /// Resource name.
        resource: String,
        /// Blob name (may contain /).
        name: String,
        /// Local file (for get, - writes to stdout).
        file: PathBuf,
    },
    /// Download a blob to a file (`-` for stdout), or a byte range of it.
    Get {
        /// Resource name.
        resource: String,
        /// Blob name (may contain /).
        name: String,
        /// Local file (for get, - writes to stdout).
        file: PathBuf,
        /// START-END (inclusive), START- or -N.
        #[arg(long)]
        range: Option<String>,
    },
    /// Delete a blob (its data key and file).
    Delete {
        /// Resource name.
        resource: String,
        /// Blob name (may contain /).
        name: String,
    },
    /// List blobs.
    List {
        /// Resource name.
        resource: String,
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum MessageCmd {
    /// Send a message (encrypted under platform keys; TTL ≤ 24 h).
    Send {
        /// Resource name.
        resource: String,
        /// The message, as text.
        #[arg(long, conflicts_with = "file")]
        body: Option<String>,
        /// Read the message from this file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Seconds until it expires (default 3600, at most 86400).
        #[arg(long)]
        ttl: Option<i64>,
    },
    /// Receive messages; they stay invisible for --visibility seconds unless acknowledged.
    Receive {
        /// Resource name.
        resource: String,
        /// Most messages to receive (1-32).
        #[arg(long, default_value_t = 1)]
        max: usize,
        /// Seconds the received messages stay invisible unless acknowledged.
        #[arg(long, default_value_t = 30)]
        visibility: i64,
        /// Acknowledge each message once printed (receive and delete).
        #[arg(long)]
        ack: bool,
    },
    /// Acknowledge (delete) a received message.
    Ack {
        /// Resource name.
        resource: String,
        /// Message id (from receive).
        id: String,
        /// Receipt of the latest receive of it.
        receipt: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum JobCmd {
    /// Start a re-key (new resource key, data keys re-wrapped) or re-encrypt (new data
    /// keys, data rewritten) job.
    Start {
        /// Only the jobs of this resource.
        resource: String,
        /// rekey: new resource key, data keys re-wrapped; reencrypt: new data keys, data rewritten.
        #[arg(value_parser = ["rekey", "reencrypt"])]
        kind: String,
        /// Follow the job until it ends (as `job watch`).
        #[arg(long)]
        watch: bool,
    },
    /// List jobs (newest first).
    List {
        /// Only the jobs of this resource.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Show a job's state and progress.
    Show {
        /// Job id (from job start or job list).
        id: String,
    },
    /// Follow a job until it ends.
    Watch {
        /// Job id (from job start or job list).
        id: String,
    },
}

fn run<F: std::future::Future<Output = CliResult>>(f: F) -> CliResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(f)
}

fn connect<C: Subcommand>(m: &Managed<C>) -> CliResult<(Api, crate::Output)> {
    Ok((m.conn().api()?, m.conn().output))
}

const RESOURCE_COLUMNS: &[&str] = &["name", "state", "/encryption/keySource", "/encryption/keyUri", "role"];
const OBJECT_COLUMNS: &[&str] = &["name", "size", "generation", "etag", "updated"];
const JOB_COLUMNS: &[&str] = &["id", "resource", "kind", "state", "done", "total", "error"];

pub(crate) fn resource(m: Managed<ResourceCmd>) -> CliResult {
    let (api, out) = connect(&m)?;
    run(async move {
        let v = match m.into_cmd() {
            ResourceCmd::Create { name } => api.data(Method::PUT, &format!("/resources/{}", enc(&name)), None).await?,
            ResourceCmd::Show { name } => api.data(Method::GET, &format!("/resources/{}", enc(&name)), None).await?,
            ResourceCmd::List => {
                let v = api.data(Method::GET, "/resources", None).await?;
                return Ok(render(&v, out, RESOURCE_COLUMNS));
            }
            ResourceCmd::Delete { name, yes } => {
                if !yes {
                    return Err(format!(
                        "deleting {name} destroys its keys: its data can never be read again; add --yes to confirm"
                    )
                    .into());
                }
                api.data(Method::DELETE, &format!("/resources/{}", enc(&name)), None).await?;
                json!({"deleted": name})
            }
            ResourceCmd::Encryption(EncryptionCmd::Show { name }) => {
                api.data(Method::GET, &format!("/resources/{}/encryption", enc(&name)), None).await?
            }
            ResourceCmd::Encryption(EncryptionCmd::Set { name, platform, key_uri, credential_file }) => {
                let body = match (platform, key_uri) {
                    (true, _) => json!({"keySource": "platform"}),
                    (false, Some(uri)) => {
                        let mut b = json!({"keySource": "customer", "keyUri": uri});
                        if let Some(f) = credential_file {
                            let t =
                                std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                            b["credential"] = json!(t.trim());
                        }
                        b
                    }
                    (false, None) => return Err("give --platform or --key-uri".into()),
                };
                api.data(Method::PUT, &format!("/resources/{}/encryption", enc(&name)), Some(body)).await?
            }
            ResourceCmd::Role(RoleCmd::List { name }) => {
                let v = api.data(Method::GET, &format!("/resources/{}/roles", enc(&name)), None).await?;
                return Ok(render(&v, out, &["principal", "role"]));
            }
            ResourceCmd::Role(RoleCmd::Set { name, principal, role }) => {
                let path = format!("/resources/{}/roles/{}", enc(&name), enc(&principal));
                api.data(Method::PUT, &path, Some(json!({"role": role}))).await?
            }
            ResourceCmd::Role(RoleCmd::Remove { name, principal }) => {
                let path = format!("/resources/{}/roles/{}", enc(&name), enc(&principal));
                api.data(Method::DELETE, &path, None).await?;
                json!({"removed": principal})
            }
            ResourceCmd::Diagnostics { name, data_audit } => {
                let path = format!("/resources/{}/diagnostics", enc(&name));
                api.data(Method::PUT, &path, Some(json!({"dataAudit": data_audit}))).await?
            }
        };
        Ok(render(&v, out, &[]))
    })
}

fn read_input(value: Option<String>, file: Option<PathBuf>) -> CliResult<Vec<u8>> {
    match (value, file) {
        (Some(v), _) => Ok(v.into_bytes()),
        (None, Some(f)) => Ok(std::fs::read(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?),
        (None, None) => Err("give --value (or --body) or --file".into()),
    }
}

pub(crate) fn record(m: Managed<RecordCmd>) -> CliResult {
    let (api, out) = connect(&m)?;
    run(async move {
        let v = match m.into_cmd() {
            RecordCmd::Put { resource, key, value, file, if_match, if_none_match } => {
                let body = read_input(value, file)?;
                let mut req =
                    api.data_request(Method::PUT, &format!("/resources/{}/records/{}", enc(&resource), enc(&key)));
                if let Some(t) = if_match {
                    req = req.header("if-match", t);
                }
                if if_none_match {
                    req = req.header("if-none-match", "*");
                }
                api.raw(req.body(body)).await?.json::<Value>().await.map_err(|e| e.to_string())?
            }
            RecordCmd::Get { resource, key } => {
                let req =
                    api.data_request(Method::GET, &format!("/resources/{}/records/{}", enc(&resource), enc(&key)));
                let bytes = api.raw(req).await?.bytes().await.map_err(|e| e.to_string())?;
                std::io::stdout().write_all(&bytes).map_err(|e| e.to_string())?;
                return Ok(String::new());
            }
            RecordCmd::Delete { resource, key, if_match } => {
                let mut req =
                    api.data_request(Method::DELETE, &format!("/resources/{}/records/{}", enc(&resource), enc(&key)));
                if let Some(t) = if_match {
                    req = req.header("if-match", t);
                }
                api.raw(req).await?;
                json!({"deleted": key})
            }
            RecordCmd::List { resource, prefix } => {
                let v = list_all(&api, &format!("/resources/{}/records", enc(&resource)), &prefix).await?;
                return Ok(render(&v, out, OBJECT_COLUMNS));
            }
        };
        Ok(render(&v, out, &[]))
    })
}

async fn list_all(api: &Api, path: &str, prefix: &str) -> CliResult<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = format!("{path}?prefix={}", enc(prefix));
        if let Some(a) = &after {
            q.push_str(&format!("&after={}", enc(a)));
        }
        let page = api.data(Method::GET, &q, None).await?;
        items.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["nextAfter"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return Ok(json!({"value": items})),
        }
    }
}

/// Progress on stderr, only when it is a terminal.
struct Progress {
    total: Option<u64>,
    done: u64,
    shown: std::time::Instant,
    on: bool,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        Self { total, done: 0, shown: std::time::Instant::now(), on: std::io::stderr().is_terminal() }
    }

    fn add(&mut self, n: usize) {
        self.done += n as u64;
        if self.on && self.shown.elapsed() > std::time::Duration::from_millis(200) {
            self.shown = std::time::Instant::now();
            self.print();
        }
    }

    fn print(&self) {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let line = match self.total {
            Some(t) if t > 0 => {
                let pct = self.done * 100 / t;
                let bar = "#".repeat(usize::try_from(pct / 4).unwrap_or(25));
                format!("\r[{bar:<25}] {:.1} / {:.1} MiB ({pct}%)", mib(self.done), mib(t))
            }
            _ => format!("\r{:.1} MiB", mib(self.done)),
        };
        eprint!("{line}");
    }

    fn finish(&self) {
        if self.on {
            self.print();
            eprintln!();
        }
    }
}

pub(crate) fn blob(m: Managed<BlobCmd>) -> CliResult {
    let (api, out) = connect(&m)?;
    run(async move {
        let v = match m.into_cmd() {
            BlobCmd::Put { resource, name, file } => {
                let f =
                    tokio::fs::File::open(&file).await.map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let len = f.metadata().await.map(|m| m.len()).ok();
                let mut progress = Progress::new(len);
                let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |chunk| {
                    if let Ok(c) = &chunk {
                        progress.add(c.len());
                        if len == Some(progress.done) {
                            progress.finish();
                        }
                    }
                    chunk
                });
                let req = api
                    .data_request(Method::PUT, &format!("/resources/{}/blobs/{}", enc(&resource), enc(&name)))
                    .timeout(std::time::Duration::from_secs(24 * 3600))
                    .body(reqwest::Body::wrap_stream(stream));
                api.raw(req).await?.json::<Value>().await.map_err(|e| e.to_string())?
            }
            BlobCmd::Get { resource, name, file, range } => {
                let mut req = api
                    .data_request(Method::GET, &format!("/resources/{}/blobs/{}", enc(&resource), enc(&name)))
                    .timeout(std::time::Duration::from_secs(24 * 3600));
                if let Some(r) = &range {
                    req = req.header("range", format!("bytes={r}"));
                }
                let resp = api.raw(req).await?;
                let mut progress = Progress::new(resp.content_length());
                let to_stdout = file.as_os_str() == "-";
                let mut sink: Box<dyn Write> = if to_stdout {
                    Box::new(std::io::stdout().lock())
                } else {
                    Box::new(std::io::BufWriter::new(
                        std::fs::File::create(&file).map_err(|e| format!("cannot write {}: {e}", file.display()))?,
                    ))
                };
                let mut body = resp.bytes_stream();
                while let Some(chunk) = body.next().await {
                    // An error mid-way means the server stopped (tampering found, key
                    // access lost): the file is incomplete and is removed.
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            drop(sink);
                            if !to_stdout {
                                let _ = std::fs::remove_file(&file);
                            }
                            return Err(format!("the download failed part-way and was discarded: {e}").into());
                        }
                    };
                    sink.write_all(&chunk).map_err(|e| e.to_string())?;
                    progress.add(chunk.len());
                }
                sink.flush().map_err(|e| e.to_string())?;
                progress.finish();
                if to_stdout {
                    return Ok(String::new());
                }
                json!({"name": name, "file": file.display().to_string(), "bytes": progress.done})
            }
            BlobCmd::Delete { resource, name } => {
                let req =
                    api.data_request(Method::DELETE, &format!("/resources/{}/blobs/{}", enc(&resource), enc(&name)));
                api.raw(req).await?;
                json!({"deleted": name})
            }
            BlobCmd::List { resource, prefix } => {
                let v = list_all(&api, &format!("/resources/{}/blobs", enc(&resource)), &prefix).await?;
                return Ok(render(&v, out, OBJECT_COLUMNS));
            }
        };
        Ok(render(&v, out, &[]))
    })
}

pub(crate) fn message(m: Managed<MessageCmd>) -> CliResult {
    let (api, out) = connect(&m)?;
    run(async move {
        let v = match m.into_cmd() {
            MessageCmd::Send { resource, body, file, ttl } => {
                let bytes = read_input(body, file)?;
                let mut path = format!("/resources/{}/messages", enc(&resource));
                if let Some(t) = ttl {
                    path.push_str(&format!("?ttl={t}"));
                }
                api.raw(api.data_request(Method::POST, &path).body(bytes))
                    .await?
                    .json::<Value>()
                    .await
                    .map_err(|e| e.to_string())?
            }
            MessageCmd::Receive { resource, max, visibility, ack } => {
                use base64::Engine as _;
                let path = format!("/resources/{}/messages/receive?max={max}&visibility={visibility}", enc(&resource));
                let mut v = api.data(Method::POST, &path, None).await?;
                // Show text bodies as text.
                if let Some(items) = v["value"].as_array_mut() {
                    for it in items {
                        let text = it["body"]
                            .as_str()
                            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                            .and_then(|b| String::from_utf8(b).ok());
                        if let Some(t) = text {
                            it["text"] = json!(t);
                        }
                    }
                }
                let shown = render(&v, out, &["id", "receipt", "deliveries", "expires", "text"]);
                if !ack {
                    return Ok(shown);
                }
                // Printed first: a message acknowledged is gone, so it must have been seen.
                {
                    use std::io::Write as _;
                    let _ = std::io::stdout().lock().write_all(shown.as_bytes());
                }
                let mut failed = Vec::new();
                for it in v["value"].as_array().cloned().unwrap_or_default() {
                    let (id, receipt) =
                        (it["id"].as_str().unwrap_or_default(), it["receipt"].as_str().unwrap_or_default());
                    let path = format!("/resources/{}/messages/{}?receipt={}", enc(&resource), enc(id), enc(receipt));
                    if let Err(e) = api.data(Method::DELETE, &path, None).await {
                        failed.push(format!("{id} ({e})"));
                    }
                }
                if !failed.is_empty() {
                    return Err(format!(
                        "not acknowledged, so delivered again after --visibility: {}",
                        failed.join(", ")
                    )
                    .into());
                }
                return Ok(String::new());
            }
            MessageCmd::Ack { resource, id, receipt } => {
                let path = format!("/resources/{}/messages/{}?receipt={}", enc(&resource), enc(&id), enc(&receipt));
                api.data(Method::DELETE, &path, None).await?;
                json!({"acknowledged": id})
            }
        };
        Ok(render(&v, out, &[]))
    })
}

pub(crate) fn job(m: Managed<JobCmd>) -> CliResult {
    let (api, out) = connect(&m)?;
    run(async move {
        let v = match m.into_cmd() {
            JobCmd::Start { resource, kind, watch } => {
                let v = api
                    .data(Method::POST, &format!("/resources/{}/jobs", enc(&resource)), Some(json!({"kind": kind})))
                    .await?;
                if !watch {
                    return Ok(render(&v, out, &[]));
                }
                watch_job(&api, v["id"].as_str().unwrap_or_default()).await?
            }
            JobCmd::List { resource } => {
                let path = match resource {
                    Some(r) => format!("/resources/{}/jobs", enc(&r)),
                    None => "/jobs".to_string(),
                };
                let v = api.data(Method::GET, &path, None).await?;
                return Ok(render(&v, out, JOB_COLUMNS));
            }
            JobCmd::Show { id } => api.data(Method::GET, &format!("/jobs/{}", enc(&id)), None).await?,
            JobCmd::Watch { id } => watch_job(&api, &id).await?,
        };
        Ok(render(&v, out, &[]))
    })
}

/// Follows job `id` until it ends, a line of progress a second on stderr; its last state
/// (an error when it failed).
async fn watch_job(api: &Api, id: &str) -> CliResult<Value> {
    loop {
        let v = api.data(Method::GET, &format!("/jobs/{}", enc(id)), None).await?;
        let state = v["state"].as_str().unwrap_or_default().to_string();
        eprintln!(
            "{} {}: {} of {} objects{}",
            v["kind"].as_str().unwrap_or_default(),
            state,
            v["done"],
            v["total"],
            v["error"].as_str().filter(|e| !e.is_empty()).map(|e| format!(" ({e})")).unwrap_or_default()
        );
        match state.as_str() {
            "running" => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
            // A script that waited for the job learns that it did not finish.
            "failed" => {
                return Err(format!(
                    "job {id} failed: {}",
                    v["error"].as_str().filter(|e| !e.is_empty()).unwrap_or("no reason recorded")
                )
                .into());
            }
            _ => return Ok(v),
        }
    }
}

/// `atrest key usage`: which resources use which key versions.
pub(crate) async fn key_usage(api: &Api, out: crate::Output) -> CliResult {
    let v = api.data(Method::GET, "/key-usage", None).await?;
    if matches!(out, crate::Output::Json) {
        return Ok(render(&v, out, &[]));
    }
    let mut rows = Vec::new();
    for k in v["value"].as_array().cloned().unwrap_or_default() {
        for ver in k["versions"].as_array().cloned().unwrap_or_default() {
            rows.push(json!({
                "key": k["key"], "version": ver["version"], "needed": ver["needed"], "resources": ver["resources"],
            }));
        }
    }
    Ok(render(&json!({"value": rows}), out, &["key", "version", "needed", "resources"]))
}
