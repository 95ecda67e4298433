//! Object rows (records and blobs): lookups, listings, and the conditional writes the
//! group commit and the jobs batch into the caller's transaction.

use crate::error::Result;
use crate::rows::ObjectRow;
use atrest_infra::db::{Db, Engine};
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

const OBJ_COLS: &str = "resource_id, kind, name_hash, id, generation, size, rk_epoch, enc_epoch, \
     name_sealed, wrapped_dek, body, created, updated, mac, skey, meta";

/// An object row as stored, with the kind column as written (the caller checks it and
/// the MAC).
pub(crate) struct StoredObject {
    pub row: ObjectRow,
    pub kind: String,
}

fn parse(row: &AnyRow) -> Result<StoredObject> {
    let kind: String = row.try_get("kind")?;
    Ok(StoredObject {
        row: ObjectRow {
            resource_id: row.try_get("resource_id")?,
            kind: match kind.as_str() {
                "blob" => "blob",
                "s3" => "s3",
                "s3upload" => "s3upload",
                _ => "record",
            },
            name_hash: row.try_get("name_hash")?,
            id: row.try_get("id")?,
            generation: row.try_get("generation")?,
            size: row.try_get("size")?,
            rk_epoch: row.try_get("rk_epoch")?,
            enc_epoch: row.try_get("enc_epoch")?,
            name_sealed: row.try_get("name_sealed")?,
            wrapped_dek: row.try_get("wrapped_dek")?,
            body: row.try_get("body")?,
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
            mac: row.try_get("mac")?,
            skey: row.try_get("skey")?,
            meta: row.try_get("meta")?,
        },
        kind,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a row's columns in `OBJ_COLS` order ($1 … $16).
fn bind<'q>(q: AnyQuery<'q>, r: &ObjectRow) -> AnyQuery<'q> {
    q.bind(r.resource_id.clone())
        .bind(r.kind)
        .bind(r.name_hash.clone())
        .bind(r.id.clone())
        .bind(r.generation)
        .bind(r.size)
        .bind(r.rk_epoch)
        .bind(r.enc_epoch)
        .bind(r.name_sealed.clone())
        .bind(r.wrapped_dek.clone())
        .bind(r.body.clone())
        .bind(r.created)
        .bind(r.updated)
        .bind(r.mac.clone())
        .bind(r.skey.clone())
        .bind(r.meta.clone())
}

/// The row of one object, by its name hash.
pub(crate) async fn find(db: &Db, resource_id: &str, kind: &str, name_hash: &[u8]) -> Result<Option<StoredObject>> {
    let row = sqlx::query(&format!(
        "SELECT {OBJ_COLS} FROM store_objects WHERE resource_id = $1 AND kind = $2 AND name_hash = $3"
    ))
    .bind(resource_id)
    .bind(kind)
    .bind(name_hash)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(parse).transpose()
}

/// Every object of a kind in a resource.
pub(crate) async fn of_kind(db: &Db, resource_id: &str, kind: &str) -> Result<Vec<StoredObject>> {
    let rows = sqlx::query(&format!("SELECT {OBJ_COLS} FROM store_objects WHERE resource_id = $1 AND kind = $2"))
        .bind(resource_id)
        .bind(kind)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(parse).collect()
}

/// The next `limit` object rows of the deployment after `after` (resource id, kind,
/// name hash), in that order.
pub(crate) async fn page_after(db: &Db, after: &(String, String, Vec<u8>), limit: i64) -> Result<Vec<StoredObject>> {
    let rows = sqlx::query(&format!(
        "SELECT {OBJ_COLS} FROM store_objects WHERE (resource_id, kind, name_hash) > ($1, $2, $3) \
         ORDER BY resource_id, kind, name_hash LIMIT $4"
    ))
    .bind(&after.0)
    .bind(&after.1)
    .bind(&after.2)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(parse).collect()
}

/// Which epoch a job moves objects to.
#[derive(Clone, Copy)]
pub(crate) enum Epoch {
    /// The resource key that wraps the data key.
    ResourceKey,
    /// The infrastructure layer's encryption.
    Encryption,
}

/// Up to `limit` objects of a resource whose epoch is below `target`.
pub(crate) async fn behind(
    db: &Db,
    resource_id: &str,
    epoch: Epoch,
    target: i64,
    limit: i64,
) -> Result<Vec<StoredObject>> {
    let column = match epoch {
        Epoch::ResourceKey => "rk_epoch",
        Epoch::Encryption => "enc_epoch",
    };
    let rows =
        sqlx::query(&format!("SELECT {OBJ_COLS} FROM store_objects WHERE resource_id = $1 AND {column} < $2 LIMIT $3"))
            .bind(resource_id)
            .bind(target)
            .bind(limit)
            .fetch_all(db.pool())
            .await?;
    rows.iter().map(parse).collect()
}

/// How many objects a resource holds (all of them, or those with a resource-key epoch
/// below `below`), in the caller's transaction.
pub(crate) async fn count(conn: &mut AnyConnection, resource_id: &str, below: Option<i64>) -> Result<i64> {
    Ok(match below {
        None => {
            sqlx::query_scalar("SELECT COUNT(*) FROM store_objects WHERE resource_id = $1")
                .bind(resource_id)
                .fetch_one(conn)
                .await?
        }
        Some(epoch) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM store_objects WHERE resource_id = $1 AND rk_epoch < $2")
                .bind(resource_id)
                .bind(epoch)
                .fetch_one(conn)
                .await?
        }
    })
}

