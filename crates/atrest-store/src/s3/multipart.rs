//! S3 multipart uploads. An upload is an object row of kind `s3upload` holding the key, a
//! fresh data key (wrapped by the resource key, so re-key jobs cover it) and the metadata
//! the object will get. Each part is sealed as it arrives — both layers, streamed, under
//! that data key with the context (resource, upload id, part number) — into a body of its
//! own, listed in `store_s3_parts`. Complete writes only metadata: the object row takes the
//! upload's data key (re-wrapped for the object's context, 32 bytes) and a part index; no
//! part is read or sealed again. It commits in one transaction with the part rows' links
//! and the upload's removal, conditional on the object's generation, so a failed
//! overwrite leaves the old object intact.

use super::meta::{self, Multipart, PartRef, S3Meta, Sse};
use super::{S3Object, S3Put};
use crate::error::{Result, StoreError};
use crate::hierarchy::{self, ObjectId};
use crate::layers;
use crate::model::{DataRole, ObjectKind, Resource};
use crate::objects::check_name;
use crate::repo::objects as objects_repo;
use crate::repo::s3parts::{self as repo, PartRow};
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_crypto::record;
use atrest_infra::rowmac::Field;
use atrest_vault::Principal;
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most parts of one upload, and the smallest part but the last, as on S3.
pub const MAX_PARTS: u32 = 10_000;
/// The smallest part but the last.
pub const MIN_PART: u64 = 5 << 20;

/// Why Complete refused the part list (S3's codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompleteRefusal {
    /// A part that was not uploaded, or whose ETag differs.
    InvalidPart(String),
    /// Part numbers not in ascending order.
    InvalidPartOrder(String),
    /// A part but the last under 5 MiB.
    EntityTooSmall(String),
    /// `If-Match` was given and the key has no object.
    NoSuchKey(String),
    /// The object's checksum could not be made from the parts', or is not the one sent.
    BadDigest(String),
    /// A checksum was sent for an upload created without a checksum algorithm.
    InvalidRequest(String),
}

/// Makes an upload's object checksum from its parts': `(algorithm, full object, parts
/// as (number, size, that algorithm's checksum))` → the object's checksum, or why not.
pub type CombineChecksums<'a> =
    &'a (dyn Fn(&str, bool, &[(u32, u64, Option<&str>)]) -> std::result::Result<String, String> + Send + Sync);

/// What CompleteMultipartUpload sends.
pub struct CompleteRequest<'a> {
    /// (part number, ETag), in ascending order.
    pub parts: &'a [(u32, String)],
    /// The SSE-C key, for an upload under one.
    pub customer_key: Option<&'a atrest_crypto::SecretKey>,
    /// `If-Match`.
    pub if_match: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// For an upload with a checksum algorithm: how its object's checksum is made.
    pub combine: Option<CombineChecksums<'a>>,
    /// The algorithm of an object checksum the request sent (`x-amz-checksum-*`).
    pub checksum_sent: Option<&'a str>,
}

/// A part, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number.
    pub number: u32,
    /// Plaintext size.
    pub size: u64,
    /// ETag without quotes (the part's MD5).
    pub etag: String,
    /// Uploaded (Unix seconds).
    pub modified: i64,
    /// Its checksums, by algorithm.
    pub checksums: BTreeMap<String, String>,
    /// The upload's encryption (on an upload's answer; not in listings).
    pub sse: Option<Sse>,
}

/// An upload in progress, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// The object key.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// Started (Unix seconds).
    pub initiated: i64,
}

/// What is sealed of a part (infrastructure layer, context `atrest/s3-part`).
#[derive(Serialize, Deserialize)]
struct PartMeta {
    etag: String,
    #[serde(default)]
    checksums: BTreeMap<String, String>,
}

