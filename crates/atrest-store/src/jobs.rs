//! Re-key and re-encrypt jobs, resumable after a crash.
//!
//! - **re-key**: a new resource key (wrapped by the current key-encryption key) takes
//!   over new writes at once; the job re-wraps every data key from the old resource key
//!   to the new one, then destroys the old one. Data bytes are not touched.
//! - **re-encrypt**: every object gets a new data key and its data is rewritten.
//!
//! Progress lives in the objects themselves (`rk_epoch`, `enc_epoch` lower than the
//! resource's mark the objects still to do), so a job that dies resumes where its last
//! committed batch ended: no object is lost or done twice in a way that matters.

use crate::cache::Slot;
use crate::error::{Result, StoreError};
use crate::hierarchy;
use crate::layers;
use crate::model::{DataRole, Job, ObjectKind, Resource};
use crate::rows::OBJ_COLS;
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_infra::rowmac::Field;
use atrest_vault::Principal;
use futures_util::StreamExt;
use sqlx::Row;
use std::sync::Arc;

/// Job kinds.
pub const KINDS: &[&str] = &["rekey", "reencrypt"];

const JOB_COLS: &str = "id, resource_id, kind, state, done, total, error, created, updated, mac";

impl StoreService {
    fn job_mac(&self, id: &str, resource_id: &str, kind: &str, created: i64) -> Vec<u8> {
        self.mac.tag("store_jobs", &[Field::Text(id), Field::Text(resource_id), Field::Text(kind), Field::Int(created)])
    }

    /// A job row, its MAC checked (what the job is; its progress is not authenticated).
    fn job_from_row(&self, row: &sqlx::any::AnyRow, resource: &str) -> Result<Job> {
        let job = Job {
            id: row.try_get("id")?,
            resource: resource.to_string(),
            kind: row.try_get("kind")?,
            state: row.try_get("state")?,
            done: row.try_get("done")?,
            total: row.try_get("total")?,
            error: row.try_get("error")?,
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
        };
        let rid: String = row.try_get("resource_id")?;
        let mac: Vec<u8> = row.try_get("mac")?;
        let expect = self.job_mac(&job.id, &rid, &job.kind, job.created);
        if !atrest_crypto::secret::constant_time_eq(&expect, &mac) {
            return Err(StoreError::Integrity(format!("job {}", job.id)));
        }
        Ok(job)
    }

