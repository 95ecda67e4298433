//! S3 access keys.

use crate::db::Db;
use crate::error::Result;
use sqlx::Row as _;

/// An S3 key row as stored.
pub(crate) struct S3KeyRow {
    pub id: String,
    pub principal_id: String,
    pub secret_sealed: Vec<u8>,
    pub created: i64,
    pub revoked: bool,
    pub mac: Vec<u8>,
}

const COLS: &str = "id, principal_id, secret_sealed, created, revoked, mac";

fn parse(r: &sqlx::any::AnyRow) -> Result<S3KeyRow> {
    Ok(S3KeyRow {
        id: r.try_get("id")?,
        principal_id: r.try_get("principal_id")?,
        secret_sealed: r.try_get("secret_sealed")?,
        created: r.try_get("created")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        mac: r.try_get("mac")?,
    })
}

pub(crate) async fn insert(db: &Db, k: &S3KeyRow) -> Result<()> {
    sqlx::query(&format!("INSERT INTO s3_keys ({COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
        .bind(&k.id)
        .bind(&k.principal_id)
        .bind(&k.secret_sealed)
        .bind(k.created)
        .bind(i64::from(k.revoked))
        .bind(&k.mac)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub(crate) async fn get(db: &Db, id: &str) -> Result<Option<S3KeyRow>> {
    let row =
        sqlx::query(&format!("SELECT {COLS} FROM s3_keys WHERE id = $1")).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(parse).transpose()
}

/// A principal's keys, newest first.
pub(crate) async fn of_principal(db: &Db, principal_id: &str) -> Result<Vec<S3KeyRow>> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM s3_keys WHERE principal_id = $1 ORDER BY created DESC, id"))
        .bind(principal_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(parse).collect()
}

pub(crate) async fn revoke(db: &Db, id: &str, mac: &[u8]) -> Result<()> {
    sqlx::query("UPDATE s3_keys SET revoked = 1, mac = $1 WHERE id = $2").bind(mac).bind(id).execute(db.pool()).await?;
    Ok(())
}
