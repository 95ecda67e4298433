//! Online backup and verified restore of the embedded default (`atrest backup`,
//! `atrest restore`).
//!
//! A backup is a directory: consistent snapshots of both SQLite databases (`VACUUM
//! INTO`, taken while the server runs), the blob bodies the data-service snapshot
//! references (or, with an S3 blob store, a list of them), the TLS material (sealed
//! under the root key), the audit checkpoints file, the passphrase salt, and
//! `manifest.json` with every file's SHA-256, both root secrets' fingerprints (never the
//! secrets), the commit sequences and a signed checkpoint of every audit chain, MACed
//! under a key derived from the vault's root key. The data
//! service is copied first, then the vault, then the bodies, so every key a snapshotted
//! object needs is in the vault snapshot and every body a snapshotted row names exists.
//! A body removed between the snapshot and its copy (its blob was deleted or replaced
//! meanwhile) leaves its row out of the backup too; the manifest lists those.
//!
//! A restore checks the manifest (format, its MAC and the roots' fingerprints against
//! the roots it is given, every hash, the restored commit sequences), copies into an
//! empty data directory (holding the anchor's lock, so no server runs), records a `restore`
//! entry in the deployment's audit chain, and re-anchors the rollback anchor to the
//! restored databases — the only way besides `atrest anchor reset` to move it back.

use crate::bootstrap::{existing_roots, fingerprint};
use crate::{ServeConfig, ServerError};
use atrest_crypto::SecretKey;
use atrest_infra::db::Db;
use atrest_vault::audit::{Checkpoint, DEPLOYMENT_CHAIN};
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
    /// HMAC-SHA256 (hex) of this manifest serialized with `mac` empty, under a key
    /// derived from the vault's root key: a backup cannot be edited and re-hashed.
    #[serde(default)]
    pub mac: String,
}

impl Manifest {
    fn tag(&self, root: &SecretKey) -> Result<String, ServerError> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        atrest_crypto::kdf::hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"backup-manifest"], &mut k[..])?;
        let key = atrest_crypto::kdf::MacKey::new(&SecretKey::from_slice(&k[..])?);
        let unsigned = Manifest { mac: String::new(), ..self.clone() };
        let bytes = serde_json::to_vec(&unsigned).map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(hex::encode(key.sign(&[&bytes])))
    }
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

