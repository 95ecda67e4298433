//! Key operations (wrapKey, unwrapKey, encrypt, decrypt, sign, verify) with the checks
//! the AKV API prescribes, in its order: key exists (`KeyNotFound`) → enabled
//! (`KeyDisabled`) → operation in `key_ops` (`KeyOperationForbidden`) → algorithm valid
//! for the key (`BadParameter`) → time validity (before `nbf` everything is refused;
//! after `exp`, encrypt, wrapKey and sign are refused while decrypt, unwrapKey and verify
//! still work).
//! Authorization of the caller happens before any of this, in the access layer.

use crate::error::{Refusal, Result, VaultError};
use crate::keys::{KeyRow, VersionRow};
use crate::model::{Kty, VaultInfo};
use crate::service::VaultService;
use crate::usage::GCM_BLOCK;
use atrest_crypto::backend::{PublicKey, SignAlg, WrapAlg};
use atrest_crypto::rsa::RsaSignature;
use atrest_crypto::{CryptoError, SecretBytes};

/// Most A256GCM encryptions one key version may perform (random 96-bit IVs).
pub const GCM_LIMIT: i64 = 1 << 32;

/// The six key operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    /// Encrypt data.
    Encrypt,
    /// Decrypt data.
    Decrypt,
    /// Sign a digest.
    Sign,
    /// Verify a signature.
    Verify,
    /// Wrap a key.
    WrapKey,
    /// Unwrap a key.
    UnwrapKey,
}

impl KeyOp {
    /// The name used in `key_ops` (and of its permission).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
            KeyOp::Sign => "sign",
            KeyOp::Verify => "verify",
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
        }
    }

    /// The permission an access policy must grant for it.
    #[must_use]
    pub fn permission(self) -> crate::Permission {
        use crate::Permission as P;
        match self {
            KeyOp::Encrypt => P::Encrypt,
            KeyOp::Decrypt => P::Decrypt,
            KeyOp::Sign => P::Sign,
            KeyOp::Verify => P::Verify,
            KeyOp::WrapKey => P::WrapKey,
            KeyOp::UnwrapKey => P::UnwrapKey,
        }
    }

    /// Operations that create new protected output, refused once a key expires.
    fn refused_after_expiry(self) -> bool {
        matches!(self, KeyOp::Encrypt | KeyOp::WrapKey | KeyOp::Sign)
    }
}

/// Input of an operation (AKV `KeyOperationsParameters` / `KeySignParameters` / `KeyVerifyParameters`).
#[derive(Debug, Clone, Default)]
pub struct OpInput {
    /// Algorithm (JOSE name).
    pub alg: String,
    /// Plaintext, ciphertext, key to wrap, wrapped key, digest to sign, or signature to
    /// verify: zeroized on drop and redacted in `Debug`, since it is often a secret.
    pub value: SecretBytes,
    /// A256GCM decrypt: the IV.
    pub iv: Option<Vec<u8>>,
    /// A256GCM: additional authenticated data.
    pub aad: Option<Vec<u8>>,
    /// A256GCM decrypt: the tag.
    pub tag: Option<Vec<u8>>,
    /// Verify: the digest.
    pub digest: Option<Vec<u8>>,
}

/// Result of an operation.
#[derive(Debug)]
pub struct OpOutput {
    /// The key's name as first created.
    pub name: String,
    /// The version that performed it.
    pub version: String,
    /// Output bytes (zeroized on drop: unwrapped keys and plaintexts are secrets).
    pub value: SecretBytes,
    /// A256GCM encrypt: the IV chosen.
    pub iv: Option<Vec<u8>>,
    /// A256GCM encrypt: the tag.
    pub tag: Option<Vec<u8>>,
    /// A256GCM: the AAD echoed.
    pub aad: Option<Vec<u8>>,
    /// Verify: whether the signature is valid.
    pub verified: Option<bool>,
}

