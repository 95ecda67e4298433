//! The audit trail: every key operation and every administrative change, appended to a
//! hash chain per vault (chain id = vault id; chain `deployment` for tenants and
//! principals).
//!
//! ```text
//! hash_n = SHA-256(hash_{n-1} ‖ frame(chain, seq, time, principal, operation, target, result, detail))
//! mac_n  = 0x01 ‖ HMAC-SHA256(root-derived row-MAC key, frame("audit_log", hash_n))
//! ```
//! Editing an entry breaks its hash; deleting, inserting or reordering breaks the
//! sequence or the `prev_hash` link; recomputing hashes needs the MAC key, which lives
//! only with the root key. Cutting entries off the end leaves a valid shorter chain: a
//! signed **checkpoint** (chain, count, head, time; ES256 by the deployment's audit
//! signing key, whose public key is published) taken earlier detects that.

use crate::audit_commit::entry_hash;
use crate::error::{Result, VaultError};
use crate::model::b64u;
use crate::repo::audit as repo;
use crate::rowmac::Field;
use crate::service::VaultService;
use atrest_crypto::backend::{BackendKey, KeySpec, PublicKey, SignAlg};
use atrest_crypto::ec::EcCurve;
use atrest_crypto::hash::sha256;
use serde::{Deserialize, Serialize};

/// Chain of deployment-level events (tenants, principals, tokens).
pub const DEPLOYMENT_CHAIN: &str = "deployment";

pub use crate::repo::audit::AuditRecord;

/// A signed statement of a chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Chain.
    pub chain: String,
    /// Entries covered.
    pub count: i64,
    /// Hash of entry `count` (hex; zeros for an empty chain).
    pub head: String,
    /// When it was taken.
    pub time: i64,
    /// Signing key id.
    pub key_id: String,
    /// ES256 signature (base64url, `r ‖ s`) over SHA-256 of [`Checkpoint::signed_bytes`].
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers.
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "atrest-audit-checkpoint/v1\n{}\n{}\n{}\n{}\n{}",
            self.chain, self.count, self.head, self.time, self.key_id
        )
        .into_bytes()
    }
}

/// The outcome of verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Chain.
    pub chain: String,
    /// Entries read.
    pub entries: i64,
    /// Hash of the last entry (hex).
    pub head: String,
    /// Everything wrong, first problems first; empty when the chain verifies.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the chain verified.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Filters for listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries whose target starts with this (e.g. a key name).
    pub target: Option<String>,
    /// Only this principal.
    pub principal: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
    /// From this time (inclusive).
    pub since: Option<i64>,
    /// Until this time (exclusive).
    pub until: Option<i64>,
}

impl VaultService {
    /// Appends an entry; returns its sequence number. An operation whose entry cannot be
    /// written must fail (callers propagate the error).
    ///
    /// # Errors
    /// Database errors (after retries on concurrent appends).
    pub async fn audit(
        &self,
        chain: &str,
        principal: &str,
        operation: &str,
        target: &str,
        result: &str,
        detail: &serde_json::Value,
    ) -> Result<i64> {
        let r = self.append_audit(chain, principal, operation, target, result, detail).await;
        self.audit_counts[usize::from(r.is_err())].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r
    }

    async fn append_audit(
        &self,
        chain: &str,
        principal: &str,
        operation: &str,
        target: &str,
        result: &str,
        detail: &serde_json::Value,
    ) -> Result<i64> {
        let entry = crate::audit_commit::Entry {
            chain: chain.to_string(),
            principal: principal.to_string(),
            operation: operation.to_string(),
            target: target.to_string(),
            result: result.to_string(),
            detail: detail.to_string(),
        };
        match self.audit_commit.append(entry).await {
            Ok((seq, commit_seq)) => {
                crate::commit_mark::note(Some(commit_seq.unwrap_or(0)));
                Ok(seq)
            }
            Err(e) => {
                crate::commit_mark::note(None);
                Err(e)
            }
        }
    }

    /// Audit batches written since start and the entries in them (group commit).
    #[must_use]
    pub fn audit_batch_counts(&self) -> (u64, u64) {
        self.audit_commit.stats()
    }

