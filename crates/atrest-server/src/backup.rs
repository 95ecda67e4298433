//! Online backup and verified restore of the embedded default (`atrest backup`,
//! `atrest restore`).
//!
//! A backup is a directory: consistent snapshots of both SQLite databases (`VACUUM
//! INTO`, taken while the server runs), the blob bodies the data-service snapshot
//! references (or, with an S3 blob store, a list of them), the TLS material (sealed
//! under the root key), the audit checkpoints file, the passphrase salt, and
//! `manifest.json` with every file's SHA-256, both root secrets' fingerprints (never the
//! secrets), the commit sequences and a signed checkpoint of every audit chain. The data
//! service is copied first, then the vault, then the bodies, so every key a snapshotted
//! object needs is in the vault snapshot and every body a snapshotted row names exists.
//! A body removed between the snapshot and its copy (its blob was deleted or replaced
//! meanwhile) leaves its row out of the backup too; the manifest lists those.
//!
//! A restore checks the manifest (format, every hash, the roots' fingerprints against
//! the roots it is given), copies into an empty data directory, records a `restore`
//! entry in the deployment's audit chain, and re-anchors the rollback anchor to the
//! restored databases — the only way besides `atrest anchor reset` to move it back.

use crate::bootstrap::{existing_roots, fingerprint};
use crate::{ServeConfig, ServerError};
use atrest_crypto::SecretKey;
use atrest_vault::audit::{Checkpoint, DEPLOYMENT_CHAIN};
use atrest_vault::db::Db;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `manifest.json`'s format name and version.
pub const FORMAT: &str = "atrest-backup";
/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the backup directory (`/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Unix seconds when the backup started.
    pub created: i64,
    /// The atrest version that wrote it.
    pub atrest_version: String,
    /// Fingerprints of the vault root and the infrastructure root.
    pub roots: Roots,
    /// The commit sequences of the snapshots (vault, data service).
    pub commit_seq: [i64; 2],
    /// A signed checkpoint of every audit chain in the vault snapshot.
    pub checkpoints: Vec<Checkpoint>,
    /// `directory`, or the S3 location (bodies are then listed, not copied).
    pub blob_store: String,
    /// Blob bodies the snapshot references that live in S3 (`resource/name`), for the
    /// operator's bucket copy to be checked against.
    #[serde(default)]
    pub s3_bodies: Vec<String>,
    /// Blobs left out because their body went between the snapshot and its copy.
    #[serde(default)]
    pub dropped: Vec<String>,
    /// Every file but the manifest.
    pub files: Vec<FileEntry>,
}

/// Root fingerprints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Roots {
    /// The vault's root key.
    pub vault: String,
    /// The infrastructure root.
    pub infra: String,
}

fn fingerprints(cfg: &ServeConfig) -> Result<(Roots, SecretKey), ServerError> {
    let (root, infra) = existing_roots(cfg)?;
    Ok((Roots { vault: fingerprint(&root)?, infra: fingerprint(&infra)? }, root))
}

fn sqlite_only(cfg: &ServeConfig) -> Result<(), ServerError> {
    let pg = |u: &Option<String>| u.as_deref().is_some_and(|u| u.starts_with("postgres"));
    if pg(&cfg.database_url) || pg(&cfg.store_database_url) {
        return Err(ServerError::Config(
            "atrest backup and restore cover the embedded default (SQLite); back up PostgreSQL with pg_dump and \
             the bucket with its own tools, as docs/deployment.md describes"
                .into(),
        ));
    }
    Ok(())
}

fn sqlite_url(path: &Path, create: bool) -> String {
    format!("sqlite://{}{}", path.display(), if create { "?mode=rwc" } else { "" })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::io(path, e)
}

/// Hashes a file (streaming).
fn sha256_file(path: &Path) -> Result<(u64, String), ServerError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut ctx = atrest_crypto::hash::Sha256::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        ctx.update(&buf[..n]);
    }
    Ok((size, hex::encode(ctx.finish())))
}

/// Copies `from` to `to` (creating parents, 0700 directories) and syncs it.
fn copy_synced(from: &Path, to: &Path) -> Result<(), ServerError> {
    if let Some(d) = to.parent() {
        crate::files::create_private_dir(d)?;
    }
    std::fs::copy(from, to).map_err(io(from))?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(io(to))
}

/// Every regular file under `dir`, relative, `/`-separated, sorted; SQLite's side files
/// (`-wal`, `-shm`, `-journal`) left out: the snapshots are checkpointed and closed
/// before the listing, so they hold nothing, and the connection that made them may still
/// be removing them.
fn walk(dir: &Path) -> Result<Vec<String>, ServerError> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), ServerError> {
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            let e = e.map_err(io(dir))?;
            let t = e.file_type().map_err(io(dir))?;
            if t.is_dir() {
                go(root, &e.path(), out)?;
            } else if t.is_file()
                && !["-wal", "-shm", "-journal"].iter().any(|x| e.file_name().to_string_lossy().ends_with(x))
            {
                let rel = e.path().strip_prefix(root).map(Path::to_path_buf).unwrap_or_default();
                out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.exists() {
        go(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// What a backup did.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    /// The backup directory.
    pub dir: PathBuf,
    /// Files written (manifest included).
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Blob bodies copied (or listed, for S3).
    pub blobs: usize,
    /// Blobs left out (deleted or replaced while the backup ran).
    pub dropped: Vec<String>,
}

/// Takes an online backup of the data directory `cfg` describes into `to` (new or empty).
///
/// # Errors
/// A PostgreSQL deployment, a non-empty `to`, missing roots, database and file errors.
pub async fn backup(cfg: &ServeConfig, to: &Path) -> Result<BackupReport, ServerError> {
    sqlite_only(cfg)?;
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ServerError::Config(format!("{} is not empty: back up into a new directory", to.display())));
    }
    let (roots, root) = fingerprints(cfg)?;
    crate::files::create_private_dir(to)?;
    let created = atrest_vault::clock::Clock::now(&atrest_vault::clock::SystemClock);

    // Store first, then vault: everything the store snapshot needs from the vault exists
    // in the later vault snapshot.
    for (name, url) in [
        ("store.db", sqlite_url(&cfg.data_dir.join("store.db"), false)),
        ("atrest.db", sqlite_url(&cfg.data_dir.join("atrest.db"), false)),
    ] {
        let db = Db::connect(&url)
            .await
            .map_err(|e| ServerError::Config(format!("cannot open {} in {}: {e}", name, cfg.data_dir.display())))?;
        let dest = to.join(name);
        let r = sqlx::query("VACUUM INTO $1").bind(dest.display().to_string()).execute(db.pool()).await;
        db.pool().close().await;
        r.map_err(|e| ServerError::Config(format!("snapshot of {name} failed: {e}")))?;
    }

    // Then the bodies the store snapshot references.
    let store = Db::connect(&sqlite_url(&to.join("store.db"), false)).await?;
    let rows: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT resource_id, id, generation, name_sealed FROM store_objects WHERE kind = 'blob' ORDER BY resource_id, id",
    )
    .fetch_all(store.pool())
    .await
    .map_err(atrest_vault::VaultError::from)?;
    let mut dropped = Vec::new();
    let mut s3_bodies = Vec::new();
    let blob_store = match cfg.blob_store.as_deref() {
        Some(s) if s.starts_with("s3://") => {
            for (resource, id, generation, sealed) in &rows {
                s3_bodies.push(format!("{resource}/{}", atrest_store::blob_key(id, *generation, sealed)));
            }
            atrest_store::blobstore::BlobStore::from_location(s)
                .map_err(|e| ServerError::Config(e.to_string()))?
                .describe()
        }
        other => {
            let dir = other
                .map_or_else(|| cfg.data_dir.join("blobs"), |d| PathBuf::from(d.strip_prefix("file://").unwrap_or(d)));
            for (resource, id, generation, sealed) in &rows {
                let name = atrest_store::blob_key(id, *generation, sealed);
                let from = dir.join(resource).join(&name);
                match std::fs::metadata(&from) {
                    Ok(_) => copy_synced(&from, &to.join("blobs").join(resource).join(&name))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        sqlx::query("DELETE FROM store_objects WHERE resource_id = $1 AND id = $2 AND generation = $3")
                            .bind(resource)
                            .bind(id)
                            .bind(generation)
                            .execute(store.pool())
                            .await
                            .map_err(atrest_vault::VaultError::from)?;
                        dropped.push(format!("{resource}/{id}"));
                    }
                    Err(e) => return Err(ServerError::io(&from, e)),
                }
            }
            "directory".to_string()
        }
    };
    let store_seq = store.commit_seq().await.unwrap_or(0);
    store.close().await;

    // Files beside the databases that a restored deployment needs (none is a secret in
    // the clear: the TLS private keys are sealed under the root key).
    for rel in ["root.salt", "audit/checkpoints.jsonl"]
        .iter()
        .map(|s| (*s).to_string())
        .chain(walk(&cfg.data_dir.join("tls"))?.into_iter().map(|f| format!("tls/{f}")))
    {
        let from = cfg.data_dir.join(&rel);
        if from.exists() {
            copy_synced(&from, &to.join(&rel))?;
        }
    }

    // Checkpoints of every chain in the snapshot, signed now.
    let vault_db = Db::connect(&sqlite_url(&to.join("atrest.db"), false)).await?;
    let vault_seq = vault_db.commit_seq().await.unwrap_or(0);
    let svc = vault_service(vault_db.clone(), &root)?;
    let mut checkpoints = Vec::new();
    for chain in svc.audit_chains().await? {
        checkpoints.push(svc.audit_checkpoint(&chain).await?);
    }
    drop(svc);
    vault_db.close().await;

    let mut files = Vec::new();
    for rel in walk(to)? {
        let (size, sha256) = sha256_file(&to.join(&rel))?;
        files.push(FileEntry { path: rel, size, sha256 });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created,
        atrest_version: env!("CARGO_PKG_VERSION").into(),
        roots,
        commit_seq: [vault_seq, store_seq],
        checkpoints,
        blob_store,
        s3_bodies,
        dropped: dropped.clone(),
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| ServerError::Config(e.to_string()))?;
    crate::files::write_private(&to.join("manifest.json"), &text)?;
    std::fs::File::open(to).and_then(|d| d.sync_all()).map_err(io(to))?;
    Ok(BackupReport {
        dir: to.to_path_buf(),
        files: manifest.files.len() + 1,
        bytes: manifest.files.iter().map(|f| f.size).sum::<u64>() + text.len() as u64,
        blobs: rows.len() - dropped.len(),
        dropped,
    })
}

fn vault_service(db: Db, root: &SecretKey) -> Result<atrest_vault::VaultService, ServerError> {
    let backend = Arc::new(atrest_crypto::backend::software::SoftwareBackend::new(root)?);
    Ok(atrest_vault::VaultService::new(db, backend, root, Arc::new(atrest_vault::clock::SystemClock))?)
}

/// Reads and checks a backup: the manifest's format, every file's size and hash, no
/// file missing or added.
///
/// # Errors
/// What is wrong, by file.
pub fn verify(from: &Path) -> Result<Manifest, ServerError> {
    let path = from.join("manifest.json");
    let text = std::fs::read(&path).map_err(io(&path))?;
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| ServerError::Config(format!("{} is not an atrest backup manifest: {e}", path.display())))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(ServerError::Config(format!(
            "{}: format {} version {} (this atrest reads {FORMAT} version {VERSION})",
            path.display(),
            m.format,
            m.version
        )));
    }
    let mut problems = Vec::new();
    let listed: std::collections::BTreeSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for rel in walk(from)? {
        if rel != "manifest.json" && !listed.contains(rel.as_str()) {
            problems.push(format!("{rel}: not in the manifest"));
        }
    }
    for f in &m.files {
        if f.path.split('/').any(|c| c == ".." || c.is_empty()) {
            problems.push(format!("{}: not a plain relative path", f.path));
            continue;
        }
        match sha256_file(&from.join(&f.path)) {
            Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
            Ok(_) => problems.push(format!("{}: its contents changed since the backup", f.path)),
            Err(_) => problems.push(format!("{}: missing", f.path)),
        }
    }
    if !problems.is_empty() {
        return Err(ServerError::Config(format!(
            "the backup in {} does not verify; nothing was restored: {}",
            from.display(),
            problems.join("; ")
        )));
    }
    Ok(m)
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    /// Files restored.
    pub files: usize,
    /// Audit chains restored (each verified against the manifest's checkpoint).
    pub chains: usize,
    /// The anchor's new commit sequences.
    pub commit_seq: [i64; 2],
    /// When the backup was taken.
    pub backup_created: i64,
}

/// Restores the backup in `from` into the (empty) data directory `cfg` describes, with
/// the roots `cfg` names (which must be the backup's).
///
/// # Errors
/// A backup that does not verify, other roots, a data directory that is not empty,
/// audit chains that do not match the manifest, database and file errors.
pub async fn restore(cfg: &ServeConfig, from: &Path) -> Result<RestoreReport, ServerError> {
    sqlite_only(cfg)?;
    let m = verify(from)?;
    let dir = &cfg.data_dir;
    let occupied: Vec<String> = ["atrest.db", "store.db", "blobs", "admin.token", "tls", "audit"]
        .iter()
        .map(|f| dir.join(f))
        .chain(std::iter::once(cfg.anchor_path()))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !occupied.is_empty() {
        return Err(ServerError::Config(format!(
            "{} already holds a deployment ({}): restore into an empty data directory (keep the root key files \
             there, or give them with --root-key-file/--infra-root-key-file); move the old one aside first",
            dir.display(),
            occupied.join(", ")
        )));
    }
    crate::files::create_private_dir(dir)?;
    // A passphrase root needs its salt before the fingerprint can be checked.
    if m.files.iter().any(|f| f.path == "root.salt") && !dir.join("root.salt").exists() {
        copy_synced(&from.join("root.salt"), &dir.join("root.salt"))?;
    }
    let (roots, root) = fingerprints(cfg)?;
    if roots.vault != m.roots.vault {
        return Err(ServerError::Config(
            "the backup was taken under another vault root key: give this deployment's root key (--root-key-file, \
             ATREST_ROOT_KEY or the passphrase); nothing was restored"
                .into(),
        ));
    }
    if roots.infra != m.roots.infra {
        return Err(ServerError::Config(
            "the backup was taken under another infrastructure root: give this deployment's infrastructure root \
             (--infra-root-key-file or ATREST_INFRA_ROOT_KEY); nothing was restored"
                .into(),
        ));
    }
    let blob_dir = match cfg.blob_store.as_deref() {
        Some(s) if s.starts_with("s3://") => None,
        Some(d) => Some(PathBuf::from(d.strip_prefix("file://").unwrap_or(d))),
        None => Some(dir.join("blobs")),
    };
    for f in &m.files {
        let target = match (f.path.strip_prefix("blobs/"), &blob_dir) {
            (Some(rest), Some(b)) => b.join(rest),
            (Some(_), None) => continue,
            (None, _) if f.path == "root.salt" => continue,
            (None, _) => dir.join(&f.path),
        };
        copy_synced(&from.join(&f.path), &target)?;
    }

    // The restored chains must be the ones the manifest signed.
    let vault_db = Db::connect(&sqlite_url(&dir.join("atrest.db"), false)).await?;
    let store_db = Db::connect(&sqlite_url(&dir.join("store.db"), false)).await?;
    let svc = vault_service(vault_db.clone(), &root)?;
    let result = async {
        for cp in &m.checkpoints {
            let r = svc.verify_audit_chain(&cp.chain, Some(cp)).await?;
            if !r.ok() {
                return Err(ServerError::Config(format!(
                    "audit chain {} does not match the backup's checkpoint: {}",
                    cp.chain,
                    r.problems.join("; ")
                )));
            }
        }
        svc.audit(
            DEPLOYMENT_CHAIN,
            "system",
            "restore",
            &from.display().to_string(),
            "ok",
            &serde_json::json!({"backup_created": m.created, "commit_seq": m.commit_seq, "files": m.files.len()}),
        )
        .await?;
        let (_, now) = crate::anchor::reset(&cfg.anchor_path(), &root, &vault_db, &store_db).await?;
        Ok(now)
    }
    .await;
    drop(svc);
    store_db.close().await;
    vault_db.close().await;
    let now = result?;
    Ok(RestoreReport { files: m.files.len(), chains: m.checkpoints.len(), commit_seq: now, backup_created: m.created })
}

/// `atrest anchor reset`: accepts the databases as they are (after a rollback the
/// operator chose to live with), audited as `accept-rollback`.
///
/// # Errors
/// Database, root and file errors.
pub async fn accept_rollback(cfg: &ServeConfig) -> Result<(Option<[i64; 2]>, [i64; 2]), ServerError> {
    let (root, _) = existing_roots(cfg)?;
    let vault_db = Db::connect(&crate::bootstrap::vault_url(cfg)).await?;
    let store_db = Db::connect(&crate::bootstrap::store_url(cfg)).await?;
    let svc = vault_service(vault_db.clone(), &root)?;
    let result = async {
        let before = vault_db.commit_seq().await.ok();
        svc.audit(
            DEPLOYMENT_CHAIN,
            "system",
            "accept-rollback",
            &cfg.anchor_path().display().to_string(),
            "ok",
            &serde_json::json!({"vault_seq": before}),
        )
        .await?;
        crate::anchor::reset(&cfg.anchor_path(), &root, &vault_db, &store_db).await
    }
    .await;
    drop(svc);
    store_db.close().await;
    vault_db.close().await;
    result
}
