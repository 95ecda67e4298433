//! The S3 metadata of an object: what S3 returns beside the body (ETag, `Content-*`
//! headers, user metadata, checksums, how it is encrypted). Stored in the object row's
//! `meta` column as JSON (version field `v`, this is version 1) sealed in the record
//! format under the infrastructure layer, context `atrest/s3-meta` ‖ resource ‖ object ‖
//! generation — as on AWS, where server-side encryption covers the body, not the
//! metadata; it is still never stored readable. `docs/formats.md` specifies it.

use crate::error::{Result, StoreError};
use crate::hierarchy::ObjectId;
use crate::layers::InfraLayer;
use crate::model::{ObjectKind, Resource};
use crate::rows::ObjectRow;
use crate::service::StoreService;
use atrest_crypto::record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the metadata JSON.
const META_VERSION: u8 = 1;

/// How an object's body is encrypted, as S3 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode")]
pub enum Sse {
    /// Under the bucket's platform key: `x-amz-server-side-encryption: AES256`.
    #[serde(rename = "AES256")]
    S3,
    /// Under a customer key in a vault: `aws:kms` with that key's id.
    #[serde(rename = "aws:kms")]
    Kms {
        /// The key id as the client named it (a key name or a key URI).
        key_id: String,
    },
    /// Under a key the client sends with every request (SSE-C), never stored: only a
    /// verifier of it is.
    #[serde(rename = "SSE-C")]
    Customer {
        /// Random per object (or upload), base64: the salt of the verifier and of the key
        /// that wraps the data key.
        salt: String,
        /// HMAC-SHA256 under a key derived from the infrastructure root of (salt ‖
        /// customer key), base64.
        verifier: String,
    },
}

/// S3 metadata of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Meta {
    /// Format version ([`META_VERSION`]).
    pub v: u8,
    /// The ETag without quotes (the MD5 of the body in hex for SSE-S3).
    pub etag: String,
    /// `Content-Type`, `Content-Encoding`, `Content-Disposition`, `Content-Language`,
    /// `Cache-Control`, `Expires`, by lower-case name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `x-amz-meta-*`, by lower-case name without the prefix.
    #[serde(default)]
    pub user: BTreeMap<String, String>,
    /// Encryption.
    pub sse: Sse,
    /// Checksums by algorithm (`CRC32`, `CRC32C`, `SHA1`, `SHA256`), base64 as S3 sends them.
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
    /// Made by a multipart upload: the body is its parts, in order (absent: one body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Multipart>,
    /// An upload's only: the re-encrypt epoch its parts are sealed under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_epoch: Option<i64>,
    /// Encrypted under a key other than the bucket's: the id of the bucket's key slot
    /// (a resource of its own, `s3::keyslots`) whose resource key wraps the data key.
    /// Absent: the bucket's resource key (or, for SSE-C, the customer's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_slot: Option<String>,
    /// An upload's only: the checksum algorithm its object gets (`ChecksumAlgorithm` of
    /// CreateMultipartUpload), and whether the object's checksum is `FULL_OBJECT` (else
    /// `COMPOSITE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// The type of the object's checksum in `checksums`: `COMPOSITE` (made from the part
    /// checksums, `-N`) or `FULL_OBJECT`; absent: a single put's (full object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

/// The part index of an object made by a multipart upload: each part is a body of its
/// own, sealed under the object's data key with the context (resource, upload id, part
/// number); a range read opens only the parts it touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipart {
    /// The upload id (the `object` of each part's seal context).
    pub upload: String,
    /// The parts, in order.
    pub parts: Vec<PartRef>,
}

/// One part of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// Part number (the `generation` of its seal context).
    pub n: u32,
    /// Plaintext bytes.
    pub size: u64,
    /// Its body's name in the blob store.
    pub body: String,
    /// Its checksums as uploaded, by algorithm, base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

impl S3Meta {
    /// Metadata with nothing but the ETag and the encryption.
    #[must_use]
    pub fn new(etag: String, sse: Sse) -> Self {
        Self {
            v: META_VERSION,
            etag,
            headers: BTreeMap::new(),
            user: BTreeMap::new(),
            sse,
            checksums: BTreeMap::new(),
            multipart: None,
            parts_epoch: None,
            key_slot: None,
            checksum_algorithm: None,
            checksum_type: None,
        }
    }
}

pub(crate) fn seal(infra: &InfraLayer, id: ObjectId<'_>, meta: &S3Meta) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(meta).map_err(|e| StoreError::Storage(format!("S3 metadata: {e}")))?;
    Ok(id.with_context(b"atrest/s3-meta", |ctx| record::seal(&infra.key, ctx, &json))?)
}

/// `None` when the bytes do not open or do not parse (the caller reports tampering).
pub(crate) fn open(infra: &InfraLayer, id: ObjectId<'_>, sealed: &[u8]) -> Option<S3Meta> {
    let json = id.with_context(b"atrest/s3-meta", |ctx| record::open(&infra.key, ctx, sealed)).ok()?;
    let meta: S3Meta = serde_json::from_slice(&json).ok()?;
    (meta.v == META_VERSION).then_some(meta)
}

impl StoreService {
    /// The S3 metadata of an S3 object or upload row (tampering reported as such).
    pub(crate) fn s3_meta(&self, r: &Resource, o: &ObjectRow) -> Result<S3Meta> {
        open(&self.infra, Self::oid(r, o), o.meta.as_deref().unwrap_or_default())
            .ok_or_else(|| self.integrity(r, &format!("the S3 metadata of object {} in bucket {}", o.id, r.name)))
    }

    /// The part index of an S3 object made by a multipart upload (`None` for any other
    /// object).
    pub(crate) fn multipart_of(&self, r: &Resource, o: &ObjectRow) -> Result<Option<Multipart>> {
        if o.kind != ObjectKind::S3.as_str() {
            return Ok(None);
        }
        Ok(self.s3_meta(r, o)?.multipart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_is_bound_to_its_object() {
        let infra = InfraLayer::new(&atrest_crypto::SecretKey::from_slice(&[7; 32]).unwrap()).unwrap();
        let id = ObjectId { resource: "r1", object: "o1", generation: 2 };
        let mut m = S3Meta::new("9e107d9d372bb6826bd81d3542a419d6".into(), Sse::Kms { key_id: "cmk".into() });
        m.user.insert("color".into(), "blue".into());
        m.checksums.insert("CRC32".into(), "AAAAAA==".into());
        let sealed = seal(&infra, id, &m).unwrap();
        assert_eq!(open(&infra, id, &sealed), Some(m.clone()));
        assert!(!String::from_utf8_lossy(&sealed).contains("blue"), "stored sealed");
        let other_gen = ObjectId { generation: 3, ..id };
        assert_eq!(open(&infra, other_gen, &sealed), None, "moved to another generation");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(open(&infra, id, &flipped), None, "tampered");
        let json = serde_json::to_string(&S3Meta::new("e".into(), Sse::S3)).unwrap();
        assert!(json.contains(r#""sse":{"mode":"AES256"}"#) && json.contains(r#""v":1"#), "{json}");
    }
}