fn part_fields(p: &PartRow) -> [Field<'_>; 9] {
    [
        Field::Text(&p.resource_id),
        Field::Text(&p.upload_id),
        Field::Int(p.part),
        Field::Text(&p.body),
        Field::Int(p.size),
        Field::Bytes(&p.meta),
        Field::Text(p.object_id.as_deref().unwrap_or_default()),
        Field::OptInt(p.generation),
        Field::Int(p.created),
    ]
}

fn no_such_upload(upload_id: &str) -> StoreError {
    StoreError::ObjectNotFound(format!(
        "no upload {upload_id} for this key: it was completed or aborted, or never started; start a new one"
    ))
}

impl StoreService {
    fn part_id<'a>(r: &'a Resource, upload_id: &'a str, n: u32) -> ObjectId<'a> {
        ObjectId { resource: &r.id, object: upload_id, generation: u64::from(n) }
    }

    fn verify_part(&self, r: &Resource, p: PartRow) -> Result<(PartRow, PartMeta)> {
        let ok =
            p.resource_id == r.id && self.mac.check("store_s3_parts", &part_fields(&p), &p.mac, String::new).is_ok();
        let n = u32::try_from(p.part).unwrap_or(0);
        let m = ok
            .then(|| {
                Self::part_id(r, &p.upload_id, n)
                    .with_context(b"atrest/s3-part", |ctx| record::open(&self.infra.key, ctx, &p.meta))
                    .ok()
                    .and_then(|j| serde_json::from_slice::<PartMeta>(&j).ok())
            })
            .flatten();
        match m {
            Some(m) => Ok((p, m)),
            None => Err(self.integrity(r, &format!("part {} of upload {} in bucket {}", p.part, p.upload_id, r.name))),
        }
    }

    /// The upload row of `upload_id` for `key`, and its metadata.
    async fn upload_row(&self, r: &Resource, key: &str, upload_id: &str) -> Result<(ObjectRow, S3Meta)> {
        let u = self.find_object(r, ObjectKind::S3Upload, upload_id).await?.ok_or_else(|| no_such_upload(upload_id))?;
        if u.skey.as_deref() != Some(key.as_bytes()) {
            return Err(no_such_upload(upload_id));
        }
        let m = self.s3_meta(r, &u)?;
        Ok((u, m))
    }

