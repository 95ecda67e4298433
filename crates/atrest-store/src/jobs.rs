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
use crate::repo::jobs as repo;
use crate::repo::objects::Epoch;
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_infra::rowmac::Field;
use atrest_vault::Principal;
use futures_util::StreamExt;
use std::sync::Arc;

/// Job kinds.
pub const KINDS: &[&str] = &["rekey", "reencrypt"];

impl StoreService {
    fn job_mac(&self, id: &str, resource_id: &str, kind: &str, created: i64) -> Vec<u8> {
        self.mac.tag("store_jobs", &[Field::Text(id), Field::Text(resource_id), Field::Text(kind), Field::Int(created)])
    }

    /// A job row, its MAC checked (what the job is; its progress is not authenticated).
    fn verify_job(&self, row: repo::JobRow, resource: &str) -> Result<Job> {
        let expect = self.job_mac(&row.id, &row.resource_id, &row.kind, row.created);
        let job = Job {
            id: row.id,
            resource: resource.to_string(),
            kind: row.kind,
            state: row.state,
            done: row.done,
            total: row.total,
            error: row.error,
            created: row.created,
            updated: row.updated,
        };
        if !atrest_crypto::secret::constant_time_eq(&expect, &row.mac) {
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
            let (key, wrapped) =
                hierarchy::new_resource_key(vault.as_ref(), &r.kek).await.map_err(|e| Self::named_by_uri(&r, e))?;
            self.metrics.vault_call(&Self::label(&r), "wrapKey", true);
            Some((key, wrapped))
        } else {
            None
        };
        let now = self.now();
        let id = hex::encode(atrest_crypto::rand::bytes::<16>()?);
        let _g = self.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        if let Some(j) = repo::running_on(&mut tx, &r.id).await? {
            return Err(StoreError::Conflict(format!(
                "job {j} is still running on resource {resource}: wait for it (atrest job watch {j})"
            )));
        }
        let total = crate::repo::objects::count(&mut tx, &r.id, None).await?;
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
        // The unique index on running jobs: another node may have started one meanwhile.
        repo::insert_running(&mut tx, &id, &r.id, kind, total, now, &self.job_mac(&id, &r.id, kind, now))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("another job is running on resource {resource}; wait for it"))
                }
                e => e,
            })?;
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
        let row = repo::by_id(&self.db, id).await?.ok_or_else(|| StoreError::NotFound(format!("no job {id}")))?;
        let r =
            self.resource_by_id(&row.resource_id).await.map_err(|_| StoreError::NotFound(format!("no job {id}")))?;
        match self.role_of(actor, &r).await? {
            Some(DataRole::Owner) => self.verify_job(row, &r.name),
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
            for row in repo::of_resource(&self.db, &r.id).await? {
                out.push(self.verify_job(row, &r.name)?);
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
        let mut finished = 0;
        for row in repo::running(&self.db).await? {
            let rid = row.resource_id.clone();
            let job = self.verify_job(row, "")?;
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
        repo::set(&self.db, id, state, done, error, self.now()).await
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
            let (epoch, target) =
                if job.kind == "rekey" { (Epoch::ResourceKey, r.rk_epoch) } else { (Epoch::Encryption, r.enc_epoch) };
            let limit = i64::try_from(self.cfg.job_batch).unwrap_or(500);
            let rows = crate::repo::objects::behind(&self.db, &r.id, epoch, target, limit).await?;
            if rows.is_empty() {
                if self.finish_job(job, &r).await? {
                    return Ok(true);
                }
                continue;
            }
            let mut done_now = 0i64;
            let mut updates = Vec::with_capacity(rows.len());
            for row in rows {
                let o = self.verify_object(&r, row)?;
                let new =
                    if job.kind == "rekey" { self.rekeyed(&r, &o).await? } else { self.reencrypted(&r, &o).await? };
                updates.push((o, new));
            }
            let mut applied = Vec::with_capacity(updates.len());
            {
                let _g = self.write_guard().await;
                let mut tx = self.db.pool().begin().await?;
                for (old, new) in &updates {
                    let ok = crate::repo::objects::replace_if_at(&mut tx, new, old.generation, Some(&old.id)).await?;
                    applied.push(ok);
                    done_now += i64::from(ok);
                }
                repo::add_done(&mut tx, &job.id, done_now, self.now()).await?;
                tx.commit().await?;
            }
            // A rewritten blob's old body retires once its replacement is committed; a
            // replacement that lost to a concurrent write goes at once instead (each body
            // belongs to one write).
            for ((old, new), ok) in updates.iter().zip(applied) {
                if ObjectKind::stored_is_streamed(old.kind) && new.generation != old.generation {
                    if ok {
                        self.retire_blob_body(&r, old).await;
                    } else {
                        self.discard_blob_body(&r.id, &Self::blob_name(new)).await;
                    }
                }
            }
            batches += 1;
            let done = repo::done(&self.db, &job.id).await?;
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
        if o.kind == ObjectKind::S3Upload.as_str() {
            // Its parts are sealed under its data key already and are never rewritten: the
            // upload keeps that key (re-wrapped); the object it completes into is
            // re-encrypted by the next run.
            let mut new = self.rekeyed(r, o).await?;
            new.enc_epoch = r.enc_epoch;
            new.mac = self.object_mac(&new);
            return Ok(new);
        }
        let dek = self.data_key(r, o).await?;
        let name = layers::open_name(&self.infra, &dek, Self::oid(r, o), &o.name_sealed)
            .map_err(|_| self.integrity(r, &format!("the name of object {}", o.id)))?;
        let rk = self.key(r, Slot::Resource(r.rk_epoch)).await?;
        let mut new = o.clone();
        new.rk_epoch = r.rk_epoch;
        new.enc_epoch = r.enc_epoch;
        if ObjectKind::stored_is_streamed(o.kind) {
            new.generation = o.generation + 1;
        }
        if o.kind == ObjectKind::S3.as_str() {
            // Sealed with the generation as context: moves with it; the body becomes one
            // file (a multipart object's parts are retired once this commits).
            new.meta = Some(self.reseal_s3_meta(r, o, &new)?);
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
            let left = crate::repo::objects::count(&mut tx, &r.id, Some(cur.rk_epoch)).await?;
            if left > 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        repo::succeed(&mut tx, &job.id, self.now()).await?;
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