/// Deletes an object if it is still at `generation` and `id`; `false` when it moved.
pub(crate) async fn delete_at(
    db: &Db,
    resource_id: &str,
    kind: &str,
    name_hash: &[u8],
    generation: i64,
    id: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM store_objects WHERE resource_id = $1 AND kind = $2 AND name_hash = $3 AND generation = $4 \
         AND id = $5",
    )
    .bind(resource_id)
    .bind(kind)
    .bind(name_hash)
    .bind(generation)
    .bind(id)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The current generation and sealed name of an object, if it exists.
pub(crate) async fn current(
    db: &Db,
    resource_id: &str,
    kind: &str,
    name_hash: &[u8],
) -> Result<Option<(i64, Vec<u8>)>> {
    Ok(sqlx::query_as(
        "SELECT generation, name_sealed FROM store_objects WHERE resource_id = $1 AND kind = $2 AND name_hash = $3",
    )
    .bind(resource_id)
    .bind(kind)
    .bind(name_hash)
    .fetch_optional(db.pool())
    .await?)
}

/// (id, generation, sealed name) of every object of a kind in a resource.
pub(crate) async fn names_of_kind(db: &Db, resource_id: &str, kind: &str) -> Result<Vec<(String, i64, Vec<u8>)>> {
    Ok(sqlx::query_as("SELECT id, generation, name_sealed FROM store_objects WHERE resource_id = $1 AND kind = $2")
        .bind(resource_id)
        .bind(kind)
        .fetch_all(db.pool())
        .await?)
}

/// The resource-key epoch of a resource, in the caller's transaction; on PostgreSQL the
/// row stays share-locked until commit, so a re-key cannot finish meanwhile.
pub(crate) async fn resource_epoch(conn: &mut AnyConnection, engine: Engine, resource_id: &str) -> Result<Option<i64>> {
    let sql = match engine {
        Engine::Postgres => "SELECT rk_epoch FROM store_resources WHERE id = $1 FOR SHARE",
        Engine::Sqlite => "SELECT rk_epoch FROM store_resources WHERE id = $1",
    };
    Ok(sqlx::query_scalar(sql).bind(resource_id).fetch_optional(conn).await?)
}

