//! The rollback anchor of the embedded default. Each SQLite database carries a commit
//! sequence that every row change bumps in the same transaction
//! ([`atrest_vault::db::Db::install_commit_seq`]). Before a request's answer leaves, the
//! sequences of both databases are recorded durably in a file outside them: commit, then
//! anchor, then acknowledge. Concurrent requests share one anchor write and one
//! `fdatasync` (the first to take the lock records the latest sequences, which cover the
//! others). At start a database whose sequence is below the anchor has lost
//! acknowledged commits — a write-ahead log that lost frames, an old copy put back — and
//! the server refuses to serve it; only `atrest restore` or `atrest anchor reset` (both
//! audited) move the anchor back.
//!
//! The file holds two 64-byte slots written alternately, so a torn write leaves the
//! other slot intact: `ATRANC01`, a write counter, the vault's and the store's sequence
//! (little-endian), and an HMAC-SHA256 of those 32 bytes under a root-derived key (so the
//! anchor cannot be lowered without the root key; deleting it is caught, see
//! [`Anchor::open`]). PostgreSQL deployments have no anchor (see `docs/deployment.md`).

use crate::ServerError;
use atrest_crypto::SecretKey;
use atrest_crypto::kdf::{MacKey, hkdf_sha256};
use atrest_vault::db::{Db, Engine};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const MAGIC: &[u8; 8] = b"ATRANC01";
const SLOT: usize = 64;
const NAMES: [&str; 2] = ["vault database", "data-service database"];

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
}

/// One decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    counter: u64,
    seqs: [i64; 2],
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
    let tag = mac.sign(&[&b[..32]]);
    b[32..].copy_from_slice(&tag);
    b
}

