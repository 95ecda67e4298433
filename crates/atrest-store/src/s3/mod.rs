//! The data service as the S3 front end sees it, without HTTP: a bucket is a resource of
//! the caller's tenant (its roles decide what each access key may do, other tenants'
//! buckets do not exist), an object is an object row of kind `s3` whose body is a blob
//! (both layers, streamed in constant memory) and whose key is stored readable so that a
//! page of a listing is one index range scan. The S3 metadata (ETag, headers, checksums,
//! encryption) is sealed beside it (`meta`).
//!
//! The front end computes what the protocol asks to verify (`Content-MD5`, the payload
//! hash, checksums) while the body streams; an object becomes visible only when its row
//! commits, after the front end's `finish` accepted the body, so a refused upload leaves
//! nothing behind and a failed overwrite leaves the old object intact.

mod keyslots;
mod list;
mod multipart;
mod ssec;

pub(crate) use keyslots::is_slot;

pub use crate::s3meta as meta;

pub use list::{ListEntry, ListPage, ListQuery};
pub use meta::{Multipart, PartRef, S3Meta, Sse};
pub use multipart::{CompleteRefusal, CompleteRequest, PartInfo, UploadInfo};

use crate::encryption::EncryptionRequest;
use crate::error::{Result, StoreError};
use crate::model::{DataRole, KeySource, ObjectKind, Resource};
use crate::objects::check_name;
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_crypto::SecretKey;
use atrest_vault::Principal;
use bytes::Bytes;
use futures_util::Stream;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An object as S3 reports it.
#[derive(Debug, Clone)]
pub struct S3Object {
    /// Its key.
    pub key: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Last written (Unix seconds).
    pub modified: i64,
    /// Its metadata.
    pub meta: S3Meta,
}

/// A bucket, as listed.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Its name (the resource's).
    pub name: String,
    /// Created (Unix seconds).
    pub created: i64,
}

/// The encryption a request asks for.
#[derive(Debug, Clone)]
pub enum SseRequest {
    /// `AES256`.
    S3,
    /// `aws:kms`, with the key if one was named.
    Kms(Option<KmsKeyId>),
    /// SSE-C: the customer's 256-bit key (never stored).
    Customer(SecretKey),
}

/// A vault key an SSE-KMS request names.
#[derive(Debug, Clone)]
pub enum KmsKeyId {
    /// A key URI, resolved by the front end to a vault of this deployment.
    Uri {
        /// The URI as given.
        uri: String,
        /// The key it names.
        kek: crate::keyvault::KeyRef,
    },
    /// A bare key name: a key in the vault of the bucket's own key.
    Name(String),
}

/// What a put asks for besides the body.
#[derive(Debug, Clone, Default)]
pub struct S3Put {
    /// `Content-*`, `Cache-Control`, `Expires`, by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// `x-amz-meta-*`, by lower-case name without the prefix.
    pub user: BTreeMap<String, String>,
    /// The encryption asked for (`None`: the bucket's default).
    pub sse: Option<SseRequest>,
    /// `If-Match`: the object's current ETag (or `*`).
    pub if_match: Option<String>,
    /// `If-None-Match`: `*` (the key must be free), or ETags the object must not have.
    pub if_none_match: Option<String>,
    /// A multipart upload's: the checksum algorithm of its object, and whether the
    /// object's checksum is of the full object (else composite).
    pub checksum: Option<(String, bool)>,
}

/// What the front end found in a body once it ended.
#[derive(Debug, Clone, Default)]
pub struct BodyDigest {
    /// MD5 of the plaintext (the ETag of an SSE-S3 object).
    pub md5: [u8; 16],
    /// Checksums to store, by algorithm, base64.
    pub checksums: BTreeMap<String, String>,
}

/// An object being read.
pub struct S3Read {
    /// The object.
    pub object: S3Object,
    /// First byte served.
    pub offset: u64,
    /// Bytes served.
    pub len: u64,
    /// Plaintext chunks; an `Err` ends the stream (tampering, key access lost).
    pub chunks: mpsc::Receiver<std::result::Result<Bytes, std::io::Error>>,
}