/// The two SQLite files of the deployment `cfg` describes; PostgreSQL is refused.
fn db_paths(cfg: &ServeConfig) -> Result<[PathBuf; 2], ServerError> {
    let file = |url: String| {
        crate::anchor::sqlite_file(&url).ok_or_else(|| {
            ServerError::Config(
                "atrest backup, restore and anchor reset cover the embedded default (SQLite); back up PostgreSQL \
                 with pg_dump and the bucket with its own tools, as docs/deployment.md describes"
                    .into(),
            )
        })
    };
    Ok([file(crate::bootstrap::vault_url(cfg))?, file(crate::bootstrap::store_url(cfg))?])
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A consistent copy of the live database at `src` in `dest` (`VACUUM INTO`, through a
/// read-only connection: the live file and its WAL are not touched), synced to disk.
async fn snapshot(src: &Path, dest: &Path) -> Result<(), ServerError> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let fail = |e: sqlx::Error| ServerError::Config(format!("snapshot of {} failed: {e}", src.display()));
    if !src.exists() {
        return Err(ServerError::Config(format!("{} does not exist: nothing to back up", src.display())));
    }
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::new().filename(src).read_only(true).connect().await.map_err(fail)?;
    let r = sqlx::query("VACUUM INTO $1").bind(dest.display().to_string()).execute(&mut conn).await;
    conn.close().await.map_err(fail)?;
    r.map_err(fail)?;
    std::fs::File::open(dest).and_then(|f| f.sync_all()).map_err(io(dest))
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
    let [vault_path, store_path] = db_paths(cfg)?;
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ServerError::Config(format!("{} is not empty: back up into a new directory", to.display())));
    }
    let (roots, root) = fingerprints(cfg)?;
    crate::files::create_private_dir(to)?;
    let created = atrest_infra::clock::Clock::now(&atrest_infra::clock::SystemClock);

    // Files beside the databases that a restored deployment needs (none is a secret in
    // the clear: the TLS private keys are sealed under the root key). The checkpoints
    // file first: every checkpoint in it is then covered by the vault snapshot.
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

    // Store first, then vault: everything the store snapshot needs from the vault exists
    // in the later vault snapshot.
    snapshot(&store_path, &to.join("store.db")).await?;
    snapshot(&vault_path, &to.join("atrest.db")).await?;

    // Then the bodies the store snapshot references.
    let store = Db::connect(&sqlite_url(&to.join("store.db"))).await?;
    // Objects with a body of their own (blobs, S3 objects not made of parts)…
    let singles: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT resource_id, id, generation, name_sealed FROM store_objects o WHERE kind IN ('blob', 's3') \
         AND NOT EXISTS (SELECT 1 FROM store_s3_parts p WHERE p.resource_id = o.resource_id \
         AND p.object_id = o.id AND p.generation = o.generation) ORDER BY resource_id, id",
    )
    .fetch_all(store.pool())
    .await
    .map_err(atrest_vault::VaultError::from)?;
    // …and the parts of multipart uploads, running or completed into an object.
    // (resource, upload, part, body, object, generation)
    type PartLink = (String, String, i64, String, Option<String>, Option<i64>);
    let parts: Vec<PartLink> = sqlx::query_as(
        "SELECT resource_id, upload_id, part, body, object_id, generation FROM store_s3_parts \
         ORDER BY resource_id, upload_id, part",
    )
    .fetch_all(store.pool())
    .await
    .map_err(atrest_vault::VaultError::from)?;
    let mut bodies: Vec<(String, String, BodyOwner)> = singles
        .into_iter()
        .map(|(resource, id, generation, sealed)| {
            let name = atrest_store::blob_key(&id, generation, &sealed);
            (resource, name, BodyOwner::Object(id, generation))
        })
        .collect();
    for (resource, upload, part, body, object, generation) in parts {
        let owner = match (object, generation) {
            (Some(id), Some(generation)) => BodyOwner::Object(id, generation),
            _ => BodyOwner::Part(upload, part),
        };
        bodies.push((resource, body, owner));
    }
    let mut dropped = Vec::new();
    let mut s3_bodies = Vec::new();
    let blob_store = match cfg.blob_store.as_deref() {
        Some(s) if s.starts_with("s3://") => {
            for (resource, name, _) in &bodies {
                s3_bodies.push(format!("{resource}/{name}"));
            }
            atrest_store::blobstore::BlobStore::from_location(s)
                .map_err(|e| ServerError::Config(e.to_string()))?
                .describe()
        }
        other => {
            let dir = other
                .map_or_else(|| cfg.data_dir.join("blobs"), |d| PathBuf::from(d.strip_prefix("file://").unwrap_or(d)));
            for (resource, name, owner) in &bodies {
                let from = dir.join(resource).join(name);
                match std::fs::metadata(&from) {
                    Ok(_) => copy_synced(&from, &to.join("blobs").join(resource).join(name))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        dropped.push(owner.drop_from(&store, resource).await?);
                    }
                    Err(e) => return Err(ServerError::io(&from, e)),
                }
            }
            "directory".to_string()
        }
    };
    let store_seq = store.commit_seq().await.unwrap_or(0);
    store.close().await;

    // Checkpoints of every chain in the snapshot, signed now.
    let vault_db = Db::connect(&sqlite_url(&to.join("atrest.db"))).await?;
    let svc = vault_service(cfg, vault_db.clone(), &root)?;
    let mut checkpoints = Vec::new();
    for chain in svc.audit_chains().await? {
        checkpoints.push(svc.audit_checkpoint(&chain).await?);
    }
    drop(svc);
    // After the checkpoints: the first one creates the signing key in the snapshot.
    let vault_seq = vault_db.commit_seq().await.unwrap_or(0);
    vault_db.close().await;

    let mut files = Vec::new();
    for rel in walk(to)? {
        let (size, sha256) = sha256_file(&to.join(&rel))?;
        files.push(FileEntry { path: rel, size, sha256 });
    }
    let mut manifest = Manifest {
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
        mac: String::new(),
    };
    manifest.mac = manifest.tag(&root)?;
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| ServerError::Config(e.to_string()))?;
    crate::files::write_private(&to.join("manifest.json"), &text)?;
    std::fs::File::open(to).and_then(|d| d.sync_all()).map_err(io(to))?;
    Ok(BackupReport {
        dir: to.to_path_buf(),
        files: manifest.files.len() + 1,
        bytes: manifest.files.iter().map(|f| f.size).sum::<u64>() + text.len() as u64,
        blobs: bodies.len() - dropped.len(),
        dropped,
    })
}

fn vault_service(cfg: &ServeConfig, db: Db, root: &SecretKey) -> Result<atrest_vault::VaultService, ServerError> {
    let backend = crate::bootstrap::key_backend(cfg, root)?;
    Ok(atrest_vault::VaultService::new(db, backend, root, Arc::new(atrest_infra::clock::SystemClock))?)
}

