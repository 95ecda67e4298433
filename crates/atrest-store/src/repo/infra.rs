//! The data service's master secret, sealed under the infrastructure root (one row).

use crate::error::Result;
use atrest_infra::db::Db;

pub(crate) async fn sealed_master(db: &Db) -> Result<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar("SELECT sealed FROM store_infra WHERE id = 1").fetch_optional(db.pool()).await?)
}

pub(crate) async fn insert_master(db: &Db, sealed: &[u8], now: i64) -> Result<()> {
    sqlx::query("INSERT INTO store_infra (id, sealed, created, updated) VALUES (1, $1, $2, $2)")
        .bind(sealed)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub(crate) async fn reseal_master(db: &Db, sealed: &[u8], now: i64) -> Result<()> {
    sqlx::query("UPDATE store_infra SET sealed = $1, updated = $2 WHERE id = 1")
        .bind(sealed)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// On SQLite: checkpoints the WAL into the main file and truncates it; `Ok(false)` when
/// readers kept it from finishing.
pub(crate) async fn checkpoint_truncate(db: &Db) -> Result<bool> {
    use sqlx::Row as _;
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_optional(db.pool()).await?;
    Ok(row.is_none_or(|r| r.try_get::<i64, _>(0).unwrap_or(1) == 0))
}
