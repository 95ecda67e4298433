//! The parts of S3 multipart uploads (`store_s3_parts`).

use crate::error::Result;
use atrest_infra::db::Db;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// One part row, as stored.
#[derive(Debug, Clone)]
pub(crate) struct PartRow {
    pub resource_id: String,
    pub upload_id: String,
    pub part: i64,
    pub body: String,
    pub size: i64,
    pub meta: Vec<u8>,
    pub object_id: Option<String>,
    pub generation: Option<i64>,
    pub created: i64,
    pub mac: Vec<u8>,
}

const COLS: &str = "resource_id, upload_id, part, body, size, meta, object_id, generation, created, mac";

fn parse(r: &AnyRow) -> Result<PartRow> {
    Ok(PartRow {
        resource_id: r.try_get("resource_id")?,
        upload_id: r.try_get("upload_id")?,
        part: r.try_get("part")?,
        body: r.try_get("body")?,
        size: r.try_get("size")?,
        meta: r.try_get("meta")?,
        object_id: r.try_get("object_id")?,
        generation: r.try_get("generation")?,
        created: r.try_get("created")?,
        mac: r.try_get("mac")?,
    })
}

/// Puts a part (replacing one of the same number not yet part of an object), in the
/// caller's transaction; returns the body the replaced row named.
pub(crate) async fn put(conn: &mut AnyConnection, p: &PartRow) -> Result<Option<String>> {
    let old: Option<String> = sqlx::query_scalar(
        "SELECT body FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND part = $3 \
         AND object_id IS NULL",
    )
    .bind(&p.resource_id)
    .bind(&p.upload_id)
    .bind(p.part)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND part = $3 AND object_id IS NULL",
    )
    .bind(&p.resource_id)
    .bind(&p.upload_id)
    .bind(p.part)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!("INSERT INTO store_s3_parts ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
        .bind(&p.resource_id)
        .bind(&p.upload_id)
        .bind(p.part)
        .bind(&p.body)
        .bind(p.size)
        .bind(&p.meta)
        .bind(p.object_id.clone())
        .bind(p.generation)
        .bind(p.created)
        .bind(&p.mac)
        .execute(&mut *conn)
        .await?;
    Ok(old)
}

/// The parts of an upload, by number.
pub(crate) async fn of_upload(db: &Db, resource_id: &str, upload_id: &str) -> Result<Vec<PartRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 ORDER BY part"
    ))
    .bind(resource_id)
    .bind(upload_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(parse).collect()
}

/// Links a part to the object a completed upload made, in the caller's transaction, if it
/// still names `body` and no object; `false` otherwise.
pub(crate) async fn link(conn: &mut AnyConnection, p: &PartRow, body: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE store_s3_parts SET object_id = $1, generation = $2, mac = $3 \
         WHERE resource_id = $4 AND upload_id = $5 AND part = $6 AND body = $7 AND object_id IS NULL",
    )
    .bind(p.object_id.clone())
    .bind(p.generation)
    .bind(&p.mac)
    .bind(&p.resource_id)
    .bind(&p.upload_id)
    .bind(p.part)
    .bind(body)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Deletes the parts of an upload that no object uses, in the caller's transaction;
/// returns their bodies.
pub(crate) async fn take_upload(conn: &mut AnyConnection, resource_id: &str, upload_id: &str) -> Result<Vec<String>> {
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND object_id IS NULL",
    )
    .bind(resource_id)
    .bind(upload_id)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND object_id IS NULL")
        .bind(resource_id)
        .bind(upload_id)
        .execute(&mut *conn)
        .await?;
    Ok(bodies)
}

/// Deletes the row of one part of an object (at a generation), in the caller's
/// transaction; `false` when the part is not that object's.
pub(crate) async fn delete_of_object(
    conn: &mut AnyConnection,
    resource_id: &str,
    upload_id: &str,
    part: i64,
    object: (&str, i64),
) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND part = $3 AND object_id = $4 \
         AND generation = $5",
    )
    .bind(resource_id)
    .bind(upload_id)
    .bind(part)
    .bind(object.0)
    .bind(object.1)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Deletes one part row, in the caller's transaction.
pub(crate) async fn delete(conn: &mut AnyConnection, resource_id: &str, upload_id: &str, part: i64) -> Result<()> {
    sqlx::query("DELETE FROM store_s3_parts WHERE resource_id = $1 AND upload_id = $2 AND part = $3")
        .bind(resource_id)
        .bind(upload_id)
        .bind(part)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every part body of a resource (for the orphan sweep).
pub(crate) async fn bodies(db: &Db, resource_id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT body FROM store_s3_parts WHERE resource_id = $1")
        .bind(resource_id)
        .fetch_all(db.pool())
        .await?)
}