impl StoreService {
    /// Buckets the caller holds a role on.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn s3_buckets(&self, actor: &Principal) -> Result<Vec<Bucket>> {
        let mut out: Vec<Bucket> = self
            .list_resources(actor)
            .await?
            .into_iter()
            .map(|(r, _)| Bucket { name: r.name, created: r.created })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A bucket the caller holds at least `need` on.
    ///
    /// # Errors
    /// `NotFound` (also for another tenant's), `Forbidden`.
    pub async fn s3_bucket(&self, actor: &Principal, name: &str, need: DataRole) -> Result<Resource> {
        self.authorized(actor, name, need).await
    }

    /// Sets a bucket's default encryption (`PutBucketEncryption`): as `atrest resource
    /// encryption set`, after the bucket identity's grants on the key (see
    /// `grant_key_use`).
    ///
    /// # Errors
    /// As [`Self::set_encryption`]; `Forbidden` (the caller may not use the key).
    pub async fn s3_set_encryption(&self, actor: &Principal, bucket: &str, req: EncryptionRequest) -> Result<Resource> {
        let r = self.authorized(actor, bucket, DataRole::Owner).await?;
        let granted = self.grant_key_use(actor, &r, &req, true).await?;
        let out = self.set_encryption(actor, bucket, req).await;
        if out.is_err()
            && let Some(g) = granted
        {
            self.take_back(g).await;
        }
        out
    }

    /// Deletes an empty bucket (its resource).
    ///
    /// # Errors
    /// `Conflict` while it holds objects; `NotFound`, `Forbidden`.
    pub async fn s3_delete_bucket(&self, actor: &Principal, name: &str) -> Result<()> {
        let r = self.authorized(actor, name, DataRole::Owner).await?;
        if crate::repo::objects::any_in(&self.db, &r.id).await? {
            return Err(StoreError::Conflict(format!(
                "the bucket {name} is not empty: delete its objects first (records and blobs of the /data API count too)"
            )));
        }
        self.delete_resource(actor, name).await
    }

    /// The encryption of a new object: the bucket's key, or the key slot (`keyslots`) of
    /// the key the request names. Returns the slot with it (`None`: the bucket's key).
    async fn s3_sse(
        &self,
        actor: &Principal,
        r: &Resource,
        asked: Option<&SseRequest>,
    ) -> Result<(Sse, Option<Resource>)> {
        let bucket_key = || match r.key_source {
            KeySource::Platform => Sse::S3,
            KeySource::Customer => Sse::Kms { key_id: r.key_uri.clone() },
        };
        let req = match (r.key_source, asked) {
            // Decided by the caller, which wraps the data key under the customer's key.
            (_, Some(SseRequest::Customer(_))) => {
                return Err(StoreError::bad("SSE-C is handled before the bucket's key"));
            }
            (_, None)
            | (KeySource::Platform, Some(SseRequest::S3))
            | (KeySource::Customer, Some(SseRequest::Kms(None))) => {
                return Ok((bucket_key(), None));
            }
            // Platform keys would put the object out of reach of the customer's revocation,
            // and no bucket policy here could forbid it: a customer-key bucket stays under
            // customer keys (another of the tenant's keys may be named).
            (KeySource::Customer, Some(SseRequest::S3)) => {
                return Err(StoreError::KeyRejected(format!(
                    "bucket {} encrypts under the customer key {}, and an object in it cannot go under platform keys \
                     (AES256), out of reach of that key's revocation: send aws:kms (with another key id if you want \
                     another key of your vaults) or no encryption header",
                    r.name, r.key_uri
                )));
            }
            (KeySource::Platform, Some(SseRequest::Kms(None))) => {
                return Err(StoreError::KeyRejected(format!(
                    "bucket {} has no default vault key, so aws:kms needs a key id: send \
                     x-amz-server-side-encryption-aws-kms-key-id with the key's URI (atrest key show prints it), or set \
                     the bucket's default encryption to that key (PutBucketEncryption)",
                    r.name
                )));
            }
            (_, Some(SseRequest::Kms(Some(KmsKeyId::Uri { uri, kek }))))
                if *uri == r.key_uri || (r.key_source == KeySource::Customer && *kek == r.kek) =>
            {
                return Ok((bucket_key(), None));
            }
            (_, Some(SseRequest::Kms(Some(KmsKeyId::Uri { uri, kek })))) => {
                EncryptionRequest::Customer { uri: uri.clone(), kek: kek.clone() }
            }
            (KeySource::Customer, Some(SseRequest::Kms(Some(KmsKeyId::Name(n))))) if *n == r.kek.name => {
                return Ok((bucket_key(), None));
            }
            (KeySource::Customer, Some(SseRequest::Kms(Some(KmsKeyId::Name(n))))) => {
                let (origin, _, _) = crate::remote::parse_key_uri(&r.key_uri)?;
                let kek = crate::keyvault::KeyRef { vault: r.kek.vault.clone(), name: n.clone(), version: None };
                EncryptionRequest::Customer { uri: format!("{origin}/keys/{n}"), kek }
            }
            (KeySource::Platform, Some(SseRequest::Kms(Some(KmsKeyId::Name(n))))) => {
                return Err(StoreError::KeyRejected(format!(
                    "key id {n} is a bare name, which names a key in the vault of the bucket's own key, and bucket {} \
                     has none: send the key's URI, https://HOST/keys/{n} (atrest key show prints it)",
                    r.name
                )));
            }
        };
        let slot = self.key_slot(actor, r, req).await?;
        let sse = match slot.key_source {
            KeySource::Platform => Sse::S3,
            KeySource::Customer => Sse::Kms { key_id: slot.key_uri.clone() },
        };
        Ok((sse, Some(slot)))
    }

