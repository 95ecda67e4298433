//! The rollback anchor of the embedded default. Each SQLite database carries a commit
//! sequence that every row change bumps in the same transaction
//! ([`atrest_infra::db::Db::install_commit_seq`]). Before a request's answer leaves, the
//! sequences of both databases are recorded durably in a file outside them: commit, then
//! anchor, then acknowledge. Concurrent requests share one anchor write and one
//! `fdatasync` (the first to take the lock records the latest sequences, which cover the
//! others). At start a database whose sequence is below the anchor has lost
//! acknowledged commits — a write-ahead log that lost frames, an old copy put back — and
//! the server refuses to serve it; only `atrest restore` or `atrest anchor reset` (both
//! audited) move the anchor back. A rollback seen while serving trips the anchor: every
//! later answer is withheld and the next start refuses until one of those two commands.
//!
//! The file holds two 72-byte slots written alternately, so a torn write leaves the
//! other slot intact: `ATRANC01`, a write counter, the vault's and the store's sequence,
//! flags (bit 0: tripped), little-endian, and an HMAC-SHA256 of those 40 bytes under a
//! root-derived key (so the anchor cannot be lowered without the root key; deleting it is
//! caught, see [`precheck`]). A new or reset anchor is written to a temporary file and
//! renamed into place. `<anchor>.lock` is held (an exclusive lock) by the one process
//! that may write the anchor: a server, `atrest restore`, `atrest anchor reset`.
//! PostgreSQL deployments have no anchor (see `docs/deployment.md`).

use crate::ServerError;
use atrest_crypto::SecretKey;
use atrest_crypto::kdf::{MacKey, hkdf_sha256};
use atrest_infra::db::{Db, Engine};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const MAGIC: &[u8; 8] = b"ATRANC01";
const SLOT: usize = 72;
const SIGNED: usize = 40;
const TRIPPED: u64 = 1;
const NAMES: [&str; 2] = ["vault database", "data-service database"];

/// What a client is told when a rollback stops the server (the details, which name
/// files and sequences, go to the log and to the operator's commands).
pub const PUBLIC_ROLLBACK: &str = "the server's database is older than what it acknowledged (rollback detected): it \
                                   answers nothing until the operator restores a backup or accepts the state; see \
                                   the server log";

/// The anchor; a no-op when neither database is SQLite.
pub struct Anchor {
    inner: Option<Inner>,
}

struct Inner {
    path: PathBuf,
    file: Arc<std::fs::File>,
    mac: Arc<MacKey>,
    dbs: [Option<Db>; 2],
    anchored: [AtomicI64; 2],
    /// The write counter of the last slot written; held while writing.
    counter: tokio::sync::Mutex<u64>,
    /// Set once a rollback is seen while serving.
    rolled_back: std::sync::OnceLock<String>,
    /// The exclusive lock on `<anchor>.lock`, held while the anchor is in use.
    lock: std::sync::Mutex<Option<AnchorLock>>,
}

