//! S3 access keys: an access key id and a secret that belong to a principal, for the S3
//! front end's SigV4 authentication.
//!
//! SigV4 is a MAC over the request under a key derived from the secret, so the server
//! needs the secret itself (a hash would not do): it is sealed in the record format under
//! a key derived from the root key, with (key id, principal) as associated data, so a
//! sealed secret moved to another row does not open. Rows are MACed; a revoked row stays,
//! so an id is never issued twice. Nothing is cached: a revocation, or a disabled
//! principal, takes effect on the next request on every node.

use crate::access::{Principal, is_resource_identity};
use crate::error::{Result, VaultError};
use crate::repo::s3keys::{self as repo, S3KeyRow};
use crate::rowmac::Field;
use crate::service::VaultService;
use atrest_crypto::record;
use atrest_crypto::secret::SecretBytes;

/// Context label of a sealed secret.
const SEAL_LABEL: &[u8] = b"atrest/v1/s3-secret";

/// An access key id's prefix (the AWS form is 20 upper-case characters).
pub const S3_KEY_PREFIX: &str = "ATR";

/// A new key: the secret is returned once and never again.
pub struct IssuedS3Key {
    /// Access key id (`ATR` + 17 characters of A–Z, 2–7).
    pub id: String,
    /// Secret access key (40 hex characters).
    pub secret: SecretBytes,
}

/// What is listed of a key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3KeyInfo {
    /// Access key id.
    pub id: String,
    /// The principal it belongs to (id).
    pub principal_id: String,
    /// Issued (Unix seconds).
    pub created: i64,
    /// Revoked keys no longer authenticate.
    pub revoked: bool,
}

fn fields(k: &S3KeyRow) -> [Field<'_>; 5] {
    [
        Field::Text(&k.id),
        Field::Text(&k.principal_id),
        Field::Bytes(&k.secret_sealed),
        Field::Int(k.created),
        Field::Int(i64::from(k.revoked)),
    ]
}

/// `ATR` + 17 base32 characters (85 random bits).
fn new_id() -> Result<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = atrest_crypto::rand::bytes::<17>()?;
    let mut id = String::from(S3_KEY_PREFIX);
    id.extend(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])));
    Ok(id)
}

impl VaultService {
    fn s3_key_row(&self, row: S3KeyRow) -> Result<S3KeyRow> {
        self.mac.check("s3_keys", &fields(&row), &row.mac, || format!("S3 key {}", row.id))?;
        Ok(row)
    }

    /// Issues an S3 key for a principal.
    ///
    /// # Errors
    /// `Forbidden` (`DataServiceIdentity`) for a data-service resource identity; database
    /// errors.
    pub async fn issue_s3_key(&self, principal: &Principal) -> Result<IssuedS3Key> {
        if is_resource_identity(principal) {
            return Err(crate::access::data_service_identity(principal));
        }
        let id = new_id()?;
        let raw = zeroize::Zeroizing::new(atrest_crypto::rand::bytes::<20>()?);
        let secret = zeroize::Zeroizing::new(hex::encode(&raw[..]));
        let sealed = record::seal(
            &self.s3_secret_key,
            &[SEAL_LABEL, id.as_bytes(), principal.id.as_bytes()],
            secret.as_bytes(),
        )?;
        let mut row = S3KeyRow {
            id: id.clone(),
            principal_id: principal.id.clone(),
            secret_sealed: sealed,
            created: self.now(),
            revoked: false,
            mac: Vec::new(),
        };
        row.mac = self.mac.tag("s3_keys", &fields(&row));
        repo::insert(&self.db, &row).await?;
        Ok(IssuedS3Key { id, secret: SecretBytes::new(secret.as_bytes().to_vec()) })
    }

    /// A principal's keys, newest first (revoked ones too).
    ///
    /// # Errors
    /// `Integrity` for a row edited outside atrest; database errors.
    pub async fn s3_keys(&self, principal: &Principal) -> Result<Vec<S3KeyInfo>> {
        let rows = repo::of_principal(&self.db, &principal.id).await?;
        rows.into_iter()
            .map(|r| {
                let r = self.s3_key_row(r)?;
                Ok(S3KeyInfo { id: r.id, principal_id: r.principal_id, created: r.created, revoked: r.revoked })
            })
            .collect()
    }

    /// One key (its row verified).
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn s3_key(&self, id: &str) -> Result<S3KeyInfo> {
        let r = repo::get(&self.db, id).await?.ok_or_else(|| VaultError::NotFound(format!("no S3 key {id}")))?;
        let r = self.s3_key_row(r)?;
        Ok(S3KeyInfo { id: r.id, principal_id: r.principal_id, created: r.created, revoked: r.revoked })
    }

    /// Revokes a key: the next request signed with it is refused, on every node.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn revoke_s3_key(&self, id: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let r = repo::get(&self.db, id).await?.ok_or_else(|| VaultError::NotFound(format!("no S3 key {id}")))?;
        let mut r = self.s3_key_row(r)?;
        r.revoked = true;
        let mac = self.mac.tag("s3_keys", &fields(&r));
        repo::revoke(&self.db, id, &mac).await
    }

    /// The principal and secret of a usable key, for verifying a signature. Every reason
    /// to refuse (unknown, revoked, principal disabled or a resource identity) is the same
    /// `Unauthenticated`, except a row that fails its integrity check.
    ///
    /// # Errors
    /// `Unauthenticated`, `Integrity`.
    pub async fn s3_key_secret(&self, id: &str) -> Result<(Principal, SecretBytes)> {
        let denied = || VaultError::Unauthenticated(format!("the access key id {id} is unknown or revoked"));
        if !id.starts_with(S3_KEY_PREFIX) || id.len() != 20 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(denied());
        }
        let row = repo::get(&self.db, id).await?.ok_or_else(denied)?;
        let row = self.s3_key_row(row)?;
        if row.revoked {
            return Err(denied());
        }
        let secret = record::open(
            &self.s3_secret_key,
            &[SEAL_LABEL, row.id.as_bytes(), row.principal_id.as_bytes()],
            &row.secret_sealed,
        )
        .map_err(|_| VaultError::Integrity { what: format!("the sealed secret of S3 key {id}") })?;
        let p = self.principal(&row.principal_id).await?;
        if p.disabled || is_resource_identity(&p) {
            return Err(denied());
        }
        Ok((p, SecretBytes::new(secret)))
    }
}
