//! A SQLite reader thread: the hot read of a request (its authorization snapshot) runs
//! on a thread of its own over a read-only connection with cached prepared statements,
//! handed over once per request. Under load the thread takes read after read without
//! sleeping, where sqlx's per-connection worker wakes and sleeps for every statement
//! (about four context switches each, measured: `docs/performance.md`). Reads see every
//! commit finished before they start (WAL), as reads through the pool do.

use crate::error::{InfraError, Result};
use std::path::Path;

type Job = Box<dyn FnOnce(&rusqlite::Connection) + Send>;

/// A pool of reader threads over one SQLite file.
#[derive(Debug)]
pub struct Reader {
    jobs: flume::Sender<Job>,
    threads: usize,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The file a connection has open, as (device, inode): a file replaced under the server
/// (a restore, or a copy put back) is a new inode, and the reader opens it again.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn connect(path: &Path) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|e| InfraError::Storage(format!("cannot open {} for reading: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| InfraError::Storage(format!("cannot set the busy timeout: {e}")))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

impl Reader {
    /// Opens `threads` read-only connections to `path` (an existing database in WAL mode),
    /// each on a thread of its own; they end when the reader is dropped.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, threads: usize) -> Result<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = threads.max(1);
        for i in 0..threads {
            let mut conn = connect(path)?;
            let mut opened = identity(path);
            let (queue, closed, path) = (queue.clone(), closed.clone(), path.to_path_buf());
            std::thread::Builder::new()
                .name(format!("atrest-sqlite-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        if closed.load(std::sync::atomic::Ordering::Acquire) {
                            break;
                        }
                        let now = identity(&path);
                        if now != opened
                            && let Ok(c) = connect(&path)
                        {
                            (conn, opened) = (c, now);
                        }
                        // A job that panics fails alone (its caller sees the reader gone);
                        // the thread goes on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
                    }
                })
                .map_err(|e| InfraError::Storage(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(Self { jobs, threads, closed })
    }

    /// Stops the threads and closes their connections (a database closed at shutdown
    /// leaves nothing open on its file); later reads fail.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        for _ in 0..self.threads {
            let _ = self.jobs.send(Box::new(|_| {}));
        }
    }

    /// Runs `f` on a reader thread; its result comes back once it is done.
    ///
    /// # Errors
    /// The reader threads are gone (never while the reader lives), or `f`'s error.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(InfraError::Storage("the database is closed".into()));
        }
        let (done, result) = flume::bounded(1);
        let job: Job = Box::new(move |conn| {
            let _ = done.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| InfraError::Storage("the SQLite reader stopped".into()))?;
        result.recv_async().await.map_err(|_| InfraError::Storage("the SQLite reader stopped".into()))?
    }
}

/// A `rusqlite` error as a storage error.
pub fn storage(e: &rusqlite::Error) -> InfraError {
    InfraError::Storage(format!("database error: {e}"))
}

#[cfg(test)]
mod tests {
    use crate::columns::{Columns, SqliteRow, column_index};

    /// A row read on the reader thread reads as it does through the pool, NULLs and
    /// bytes included, and sees a commit made through the pool just before.
    #[tokio::test]
    async fn the_reader_sees_what_the_pool_committed() {
        let dir = std::env::temp_dir().join(format!("atrest-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let db = crate::db::Db::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, b BYTEA)").execute(db.pool()).await.unwrap();
        sqlx::query("INSERT INTO t (id, n, b) VALUES ('a', NULL, $1)")
            .bind(vec![0u8, 1, 2])
            .execute(db.pool())
            .await
            .unwrap();
        let reader = db.reader().expect("a file database has a reader");
        let read = |id: &'static str| {
            reader.run(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT id, n, b FROM t WHERE id = $1").map_err(|e| super::storage(&e))?;
                let index = column_index(&stmt);
                let mut rows = stmt.query([id]).map_err(|e| super::storage(&e))?;
                let Some(row) = rows.next().map_err(|e| super::storage(&e))? else { return Ok(None) };
                let r = SqliteRow::new(row, &index);
                Ok(Some((r.text("", "id")?, r.opt_int("", "n")?, r.bytes("", "b")?)))
            })
        };
        assert_eq!(read("a").await.unwrap(), Some(("a".into(), None, vec![0, 1, 2])));
        sqlx::query("INSERT INTO t (id, n, b) VALUES ('b', 7, $1)").bind(vec![9u8]).execute(db.pool()).await.unwrap();
        assert_eq!(read("b").await.unwrap(), Some(("b".into(), Some(7), vec![9])));
        let pooled = sqlx::query("SELECT id, n, b FROM t WHERE id = 'b'").fetch_one(db.pool()).await.unwrap();
        assert_eq!((pooled.text("", "id").unwrap(), pooled.opt_int("", "n").unwrap()), ("b".into(), Some(7)));
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