/// Reads and checks a backup: the manifest's format, every file's size and hash, no
/// file missing or added, each a regular file (the manifest's MAC needs the root key:
/// [`restore`] checks it).
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
        let file = from.join(&f.path);
        if std::fs::symlink_metadata(&file).is_ok_and(|m| !m.file_type().is_file()) {
            problems.push(format!("{}: not a regular file", f.path));
            continue;
        }
        match sha256_file(&file) {
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
    let [vault_path, store_path] = db_paths(cfg)?;
    let m = verify(from)?;
    let dir = &cfg.data_dir;
    let blob_dir = match cfg.blob_store.as_deref() {
        Some(s) if s.starts_with("s3://") => None,
        Some(d) => Some(PathBuf::from(d.strip_prefix("file://").unwrap_or(d))),
        None => Some(dir.join("blobs")),
    };
    let _lock = crate::anchor::lock(&cfg.anchor_path())?;
    let mut occupied: Vec<String> = ["admin.token", "tls", "audit"]
        .iter()
        .map(|f| dir.join(f))
        .chain([vault_path.clone(), store_path.clone(), cfg.anchor_path()])
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if let Some(b) = &blob_dir
        && std::fs::read_dir(b).is_ok_and(|mut d| d.next().is_some())
    {
        occupied.push(format!("blob bodies in {}", b.display()));
    }
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
    if !atrest_crypto::secret::constant_time_eq(m.tag(&root)?.as_bytes(), m.mac.as_bytes()) {
        return Err(ServerError::Config(
            "the backup's manifest does not verify under this deployment's root key (edited, or written by \
             another deployment); nothing was restored"
                .into(),
        ));
    }
    for f in &m.files {
        let target = match (f.path.as_str(), f.path.strip_prefix("blobs/"), &blob_dir) {
            ("atrest.db", ..) => vault_path.clone(),
            ("store.db", ..) => store_path.clone(),
            ("root.salt", ..) | (_, Some(_), None) => continue,
            (_, Some(rest), Some(b)) => b.join(rest),
            (p, None, _) => dir.join(p),
        };
        copy_synced(&from.join(&f.path), &target)?;
    }

    // The restored databases must be the ones the manifest describes, their chains the
    // ones it signed.
    let vault_db = Db::connect(&sqlite_url(&vault_path)).await?;
    let store_db = Db::connect(&sqlite_url(&store_path)).await?;
    let svc = vault_service(cfg, vault_db.clone(), &root)?;
    let result = async {
        let seqs = [vault_db.commit_seq().await.unwrap_or(0), store_db.commit_seq().await.unwrap_or(0)];
        if seqs != m.commit_seq {
            return Err(ServerError::Config(format!(
                "the restored databases are at commits {seqs:?}, the manifest says {:?}: not this backup's databases",
                m.commit_seq
            )));
        }
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
        let (_, now) = crate::anchor::reset(&cfg.anchor_path(), &root, &vault_db, &store_db, &_lock).await?;
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
    let [vault_path, store_path] = db_paths(cfg)?;
    for p in [&vault_path, &store_path] {
        if !p.exists() {
            return Err(ServerError::Config(format!("{} does not exist: there is nothing to accept", p.display())));
        }
    }
    let lock = crate::anchor::lock(&cfg.anchor_path())?;
    let (root, _) = existing_roots(cfg)?;
    let vault_db = Db::connect(&sqlite_url(&vault_path)).await?;
    let store_db = Db::connect(&sqlite_url(&store_path)).await?;
    let svc = vault_service(cfg, vault_db.clone(), &root)?;
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
        crate::anchor::reset(&cfg.anchor_path(), &root, &vault_db, &store_db, &lock).await
    }
    .await;
    drop(svc);
    store_db.close().await;
    vault_db.close().await;
    result
}

/// What a body missing from a backup takes out of the snapshot: its object (with any
/// part rows), or one part of an upload in progress.
enum BodyOwner {
    Object(String, i64),
    Part(String, i64),
}

impl BodyOwner {
    /// Removes it from the snapshot; returns what to report.
    async fn drop_from(&self, store: &Db, resource: &str) -> Result<String, ServerError> {
        let run = |sql: &'static str| sqlx::query(sql).bind(resource.to_string());
        let done = match self {
            BodyOwner::Object(id, generation) => {
                run("DELETE FROM store_objects WHERE resource_id = $1 AND id = $2 AND generation = $3")
                    .bind(id.clone())
                    .bind(*generation)
                    .execute(store.pool())
                    .await
                    .and(
                        run("DELETE FROM store_s3_parts WHERE resource_id = $1 AND object_id = $2 AND generation = $3")
                            .bind(id.clone())
                            .bind(*generation)
                            .execute(store.pool())
                            .await,
                    )
                    .map(|_| format!("{resource}/{id}"))
            }
            BodyOwner::Part(upload, part) => {
                run("DELETE FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND part = $3")
                    .bind(upload.clone())
                    .bind(*part)
                    .execute(store.pool())
                    .await
                    .map(|_| format!("{resource}/upload {upload} part {part}"))
            }
        };
        done.map_err(|e| atrest_vault::VaultError::from(e).into())
    }
}
