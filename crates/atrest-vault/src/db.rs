//! The database seam: one sqlx `AnyPool`, SQLite (embedded default) or PostgreSQL, with
//! runtime (not compile-time-checked) queries in SQL both accept: `$N` placeholders,
//! `TEXT`/`BIGINT`/`BYTEA` columns (SQLite stores a `BYTEA` value as the blob it is),
//! booleans as 0/1, times as Unix seconds.

use crate::error::Result;
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
}

/// Schema migrations, applied in order, each once. Never edit a released entry: append.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("schema/0001_vault.sql")),
    (2, include_str!("schema/0002_access.sql")),
    (3, include_str!("schema/0003_audit.sql")),
    (4, include_str!("schema/0004_rotation.sql")),
    (5, include_str!("schema/0005_leases.sql")),
];

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
            return Err(crate::VaultError::bad("database URL must start with sqlite: or postgres:"));
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
        Ok(Self { pool, engine })
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

    /// Applies pending migrations inside one transaction each. Safe when several nodes
    /// start at once: on PostgreSQL the whole run holds an advisory lock, so one node
    /// migrates and the others wait, then find nothing to do; SQLite's own file lock
    /// serializes writers.
    ///
    /// # Errors
    /// Database errors; a failed migration rolls back and leaves the schema as it was.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_with(MIGRATIONS).await
    }

    /// Applies another component's migrations (the data service's) with the same rules,
    /// in the same tracking table: their version numbers must not overlap the vault's
    /// (the data service uses 1001 and up).
    ///
    /// # Errors
    /// As [`Self::migrate`].
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

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_split_into_whole_statements() {
        super::assert_splittable(super::MIGRATIONS);
    }
}