/// The exclusive lock on `<anchor>.lock`; released when dropped.
#[derive(Debug)]
pub struct AnchorLock(#[allow(dead_code)] std::fs::File);

/// Takes the anchor's lock, or says that another process holds it.
///
/// # Errors
/// Another process holds it; file errors.
pub fn lock(path: &Path) -> Result<AnchorLock, ServerError> {
    let lock_path = lock_path(path);
    if let Some(dir) = path.parent() {
        crate::files::create_private_dir(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| ServerError::io(&lock_path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(AnchorLock(f)),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::Config(format!(
            "another atrest process (a server, restore or anchor reset) holds {}: one process at a time may use \
             this data directory's databases; stop it first",
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(ServerError::io(&lock_path, e)),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// One decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    counter: u64,
    seqs: [i64; 2],
    flags: u64,
}

fn mac_key(root: &SecretKey) -> Result<MacKey, ServerError> {
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    hkdf_sha256(root.expose_secret(), b"atrest/v1/root", &[b"rollback-anchor"], &mut k[..])?;
    Ok(MacKey::new(&SecretKey::from_slice(&k[..])?))
}

fn encode(mac: &MacKey, slot: Slot) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&slot.counter.to_le_bytes());
    b[16..24].copy_from_slice(&slot.seqs[0].to_le_bytes());
    b[24..32].copy_from_slice(&slot.seqs[1].to_le_bytes());
    b[32..40].copy_from_slice(&slot.flags.to_le_bytes());
    let tag = mac.sign(&[&b[..SIGNED]]);
    b[SIGNED..].copy_from_slice(&tag);
    b
}

fn decode(mac: &MacKey, b: &[u8]) -> Option<Slot> {
    if b.len() < SLOT || &b[..8] != MAGIC || mac.verify(&[&b[..SIGNED]], &b[SIGNED..SLOT]).is_err() {
        return None;
    }
    let n = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(&b[r]).ok();
    Some(Slot {
        counter: u64::from_le_bytes(n(8..16)?),
        seqs: [i64::from_le_bytes(n(16..24)?), i64::from_le_bytes(n(24..32)?)],
        flags: u64::from_le_bytes(n(32..40)?),
    })
}

/// The newest valid slot of the file's bytes; `Err` when the file has bytes but no valid
/// slot (damaged, or written under another root key).
fn newest(mac: &MacKey, bytes: &[u8]) -> Result<Option<Slot>, ()> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let slots = bytes.chunks(SLOT).take(2).filter_map(|c| decode(mac, c));
    slots.max_by_key(|s| s.counter).map(Some).ok_or(())
}

fn write_slot(file: &std::fs::File, mac: &MacKey, slot: Slot) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let offset = (slot.counter % 2) * SLOT as u64;
    file.write_all_at(&encode(mac, slot), offset)?;
    file.sync_data()
}

/// Writes a fresh anchor holding `slot` through a temporary file renamed into place (and
/// the directory synced), so a crash leaves the old file or the new one, never a torn or
/// empty one; returns the open file.
fn replace_file(path: &Path, mac: &MacKey, slot: Slot) -> Result<std::fs::File, ServerError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::files::create_private_dir(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| ServerError::io(&tmp, e))?;
    write_slot(&file, mac, slot).map_err(|e| ServerError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ServerError::io(path, e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ServerError::io(dir, e))?;
    Ok(file)
}

fn read_anchor(path: &Path) -> Result<Vec<u8>, ServerError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ServerError::io(path, e)),
    }
}

async fn seqs(dbs: &[Option<Db>; 2]) -> Result<[i64; 2], ServerError> {
    let read = |d: &Option<Db>| {
        let d = d.clone();
        async move {
            match d {
                Some(d) => d.commit_seq().await,
                None => Ok(0),
            }
        }
    };
    let (a, b) = tokio::join!(read(&dbs[0]), read(&dbs[1]));
    Ok([a?, b?])
}

async fn sqlite_dbs(vault: &Db, store: &Db) -> Result<[Option<Db>; 2], ServerError> {
    let mut dbs: [Option<Db>; 2] = [None, None];
    for (i, db) in [vault, store].into_iter().enumerate() {
        if db.engine() == Engine::Sqlite {
            db.install_commit_seq().await?;
            dbs[i] = Some(db.clone());
        }
    }
    Ok(dbs)
}