    /// The encryption of a new object or upload, with its data key wrapped accordingly:
    /// under the customer's key (SSE-C), a key slot's resource key, or the bucket's.
    /// Returns the encryption and the key slot, if any.
    pub(crate) async fn new_object_sse(
        &self,
        actor: &Principal,
        r: &Resource,
        asked: Option<&SseRequest>,
        row: &mut ObjectRow,
        dek: &SecretKey,
    ) -> Result<(Sse, Option<Resource>)> {
        if let Some(SseRequest::Customer(k)) = asked {
            let (sse, wrapped) = self.sse_c_wrap(r, k, dek)?;
            row.wrapped_dek = wrapped;
            row.rk_epoch = crate::rows::NO_RESOURCE_KEY;
            row.enc_epoch = crate::rows::NO_RESOURCE_KEY;
            return Ok((sse, None));
        }
        let (sse, slot) = self.s3_sse(actor, r, asked).await?;
        if let Some(s) = &slot {
            self.wrap_object_key(r, s, row, dek).await?;
        }
        Ok((sse, slot))
    }

    /// The data key of an S3 object or upload: through the resource key of `holder` (the
    /// bucket, or the object's key slot: [`Self::key_holder`]), or, under SSE-C, the
    /// customer's key the request carries (which must then be there, and only then).
    pub(crate) async fn s3_data_key(
        &self,
        r: &Resource,
        holder: &Resource,
        o: &ObjectRow,
        m: &S3Meta,
        customer_key: Option<&SecretKey>,
        what: &str,
    ) -> Result<SecretKey> {
        match &m.sse {
            Sse::Customer { .. } => self.sse_c_unwrap(r, &m.sse, &o.wrapped_dek, customer_key, what),
            _ if customer_key.is_some() => Err(StoreError::bad(format!(
                "{what} is not encrypted with a customer-provided key: send no \
                 x-amz-server-side-encryption-customer-* headers"
            ))),
            _ if holder.id != r.id => self.slot_data_key(r, o, holder).await,
            _ => self.data_key(r, o).await,
        }
    }