fn decode(mac: &MacKey, b: &[u8]) -> Option<Slot> {
    if b.len() < SLOT || &b[..8] != MAGIC || mac.verify(&[&b[..32]], &b[32..SLOT]).is_err() {
        return None;
    }
    let n = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(&b[r]).ok();
    Some(Slot {
        counter: u64::from_le_bytes(n(8..16)?),
        seqs: [i64::from_le_bytes(n(16..24)?), i64::from_le_bytes(n(24..32)?)],
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

impl Anchor {
    /// No anchor (PostgreSQL, or tests that do not want one).
    #[must_use]
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Installs the commit sequences, checks them against the anchor at `path` and
    /// records the current ones. Refuses (with what was found and how to proceed) a
    /// database below the anchor, an anchor that does not verify, and a missing anchor
    /// beside a database that already had a sequence with commits.
    ///
    /// # Errors
    /// The checks above; database and file errors.
    pub async fn open(path: &Path, root: &SecretKey, vault: &Db, store: &Db) -> Result<Self, ServerError> {
        let mut dbs: [Option<Db>; 2] = [None, None];
        let mut had_history = false;
        for (i, db) in [vault, store].into_iter().enumerate() {
            if db.engine() == Engine::Sqlite {
                let created = db.install_commit_seq().await?;
                had_history |= !created && db.commit_seq().await? > 0;
                dbs[i] = Some(db.clone());
            }
        }
        if dbs.iter().all(Option::is_none) {
            return Ok(Self::disabled());
        }
        let mac = mac_key(root)?;
        let now = seqs(&dbs).await?;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ServerError::io(path, e)),
        };
        let last = newest(&mac, &bytes).map_err(|()| unverified(path))?;
        match last {
            None if had_history => return Err(missing(path)),
            Some(last) => check(path, last.seqs, now)?,
            None => {}
        }
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| ServerError::io(path, e))?;
        let counter = last.map_or(0, |s| s.counter) + 1;
        write_slot(&file, &mac, Slot { counter, seqs: now }).map_err(|e| ServerError::io(path, e))?;
        Ok(Self {
            inner: Some(Inner {
                path: path.to_path_buf(),
                file: Arc::new(file),
                mac: Arc::new(mac),
                dbs,
                anchored: [AtomicI64::new(now[0]), AtomicI64::new(now[1])],
                counter: tokio::sync::Mutex::new(counter),
                rolled_back: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Records the databases' current sequences, durably, unless already covered: call
    /// after a request's writes commit and before its answer leaves.
    ///
    /// # Errors
    /// Database or file errors (the writes are committed; the answer must not say so).
    pub async fn sync(&self) -> Result<(), ServerError> {
        let Some(a) = &self.inner else { return Ok(()) };
        let covered = |s: [i64; 2]| (0..2).all(|i| s[i] <= a.anchored[i].load(Ordering::Acquire));
        if let Some(why) = a.rolled_back.get() {
            return Err(ServerError::Rollback(why.clone()));
        }
        let wanted = seqs(&a.dbs).await?;
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
        // Under the lock the anchor cannot move: a sequence below it is a database that
        // went back under the server, never a stale read, and must not lower the anchor.
        let anchored = [a.anchored[0].load(Ordering::Acquire), a.anchored[1].load(Ordering::Acquire)];
        if let Err(e) = check(&a.path, anchored, latest) {
            let _ = a.rolled_back.set(e.to_string());
            return Err(e);
        }
        let slot = Slot { counter: *counter + 1, seqs: latest };
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

    /// The check of [`Self::open`] while serving (the server runs it every few seconds):
    /// a database whose sequence is now below the anchor went back under the running
    /// server (its file replaced); from then on every answer is withheld (503) and the
    /// error says what was found.
    ///
    /// # Errors
    /// The rollback (also kept for every later request); database errors.
    pub async fn watch(&self) -> Result<(), ServerError> {
        let Some(a) = &self.inner else { return Ok(()) };
        // Under the lock the anchor cannot move, so a lower sequence is not a stale read.
        let _held = a.counter.lock().await;
        let now = seqs(&a.dbs).await?;
        let anchored = [a.anchored[0].load(Ordering::Acquire), a.anchored[1].load(Ordering::Acquire)];
        if let Err(e) = check(&a.path, anchored, now) {
            let _ = a.rolled_back.set(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// What [`Self::watch`] found, once a database went back while serving.
    #[must_use]
    pub fn rolled_back(&self) -> Option<&str> {
        self.inner.as_ref().and_then(|a| a.rolled_back.get()).map(String::as_str)
    }

    /// Whether the anchor is in use.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }
}

/// The commit sequence of the SQLite database at `url`, read through a read-only
/// connection (no write, no checkpoint on close); `None` for PostgreSQL, a file that
/// does not exist yet, or a database from before the sequence.
async fn read_only_seq(url: &str) -> Result<Option<i64>, ServerError> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let Some(rest) = url.strip_prefix("sqlite://") else { return Ok(None) };
    let path = rest.split('?').next().unwrap_or(rest);
    if !Path::new(path).exists() {
        return Ok(None);
    }
    let fail = |e: sqlx::Error| ServerError::Config(format!("cannot read {path} to check it against the anchor: {e}"));
    let mut conn =
        sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true).connect().await.map_err(fail)?;
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

/// The check of [`Anchor::open`] made before the databases are opened for writing, so a
/// refused database is left exactly as found (its WAL included) for the operator.
///
/// # Errors
/// As [`Anchor::open`]'s checks.
pub async fn precheck(path: &Path, root: &SecretKey, urls: [&str; 2]) -> Result<(), ServerError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ServerError::io(path, e)),
    };
    let now = [read_only_seq(urls[0]).await?, read_only_seq(urls[1]).await?];
    if now.iter().all(Option::is_none) {
        return Ok(());
    }
    let last = newest(&mac_key(root)?, &bytes).map_err(|()| unverified(path))?;
    match last {
        None if now.iter().flatten().any(|s| *s > 0) => Err(missing(path)),
        None => Ok(()),
        Some(last) => check(path, last.seqs, [now[0].unwrap_or(0), now[1].unwrap_or(0)]),
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

/// Sets the anchor at `path` to the databases' current sequences whatever it held,
/// for `atrest restore` and `atrest anchor reset`; returns (previous, new) sequences.
///
/// # Errors
/// Database and file errors.
pub async fn reset(
    path: &Path,
    root: &SecretKey,
    vault: &Db,
    store: &Db,
) -> Result<(Option<[i64; 2]>, [i64; 2]), ServerError> {
    let mut dbs: [Option<Db>; 2] = [None, None];
    for (i, db) in [vault, store].into_iter().enumerate() {
        if db.engine() == Engine::Sqlite {
            db.install_commit_seq().await?;
            dbs[i] = Some(db.clone());
        }
    }
    let mac = mac_key(root)?;
    let now = seqs(&dbs).await?;
    let previous = std::fs::read(path).ok().and_then(|b| newest(&mac, &b).ok().flatten());
    if let Some(dir) = path.parent() {
        crate::files::create_private_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| ServerError::io(path, e))?;
    write_slot(&file, &mac, Slot { counter: previous.map_or(0, |s| s.counter) + 1, seqs: now })
        .map_err(|e| ServerError::io(path, e))?;
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
        let a = encode(&mac, Slot { counter: 4, seqs: [10, 20] });
        let mut b = encode(&mac, Slot { counter: 5, seqs: [11, 21] });
        let file: Vec<u8> = b.iter().chain(a.iter()).copied().collect();
        assert_eq!(newest(&mac, &file), Ok(Some(Slot { counter: 5, seqs: [11, 21] })));
        b[20] ^= 1; // a torn or edited slot
        let file: Vec<u8> = b.iter().chain(a.iter()).copied().collect();
        assert_eq!(newest(&mac, &file), Ok(Some(Slot { counter: 4, seqs: [10, 20] })));
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
}