/// Inserts a row unless the object exists, in the caller's transaction; `false` when it
/// does.
pub(crate) async fn insert_if_absent(conn: &mut AnyConnection, r: &ObjectRow) -> Result<bool> {
    let sql = format!(
        "INSERT INTO store_objects ({OBJ_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (resource_id, kind, name_hash) DO NOTHING"
    );
    Ok(bind(sqlx::query(&sql), r).execute(conn).await?.rows_affected() == 1)
}

const REPLACE: &str = "UPDATE store_objects SET id = $4, generation = $5, size = $6, rk_epoch = $7, \
     enc_epoch = $8, name_sealed = $9, wrapped_dek = $10, body = $11, created = $12, updated = $13, mac = $14, \
     skey = $15, meta = $16 WHERE resource_id = $1 AND kind = $2 AND name_hash = $3 AND generation = $17";

/// Replaces an object's row if it is still at generation `prev` (and, when given, has
/// id `prev_id`: S3 objects get a new id with every write), in the caller's
/// transaction; `false` when it moved.
pub(crate) async fn replace_if_at(
    conn: &mut AnyConnection,
    r: &ObjectRow,
    prev: i64,
    prev_id: Option<&str>,
) -> Result<bool> {
    let with_id;
    let q = match prev_id {
        None => bind(sqlx::query(REPLACE), r).bind(prev),
        Some(id) => {
            with_id = format!("{REPLACE} AND id = $18");
            bind(sqlx::query(&with_id), r).bind(prev).bind(id.to_string())
        }
    };
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// The next `limit` rows of `kind` (S3 objects, or uploads) of a resource in key order,
/// from `from` (inclusive or not) and below `below` (the end of a prefix, if any): one
/// index range scan, whatever the number of objects in the resource.
pub(crate) async fn s3_page(
    db: &Db,
    resource_id: &str,
    kind: &str,
    from: &[u8],
    inclusive: bool,
    below: Option<&[u8]>,
    limit: i64,
) -> Result<Vec<StoredObject>> {
    let op = if inclusive { ">=" } else { ">" };
    let upper = if below.is_some() { "AND skey < $5" } else { "" };
    let sql = format!(
        "SELECT {OBJ_COLS} FROM store_objects WHERE resource_id = $1 AND kind = $2 AND skey {op} $3 {upper} \
         ORDER BY skey, id LIMIT $4"
    );
    let mut q = sqlx::query(&sql).bind(resource_id).bind(kind.to_string()).bind(from.to_vec()).bind(limit);
    if let Some(b) = below {
        q = q.bind(b.to_vec());
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter().map(parse).collect()
}

/// Whether a resource holds any object (of any kind but S3 uploads in progress, which
/// go with the bucket, as on S3).
pub(crate) async fn any_in(db: &Db, resource_id: &str) -> Result<bool> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM store_objects WHERE resource_id = $1 AND kind <> 's3upload' LIMIT 1")
            .bind(resource_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(n.is_some())
}

/// Whether an object row exists, in the caller's transaction; on PostgreSQL the row stays
/// locked until commit (SQLite has one writer at a time).
pub(crate) async fn exists_in(
    conn: &mut AnyConnection,
    engine: Engine,
    resource_id: &str,
    kind: &str,
    name_hash: &[u8],
) -> Result<bool> {
    let lock = if engine == Engine::Postgres { " FOR UPDATE" } else { "" };
    let n: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT generation FROM store_objects WHERE resource_id = $1 AND kind = $2 AND name_hash = $3{lock}"
    ))
    .bind(resource_id)
    .bind(kind)
    .bind(name_hash)
    .fetch_optional(conn)
    .await?;
    Ok(n.is_some())
}

/// Deletes an object row, in the caller's transaction; `false` when there was none.
pub(crate) async fn delete_in(
    conn: &mut AnyConnection,
    resource_id: &str,
    kind: &str,
    name_hash: &[u8],
) -> Result<bool> {
    let n = sqlx::query("DELETE FROM store_objects WHERE resource_id = $1 AND kind = $2 AND name_hash = $3")
        .bind(resource_id)
        .bind(kind)
        .bind(name_hash)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}
