//! Jobs (re-key, re-encrypt): their rows and progress.

use crate::error::{Result, StoreError};
use atrest_infra::db::Db;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

const JOB_COLS: &str = "id, resource_id, kind, state, done, total, error, created, updated, mac";

/// A job row as stored (its MAC covers id, resource, kind and creation time).
pub(crate) struct JobRow {
    pub id: String,
    pub resource_id: String,
    pub kind: String,
    pub state: String,
    pub done: i64,
    pub total: i64,
    pub error: String,
    pub created: i64,
    pub updated: i64,
    pub mac: Vec<u8>,
}

fn parse(row: &AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: row.try_get("id")?,
        resource_id: row.try_get("resource_id")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        done: row.try_get("done")?,
        total: row.try_get("total")?,
        error: row.try_get("error")?,
        created: row.try_get("created")?,
        updated: row.try_get("updated")?,
        mac: row.try_get("mac")?,
    })
}

/// The job running on a resource, if any (in the caller's transaction).
pub(crate) async fn running_on(conn: &mut AnyConnection, resource_id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT id FROM store_jobs WHERE resource_id = $1 AND state = 'running'")
        .bind(resource_id)
        .fetch_optional(conn)
        .await?)
}

/// Records a new running job (in the caller's transaction); `Conflict` when another job
/// already runs on the resource (the unique index on running jobs: another node won).
pub(crate) async fn insert_running(
    conn: &mut AnyConnection,
    id: &str,
    resource_id: &str,
    kind: &str,
    total: i64,
    now: i64,
    mac: &[u8],
) -> Result<()> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO store_jobs ({JOB_COLS}) VALUES ($1, $2, $3, 'running', 0, $4, '', $5, $5, $6)"
    ))
    .bind(id)
    .bind(resource_id)
    .bind(kind)
    .bind(total)
    .bind(now)
    .bind(mac)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict("another job is running on this resource; wait for it".into()))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn by_id(db: &Db, id: &str) -> Result<Option<JobRow>> {
    let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM store_jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(parse).transpose()
}

pub(crate) async fn of_resource(db: &Db, resource_id: &str) -> Result<Vec<JobRow>> {
    let rows = sqlx::query(&format!("SELECT {JOB_COLS} FROM store_jobs WHERE resource_id = $1"))
        .bind(resource_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(parse).collect()
}

/// Every running job, oldest first.
pub(crate) async fn running(db: &Db) -> Result<Vec<JobRow>> {
    let rows = sqlx::query(&format!("SELECT {JOB_COLS} FROM store_jobs WHERE state = 'running' ORDER BY created"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(parse).collect()
}

/// Sets a job's state and progress (each kept when `None`) and its error text.
pub(crate) async fn set(
    db: &Db,
    id: &str,
    state: Option<&str>,
    done: Option<i64>,
    error: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE store_jobs SET state = COALESCE($2, state), done = COALESCE($3, done), error = $4, updated = $5 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(done)
    .bind(error)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Adds a batch's progress (in the caller's transaction, with the batch's rows).
pub(crate) async fn add_done(conn: &mut AnyConnection, id: &str, n: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE store_jobs SET done = done + $2, error = '', updated = $3 WHERE id = $1")
        .bind(id)
        .bind(n)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn done(db: &Db, id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT done FROM store_jobs WHERE id = $1").bind(id).fetch_one(db.pool()).await?)
}

/// Marks a job succeeded (in the caller's transaction).
pub(crate) async fn succeed(conn: &mut AnyConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE store_jobs SET state = 'succeeded', error = '', updated = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
