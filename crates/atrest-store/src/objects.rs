//! Records (key → bytes, with ETags) and what records and blobs share: object rows,
//! their MAC, name hashing and sealed names.
//!
//! An object row holds: the keyed hash of the name (the lookup key), the sealed name,
//! the object id and generation (bound into every seal), the size and times (readable,
//! MACed), the data key wrapped by the resource key, and for records the sealed body.

use crate::cache::Slot;
use crate::commit::Outcome;
use crate::error::{Result, StoreError};
use crate::hierarchy::{self, ObjectId};
use crate::layers;
use crate::model::{DataRole, ObjectInfo, ObjectKind, Resource};
use crate::repo::objects::{self as repo, StoredObject};
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_crypto::SecretKey;
use atrest_infra::rowmac::Field;
use atrest_vault::Principal;

/// Longest object name, in bytes.
pub const MAX_NAME: usize = 1024;
/// Largest record body (larger values belong in blobs).
pub const MAX_RECORD: usize = 4 * 1024 * 1024;

/// A conditional write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// `If-Match`: the object's current ETag (or `*`: it must exist).
    pub if_match: Option<String>,
    /// `If-None-Match: *`: it must not exist.
    pub if_none_match: bool,
}

pub(crate) fn etag(id: &str, generation: i64) -> String {
    format!("\"{id}.{generation}\"")
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(StoreError::bad(format!(
            "an object name must be 1 to {MAX_NAME} bytes of UTF-8 without control characters"
        )));
    }
    Ok(())
}

impl StoreService {
    pub(crate) fn object_mac(&self, r: &ObjectRow) -> Vec<u8> {
        self.mac.tag("store_objects", &Self::object_fields(r))
    }