impl Anchor {
    /// No anchor (PostgreSQL, or the benchmark that measures its cost).
    #[must_use]
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// After [`precheck`] (which took `lock` and checked the databases before anything
    /// wrote): installs the commit sequences and records the current ones.
    ///
    /// # Errors
    /// Database and file errors.
    pub async fn open(
        path: &Path,
        root: &SecretKey,
        vault: &Db,
        store: &Db,
        lock: AnchorLock,
    ) -> Result<Self, ServerError> {
        let dbs = sqlite_dbs(vault, store).await?;
        if dbs.iter().all(Option::is_none) {
            return Ok(Self::disabled());
        }
        let mac = mac_key(root)?;
        let now = seqs(&dbs).await?;
        // `precheck` refused a damaged anchor; a missing one is created here.
        let last = newest(&mac, &read_anchor(path)?).map_err(|()| unverified(path))?;
        let counter = last.map_or(0, |s| s.counter) + 1;
        let slot = Slot { counter, seqs: now, flags: 0 };
        let file = if last.is_some() {
            let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| ServerError::io(path, e))?;
            write_slot(&file, &mac, slot).map_err(|e| ServerError::io(path, e))?;
            file
        } else {
            replace_file(path, &mac, slot)?
        };
        Ok(Self {
            inner: Some(Inner {
                path: path.to_path_buf(),
                file: Arc::new(file),
                mac: Arc::new(mac),
                dbs,
                anchored: [AtomicI64::new(now[0]), AtomicI64::new(now[1])],
                counter: tokio::sync::Mutex::new(counter),
                rolled_back: std::sync::OnceLock::new(),
                lock: std::sync::Mutex::new(Some(lock)),
            }),
        })
    }

    /// Makes sure the anchor covers commit sequences `needed` (vault, data service) — what a
    /// request is known to have committed — reading the databases only when it does not
    /// yet: call after a request's writes commit and before its answer leaves.
    ///
    /// # Errors
    /// Database or file errors (the writes are committed; the answer must not say so);
    /// `Rollback` once a database went back under the server.
    pub async fn sync_to(&self, needed: [i64; 2]) -> Result<(), ServerError> {
        self.sync_with(Some(needed)).await
    }

    /// Brings the anchor up to date with everything committed by now (read from both
    /// databases): what a request committed, when it is not known from elsewhere.
    ///
    /// # Errors
    /// `Rollback`; database and file errors.
    pub async fn sync(&self) -> Result<(), ServerError> {
        self.sync_with(None).await
    }

    /// Covers `needed` (or, if not known, what the databases say is committed now).
    async fn sync_with(&self, needed: Option<[i64; 2]>) -> Result<(), ServerError> {
        let Some(a) = &self.inner else { return Ok(()) };
        if let Some(why) = a.rolled_back.get() {
            return Err(ServerError::Rollback(why.clone()));
        }
        let covered = |s: [i64; 2]| (0..2).all(|i| s[i] <= a.anchored[i].load(Ordering::Acquire));
        let wanted = match needed {
            Some(n) => n,
            None => seqs(&a.dbs).await?,
        };
        if covered(wanted) {
            return Ok(());
        }
        let mut counter = a.counter.lock().await;
        if covered(wanted) {
            return Ok(()); // a write that started after ours committed covered it
        }
        // Everything committed by now, this request's writes and those of the requests
        // queued behind the lock, goes in one write.
        let latest = seqs(&a.dbs).await?;
        a.check_live(&mut counter, latest).await?;
        let slot = Slot { counter: *counter + 1, seqs: latest, flags: 0 };
        let (file, mac) = (a.file.clone(), a.mac.clone());
        tokio::task::spawn_blocking(move || write_slot(&file, &mac, slot))
            .await
            .map_err(|e| ServerError::Config(format!("the anchor writer failed: {e}")))?
            .map_err(|e| ServerError::io(&a.path, e))?;
        *counter = slot.counter;
        for (i, s) in latest.iter().enumerate() {
            a.anchored[i].store(*s, Ordering::Release);
        }
        Ok(())
    }

    /// The check of [`precheck`] while serving (the server runs it every few seconds; the
    /// write path runs it too): a database whose sequence is below the anchor went back
    /// under the running server (its file replaced). The anchor is tripped — it keeps
    /// its sequences and the next start refuses until `atrest restore` or `atrest anchor
    /// reset` — and every later answer is withheld.
    ///
    /// # Errors
    /// `Rollback` (also for every later request); database and file errors.
    pub async fn watch(&self) -> Result<(), ServerError> {
        let Some(a) = &self.inner else { return Ok(()) };
        let mut counter = a.counter.lock().await;
        let now = seqs(&a.dbs).await?;
        a.check_live(&mut counter, now).await
    }

    /// What [`Self::watch`] found, once a database went back while serving.
    #[must_use]
    pub fn rolled_back(&self) -> Option<&str> {
        self.inner.as_ref().and_then(|a| a.rolled_back.get()).map(String::as_str)
    }

    /// Releases the anchor's lock (at shutdown, after the last [`Self::sync`]), so the
    /// next process can take it at once.
    pub fn release(&self) {
        if let Some(a) = &self.inner {
            drop(a.lock.lock().map(|mut l| l.take()));
        }
    }

    /// Whether the anchor is in use.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }
}