    /// Starts a multipart upload of `key`; returns its id and encryption.
    ///
    /// # Errors
    /// As a put (bucket, role, encryption asked for).
    pub async fn s3_create_upload(
        &self,
        actor: &Principal,
        bucket: &str,
        key: &str,
        put: S3Put,
    ) -> Result<(String, Sse)> {
        check_name(key)?;
        let r = self.authorized(actor, bucket, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let upload_id = hex::encode(atrest_crypto::rand::bytes::<16>()?);
        let (mut row, dek) = self.next_row(&r, ObjectKind::S3Upload, &upload_id, None, 0).await?;
        // The row's id is the upload id (listings report it), so the data key is wrapped
        // for that context.
        row.id.clone_from(&upload_id);
        let rk = self.key(&r, crate::cache::Slot::Resource(r.rk_epoch)).await?;
        row.wrapped_dek = hierarchy::rewrap_data_key(&rk, Self::oid(&r, &row), &dek)?;
        let (sse, key_slot) = self.new_object_sse(actor, &r, put.sse.as_ref(), &mut row, &dek).await?;
        // The sealed name is the key (the row is found by the upload id's hash).
        row.name_sealed = layers::seal_name(&self.infra, &dek, Self::oid(&r, &row), key)?;
        row.skey = Some(key.as_bytes().to_vec());
        let mut m = S3Meta::new(String::new(), sse);
        m.key_slot = key_slot.map(|s| s.id);
        if let Some((algorithm, full)) = put.checksum {
            m.checksum_algorithm = Some(algorithm);
            m.checksum_type = Some(if full { "FULL_OBJECT" } else { "COMPOSITE" }.into());
        }
        m.headers = put.headers;
        m.user = put.user;
        // The epoch its parts are sealed under: a re-encrypt job re-wraps the upload's data
        // key but cannot reseal parts, so the completed object must still be behind.
        m.parts_epoch = Some(row.enc_epoch);
        row.meta = Some(meta::seal(&self.infra, Self::oid(&r, &row), &m)?);
        row.mac = self.object_mac(&row);
        let sse_out = m.sse;
        match self.committer.write(row, None).await? {
            crate::commit::Outcome::Written => Ok((upload_id, sse_out)),
            _ => Err(StoreError::Conflict("the bucket changed while the upload started; retry".into())),
        }
    }

    /// Stores part `n` of an upload from a stream; `finish(size)` judges the body as for
    /// a put. A part uploaded again replaces the earlier one. Returns the part's ETag.
    ///
    /// # Errors
    /// `ObjectNotFound` (no such upload), `BadRequest` (part number), as a put.
    #[allow(clippy::too_many_arguments)]
    pub async fn s3_upload_part<S, E, F, X>(
        &self,
        actor: &Principal,
        bucket: &str,
        key: &str,
        upload_id: &str,
        n: u32,
        customer_key: Option<&atrest_crypto::SecretKey>,
        input: S,
        finish: F,
    ) -> Result<std::result::Result<PartInfo, X>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
        F: FnOnce(u64) -> std::result::Result<super::BodyDigest, X>,
    {
        if !(1..=MAX_PARTS).contains(&n) {
            return Err(StoreError::bad(format!("part numbers go from 1 to {MAX_PARTS}, not {n}")));
        }
        let r = self.authorized(actor, bucket, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let (u, umeta) = self.upload_row(&r, key, upload_id).await?;
        let key_holder = self.key_holder(&r, &umeta).await?;
        let dek = self.s3_data_key(&r, &key_holder, &u, &umeta, customer_key, key).await?;
        // A key of its own for part ETags, derived from the upload's data key.
        let etag_key = {
            let mut k = zeroize::Zeroizing::new([0u8; 32]);
            atrest_crypto::kdf::hkdf_sha256(
                dek.expose_secret(),
                b"atrest/v1/s3-part-etag",
                &[upload_id.as_bytes()],
                &mut k[..],
            )?;
            atrest_crypto::kdf::MacKey::new(&atrest_crypto::SecretKey::from_slice(&k[..])?)
        };
        // A name of its own per write (random tag), so a part sent twice at once never
        // shares a body.
        let name = crate::blobs::blob_key(upload_id, i64::from(n), &atrest_crypto::rand::bytes::<16>()?);
        let (body, size) = self.write_body(&r, &key_holder, upload_id, u64::from(n), name, dek, input).await?;
        let digest = match finish(size) {
            Ok(d) => d,
            Err(refusal) => {
                self.discard_blob_body(&r.id, &body).await;
                return Ok(Err(refusal));
            }
        };
        // As for whole objects: the MD5 of the plaintext only under SSE-S3 (a part of an
        // SSE-C or SSE-KMS object must not reveal it to readers without the key). Else a
        // MAC of it under the upload's data key: the same part sent again keeps its ETag,
        // which clients that retry a part rely on.
        let etag = match umeta.sse {
            Sse::S3 => hex::encode(digest.md5),
            Sse::Kms { .. } | Sse::Customer { .. } => {
                hex::encode(&etag_key.sign(&[b"atrest/s3-part-etag", &digest.md5])[..16])
            }
        };
        let pm = PartMeta { etag, checksums: digest.checksums.clone() };
        let json = serde_json::to_vec(&pm).map_err(|e| StoreError::Storage(e.to_string()))?;
        let sealed = Self::part_id(&r, upload_id, n)
            .with_context(b"atrest/s3-part", |ctx| record::seal(&self.infra.key, ctx, &json))?;
        let mut row = PartRow {
            resource_id: r.id.clone(),
            upload_id: upload_id.to_string(),
            part: i64::from(n),
            body: body.clone(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            meta: sealed,
            object_id: None,
            generation: None,
            created: self.now(),
            mac: Vec::new(),
        };
        row.mac = self.mac.tag("store_s3_parts", &part_fields(&row));
        let replaced = {
            let _g = self.write_guard().await;
            let mut tx = self.db.pool().begin().await?;
            // The upload must still be there: a part of an aborted upload is not kept.
            let live =
                objects_repo::exists_in(&mut tx, self.db.engine(), &r.id, ObjectKind::S3Upload.as_str(), &u.name_hash)
                    .await?;
            if !live {
                drop(tx);
                self.discard_blob_body(&r.id, &body).await;
                return Err(no_such_upload(upload_id));
            }
            let old = repo::put(&mut tx, &row).await?;
            tx.commit().await?;
            old
        };
        if let Some(old) = replaced {
            self.retire_body_name(&r.id, &old).await;
        }
        Ok(Ok(PartInfo {
            number: n,
            size,
            etag: pm.etag,
            modified: row.created,
            checksums: pm.checksums,
            sse: Some(umeta.sse),
        }))
    }

    /// The parts of an upload (after part `after`, at most `max`), and whether more follow.
    ///
    /// # Errors
    /// `ObjectNotFound` (no such upload), `NotFound`, `Forbidden`.
    pub async fn s3_list_parts(
        &self,
        actor: &Principal,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool)> {
        let r = self.authorized(actor, bucket, DataRole::Reader).await?;
        self.upload_row(&r, key, upload_id).await?;
        let mut out = Vec::new();
        let mut truncated = false;
        for p in repo::of_upload(&self.db, &r.id, upload_id).await? {
            let (p, m) = self.verify_part(&r, p)?;
            let number = u32::try_from(p.part).unwrap_or(0);
            if number <= after {
                continue;
            }
            if out.len() == max {
                truncated = true;
                break;
            }
            out.push(PartInfo {
                number,
                size: u64::try_from(p.size).unwrap_or(0),
                etag: m.etag,
                modified: p.created,
                checksums: m.checksums,
                sse: None,
            });
        }
        Ok((out, truncated))
    }

    /// Uploads in progress in a bucket, by key then id, after (`key_marker`,
    /// `upload_marker`), at most `max`; and whether more follow.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `Integrity`.
    pub async fn s3_list_uploads(
        &self,
        actor: &Principal,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        upload_marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<UploadInfo>, bool)> {
        let r = self.authorized(actor, bucket, DataRole::Reader).await?;
        let from = key_marker.map_or(prefix.as_bytes(), str::as_bytes).max(prefix.as_bytes()).to_vec();
        let below = super::list::after_prefix(prefix.as_bytes());
        let mut out = Vec::new();
        let mut truncated = false;
        let limit = i64::try_from(max.saturating_mul(2).saturating_add(1001)).unwrap_or(i64::MAX);
        let rows =
            objects_repo::s3_page(&self.db, &r.id, ObjectKind::S3Upload.as_str(), &from, true, below.as_deref(), limit)
                .await?;
        for stored in rows {
            let u = self.verify_object(&r, stored)?;
            let key = String::from_utf8(u.skey.clone().unwrap_or_default())
                .map_err(|_| StoreError::Integrity(format!("the key of upload {}", u.id)))?;
            // After the marker: a later key, or the marker's key with a later upload id
            // (with no upload-id marker, every upload of the marker's key is skipped).
            if let Some(km) = key_marker {
                let skip = match upload_marker {
                    Some(um) => key.as_str() < km || (key == km && u.id.as_str() <= um),
                    None => key.as_str() <= km,
                };
                if skip {
                    continue;
                }
            }
            if out.len() == max {
                truncated = true;
                break;
            }
            out.push(UploadInfo { key, upload_id: u.id.clone(), initiated: u.created });
        }
        Ok((out, truncated))
    }

    /// Aborts an upload: its parts' bodies go, and the upload with them.
    ///
    /// # Errors
    /// `ObjectNotFound` (no such upload), `NotFound`, `Forbidden`.
    pub async fn s3_abort_upload(&self, actor: &Principal, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let r = self.authorized(actor, bucket, DataRole::Writer).await?;
        let (u, _) = self.upload_row(&r, key, upload_id).await?;
        let parts = {
            let _g = self.write_guard().await;
            let mut tx = self.db.pool().begin().await?;
            // The upload first (it waits for, or turns away, a part being stored), then
            // every part that is there now.
            if !objects_repo::delete_in(&mut tx, &r.id, ObjectKind::S3Upload.as_str(), &u.name_hash).await? {
                return Err(no_such_upload(upload_id));
            }
            let parts = repo::take_upload(&mut tx, &r.id, upload_id).await?;
            tx.commit().await?;
            parts
        };
        for body in parts {
            self.discard_blob_body(&r.id, &body).await;
        }
        self.forget_for_real().await;
        Ok(())
    }

    /// Completes an upload from the parts listed (number, ETag), in ascending order.
    /// The inner `Err` is S3's refusal of the list.
    ///
    /// # Errors
    /// `ObjectNotFound` (no such upload), `PreconditionFailed` (another write of the key
    /// finished first), `KeyInaccessible`, `NotFound`, `Forbidden`.
    pub async fn s3_complete_upload(
        &self,
        actor: &Principal,
        bucket: &str,
        key: &str,
        upload_id: &str,
        req: &CompleteRequest<'_>,
    ) -> Result<std::result::Result<S3Object, CompleteRefusal>> {
        let (listed, customer_key) = (req.parts, req.customer_key);
        let r = self.authorized(actor, bucket, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let (u, umeta) = match self.upload_row(&r, key, upload_id).await {
            Ok(found) => found,
            // Completed already: the same answer again, as on S3.
            Err(StoreError::ObjectNotFound(m)) => match self.s3_row(&r, key).await? {
                Some((o, om)) if om.multipart.as_ref().is_some_and(|mp| mp.upload == upload_id) => {
                    return Ok(Ok(Self::s3_object(&r, key, &o, om)));
                }
                _ => return Err(StoreError::ObjectNotFound(m)),
            },
            Err(e) => return Err(e),
        };
        let mut stored = BTreeMap::new();
        for p in repo::of_upload(&self.db, &r.id, upload_id).await? {
            let (p, m) = self.verify_part(&r, p)?;
            stored.insert(u32::try_from(p.part).unwrap_or(0), (p, m));
        }
        if listed.is_empty() {
            return Ok(Err(CompleteRefusal::InvalidPart("the list names no part".into())));
        }
        let mut parts = Vec::with_capacity(listed.len());
        let mut md5s = Vec::with_capacity(listed.len() * 16);
        let mut prev = 0;
        for (i, (n, etag)) in listed.iter().enumerate() {
            if *n <= prev {
                return Ok(Err(CompleteRefusal::InvalidPartOrder(format!(
                    "part {n} follows part {prev}: list the parts in ascending order"
                ))));
            }
            prev = *n;
            let Some((p, m)) = stored.get(n) else {
                return Ok(Err(CompleteRefusal::InvalidPart(format!("part {n} was not uploaded"))));
            };
            if etag.trim_matches('"') != m.etag {
                return Ok(Err(CompleteRefusal::InvalidPart(format!("part {n}'s ETag is not {etag}"))));
            }
            let size = u64::try_from(p.size).unwrap_or(0);
            if i + 1 < listed.len() && size < MIN_PART {
                return Ok(Err(CompleteRefusal::EntityTooSmall(format!(
                    "part {n} has {size} bytes; every part but the last needs at least {MIN_PART}"
                ))));
            }
            md5s.extend(hex::decode(&m.etag).unwrap_or_default());
            parts.push(PartRef { n: *n, size, body: p.body.clone(), checksums: m.checksums.clone() });
        }
        let total: u64 = parts.iter().map(|p| p.size).sum();
        // The object's checksum, from the parts' (never from their bodies: not re-read).
        if let (None, Some(sent)) = (&umeta.checksum_algorithm, req.checksum_sent) {
            return Ok(Err(CompleteRefusal::InvalidRequest(format!(
                "a {sent} checksum was sent, but the upload was created without a checksum algorithm: it has no \
                 object checksum to compare (send none, or create the upload with x-amz-checksum-algorithm)"
            ))));
        }
        let checksum = match (&umeta.checksum_algorithm, req.combine) {
            (Some(algorithm), Some(combine)) => {
                let full = umeta.checksum_type.as_deref() == Some("FULL_OBJECT");
                let listed: Vec<(u32, u64, Option<&str>)> =
                    parts.iter().map(|p| (p.n, p.size, p.checksums.get(algorithm).map(String::as_str))).collect();
                match combine(algorithm, full, &listed) {
                    Ok(v) => Some((algorithm.clone(), v)),
                    Err(m) => return Ok(Err(CompleteRefusal::BadDigest(m))),
                }
            }
            _ => None,
        };
        let etag = match umeta.sse {
            Sse::S3 => {
                use md5::Digest as _;
                format!("{}-{}", hex::encode(md5::Md5::digest(&md5s)), parts.len())
            }
            Sse::Kms { .. } | Sse::Customer { .. } => {
                format!("{}-{}", hex::encode(atrest_crypto::rand::bytes::<16>()?), parts.len())
            }
        };
        let key_holder = self.key_holder(&r, &umeta).await?;
        let dek = self.s3_data_key(&r, &key_holder, &u, &umeta, customer_key, key).await?;
        let customer = matches!(umeta.sse, Sse::Customer { .. });
        let cur = self.s3_row(&r, key).await?;
        match super::check_s3_precondition(key, cur.as_ref().map(|(_, m)| m), req.if_match, req.if_none_match) {
            Err(StoreError::ObjectNotFound(m)) => return Ok(Err(CompleteRefusal::NoSuchKey(m))),
            other => other?,
        }
        let conditional = req.if_match.is_some() || req.if_none_match.is_some();
        let mut cur = cur.map(|(o, _)| o);
        let now = self.now();
        // A new id for every write (see `commit_s3`).
        let (id, generation, created) = (hex::encode(atrest_crypto::rand::bytes::<16>()?), 1, now);
        let mut row = ObjectRow {
            resource_id: r.id.clone(),
            kind: ObjectKind::S3.as_str(),
            name_hash: self.names.hash(&r.id, ObjectKind::S3.as_str(), key),
            id,
            generation,
            size: i64::try_from(total).unwrap_or(i64::MAX),
            rk_epoch: r.rk_epoch,
            enc_epoch: umeta.parts_epoch.unwrap_or(u.enc_epoch).min(r.enc_epoch),
            name_sealed: Vec::new(),
            wrapped_dek: Vec::new(),
            body: None,
            created,
            updated: now,
            mac: Vec::new(),
            skey: Some(key.as_bytes().to_vec()),
            meta: None,
        };
        // The upload's data key, wrapped again for the object's context: 32 bytes, never
        // the parts. Under SSE-C its wrapping is bound to its salt, not to an object, and
        // moves as it is.
        if customer {
            row.wrapped_dek = u.wrapped_dek.clone();
            row.rk_epoch = crate::rows::NO_RESOURCE_KEY;
            row.enc_epoch = crate::rows::NO_RESOURCE_KEY;
        } else {
            self.wrap_object_key(&r, &key_holder, &mut row, &dek).await?;
        }
        row.name_sealed = layers::seal_name(&self.infra, &dek, Self::oid(&r, &row), key)?;
        let mut m = umeta;
        m.etag = etag;
        m.parts_epoch = None;
        m.checksum_algorithm = None;
        m.checksums.clear();
        match checksum {
            Some((algorithm, value)) => {
                m.checksums.insert(algorithm, value);
            }
            None => m.checksum_type = None,
        }
        m.multipart = Some(Multipart { upload: upload_id.to_string(), parts: parts.clone() });
        row.meta = Some(meta::seal(&self.infra, Self::oid(&r, &row), &m)?);
        row.mac = self.object_mac(&row);
        let included: std::collections::BTreeSet<u32> = parts.iter().map(|p| p.n).collect();
        let dropped: Vec<String> =
            stored.iter().filter(|(n, _)| !included.contains(n)).map(|(_, (p, _))| p.body.clone()).collect();
        // Over the object checked (a conditional complete), or over whatever is current
        // when it commits (the last write wins).
        let mut attempts = 0;
        loop {
            attempts += 1;
            let _g = self.write_guard().await;
            let mut tx = self.db.pool().begin().await?;
            let epoch = objects_repo::resource_epoch(&mut tx, self.db.engine(), &r.id).await?;
            if epoch.is_none() {
                return Err(StoreError::NotFound(format!("no bucket named {bucket}")));
            }
            if row.rk_epoch != crate::rows::NO_RESOURCE_KEY && epoch != Some(row.rk_epoch) {
                return Err(StoreError::Conflict(format!(
                    "bucket {} was re-keyed while the upload completed; complete it again",
                    r.name
                )));
            }
            // The upload goes first, and must still be there: of two Completes of one
            // upload, the second finds nothing and answers as for one completed already.
            if !objects_repo::delete_in(&mut tx, &r.id, ObjectKind::S3Upload.as_str(), &u.name_hash).await? {
                drop(tx);
                drop(_g);
                return match self.s3_row(&r, key).await? {
                    Some((o, om)) if om.multipart.as_ref().is_some_and(|mp| mp.upload == upload_id) => {
                        Ok(Ok(Self::s3_object(&r, key, &o, om)))
                    }
                    _ => Err(no_such_upload(upload_id)),
                };
            }
            let written = match &cur {
                None => objects_repo::insert_if_absent(&mut tx, &row).await?,
                Some(o) => objects_repo::replace_if_at(&mut tx, &row, o.generation, Some(&o.id)).await?,
            };
            if !written {
                drop(tx);
                drop(_g);
                if conditional || attempts >= 16 {
                    return Err(StoreError::PreconditionFailed(format!(
                        "{key}: another write of it finished first; complete the upload again"
                    )));
                }
                cur = self.find_object(&r, ObjectKind::S3, key).await?;
                continue;
            }
            for (n, (p, _)) in &stored {
                if included.contains(n) {
                    let mut linked = p.clone();
                    linked.object_id = Some(row.id.clone());
                    linked.generation = Some(row.generation);
                    linked.mac = self.mac.tag("store_s3_parts", &part_fields(&linked));
                    // The part as read: an UploadPart that replaced it meanwhile fails this.
                    if !repo::link(&mut tx, &linked, &p.body).await? {
                        return Err(StoreError::Conflict(format!(
                            "part {n} of upload {upload_id} changed while the upload completed; complete it again"
                        )));
                    }
                } else {
                    repo::delete(&mut tx, &r.id, upload_id, p.part).await?;
                }
            }
            tx.commit().await?;
            break;
        }
        for body in dropped {
            self.discard_blob_body(&r.id, &body).await;
        }
        if let Some(old) = &cur {
            self.retire_blob_body(&r, old).await;
        }
        if r.diagnostics {
            self.audit(&r, &actor.name, "s3-complete", &row.id, "ok", serde_json::json!({"parts": parts.len()}))
                .await?;
        }
        Ok(Ok(Self::s3_object(&r, key, &row, m)))
    }
}