    /// The row of object `key` with its metadata opened.
    pub(crate) async fn s3_row(&self, r: &Resource, key: &str) -> Result<Option<(ObjectRow, S3Meta)>> {
        let Some(o) = self.find_object(r, ObjectKind::S3, key).await? else {
            return Ok(None);
        };
        let m = self.s3_meta(r, &o)?;
        Ok(Some((o, m)))
    }

    /// The metadata of `old` sealed again for `new`, a re-encrypt job's rewrite of the
    /// body as one file (so no part index).
    pub(crate) fn reseal_s3_meta(&self, r: &Resource, old: &ObjectRow, new: &ObjectRow) -> Result<Vec<u8>> {
        let mut m = self.s3_meta(r, old)?;
        m.multipart = None;
        meta::seal(&self.infra, Self::oid(r, new), &m)
    }

    /// As S3 reports it: the encryption is the bucket's key as it is now (a change of the
    /// bucket's key re-wraps its resource key, so it covers every object already there).
    /// Under a key slot it is the slot's key, which never changes.
    fn s3_object(r: &Resource, key: &str, o: &ObjectRow, mut meta: S3Meta) -> S3Object {
        meta.sse = match (&meta.sse, r.key_source) {
            (Sse::Customer { .. }, _) => meta.sse,
            _ if meta.key_slot.is_some() => meta.sse,
            (_, KeySource::Platform) => Sse::S3,
            (_, KeySource::Customer) => Sse::Kms { key_id: r.key_uri.clone() },
        };
        S3Object { key: key.to_string(), size: u64::try_from(o.size).unwrap_or(0), modified: o.updated, meta }
    }

