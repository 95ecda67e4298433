//! Group commit of object writes. Concurrent writers hand their row to one committer
//! task, which writes everything waiting in one transaction (one fsync) and then answers
//! each writer: no write is acknowledged before it is durable, and under load many
//! writes share each fsync.
//!
//! Each write is conditional on the generation the writer sealed against (`prev`): the
//! object must still be absent (`None`) or at that generation, else the writer gets
//! [`Outcome::Moved`] and decides (retry, or `PreconditionFailed` for `If-Match`).

use crate::error::{Result, StoreError};
use crate::repo::objects as repo;
use crate::rows::ObjectRow;
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
    /// The generation (and, for S3 objects, whose ids change with every write, the id)
    /// the object must still be at; `None`: it must not exist.
    prev: Option<(i64, Option<String>)>,
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
        self.write_over(row, prev.map(|g| (g, None))).await
    }

    /// As [`Self::write`], conditional on the object's id too.
    pub(crate) async fn write_over(&self, row: ObjectRow, prev: Option<(i64, Option<String>)>) -> Result<Outcome> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Op { row, prev, done })
            .await
            .map_err(|_| StoreError::Storage("the committer has stopped".into()))?;
        wait.await.map_err(|_| StoreError::Storage("the committer has stopped".into()))?
    }
}

async fn write_batch(db: &Db, batch: &[Op]) -> Result<Vec<Outcome>> {
    let mut tx = db.pool().begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for op in batch {
        let r = &op.row;
        // On PostgreSQL the resource row is share-locked until commit, so a re-key cannot
        // finish (clear the old resource key) between this check and the write.
        if r.rk_epoch != crate::rows::NO_RESOURCE_KEY
            && repo::resource_epoch(&mut tx, db.engine(), &r.resource_id).await? != Some(r.rk_epoch)
        {
            out.push(Outcome::Stale);
            continue;
        }
        let written = match &op.prev {
            None => repo::insert_if_absent(&mut tx, r).await?,
            Some((prev, id)) => repo::replace_if_at(&mut tx, r, *prev, id.as_deref()).await?,
        };
        out.push(if written { Outcome::Written } else { Outcome::Moved });
    }
    tx.commit().await?;
    Ok(out)
}
