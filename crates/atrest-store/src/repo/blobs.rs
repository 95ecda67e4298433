//! Blob body bookkeeping: bodies queued for removal (retire delay) and bodies being
//! written (protected from the orphan sweep until their row commits).

use crate::error::Result;
use atrest_infra::db::Db;

/// Queues a body for removal at `due` (once).
pub(crate) async fn queue_removal(db: &Db, resource_id: &str, name: &str, due: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO store_blob_removals (resource_id, name, due) VALUES ($1, $2, $3) \
         ON CONFLICT (resource_id, name) DO NOTHING",
    )
    .bind(resource_id)
    .bind(name)
    .bind(due)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Up to 1,000 queued removals due at `now`: (resource id, body name), soonest first.
pub(crate) async fn removals_due(db: &Db, now: i64) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as("SELECT resource_id, name FROM store_blob_removals WHERE due <= $1 ORDER BY due LIMIT 1000")
        .bind(now)
        .fetch_all(db.pool())
        .await?)
}

pub(crate) async fn removed(db: &Db, resource_id: &str, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM store_blob_removals WHERE resource_id = $1 AND name = $2")
        .bind(resource_id)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The bodies of a resource queued for removal.
pub(crate) async fn queued(db: &Db, resource_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM store_blob_removals WHERE resource_id = $1")
        .bind(resource_id)
        .fetch_all(db.pool())
        .await?)
}

/// Lists a body as being written (before its first byte goes out).
pub(crate) async fn writing(db: &Db, resource_id: &str, name: &str, started: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO store_blob_writes (resource_id, name, started) VALUES ($1, $2, $3) \
         ON CONFLICT (resource_id, name) DO NOTHING",
    )
    .bind(resource_id)
    .bind(name)
    .bind(started)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The bodies of a resource being written: (name, started).
pub(crate) async fn writes(db: &Db, resource_id: &str) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT name, started FROM store_blob_writes WHERE resource_id = $1")
        .bind(resource_id)
        .fetch_all(db.pool())
        .await?)
}

pub(crate) async fn written(db: &Db, resource_id: &str, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM store_blob_writes WHERE resource_id = $1 AND name = $2")
        .bind(resource_id)
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}