impl OpOutput {
    fn bytes(v: &VersionRow, value: Vec<u8>) -> Self {
        Self {
            name: v.display_name.clone(),
            version: v.version.clone(),
            value: SecretBytes::new(value),
            iv: None,
            tag: None,
            aad: None,
            verified: None,
        }
    }
}

/// Maps a backend failure: stored material that does not open is an integrity failure of
/// the database, anything else is the caller's input.
fn backend_err(e: CryptoError, v: &VersionRow) -> VaultError {
    match e {
        CryptoError::StoredKeyIntegrity => {
            VaultError::Integrity { what: format!("key material of version {}", v.version) }
        }
        CryptoError::Decrypt => {
            VaultError::bad("decryption failed: the ciphertext, IV, tag or AAD is wrong for this key")
        }
        other => VaultError::bad(other.to_string()),
    }
}

fn bad_alg(alg: &str, op: KeyOp, kty: Kty) -> VaultError {
    VaultError::bad(format!("algorithm {alg:?} is not valid for {} with an {} key", op.name(), kty.as_str()))
}

impl VaultService {
    /// Performs `op` with key `name` (`version` `None`/`""` = latest).
    ///
    /// # Errors
    /// As described in the module documentation.
    pub async fn operate(
        &self,
        vault: &VaultInfo,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
        input: OpInput,
    ) -> Result<OpOutput> {
        let (k, v) = self.live_version(vault, name, version).await?;
        self.operate_rows(vault, k, v, op, input).await
    }

    /// [`Self::operate`] on a live key's rows already read (and verified).
    pub(crate) async fn operate_rows(
        &self,
        vault: &VaultInfo,
        k: KeyRow,
        mut v: VersionRow,
        op: KeyOp,
        input: OpInput,
    ) -> Result<OpOutput> {
        v.display_name = k.name;
        if !v.enabled {
            return Err(VaultError::forbidden(
                Refusal::KeyDisabled,
                format!("Operation {} is not allowed on a disabled key.", op.name()),
            ));
        }
        if !v.ops().iter().any(|o| o == op.name()) {
            return Err(VaultError::forbidden(
                Refusal::KeyOperationForbidden,
                format!(
                    "Operation {} is not permitted on this key; add it to the key's key_ops to allow it.",
                    op.name()
                ),
            ));
        }
        let kty = Kty::parse(&v.kty)?;
        let plan = Plan::choose(kty, op, &input.alg, vault.settings.allow_rsa1_5)?;
        let now = self.now();
        if v.nbf.is_some_and(|nbf| now < nbf) {
            return Err(VaultError::forbidden(
                Refusal::KeyNotYetValid,
                format!("Operation {} is not allowed before the key's nbf time.", op.name()),
            ));
        }
        if op.refused_after_expiry() && v.exp.is_some_and(|exp| now >= exp) {
            return Err(VaultError::forbidden(
                Refusal::KeyExpired,
                format!(
                    "Operation {} is not allowed on an expired key; decrypt, unwrapKey and verify still work. Rotate the key.",
                    op.name()
                ),
            ));
        }
        let key = v.backend_key()?;
        let binding = v.binding();
        Ok(match plan {
            Plan::Wrap(alg) => OpOutput::bytes(
                &v,
                self.custody(|be| be.wrap_key(&key, &binding, alg, input.value.expose_secret()))
                    .map_err(|e| backend_err(e, &v))?,
            ),
            Plan::Unwrap(alg) => OpOutput {
                value: self
                    .custody(|be| be.unwrap_key(&key, &binding, alg, input.value.expose_secret()))
                    .map_err(|e| backend_err(e, &v))?,
                ..OpOutput::bytes(&v, Vec::new())
            },
            Plan::GcmEncrypt => self.gcm_encrypt(vault, &v, &input).await?,
            Plan::GcmDecrypt => {
                let iv: [u8; 12] = input
                    .iv
                    .as_deref()
                    .and_then(|i| i.try_into().ok())
                    .ok_or_else(|| VaultError::bad("A256GCM decrypt needs a 12-byte iv"))?;
                let tag = input
                    .tag
                    .as_deref()
                    .filter(|t| t.len() == 16)
                    .ok_or_else(|| VaultError::bad("A256GCM decrypt needs a 16-byte tag"))?;
                let pt = self
                    .custody(|be| {
                        be.decrypt_gcm(
                            &key,
                            &binding,
                            iv,
                            input.aad.as_deref().unwrap_or(&[]),
                            input.value.expose_secret(),
                            tag,
                        )
                    })
                    .map_err(|e| backend_err(e, &v))?;
                OpOutput { value: pt, ..OpOutput::bytes(&v, Vec::new()) }
            }
            Plan::Sign(alg) => OpOutput::bytes(
                &v,
                self.custody(|be| be.sign(&key, &binding, alg, input.value.expose_secret()))
                    .map_err(|e| backend_err(e, &v))?,
            ),
            Plan::Verify(alg) => {
                let digest = input.digest.as_deref().ok_or_else(|| VaultError::bad("verify needs the digest"))?;
                let ok = match (&key.public, alg) {
                    (Some(PublicKey::Rsa(k)), SignAlg::Rs256) => {
                        k.verify_digest(RsaSignature::Rs256, digest, input.value.expose_secret())
                    }
                    (Some(PublicKey::Rsa(k)), SignAlg::Ps256) => {
                        k.verify_digest(RsaSignature::Ps256, digest, input.value.expose_secret())
                    }
                    (Some(PublicKey::Ec(k)), SignAlg::Es256 | SignAlg::Es384) => {
                        k.verify_digest(digest, input.value.expose_secret())
                    }
                    _ => return Err(bad_alg(&input.alg, op, kty)),
                };
                match ok {
                    Ok(()) => OpOutput { verified: Some(true), ..OpOutput::bytes(&v, Vec::new()) },
                    Err(CryptoError::Integrity) => {
                        OpOutput { verified: Some(false), ..OpOutput::bytes(&v, Vec::new()) }
                    }
                    Err(e) => return Err(VaultError::bad(e.to_string())),
                }
            }
        })
    }

