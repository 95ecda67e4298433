//! The database seam: one sqlx `AnyPool`, SQLite (embedded default) or PostgreSQL, with
//! runtime (not compile-time-checked) queries in SQL both accept: `$N` placeholders,
//! `TEXT`/`BIGINT`/`BYTEA` columns (SQLite stores a `BYTEA` value as the blob it is),
//! booleans as 0/1, times as Unix seconds.

use crate::error::{InfraError, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;

/// Which engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite file (or memory) database.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A connection pool plus the engine it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    /// Whether the commit sequence is installed (SQLite, with a rollback anchor).
    commit_seq: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// A SQLite file's reader threads (`reader.rs`), opened on first use.
    reader: std::sync::Arc<(Option<std::path::PathBuf>, std::sync::OnceLock<Option<crate::reader::Reader>>)>,
}

impl Db {
    /// Connects to `url` (`sqlite://PATH?mode=rwc`, `sqlite::memory:`, `postgres://…`).
    ///
    /// # Errors
    /// Unsupported scheme or connection failure.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(InfraError::BadParameter("database URL must start with sqlite: or postgres:".into()));
        };
        let opts = AnyConnectOptions::from_str(url)?;
        let mut pool = AnyPoolOptions::new();
        if engine == Engine::Sqlite {
            // One writer at a time is SQLite's model; WAL lets readers run beside it.
            // secure_delete overwrites freed pages, so deleted key material does not linger.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; \
                         PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
            // A local file does not go away between uses: testing a connection before each
            // acquire would double every statement's trip to SQLite's worker thread.
            pool = pool.test_before_acquire(false);
            if url.contains(":memory:") {
                // Every connection to :memory: is a separate database: keep exactly one.
                pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            }
        }
        if engine == Engine::Postgres {
            // An unreachable database becomes a clear 503 within seconds, not a request
            // hanging for sqlx's default 30 s; connections are tested before use, so the
            // pool recovers by itself when the database returns.
            pool = pool.acquire_timeout(std::time::Duration::from_secs(5)).test_before_acquire(true);
        }
        let pool = pool.connect_with(opts).await?;
        // A file (not :memory:, which exists only inside its one connection) gets readers.
        let file = (engine == Engine::Sqlite && !url.contains(":memory:"))
            .then(|| sqlx::sqlite::SqliteConnectOptions::from_str(url).ok().map(|o| o.get_filename().to_path_buf()))
            .flatten();
        Ok(Self {
            pool,
            engine,
            commit_seq: std::sync::Arc::default(),
            reader: std::sync::Arc::new((file, std::sync::OnceLock::new())),
        })
    }

    /// The reader threads of a SQLite file database (`None` for PostgreSQL and
    /// `:memory:`, or if they cannot be opened: then reads go through the pool).
    #[must_use]
    pub fn reader(&self) -> Option<&crate::reader::Reader> {
        let (file, reader) = &*self.reader;
        let file = file.as_ref()?;
        reader
            .get_or_init(|| match crate::reader::Reader::open(file, 1) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "no SQLite reader thread; reads go through the pool");
                    None
                }
            })
            .as_ref()
    }

    /// The pool.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Checkpoints SQLite's write-ahead log into the database file and closes every
    /// connection, so the file alone holds everything committed: what a copy of a
    /// stopped data directory needs. A checkpoint that cannot finish (a reader still
    /// open elsewhere) is logged; closing the last connection checkpoints again.
    pub async fn close(&self) {
        if self.engine == Engine::Sqlite && !self.pool.is_closed() {
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.pool).await {
                Ok((0, _, _)) => {}
                Ok((_, log, done)) => {
                    tracing::warn!(frames = log, checkpointed = done, "the WAL checkpoint at shutdown was busy");
                }
                Err(e) => tracing::warn!(error = %e, "the WAL checkpoint at shutdown failed"),
            }
        }
        if let Some(Some(reader)) = self.reader.1.get() {
            reader.close();
        }
        self.pool.close().await;
    }

    /// SQLite only: makes sure the commit sequence exists and that every table bumps it on
    /// every inserted, updated or deleted row (triggers, so no write path can forget
    /// it). The sequence commits with the writes it counts, so a database that lost
    /// commits (a WAL cut short, an old copy put back) shows a lower sequence than one
    /// recorded outside it. Returns whether the sequence was created now (a database
    /// from before it existed, or a new one). PostgreSQL: nothing to do, `Ok(false)`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn install_commit_seq(&self) -> Result<bool> {
        if self.engine != Engine::Sqlite {
            return Ok(false);
        }
        let mut conn = self.pool.acquire().await?;
        let existed: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'atrest_commit_seq'")
                .fetch_optional(&mut *conn)
                .await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        tx.execute("CREATE TABLE IF NOT EXISTS atrest_commit_seq (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL)").await?;
        tx.execute("INSERT OR IGNORE INTO atrest_commit_seq (id, seq) VALUES (1, 0)").await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> 'atrest_commit_seq'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for table in tables {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                tx.execute(
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS \"atrest_seq_{table}_{op}\" AFTER {op} ON \"{table}\" \
                         BEGIN UPDATE atrest_commit_seq SET seq = seq + 1 WHERE id = 1; END"
                    )
                    .as_str(),
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.commit_seq.store(true, std::sync::atomic::Ordering::Release);
        Ok(existed.is_none())
    }

    /// The commit sequence ([`Self::install_commit_seq`]); 0 on PostgreSQL.
    ///
    /// # Errors
    /// Database errors.
    pub async fn commit_seq(&self) -> Result<i64> {
        const SQL: &str = "SELECT seq FROM atrest_commit_seq WHERE id = 1";
        if self.engine != Engine::Sqlite {
            return Ok(0);
        }
        // On the reader thread where there is one: the anchor asks after every batch.
        if let Some(reader) = self.reader() {
            return reader
                .run(|conn| {
                    let mut stmt = conn.prepare_cached(SQL).map_err(|e| crate::reader::storage(&e))?;
                    stmt.query_row([], |r| r.get::<_, i64>(0)).map_err(|e| crate::reader::storage(&e))
                })
                .await;
        }
        Ok(sqlx::query_scalar(SQL).fetch_one(&self.pool).await?)
    }

    /// The commit sequence as `conn` (an open transaction) sees it — including that
    /// transaction's own bumps — when this pool keeps one ([`Self::install_commit_seq`] ran:
    /// a rollback anchor follows it); `None` otherwise.
    ///
    /// # Errors
    /// Database errors.
    pub async fn kept_commit_seq<'c, E>(&self, conn: E) -> Result<Option<i64>>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        if self.engine != Engine::Sqlite || !self.commit_seq.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(None);
        }
        Ok(Some(sqlx::query_scalar("SELECT seq FROM atrest_commit_seq WHERE id = 1").fetch_one(conn).await?))
    }

    /// Applies a component's pending migrations inside one transaction each, recorded in
    /// one tracking table (components keep their version numbers apart: the vault uses
    /// 1 and up, the data service 1001 and up). Safe when several nodes start at once: on
    /// PostgreSQL the whole run holds an advisory lock, so one node migrates and the
    /// others wait, then find nothing to do; SQLite's own file lock serializes writers.
    ///
    /// # Errors
    /// Database errors; a failed migration rolls back and leaves the schema as it was.
    pub async fn migrate_with(&self, migrations: &[(i64, &str)]) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.engine == Engine::Postgres {
            conn.execute(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})").as_str()).await?;
        }
        let result = Self::migrate_on(&mut conn, migrations).await;
        if self.engine == Engine::Postgres {
            conn.execute(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})").as_str()).await?;
        }
        result
    }

    async fn migrate_on(conn: &mut sqlx::AnyConnection, migrations: &[(i64, &str)]) -> Result<()> {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        for &(version, sql) in migrations {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                tx.execute(stmt).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(crate::clock::Clock::now(&crate::clock::SystemClock))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// Advisory-lock id that serializes migrations across nodes ("atrest" in ASCII).
const MIGRATION_LOCK: i64 = 0x61_74_72_65_73_74;

/// Migrations are split into statements on `;`: a `;` inside a comment line leaves the
/// rest of that line outside the comment (one at the very end of the line is harmless).
///
/// # Panics
/// When a comment line of a migration holds a `;` followed by more text.
pub fn assert_splittable(migrations: &[(i64, &str)]) {
    for (version, sql) in migrations {
        for line in sql.lines().filter(|l| l.trim_start().starts_with("--")) {
            let cut = line.split_once(';').is_some_and(|(_, rest)| !rest.trim().is_empty());
            assert!(!cut, "migration {version}: a comment holds ';', which splits the statement: {line}");
        }
    }
}