    /// Every chain in the log.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_chains(&self) -> Result<Vec<String>> {
        repo::chains(&self.db).await
    }

    /// Entries of a chain that match `f`, in order. Integrity is not checked here: use
    /// [`Self::verify_audit_chain`].
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_entries(&self, chain: &str, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        for (rec, _) in repo::entries(&self.db, chain).await? {
            let keep = f.target.as_deref().is_none_or(|t| rec.target.starts_with(t))
                && f.principal.as_deref().is_none_or(|p| rec.principal == p)
                && f.operation.as_deref().is_none_or(|o| rec.operation == o)
                && f.since.is_none_or(|s| rec.time >= s)
                && f.until.is_none_or(|u| rec.time < u);
            if keep {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Walks a chain and reports every edited, deleted, inserted or reordered entry; with
    /// a checkpoint, also a cut tail or a rewritten prefix, and a bad signature.
    ///
    /// # Errors
    /// Database errors.
    pub async fn verify_audit_chain(&self, chain: &str, checkpoint: Option<&Checkpoint>) -> Result<VerifyReport> {
        let rows = repo::entries(&self.db, chain).await?;
        let entries = rows.len() as i64;
        let mut problems = Vec::new();
        let mut prev = vec![0u8; 32];
        let mut hashes = Vec::with_capacity(rows.len());
        for (i, (rec, mac)) in rows.into_iter().enumerate() {
            let expected = i as i64 + 1;
            if rec.seq != expected {
                problems.push(format!("entry {expected} is missing (next is {}): entries were deleted", rec.seq));
            }
            if rec.prev_hash != hex::encode(&prev) {
                problems.push(format!(
                    "entry {} does not follow the entry before it: entries were inserted, deleted or reordered",
                    rec.seq
                ));
            }
            let hash = entry_hash(&hex::decode(&rec.prev_hash).unwrap_or_default(), &rec);
            if hex::encode(hash) != rec.hash {
                problems.push(format!("entry {} was edited: its contents do not match its hash", rec.seq));
            }
            let stored = hex::decode(&rec.hash).unwrap_or_default();
            if self.mac.check("audit_log", &[Field::Bytes(&stored)], &mac, String::new).is_err() {
                problems.push(format!("entry {} has an invalid MAC: it was forged or rewritten", rec.seq));
            }
            prev = stored;
            hashes.push(rec.hash);
        }
        if let Some(cp) = checkpoint {
            if cp.chain != chain {
                problems.push(format!("the checkpoint is for chain {}, not {chain}", cp.chain));
            } else if let Err(e) = self.verify_checkpoint_signature(cp).await {
                problems.push(format!("the checkpoint's signature does not verify: {e}"));
            } else if cp.count > entries {
                problems.push(format!(
                    "the log ends at entry {entries} but the checkpoint of {} covers {}: entries were removed from the end",
                    cp.time, cp.count
                ));
            } else if cp.count > 0 && hashes.get((cp.count - 1) as usize) != Some(&cp.head) {
                problems
                    .push(format!("entry {} does not match the checkpoint: the log was rewritten up to it", cp.count));
            }
        }
        Ok(VerifyReport { chain: chain.to_string(), entries, head: hex::encode(&prev), problems })
    }

    async fn signing_key(&self) -> Result<(String, BackendKey)> {
        let repo::SigningKeyRow { id, material, public_jwk, created, mac } = match repo::signing_key(&self.db).await? {
            Some(r) => r,
            None => {
                let _g = self.write_guard().await;
                let id = crate::model::new_id()?;
                let key = self
                    .custody(|be| be.generate(KeySpec::Ec(EcCurve::P256), &[b"atrest/audit-signing", id.as_bytes()]))?;
                let Some(PublicKey::Ec(p)) = &key.public else {
                    return Err(VaultError::Storage("audit signing key generation returned no EC public key".into()));
                };
                let jwk =
                    serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64u(p.x()), "y": b64u(p.y()), "kid": id})
                        .to_string();
                let now = self.now();
                let mac = self.mac.tag(
                    "audit_signing_key",
                    &[Field::Text(&id), Field::Bytes(&key.handle), Field::Text(&jwk), Field::Int(now)],
                );
                let row = repo::SigningKeyRow { id, material: key.handle, public_jwk: jwk, created: now, mac };
                repo::insert_signing_key(&self.db, &row).await?;
                row
            }
        };
        self.mac.check(
            "audit_signing_key",
            &[Field::Text(&id), Field::Bytes(&material), Field::Text(&public_jwk), Field::Int(created)],
            &mac,
            || "audit signing key".into(),
        )?;
        let jwk: serde_json::Value = serde_json::from_str(&public_jwk)
            .map_err(|_| VaultError::Integrity { what: "audit signing key".into() })?;
        let dec = |k: &str| crate::model::b64u_decode(jwk[k].as_str().unwrap_or(""), "audit key");
        let public = atrest_crypto::ec::EcPublicKey::from_xy(EcCurve::P256, &dec("x")?, &dec("y")?)?;
        Ok((id, BackendKey { spec: KeySpec::Ec(EcCurve::P256), handle: material, public: Some(PublicKey::Ec(public)) }))
    }

    /// The public key that verifies checkpoints, as a JWK (published at `/audit/signing-key`).
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn audit_signing_jwk(&self) -> Result<serde_json::Value> {
        let (id, key) = self.signing_key().await?;
        let Some(PublicKey::Ec(p)) = &key.public else { unreachable!("signing_key always returns an EC key") };
        Ok(
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64u(p.x()), "y": b64u(p.y()), "kid": id, "use": "sig", "alg": "ES256"}),
        )
    }

    /// Signs the current head of `chain`.
    ///
    /// # Errors
    /// Database and signing errors.
    pub async fn audit_checkpoint(&self, chain: &str) -> Result<Checkpoint> {
        let (key_id, key) = self.signing_key().await?;
        let (count, head) = match repo::head(&self.db, chain).await? {
            Some((seq, hash)) => (seq, hex::encode(hash)),
            None => (0, hex::encode([0u8; 32])),
        };
        let mut cp =
            Checkpoint { chain: chain.to_string(), count, head, time: self.now(), key_id, signature: String::new() };
        let digest = sha256(&[&cp.signed_bytes()]);
        let sig = self
            .custody(|be| be.sign(&key, &[b"atrest/audit-signing", cp.key_id.as_bytes()], SignAlg::Es256, &digest))?;
        cp.signature = b64u(&sig);
        Ok(cp)
    }

    async fn verify_checkpoint_signature(&self, cp: &Checkpoint) -> Result<()> {
        let (id, key) = self.signing_key().await?;
        if id != cp.key_id {
            return Err(VaultError::bad(format!("checkpoint signed by unknown key {}", cp.key_id)));
        }
        let Some(PublicKey::Ec(p)) = &key.public else { unreachable!("signing_key always returns an EC key") };
        let sig = crate::model::b64u_decode(&cp.signature, "signature")?;
        p.verify_digest(&sha256(&[&cp.signed_bytes()]), &sig).map_err(|_| VaultError::bad("invalid signature"))
    }
}
