//! Group commit of object writes. Concurrent writers hand their row to one committer
//! task, which writes everything waiting in one transaction (one fsync) and then answers
//! each writer: no write is acknowledged before it is durable, and under load many
//! writes share each fsync.
//!
//! Each write is conditional on the generation the writer sealed against (`prev`): the
//! object must still be absent (`None`) or at that generation, else the writer gets
//! [`Outcome::Moved`] and decides (retry, or 412 for `If-Match`).

use crate::error::{Result, StoreError};
use crate::rows::{OBJ_COLS, ObjectRow};
use atrest_infra::db::{Db, Engine};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// What became of a write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Durable.
    Written,
    /// The object changed since the writer read it.
    Moved,
    /// The resource was re-keyed since the writer sealed: its data key must be wrapped
    /// under the current resource key (nothing was written).
    Stale,
}

struct Op {
    row: ObjectRow,
    prev: Option<i64>,
    done: oneshot::Sender<Result<Outcome>>,
}

/// Largest batch in one transaction.
const MAX_BATCH: usize = 512;

/// The committer's handle.
pub(crate) struct GroupCommit {
    tx: mpsc::Sender<Op>,
}

impl GroupCommit {
    /// Starts the committer task (it ends when the handle is dropped).
    pub(crate) fn start(db: Db, write_lock: Arc<Mutex<()>>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Op>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let _g = if db.engine() == Engine::Sqlite { Some(write_lock.lock().await) } else { None };
                match write_batch(&db, &batch).await {
                    Ok(outcomes) => {
                        for (op, o) in batch.into_iter().zip(outcomes) {
                            let _ = op.done.send(Ok(o));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for op in batch {
                            let _ = op.done.send(Err(StoreError::Storage(msg.clone())));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Writes `row` if the object is still at `prev` (absent when `None`); returns once
    /// the transaction holding it committed.
    pub(crate) async fn write(&self, row: ObjectRow, prev: Option<i64>) -> Result<Outcome> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Op { row, prev, done })
            .await
            .map_err(|_| StoreError::Storage("the committer has stopped".into()))?;
        wait.await.map_err(|_| StoreError::Storage("the committer has stopped".into()))?
    }
}

/// Replaces an object row if it is still at generation `$15` (binds: [`bind_row`], then
/// the expected generation).
pub(crate) const UPDATE_SQL: &str = "UPDATE store_objects SET id = $4, generation = $5, size = $6, rk_epoch = $7, \
     enc_epoch = $8, name_sealed = $9, wrapped_dek = $10, body = $11, created = $12, updated = $13, mac = $14 \
     WHERE resource_id = $1 AND kind = $2 AND name_hash = $3 AND generation = $15";

/// Binds a row's columns in `OBJ_COLS` order ($1 … $14).
pub(crate) fn bind_row<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    r: &ObjectRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
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
}

async fn write_batch(db: &Db, batch: &[Op]) -> Result<Vec<Outcome>> {
    let mut tx = db.pool().begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    // On PostgreSQL the resource row is share-locked until commit, so a re-key cannot
    // finish (clear the old resource key) between this check and the write.
    let epoch_sql = match db.engine() {
        Engine::Postgres => "SELECT rk_epoch FROM store_resources WHERE id = $1 FOR SHARE",
        Engine::Sqlite => "SELECT rk_epoch FROM store_resources WHERE id = $1",
    };
    for op in batch {
        let r = &op.row;
        let epoch: Option<i64> = sqlx::query_scalar(epoch_sql).bind(&r.resource_id).fetch_optional(&mut *tx).await?;
        if epoch != Some(r.rk_epoch) {
            out.push(Outcome::Stale);
            continue;
        }
        let sql = match op.prev {
            None => format!(
                "INSERT INTO store_objects ({OBJ_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, $14) ON CONFLICT (resource_id, kind, name_hash) DO NOTHING"
            ),
            Some(_) => UPDATE_SQL.to_string(),
        };
        let mut q = bind_row(sqlx::query(&sql), r);
        if let Some(prev) = op.prev {
            q = q.bind(prev);
        }
        let n = q.execute(&mut *tx).await?.rows_affected();
        out.push(if n == 1 { Outcome::Written } else { Outcome::Moved });
    }
    tx.commit().await?;
    Ok(out)
}