    /// A256GCM encryption: counts the use against [`GCM_LIMIT`] (durably, before the
    /// encryption) and picks a random IV.
    async fn gcm_encrypt(&self, vault: &VaultInfo, v: &VersionRow, input: &OpInput) -> Result<OpOutput> {
        self.count_gcm_use(vault, v).await?;
        let iv: [u8; 12] = atrest_crypto::rand::bytes()?;
        let aad = input.aad.clone().unwrap_or_default();
        let key = v.backend_key()?;
        let (ct, tag) = self
            .custody(|be| be.encrypt_gcm(&key, &v.binding(), iv, &aad, input.value.expose_secret()))
            .map_err(|e| backend_err(e, v))?;
        Ok(OpOutput {
            iv: Some(iv.to_vec()),
            tag: Some(tag.to_vec()),
            aad: input.aad.clone(),
            ..OpOutput::bytes(v, ct)
        })
    }
}

impl VaultService {
    /// Counts one A256GCM encryption against the version's limit before it happens: from
    /// this node's reserved block, or by durably reserving the next block first. So the
    /// stored count is never below the encryptions released, even after `kill -9`.
    async fn count_gcm_use(&self, vault: &VaultInfo, v: &VersionRow) -> Result<()> {
        let id = atrest_crypto::hash::sha256(&[
            v.vault_id.as_bytes(),
            b"\0",
            v.name_lc.as_bytes(),
            b"\0",
            v.version.as_bytes(),
            b"\0",
            &v.material,
        ]);
        let block = self.gcm_blocks.of(id);
        let mut block = block.lock().await;
        let (next, end) = &mut *block;
        if *next < *end {
            *next += 1;
            return Ok(());
        }
        let _g = self.write_guard().await;
        for attempt in 0..32 {
            if attempt > 0 {
                crate::secrets::back_off(attempt).await;
            }
            let mut fresh = self
                .version_row(vault, &v.name_lc, &v.version)
                .await?
                .ok_or_else(|| VaultError::key_not_found(&v.name_lc))?;
            let start = fresh.gcm_count;
            if start >= GCM_LIMIT {
                return Err(VaultError::forbidden(
                    Refusal::UsageLimitReached,
                    "this key version has performed 2^32 A256GCM encryptions, the limit for random IVs; rotate the key",
                ));
            }
            let was = self.mac.tag("key_versions", &fresh.fields());
            fresh.gcm_count = (start + GCM_BLOCK).min(GCM_LIMIT);
            if self.raise_gcm_count(&fresh, &was).await? {
                *block = (start + 1, fresh.gcm_count);
                return Ok(());
            }
        }
        Err(VaultError::Storage("the key version's usage count kept changing under concurrent writes; retry".into()))
    }
}