    /// The MACed fields: every column but the body (sealed instead) and the MAC; S3
    /// objects and uploads add their key and sealed metadata (the kind tells the shapes
    /// apart).
    fn object_fields(r: &ObjectRow) -> Vec<Field<'_>> {
        let mut f = vec![
            Field::Text(&r.resource_id),
            Field::Text(r.kind),
            Field::Bytes(&r.name_hash),
            Field::Text(&r.id),
            Field::Int(r.generation),
            Field::Int(r.size),
            Field::Int(r.rk_epoch),
            Field::Int(r.enc_epoch),
            Field::Bytes(&r.name_sealed),
            Field::Bytes(&r.wrapped_dek),
            Field::Int(r.created),
            Field::Int(r.updated),
        ];
        if r.kind == ObjectKind::S3.as_str() || r.kind == ObjectKind::S3Upload.as_str() {
            f.push(Field::Bytes(r.skey.as_deref().unwrap_or_default()));
            f.push(Field::Bytes(r.meta.as_deref().unwrap_or_default()));
        }
        f
    }

    /// Checks a stored object row: its kind, its resource and its MAC.
    pub(crate) fn verify_object(&self, res: &Resource, stored: StoredObject) -> Result<ObjectRow> {
        let StoredObject { row: o, kind } = stored;
        let ok = o.kind == kind
            && o.resource_id == res.id
            && self.mac.check("store_objects", &Self::object_fields(&o), &o.mac, String::new).is_ok();
        if !ok {
            return Err(self.integrity(res, &format!("the metadata of object {} in resource {}", o.id, res.name)));
        }
        Ok(o)
    }

    /// Counts, logs and returns an integrity error.
    pub(crate) fn integrity(&self, r: &Resource, what: &str) -> StoreError {
        self.metrics.integrity_error(&Self::label(r));
        tracing::error!(resource = %r.name, what = %what, "integrity check failed");
        StoreError::Integrity(what.to_string())
    }

    pub(crate) fn oid<'a>(r: &'a Resource, o: &'a ObjectRow) -> ObjectId<'a> {
        ObjectId { resource: &r.id, object: &o.id, generation: u64::try_from(o.generation).unwrap_or(0) }
    }

    /// The row of object `name`, if any.
    pub(crate) async fn find_object(&self, r: &Resource, kind: ObjectKind, name: &str) -> Result<Option<ObjectRow>> {
        let hash = self.names.hash(&r.id, kind.as_str(), name);
        let row = repo::find(&self.db, &r.id, kind.as_str(), &hash).await?;
        row.map(|row| self.verify_object(r, row)).transpose()
    }

    /// The data key of an object (through the resource key of its epoch).
    pub(crate) async fn data_key(&self, r: &Resource, o: &ObjectRow) -> Result<SecretKey> {
        let rk = self.key(r, Slot::Resource(o.rk_epoch)).await?;
        hierarchy::open_data_key(&rk, Self::oid(r, o), &o.wrapped_dek)
            .map_err(|_| self.integrity(r, &format!("the wrapped data key of object {} in resource {}", o.id, r.name)))
    }

    pub(crate) fn info(&self, r: &Resource, o: &ObjectRow, dek: &SecretKey) -> Result<ObjectInfo> {
        let name = layers::open_name(&self.infra, dek, Self::oid(r, o), &o.name_sealed)
            .map_err(|_| self.integrity(r, &format!("the name of object {} in resource {}", o.id, r.name)))?;
        Ok(ObjectInfo {
            name,
            size: u64::try_from(o.size).unwrap_or(0),
            generation: o.generation,
            etag: etag(&o.id, o.generation),
            created: o.created,
            updated: o.updated,
        })
    }

    pub(crate) fn check_precondition(name: &str, cur: Option<&ObjectRow>, cond: &Precondition) -> Result<()> {
        let failed = |why: &str| StoreError::PreconditionFailed(format!("{name}: {why}; read it again and retry"));
        match (cur, &cond.if_match) {
            (None, Some(_)) => return Err(failed("If-Match was given but the object does not exist")),
            (Some(o), Some(m)) if m != "*" && *m != etag(&o.id, o.generation) => {
                return Err(failed("it changed since the ETag given in If-Match"));
            }
            _ => {}
        }
        if cond.if_none_match && cur.is_some() {
            return Err(failed("If-None-Match: * was given but the object exists"));
        }
        Ok(())
    }

    /// The next row for object `name`: same id and the next generation when it exists.
    pub(crate) async fn next_row(
        &self,
        r: &Resource,
        kind: ObjectKind,
        name: &str,
        cur: Option<&ObjectRow>,
        size: usize,
    ) -> Result<(ObjectRow, SecretKey)> {
        let now = self.now();
        let (id, generation, created) = match cur {
            Some(o) => (o.id.clone(), o.generation + 1, o.created),
            None => (hex::encode(atrest_crypto::rand::bytes::<16>()?), 1, now),
        };
        let rk = self.key(r, Slot::Resource(r.rk_epoch)).await?;
        let mut row = ObjectRow {
            resource_id: r.id.clone(),
            kind: kind.as_str(),
            name_hash: self.names.hash(&r.id, kind.as_str(), name),
            id,
            generation,
            size: i64::try_from(size).unwrap_or(i64::MAX),
            rk_epoch: r.rk_epoch,
            enc_epoch: r.enc_epoch,
            name_sealed: Vec::new(),
            wrapped_dek: Vec::new(),
            body: None,
            created,
            updated: now,
            mac: Vec::new(),
            skey: None,
            meta: None,
        };
        let (dek, wrapped) = hierarchy::new_data_key(&rk, Self::oid(r, &row))?;
        row.wrapped_dek = wrapped;
        row.name_sealed = layers::seal_name(&self.infra, &dek, Self::oid(r, &row), name)?;
        Ok((row, dek))
    }

    /// Writes (or overwrites) record `name`.
    ///
    /// # Errors
    /// `Forbidden` below writer; `PreconditionFailed`; `KeyInaccessible`; `BadParameter`.
    pub async fn put_record(
        &self,
        actor: &Principal,
        resource: &str,
        name: &str,
        body: &[u8],
        cond: &Precondition,
    ) -> Result<ObjectInfo> {
        check_name(name)?;
        if body.len() > MAX_RECORD {
            return Err(StoreError::bad(format!(
                "a record holds at most {MAX_RECORD} bytes; store larger values as blobs"
            )));
        }
        let mut r = self.authorized(actor, resource, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        // A concurrent writer may move the object between our read and our commit: the
        // commit is conditional, and an unconditional put simply tries again. So does a
        // put that a re-key overtook (sealed under the previous resource key).
        for attempt in 0..16 {
            if attempt > 0 {
                r = self.resource_by_id(&r.id).await?;
                Self::check_usable(&r)?;
            }
            let cur = self.find_object(&r, ObjectKind::Record, name).await?;
            Self::check_precondition(name, cur.as_ref(), cond)?;
            let (mut row, dek) = self.next_row(&r, ObjectKind::Record, name, cur.as_ref(), body.len()).await?;
            row.body = Some(layers::seal_with(&self.infra, &dek, Self::oid(&r, &row), b"atrest/object", body)?);
            row.mac = self.object_mac(&row);
            let info = ObjectInfo {
                name: name.to_string(),
                size: body.len() as u64,
                generation: row.generation,
                etag: etag(&row.id, row.generation),
                created: row.created,
                updated: row.updated,
            };
            let oid = row.id.clone();
            match self.committer.write(row, cur.as_ref().map(|o| o.generation)).await? {
                Outcome::Written => {
                    if r.diagnostics {
                        self.audit(
                            &r,
                            &actor.name,
                            "record-put",
                            &oid,
                            "ok",
                            serde_json::json!({"generation": info.generation}),
                        )
                        .await?;
                    }
                    return Ok(info);
                }
                Outcome::Moved if cond.if_match.is_some() || cond.if_none_match => {
                    return Err(StoreError::PreconditionFailed(format!(
                        "{name}: it changed while this write was in flight; read it again and retry"
                    )));
                }
                Outcome::Moved | Outcome::Stale => {}
            }
        }
        Err(StoreError::Conflict(format!("{name}: too many concurrent writers; retry")))
    }

    /// Reads record `name`.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`, `KeyInaccessible`, `Forbidden`.
    pub async fn get_record(&self, actor: &Principal, resource: &str, name: &str) -> Result<(ObjectInfo, Vec<u8>)> {
        let r = self.authorized(actor, resource, DataRole::Reader).await?;
        Self::check_usable(&r)?;
        let o = self
            .find_object(&r, ObjectKind::Record, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no record named {name} in resource {resource}")))?;
        let dek = self.data_key(&r, &o).await?;
        let info = self.info(&r, &o, &dek)?;
        let body = o.body.as_deref().unwrap_or_default();
        let plain = layers::open_with(&self.infra, &dek, Self::oid(&r, &o), b"atrest/object", body)
            .map_err(|_| self.integrity(&r, &format!("the body of object {} in resource {}", o.id, r.name)))?;
        if r.diagnostics {
            self.audit(&r, &actor.name, "record-get", &o.id, "ok", serde_json::json!({"generation": o.generation}))
                .await?;
        }
        Ok((info, plain))
    }

    /// Deletes an object by crypto-erasure: its row (with the wrapped data key) is
    /// deleted; for a blob, its file is removed.
    ///
    /// # Errors
    /// `NotFound`, `PreconditionFailed`, `Forbidden`, `KeyInaccessible`.
    pub async fn delete_object(
        &self,
        actor: &Principal,
        resource: &str,
        kind: ObjectKind,
        name: &str,
        cond: &Precondition,
    ) -> Result<()> {
        let r = self.authorized(actor, resource, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let o = self.find_object(&r, kind, name).await?.ok_or_else(|| {
            StoreError::ObjectNotFound(format!("no {} named {name} in resource {resource}", kind.as_str()))
        })?;
        Self::check_precondition(name, Some(&o), cond)?;
        {
            let _g = self.write_guard().await;
            if !repo::delete_at(&self.db, &r.id, kind.as_str(), &o.name_hash, o.generation, &o.id).await? {
                return Err(StoreError::PreconditionFailed(format!("{name}: it changed while being deleted; retry")));
            }
        }
        if kind.is_streamed() {
            self.retire_blob_body(&r, &o).await;
        }
        self.forget_for_real().await;
        self.audit(&r, &actor.name, &format!("{}-delete", kind.as_str()), &o.id, "ok", serde_json::json!({})).await
    }

    /// Lists objects (names decrypted), sorted by name, from after `after`, at most `limit`.
    ///
    /// # Errors
    /// `Forbidden`, `KeyInaccessible`, `Integrity`.
    pub async fn list_objects(
        &self,
        actor: &Principal,
        resource: &str,
        kind: ObjectKind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ObjectInfo>, bool)> {
        let r = self.authorized(actor, resource, DataRole::Reader).await?;
        Self::check_usable(&r)?;
        let rows = repo::of_kind(&self.db, &r.id, kind.as_str()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let o = self.verify_object(&r, row)?;
            let dek = self.data_key(&r, &o).await?;
            let info = self.info(&r, &o, &dek)?;
            if info.name.starts_with(prefix) && after.is_none_or(|a| info.name.as_str() > a) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }
}