    /// Stores object `key` from a stream of plaintext chunks. Once the stream ended,
    /// `finish(size)` says whether the body is the one the client signed and described
    /// (digests, checksums): only then does the object become visible. A refusal by
    /// `finish` comes back as the inner `Err`, with nothing stored.
    ///
    /// # Errors
    /// `NotFound` (bucket), `Forbidden`, `KeyRejected` (encryption asked for), `KeyInaccessible`,
    /// `PreconditionFailed` (`If-Match`, `If-None-Match`, or a concurrent write that won).
    pub async fn s3_put<S, E, F, X>(
        &self,
        actor: &Principal,
        bucket: &str,
        key: &str,
        put: S3Put,
        input: S,
        finish: F,
    ) -> Result<std::result::Result<S3Object, X>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
        F: FnOnce(u64) -> std::result::Result<BodyDigest, X>,
    {
        check_name(key)?;
        let r = self.authorized(actor, bucket, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let cur = self.s3_row(&r, key).await?;
        check_s3_precondition(
            key,
            cur.as_ref().map(|(_, m)| m),
            put.if_match.as_deref(),
            put.if_none_match.as_deref(),
        )?;
        let conditional = put.if_match.is_some() || put.if_none_match.is_some();
        let cur = cur.map(|(o, _)| o);
        // A new id for every write: the body's seal context never depends on what is
        // current, so an unconditional put can commit over whatever another put left.
        let (mut row, dek) = self.next_row(&r, ObjectKind::S3, key, None, 0).await?;
        let (sse, key_slot) = self.new_object_sse(actor, &r, put.sse.as_ref(), &mut row, &dek).await?;
        let dek_copy = SecretKey::from_slice(dek.expose_secret())?;
        // Key access re-checked while the body streams: of the key that wraps it.
        let key_holder = key_slot.clone().unwrap_or_else(|| r.clone());
        let generation = u64::try_from(row.generation).unwrap_or(0);
        let (body, total) =
            self.write_body(&r, &key_holder, &row.id, generation, Self::blob_name(&row), dek, input).await?;
        let digest = match finish(total) {
            Ok(d) => d,
            Err(refusal) => {
                self.discard_blob_body(&r.id, &body).await;
                return Ok(Err(refusal));
            }
        };
        let etag = match &sse {
            Sse::S3 => hex::encode(digest.md5),
            // As on AWS: not the MD5 of the plaintext under a customer key.
            Sse::Kms { .. } | Sse::Customer { .. } => hex::encode(atrest_crypto::rand::bytes::<16>()?),
        };
        let mut m = S3Meta::new(etag, sse);
        m.key_slot = key_slot.map(|s| s.id);
        m.headers = put.headers;
        m.user = put.user;
        m.checksums = digest.checksums;
        row.size = i64::try_from(total).unwrap_or(i64::MAX);
        row.skey = Some(key.as_bytes().to_vec());
        row.meta = match meta::seal(&self.infra, Self::oid(&r, &row), &m) {
            Ok(sealed) => Some(sealed),
            Err(e) => {
                self.discard_blob_body(&r.id, &body).await;
                return Err(e);
            }
        };
        let replaced = match self.commit_s3(&r, &mut row, &dek_copy, cur, conditional, key).await {
            Ok(replaced) => replaced,
            Err(e) => {
                self.discard_blob_body(&r.id, &body).await;
                return Err(e);
            }
        };
        if let Some(old) = &replaced {
            self.retire_blob_body(&r, old).await;
        }
        if r.diagnostics {
            self.audit(&r, &actor.name, "s3-put", &row.id, "ok", serde_json::json!({"size": total})).await?;
        }
        Ok(Ok(Self::s3_object(&r, key, &row, m)))
    }

    /// Commits an S3 object's row: a conditional write over the object it checked
    /// (`cur`), an unconditional one over whatever is current when it commits — the last
    /// write to commit wins, as on S3. A re-key that finished meanwhile re-wraps the data
    /// key first. Returns the row replaced.
    ///
    /// # Errors
    /// `PreconditionFailed` when a conditional write lost; storage errors.
    pub(crate) async fn commit_s3(
        &self,
        r: &Resource,
        row: &mut ObjectRow,
        dek: &SecretKey,
        mut cur: Option<ObjectRow>,
        conditional: bool,
        key: &str,
    ) -> Result<Option<ObjectRow>> {
        for _ in 0..16 {
            let now = self.resource_by_id(&r.id).await?;
            if now.rk_epoch != row.rk_epoch && row.rk_epoch != crate::rows::NO_RESOURCE_KEY {
                let rk = self.key(&now, crate::cache::Slot::Resource(now.rk_epoch)).await?;
                row.rk_epoch = now.rk_epoch;
                row.wrapped_dek = crate::hierarchy::rewrap_data_key(&rk, Self::oid(&now, row), dek)?;
            }
            row.mac = self.object_mac(row);
            let prev = cur.as_ref().map(|o| (o.generation, Some(o.id.clone())));
            match self.committer.write_over(row.clone(), prev).await? {
                crate::commit::Outcome::Written => return Ok(cur),
                crate::commit::Outcome::Stale => {}
                crate::commit::Outcome::Moved if conditional => {
                    return Err(StoreError::PreconditionFailed(format!(
                        "{key}: another write of it finished first; read it again and retry"
                    )));
                }
                crate::commit::Outcome::Moved => cur = self.find_object(r, ObjectKind::S3, key).await?,
            }
        }
        Err(StoreError::Conflict(format!("{key}: too many concurrent writers; retry")))
    }

    /// Object `key`'s metadata; its data key is unwrapped too, so a revoked key answers
    /// as it does for a read.
    ///
    /// # Errors
    /// `ObjectNotFound`, `NotFound` (bucket), `Forbidden`, `KeyInaccessible`, `Integrity`.
    pub async fn s3_head(
        &self,
        actor: &Principal,
        bucket: &str,
        key: &str,
        customer_key: Option<&SecretKey>,
    ) -> Result<S3Object> {
        check_name(key)?;
        let r = self.authorized(actor, bucket, DataRole::Reader).await?;
        Self::check_usable(&r)?;
        let (o, m) = self.s3_row(&r, key).await?.ok_or_else(|| no_such_key(bucket, key))?;
        let holder = self.key_holder(&r, &m).await?;
        self.s3_data_key(&r, &holder, &o, &m, customer_key, key).await?;
        Ok(Self::s3_object(&r, key, &o, m))
    }

    /// Object `key` as listed (size, part index), without its data key: for what a
    /// listing would show anyway (a `partNumber` checked before the SSE-C key is).
    ///
    /// # Errors
    /// `ObjectNotFound`, `NotFound` (bucket), `Forbidden`, `Integrity`.
    pub async fn s3_stat(&self, actor: &Principal, bucket: &str, key: &str) -> Result<S3Object> {
        check_name(key)?;
        let r = self.authorized(actor, bucket, DataRole::Reader).await?;
        let (o, m) = self.s3_row(&r, key).await?.ok_or_else(|| no_such_key(bucket, key))?;
        Ok(Self::s3_object(&r, key, &o, m))
    }

    /// Reads object `key`, or a byte range of it.
    ///
    /// # Errors
    /// As [`Self::s3_head`]; `RangeNotSatisfiable`.
    pub async fn s3_get(
        self: &Arc<Self>,
        actor: &Principal,
        bucket: &str,
        key: &str,
        range: Option<crate::ByteRange>,
        customer_key: Option<&SecretKey>,
    ) -> Result<S3Read> {
        check_name(key)?;
        let r = self.authorized(actor, bucket, DataRole::Reader).await?;
        Self::check_usable(&r)?;
        let (o, m) = self.s3_row(&r, key).await?.ok_or_else(|| no_such_key(bucket, key))?;
        let key_holder = self.key_holder(&r, &m).await?;
        let dek = self.s3_data_key(&r, &key_holder, &o, &m, customer_key, key).await?;
        let object = Self::s3_object(&r, key, &o, m);
        let (offset, len, chunks) = self.read_body(&r, &key_holder, &o, dek, object.size, range, key).await?;
        if r.diagnostics {
            self.audit(&r, &actor.name, "s3-get", &o.id, "ok", serde_json::json!({"offset": offset, "len": len}))
                .await?;
        }
        Ok(S3Read { object, offset, len, chunks })
    }

    /// Deletes object `key` (crypto-erasure, as for blobs). Deleting a key that does not
    /// exist succeeds, as on S3.
    ///
    /// # Errors
    /// `NotFound` (bucket), `Forbidden`, `KeyInaccessible`.
    pub async fn s3_delete(&self, actor: &Principal, bucket: &str, key: &str) -> Result<()> {
        let none = crate::objects::Precondition::default();
        for _ in 0..8 {
            match self.delete_object(actor, bucket, ObjectKind::S3, key, &none).await {
                Err(StoreError::ObjectNotFound(_)) => return Ok(()),
                // A write replaced the object meanwhile: delete what is there now.
                Err(StoreError::PreconditionFailed(_)) => {}
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("{key}: too many concurrent writers; retry")))
    }
}

fn no_such_key(bucket: &str, key: &str) -> StoreError {
    StoreError::ObjectNotFound(format!("no object {key} in bucket {bucket}"))
}

/// Whether an `If-Match` / `If-None-Match` list (`*`, or ETags, quoted or not) names
/// `etag`.
fn etag_listed(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || t.trim_matches('"') == etag)
}

/// `If-Match` and `If-None-Match` on a write, against the current object (as S3: an
/// `If-Match` on a missing key is `NoSuchKey`).
pub(crate) fn check_s3_precondition(
    key: &str,
    cur: Option<&S3Meta>,
    if_match: Option<&str>,
    if_none_match: Option<&str>,
) -> Result<()> {
    let failed = |why: &str| StoreError::PreconditionFailed(format!("{key}: {why}"));
    if let Some(want) = if_match {
        match cur {
            None => {
                return Err(StoreError::ObjectNotFound(format!(
                    "{key}: If-Match was given but the object does not exist"
                )));
            }
            Some(m) if !etag_listed(want, &m.etag) => return Err(failed("its ETag is not the one given in If-Match")),
            Some(_) => {}
        }
    }
    if let (Some(list), Some(m)) = (if_none_match, cur)
        && etag_listed(list, &m.etag)
    {
        return Err(failed("If-None-Match names the object as it is"));
    }
    Ok(())
}