/// What an (operation, algorithm, key type) triple resolves to.
enum Plan {
    Wrap(WrapAlg),
    Unwrap(WrapAlg),
    GcmEncrypt,
    GcmDecrypt,
    Sign(SignAlg),
    Verify(SignAlg),
}

impl Plan {
    fn choose(kty: Kty, op: KeyOp, alg: &str, allow_rsa1_5: bool) -> Result<Self> {
        use KeyOp::*;
        let plan = match (kty, op, alg) {
            (Kty::Rsa, Encrypt | WrapKey, "RSA-OAEP") => Plan::Wrap(WrapAlg::RsaOaep),
            (Kty::Rsa, Encrypt | WrapKey, "RSA-OAEP-256") => Plan::Wrap(WrapAlg::RsaOaep256),
            (Kty::Rsa, Decrypt | UnwrapKey, "RSA-OAEP") => Plan::Unwrap(WrapAlg::RsaOaep),
            (Kty::Rsa, Decrypt | UnwrapKey, "RSA-OAEP-256") => Plan::Unwrap(WrapAlg::RsaOaep256),
            (Kty::Rsa, Decrypt | UnwrapKey, "RSA1_5") if allow_rsa1_5 => Plan::Unwrap(WrapAlg::Rsa1_5),
            (Kty::Rsa, Decrypt | UnwrapKey, "RSA1_5") => {
                return Err(VaultError::bad(
                    "RSA1_5 is disabled in this vault; it is a legacy algorithm, enable allow_rsa1_5 in the vault settings only for clients that need it",
                ));
            }
            (Kty::Oct, WrapKey, "A256KW") => Plan::Wrap(WrapAlg::A256Kw),
            (Kty::Oct, UnwrapKey, "A256KW") => Plan::Unwrap(WrapAlg::A256Kw),
            (Kty::Oct, Encrypt, "A256GCM") => Plan::GcmEncrypt,
            (Kty::Oct, Decrypt, "A256GCM") => Plan::GcmDecrypt,
            (Kty::Rsa, Sign, "RS256") => Plan::Sign(SignAlg::Rs256),
            (Kty::Rsa, Sign, "PS256") => Plan::Sign(SignAlg::Ps256),
            (Kty::Ec, Sign, "ES256") => Plan::Sign(SignAlg::Es256),
            (Kty::Ec, Sign, "ES384") => Plan::Sign(SignAlg::Es384),
            (Kty::Rsa, Verify, "RS256") => Plan::Verify(SignAlg::Rs256),
            (Kty::Rsa, Verify, "PS256") => Plan::Verify(SignAlg::Ps256),
            (Kty::Ec, Verify, "ES256") => Plan::Verify(SignAlg::Es256),
            (Kty::Ec, Verify, "ES384") => Plan::Verify(SignAlg::Es384),
            _ => return Err(bad_alg(alg, op, kty)),
        };
        Ok(plan)
    }
}