    /// Starts a job on a resource (one at a time per resource).
    ///
    /// # Errors
    /// `Forbidden` unless owner; `Conflict` while another job runs; `KeyInaccessible`.
    pub async fn start_job(&self, actor: &Principal, resource: &str, kind: &str) -> Result<Job> {
        if !KINDS.contains(&kind) {
            return Err(StoreError::bad(format!("unknown job kind {kind}: use rekey or reencrypt")));
        }
        let r = self.authorized(actor, resource, DataRole::Owner).await?;
        Self::check_usable(&r)?;
        // A new resource key is wrapped before anything is written.
        let new_wrapped = if kind == "rekey" {
            let vault = self.kek_vault(&r).await?;
            let (key, wrapped) = hierarchy::new_resource_key(vault.as_ref(), &r.kek).await?;
            self.metrics.vault_call(&Self::label(&r), "wrapKey", true);
            Some((key, wrapped))
        } else {
            None
        };
        let now = self.now();
        let id = hex::encode(atrest_crypto::rand::bytes::<16>()?);
        let _g = self.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        let running: Option<String> =
            sqlx::query_scalar("SELECT id FROM store_jobs WHERE resource_id = $1 AND state = 'running'")
                .bind(&r.id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(j) = running {
            return Err(StoreError::Conflict(format!(
                "job {j} is still running on resource {resource}: wait for it (atrest job watch {j})"
            )));
        }
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_objects WHERE resource_id = $1")
            .bind(&r.id)
            .fetch_one(&mut *tx)
            .await?;
        let mut cur = self.resource_by_id(&r.id).await?;
        match &new_wrapped {
            Some((_, w)) => {
                cur.old_wrapped = Some(std::mem::replace(&mut cur.wrapped, w.clone()));
                cur.rk_epoch += 1;
            }
            None => cur.enc_epoch += 1,
        }
        cur.updated = now;
        self.save_resource(&mut *tx, &cur).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO store_jobs ({JOB_COLS}) VALUES ($1, $2, $3, 'running', 0, $4, '', $5, $5, $6)"
        ))
        .bind(&id)
        .bind(&r.id)
        .bind(kind)
        .bind(total)
        .bind(now)
        .bind(self.job_mac(&id, &r.id, kind, now))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The unique index on running jobs: another node started one meanwhile.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "another job is running on resource {resource}; wait for it"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        drop(_g);
        if let Some((key, _)) = new_wrapped {
            self.cache.put(&r.id, Slot::Resource(cur.rk_epoch), Arc::new(key));
        }
        self.metrics.job(&Self::label(&r), 0, total);
        self.audit(&cur, &actor.name, &format!("start-{kind}"), &id, "ok", serde_json::json!({"objects": total}))
            .await?;
        self.job(actor, &id).await
    }

    /// A job, if the actor owns its resource.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn job(&self, actor: &Principal, id: &str) -> Result<Job> {
        let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM store_jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no job {id}")))?;
        let rid: String = row.try_get("resource_id")?;
        let r = self.resource_by_id(&rid).await.map_err(|_| StoreError::NotFound(format!("no job {id}")))?;
        match self.role_of(actor, &r).await? {
            Some(DataRole::Owner) => self.job_from_row(&row, &r.name),
            _ => Err(StoreError::NotFound(format!("no job {id}"))),
        }
    }

    /// Jobs on the actor's resources (newest first), optionally of one resource.
    ///
    /// # Errors
    /// Database errors; for one resource, `NotFound` without a role on it and
    /// `Forbidden` unless owner (like every other route of a resource).
    pub async fn list_jobs(&self, actor: &Principal, resource: Option<&str>) -> Result<Vec<Job>> {
        if let Some(name) = resource {
            self.authorized(actor, name, DataRole::Owner).await?;
        }
        let mut out = Vec::new();
        for (r, role) in self.list_resources(actor).await? {
            if role != DataRole::Owner || resource.is_some_and(|n| n != r.name) {
                continue;
            }
            let rows = sqlx::query(&format!("SELECT {JOB_COLS} FROM store_jobs WHERE resource_id = $1"))
                .bind(&r.id)
                .fetch_all(self.db.pool())
                .await?;
            for row in &rows {
                out.push(self.job_from_row(row, &r.name)?);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Runs every running job to completion (or until it must wait for key access).
    /// Returns how many jobs finished. Called by the server's job loop, and at start to
    /// resume jobs a crash interrupted.
    ///
    /// # Errors
    /// Database errors.
    pub async fn run_jobs(&self) -> Result<usize> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLS} FROM store_jobs WHERE state = 'running' ORDER BY created"))
            .fetch_all(self.db.pool())
            .await?;
        let mut finished = 0;
        for row in &rows {
            let job = self.job_from_row(row, "")?;
            let rid: String = row.try_get("resource_id")?;
            // One node per job: the lease is renewed every batch; if its holder dies,
            // another node takes it when it expires and resumes from the data.
            if !self.job_lease(&job.id).await? {
                continue;
            }
            let result = self.run_job(&job, &rid).await;
            if matches!(result, Ok(true)) {
                self.leases.release(&format!("job:{}", job.id)).await?;
            }
            match result {
                Ok(true) => finished += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "job is waiting; it retries on the next pass");
                    self.set_job(&job.id, None, None, &format!("waiting: {}: {e}", e.code())).await?;
                }
            }
        }
        Ok(finished)
    }

    async fn job_lease(&self, id: &str) -> Result<bool> {
        let ttl = i64::try_from(self.cfg.job_lease.as_secs()).unwrap_or(30).max(1);
        Ok(self.leases.acquire(&format!("job:{id}"), self.now(), ttl).await?)
    }

    /// Renews the job's lease every third of its lifetime while a batch runs (a batch
    /// rewriting large blobs can outlast the lease), until the guard is dropped or
    /// another node holds the lease.
    fn keep_job_lease(&self, id: &str) -> LeaseKeeper {
        let (leases, clock, name) = (self.leases.clone(), self.clock.clone(), format!("job:{id}"));
        let ttl = i64::try_from(self.cfg.job_lease.as_secs()).unwrap_or(30).max(1);
        let period = (self.cfg.job_lease / 3).max(std::time::Duration::from_millis(100));
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if !matches!(leases.acquire(&name, clock.now(), ttl).await, Ok(true)) {
                    return;
                }
            }
        }))
    }

    async fn set_job(&self, id: &str, state: Option<&str>, done: Option<i64>, error: &str) -> Result<()> {
        let _g = self.write_guard().await;
        sqlx::query(
            "UPDATE store_jobs SET state = COALESCE($2, state), done = COALESCE($3, done), error = $4, updated = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(done)
        .bind(error)
        .bind(self.now())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Runs one job; `Ok(true)` when it finished.
    async fn run_job(&self, job: &Job, resource_id: &str) -> Result<bool> {
        let crash_after: Option<u64> =
            std::env::var("ATREST_TEST_CRASH_AFTER_BATCHES").ok().and_then(|v| v.parse().ok());
        let mut batches = 0u64;
        loop {
            if !self.job_lease(&job.id).await? {
                tracing::warn!(job = %job.id, "another node took this job's lease over; leaving it");
                return Ok(false);
            }
            let _renewing = self.keep_job_lease(&job.id);
            let r = self.resource_by_id(resource_id).await?;
            Self::check_usable(&r)?;
            let column = if job.kind == "rekey" { "rk_epoch" } else { "enc_epoch" };
            let target = if job.kind == "rekey" { r.rk_epoch } else { r.enc_epoch };
            let rows = sqlx::query(&format!(
                "SELECT {OBJ_COLS} FROM store_objects WHERE resource_id = $1 AND {column} < $2 LIMIT $3"
            ))
            .bind(&r.id)
            .bind(target)
            .bind(i64::try_from(self.cfg.job_batch).unwrap_or(500))
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                if self.finish_job(job, &r).await? {
                    return Ok(true);
                }
                continue;
            }
            let mut done_now = 0i64;
            let mut updates = Vec::with_capacity(rows.len());
            for row in &rows {
                let o = self.object_from_row(&r, row)?;
                let new =
                    if job.kind == "rekey" { self.rekeyed(&r, &o).await? } else { self.reencrypted(&r, &o).await? };
                updates.push((o, new));
            }
            let mut applied = Vec::with_capacity(updates.len());
            {
                let _g = self.write_guard().await;
                let mut tx = self.db.pool().begin().await?;
                for (old, new) in &updates {
                    let n = crate::commit::bind_row(sqlx::query(crate::commit::UPDATE_SQL), new)
                        .bind(old.generation)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    applied.push(n == 1);
                    done_now += i64::try_from(n).unwrap_or(0);
                }
                sqlx::query("UPDATE store_jobs SET done = done + $2, error = '', updated = $3 WHERE id = $1")
                    .bind(&job.id)
                    .bind(done_now)
                    .bind(self.now())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            // A rewritten blob's old body retires once its replacement is committed; a
            // replacement that lost to a concurrent write goes at once instead (each body
            // belongs to one write).
            for ((old, new), ok) in updates.iter().zip(applied) {
                if old.kind == "blob" && new.generation != old.generation {
                    if ok {
                        self.retire_blob_body(&r, old).await;
                    } else {
                        self.discard_blob_body(&r.id, &Self::blob_name(new)).await;
                    }
                }
            }
            batches += 1;
            let done: i64 = sqlx::query_scalar("SELECT done FROM store_jobs WHERE id = $1")
                .bind(&job.id)
                .fetch_one(self.db.pool())
                .await?;
            self.metrics.job(&Self::label(&r), done, job.total);
            if crash_after.is_some_and(|n| batches >= n) {
                tracing::error!(job = %job.id, "ATREST_TEST_CRASH_AFTER_BATCHES reached: aborting the process (test drill)");
                std::process::abort();
            }
        }
    }

    /// The object's data key re-wrapped under the current resource key.
    async fn rekeyed(&self, r: &Resource, o: &ObjectRow) -> Result<ObjectRow> {
        let dek = self.data_key(r, o).await?;
        let rk = self.key(r, Slot::Resource(r.rk_epoch)).await?;
        let mut new = o.clone();
        new.rk_epoch = r.rk_epoch;
        new.wrapped_dek = hierarchy::rewrap_data_key(&rk, Self::oid(r, o), &dek)?;
        new.mac = self.object_mac(&new);
        Ok(new)
    }

    /// The object under a new data key: a record is resealed in place; a blob is
    /// rewritten as the next generation (its file is replaced only once committed).
    async fn reencrypted(&self, r: &Resource, o: &ObjectRow) -> Result<ObjectRow> {
        let dek = self.data_key(r, o).await?;
        let name = layers::open_name(&self.infra, &dek, Self::oid(r, o), &o.name_sealed)
            .map_err(|_| self.integrity(r, &format!("the name of object {}", o.id)))?;
        let rk = self.key(r, Slot::Resource(r.rk_epoch)).await?;
        let mut new = o.clone();
        new.rk_epoch = r.rk_epoch;
        new.enc_epoch = r.enc_epoch;
        if o.kind == ObjectKind::Blob.as_str() {
            new.generation = o.generation + 1;
        }
        let (dek2, wrapped) = hierarchy::new_data_key(&rk, Self::oid(r, &new))?;
        new.wrapped_dek = wrapped;
        new.name_sealed = layers::seal_name(&self.infra, &dek2, Self::oid(r, &new), &name)?;
        if o.kind == ObjectKind::Record.as_str() {
            let plain = layers::open_with(
                &self.infra,
                &dek,
                Self::oid(r, o),
                b"atrest/object",
                o.body.as_deref().unwrap_or_default(),
            )
            .map_err(|_| self.integrity(r, &format!("the body of object {}", o.id)))?;
            new.body = Some(layers::seal_with(&self.infra, &dek2, Self::oid(r, &new), b"atrest/object", &plain)?);
        } else {
            // The reader's own error (tampering, or the blob store failing) is kept aside
            // so the job reports it, not the upload path's "interrupted".
            let failed = Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
            let slot = failed.clone();
            let read = self.blob_reader(r, o, dek).await?.map(move |item| {
                item.map_err(|e| {
                    let text = e.to_string();
                    *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    text
                })
            });
            let written = self.write_blob_file(r, &new, dek2, read).await;
            let read_error = failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            let (body, size) = match (written, read_error) {
                (Ok(w), _) => w,
                (Err(_), Some(e)) if crate::blobstore::is_integrity_error(&e) => {
                    return Err(self.integrity(r, &format!("the body of blob {}", o.id)));
                }
                (Err(_), Some(e)) => return Err(StoreError::Storage(e.to_string())),
                (Err(e), None) => return Err(e),
            };
            if i64::try_from(size).ok() != Some(o.size) {
                self.discard_blob_body(&r.id, &body).await;
                return Err(self.integrity(r, &format!("the body of blob {} (length)", o.id)));
            }
        }
        new.mac = self.object_mac(&new);
        Ok(new)
    }

    /// Marks the job done — for a re-key, destroying the old resource key — unless an
    /// object still needs it (a write sealed before the re-key began that committed
    /// late): then the job goes on. Returns whether it finished.
    async fn finish_job(&self, job: &Job, r: &Resource) -> Result<bool> {
        let _g = self.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        let mut cur = self.resource_by_id(&r.id).await?;
        let old_epoch = cur.rk_epoch - 1;
        if job.kind == "rekey" && cur.old_wrapped.is_some() {
            // The old resource key is destroyed: only its wrapping ever existed at rest.
            // The row update comes first: on PostgreSQL it waits for writers holding the
            // row (see commit.rs), so the count below sees what they wrote.
            cur.old_wrapped = None;
            cur.updated = self.now();
            self.save_resource(&mut *tx, &cur).await?;
            let left: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM store_objects WHERE resource_id = $1 AND rk_epoch < $2")
                    .bind(&r.id)
                    .bind(cur.rk_epoch)
                    .fetch_one(&mut *tx)
                    .await?;
            if left > 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query("UPDATE store_jobs SET state = 'succeeded', error = '', updated = $2 WHERE id = $1")
            .bind(&job.id)
            .bind(self.now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        drop(_g);
        if job.kind == "rekey" {
            self.cache.forget_slot(&r.id, Slot::Resource(old_epoch));
        }
        self.forget_for_real().await;
        self.audit(&cur, "system", &format!("finish-{}", job.kind), &job.id, "ok", serde_json::json!({})).await?;
        Ok(true)
    }
}

/// Stops renewing a job's lease when dropped.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