impl Inner {
    /// Under the anchor's lock (`counter`), where the anchor cannot move: a sequence below
    /// it is a database that went back, never a stale read.
    async fn check_live(&self, counter: &mut u64, now: [i64; 2]) -> Result<(), ServerError> {
        if let Some(why) = self.rolled_back.get() {
            return Err(ServerError::Rollback(why.clone()));
        }
        let anchored = [self.anchored[0].load(Ordering::Acquire), self.anchored[1].load(Ordering::Acquire)];
        let Err(e) = check(&self.path, anchored, now) else { return Ok(()) };
        tracing::error!(error = %e, "a database went back under the running server; every answer is withheld");
        let _ = self.rolled_back.set(e.to_string());
        let slot = Slot { counter: *counter + 1, seqs: anchored, flags: TRIPPED };
        let (file, mac) = (self.file.clone(), self.mac.clone());
        match tokio::task::spawn_blocking(move || write_slot(&file, &mac, slot)).await {
            Ok(Ok(())) => *counter = slot.counter,
            _ => tracing::error!(anchor = %self.path.display(), "could not record the rollback in the anchor"),
        }
        Err(e)
    }
}

/// The SQLite file a database URL names; `None` for PostgreSQL and in-memory databases.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    use std::str::FromStr as _;
    if !url.starts_with("sqlite:") || url.contains(":memory:") {
        return None;
    }
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(opts.get_filename().to_path_buf())
}

/// The commit sequence of the SQLite database at `url`, read through a read-only
/// connection (no write, no checkpoint on close); `None` for PostgreSQL, a file that
/// does not exist yet, or a database from before the sequence.
async fn read_only_seq(url: &str) -> Result<Option<i64>, ServerError> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let Some(path) = sqlite_file(url) else { return Ok(None) };
    if !path.exists() {
        return Ok(None);
    }
    let fail = |e: sqlx::Error| {
        ServerError::Config(format!("cannot read {} to check it against the anchor: {e}", path.display()))
    };
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true).connect().await.map_err(fail)?;
    let seq: Option<i64> = match sqlx::query_scalar::<_, String>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'atrest_commit_seq'",
    )
    .fetch_optional(&mut conn)
    .await
    .map_err(fail)?
    {
        Some(_) => sqlx::query_scalar("SELECT seq FROM atrest_commit_seq WHERE id = 1")
            .fetch_optional(&mut conn)
            .await
            .map_err(fail)?,
        None => None,
    };
    conn.close().await.map_err(fail)?;
    Ok(seq)
}

/// Takes the anchor's lock and checks the databases against the anchor before they are
/// opened for writing, so a refused database is left exactly as found (its WAL
/// included) for the operator. Refuses (with what was found and how to proceed) a
/// database below the anchor, a tripped anchor, an anchor that does not verify, and a
/// missing anchor beside databases that have commits. `None` when neither database is
/// SQLite (no anchor).
///
/// # Errors
/// The refusals above; another process holding the lock; file errors.
pub async fn precheck(path: &Path, root: &SecretKey, urls: [&str; 2]) -> Result<Option<AnchorLock>, ServerError> {
    if urls.iter().all(|u| sqlite_file(u).is_none()) {
        return Ok(None);
    }
    let lock = lock(path)?;
    let now = [read_only_seq(urls[0]).await?, read_only_seq(urls[1]).await?];
    let bytes = read_anchor(path)?;
    if now.iter().all(Option::is_none) && bytes.is_empty() {
        return Ok(Some(lock));
    }
    let last = newest(&mac_key(root)?, &bytes).map_err(|()| unverified(path))?;
    match last {
        None if now.iter().flatten().any(|s| *s > 0) => Err(missing(path)),
        None => Ok(Some(lock)),
        Some(last) if last.flags & TRIPPED != 0 => Err(ServerError::Rollback(format!(
            "rollback detected while serving: a database went back under the running server (anchor {}, at \
             commits {} and {}). Nothing was served since. Restore the latest backup with `atrest restore`, or \
             accept the databases as they are with `atrest anchor reset` (recorded in the audit trail)",
            path.display(),
            last.seqs[0],
            last.seqs[1]
        ))),
        Some(last) => {
            check(path, last.seqs, [now[0].unwrap_or(0), now[1].unwrap_or(0)])?;
            Ok(Some(lock))
        }
    }
}

fn unverified(path: &Path) -> ServerError {
    ServerError::Config(format!(
        "the rollback anchor {} does not verify under this root key (damaged, or from another deployment): \
         nothing was served. Put back this deployment's anchor file, or restore a backup with `atrest restore`; \
         `atrest anchor reset` accepts the databases as they are (audited)",
        path.display()
    ))
}

