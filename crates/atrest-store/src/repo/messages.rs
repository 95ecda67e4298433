//! Transient messages (sealed bodies, visibility, receipts).

use crate::error::Result;
use atrest_infra::db::Db;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// A message row as stored (its MAC is checked by the caller).
pub(crate) struct MsgRow {
    pub id: String,
    pub resource_id: String,
    pub body: Vec<u8>,
    pub wrapped_dek: Vec<u8>,
    pub created: i64,
    pub expires: i64,
    pub visible_at: i64,
    pub receipt: String,
    pub deliveries: i64,
    pub mac: Vec<u8>,
}

const COLS: &str = "id, resource_id, body, wrapped_dek, created, expires, visible_at, receipt, deliveries, mac";

fn parse(row: &AnyRow) -> Result<MsgRow> {
    Ok(MsgRow {
        id: row.try_get("id")?,
        resource_id: row.try_get("resource_id")?,
        body: row.try_get("body")?,
        wrapped_dek: row.try_get("wrapped_dek")?,
        created: row.try_get("created")?,
        expires: row.try_get("expires")?,
        visible_at: row.try_get("visible_at")?,
        receipt: row.try_get("receipt")?,
        deliveries: row.try_get("deliveries")?,
        mac: row.try_get("mac")?,
    })
}

pub(crate) async fn insert(db: &Db, m: &MsgRow) -> Result<()> {
    sqlx::query(&format!("INSERT INTO store_messages ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
        .bind(&m.id)
        .bind(&m.resource_id)
        .bind(&m.body)
        .bind(&m.wrapped_dek)
        .bind(m.created)
        .bind(m.expires)
        .bind(m.visible_at)
        .bind(&m.receipt)
        .bind(m.deliveries)
        .bind(&m.mac)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Up to `limit` messages of a resource visible and unexpired at `now`, oldest first (in
/// the caller's transaction).
pub(crate) async fn visible(conn: &mut AnyConnection, resource_id: &str, now: i64, limit: i64) -> Result<Vec<MsgRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM store_messages WHERE resource_id = $1 AND visible_at <= $2 AND expires > $2 \
         ORDER BY created, id LIMIT $3"
    ))
    .bind(resource_id)
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(parse).collect()
}

/// Records a delivery if the message is still visible as `prev_visible` (in the caller's
/// transaction); `false` when another receiver took it.
pub(crate) async fn deliver(conn: &mut AnyConnection, m: &MsgRow, prev_visible: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE store_messages SET visible_at = $2, receipt = $3, deliveries = $4, mac = $5 \
         WHERE id = $1 AND visible_at = $6",
    )
    .bind(&m.id)
    .bind(m.visible_at)
    .bind(&m.receipt)
    .bind(m.deliveries)
    .bind(&m.mac)
    .bind(prev_visible)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub(crate) async fn get(db: &Db, id: &str, resource_id: &str) -> Result<Option<MsgRow>> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM store_messages WHERE id = $1 AND resource_id = $2"))
        .bind(id)
        .bind(resource_id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(parse).transpose()
}

/// Deletes a message if `receipt` is still its latest.
pub(crate) async fn delete_with_receipt(db: &Db, id: &str, receipt: &str) -> Result<()> {
    sqlx::query("DELETE FROM store_messages WHERE id = $1 AND receipt = $2")
        .bind(id)
        .bind(receipt)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deletes every message expired at `now`; how many.
pub(crate) async fn delete_expired(db: &Db, now: i64) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM store_messages WHERE expires <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected())
}