fn missing(path: &Path) -> ServerError {
    ServerError::Config(format!(
        "the rollback anchor {} is missing, but the databases have recorded commits: a data directory copied \
         without it, or the anchor deleted. Nothing was served. Put the anchor file back (`--anchor-file` if it \
         lives elsewhere), restore a backup with `atrest restore`, or accept the databases as they are with \
         `atrest anchor reset` (audited)",
        path.display()
    ))
}

fn check(path: &Path, anchored: [i64; 2], now: [i64; 2]) -> Result<(), ServerError> {
    for i in 0..2 {
        if now[i] < anchored[i] {
            return Err(ServerError::Rollback(format!(
                "rollback detected: the {} is at commit {} but this deployment acknowledged commit {} (anchor {}): \
                 {} acknowledged commits are missing — a write-ahead log that lost frames, an older copy put \
                 back, or changes undone by hand. Nothing was served. Restore the latest backup with \
                 `atrest restore`, or accept the loss and serve this older state with `atrest anchor reset` \
                 (recorded in the audit trail)",
                NAMES[i],
                now[i],
                anchored[i],
                path.display(),
                anchored[i] - now[i]
            )));
        }
    }
    Ok(())
}

/// Sets the anchor at `path` to the databases' current sequences whatever it held (and
/// clears a trip), for `atrest restore` and `atrest anchor reset`, which hold `_lock`;
/// returns (previous, new) sequences.
///
/// # Errors
/// Database and file errors.
pub async fn reset(
    path: &Path,
    root: &SecretKey,
    vault: &Db,
    store: &Db,
    _lock: &AnchorLock,
) -> Result<(Option<[i64; 2]>, [i64; 2]), ServerError> {
    let dbs = sqlite_dbs(vault, store).await?;
    let mac = mac_key(root)?;
    let now = seqs(&dbs).await?;
    let previous = newest(&mac, &read_anchor(path)?).ok().flatten();
    replace_file(path, &mac, Slot { counter: previous.map_or(0, |s| s.counter) + 1, seqs: now, flags: 0 })?;
    Ok((previous.map(|s| s.seqs), now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MacKey {
        mac_key(&SecretKey::from_slice(&[7u8; 32]).unwrap()).unwrap()
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_one_is_skipped() {
        let mac = key();
        let a = encode(&mac, Slot { counter: 4, seqs: [10, 20], flags: 0 });
        let mut b = encode(&mac, Slot { counter: 5, seqs: [11, 21], flags: TRIPPED });
        let file: Vec<u8> = b.iter().chain(a.iter()).copied().collect();
        assert_eq!(newest(&mac, &file), Ok(Some(Slot { counter: 5, seqs: [11, 21], flags: TRIPPED })));
        b[20] ^= 1; // a torn or edited slot
        let file: Vec<u8> = b.iter().chain(a.iter()).copied().collect();
        assert_eq!(newest(&mac, &file), Ok(Some(Slot { counter: 4, seqs: [10, 20], flags: 0 })));
        let other = mac_key(&SecretKey::from_slice(&[8u8; 32]).unwrap()).unwrap();
        assert_eq!(newest(&other, &file), Err(()), "another root's anchor does not verify");
        assert_eq!(newest(&mac, &[]), Ok(None));
    }

    #[test]
    fn a_database_below_the_anchor_is_refused() {
        let p = Path::new("anchor");
        assert!(check(p, [5, 7], [5, 7]).is_ok());
        assert!(check(p, [5, 7], [9, 8]).is_ok());
        let e = check(p, [5, 7], [5, 6]).unwrap_err().to_string();
        assert!(e.contains("data-service database is at commit 6") && e.contains("1 acknowledged"), "{e}");
    }

    #[test]
    fn sqlite_urls_name_their_files() {
        assert_eq!(sqlite_file("sqlite:///var/a.db?mode=rwc"), Some(PathBuf::from("/var/a.db")));
        assert_eq!(sqlite_file("sqlite:rel/b.db"), Some(PathBuf::from("rel/b.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }

    #[test]
    fn one_process_holds_the_lock() {
        let dir = std::env::temp_dir().join(format!("atrest-anchor-lock-{}", std::process::id()));
        let path = dir.join("anchor");
        let held = lock(&path).unwrap();
        assert!(lock(&path).unwrap_err().to_string().contains("another atrest process"));
        drop(held);
        lock(&path).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
