//! Secrets (the AKV secrets API, `../shared/akv-secrets-api.md`): set, get, update,
//! list, versions, soft delete, recover, purge, backup and restore — with no HTTP.
//!
//! # Protection at rest
//! Each version's value is sealed in the record format under a data key of its own,
//! with (vault, name, version) as the record's context; the data key is stored only
//! wrapped (A256KW) by the vault's *secrets key*, an AES-256 key held by the key backend
//! like any key version's material (so an HSM backend holds it in the token). Names,
//! tags, content type and dates are stored readable, as Azure Key Vault treats them.
//! Rows are MACed like key rows and checked on every read.

use crate::error::{Refusal, Result, VaultError};
use crate::model::{DeletedSecret, Page, SecretAttributes, SecretBundle, VaultInfo, check_name, new_id};
use crate::model::{b64u, b64u_decode};
use crate::repo::secrets as repo;
use crate::repo::secrets::{KekRow, SecretRow, SecretVersionRow};
use crate::rowmac::Field;
use crate::service::VaultService;
use atrest_crypto::SecretKey;
use atrest_crypto::backend::{BackendKey, KeySpec, WrapAlg};
use atrest_wire::akv::SecretText;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const DAY: i64 = 86_400;

/// The largest value, in bytes of UTF-8 (Azure Key Vault's "25k bytes").
pub const MAX_SECRET_VALUE: usize = 25_600;
/// The most tags a secret version carries (Azure Key Vault's limit).
pub const MAX_SECRET_TAGS: usize = 15;
const MAX_TAG_LEN: usize = 512;
const MAX_CONTENT_TYPE: usize = 255;

/// The binding of a vault's secrets key in the key backend (beside the vault's id; key
/// versions are bound to (vault, name, version), and a name never contains `/`).
const KEK_BINDING: &[u8] = b"atrest/secrets-key/v1";
/// The first element of a value's record context (then vault id, name, version).
const VALUE_CONTEXT: &[u8] = b"atrest/secret-value/v1";

/// How often a write that lost a race reads again and retries. On PostgreSQL nothing
/// serializes writers, so every write is conditional on the row being as read; on
/// SQLite the write guard makes the first attempt win.
const ATTEMPTS: usize = 32;

/// Before another attempt of a write that lost a race: a short random pause, longer each
/// time, so writers that keep colliding spread out instead of colliding again.
pub(crate) async fn back_off(attempt: usize) {
    let r = u64::from(u16::from_le_bytes(atrest_crypto::rand::bytes::<2>().unwrap_or_default()));
    let most = 200 * (attempt as u64 + 1);
    tokio::time::sleep(std::time::Duration::from_micros(r % most)).await;
}

fn contended(name: &str) -> VaultError {
    VaultError::Storage(format!("secret {name} kept changing under concurrent writes; retry the request"))
}

const BACKUP_FORMAT: &str = "atrest-secret-backup/1";
const BACKUP_CONTEXT: &[&[u8]] = &[b"atrest/secret-backup/v1"];

/// What to set: a new version of a secret.
#[derive(Debug, Default)]
pub struct SetSecret {
    /// The value (any string, empty included; at most [`MAX_SECRET_VALUE`] bytes).
    pub value: SecretText,
    /// Free text, e.g. a MIME type (at most 255 characters).
    pub content_type: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Not before (informational for get, as in Azure Key Vault).
    pub nbf: Option<i64>,
    /// Expiry (informational for get).
    pub exp: Option<i64>,
    /// At most 15 tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// What to change on a secret version; `None` leaves a field as it is. Never the value.
#[derive(Debug, Default)]
pub struct UpdateSecret {
    /// New content type (`""` clears it).
    pub content_type: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Not before (`Some(None)` clears it).
    pub nbf: Option<Option<i64>>,
    /// Expiry (`Some(None)` clears it).
    pub exp: Option<Option<i64>>,
    /// New tag map (replaces all tags).
    pub tags: Option<BTreeMap<String, String>>,
}

impl SecretRow {
    fn fields(&self) -> [Field<'_>; 6] {
        [
            Field::Text(&self.vault_id),
            Field::Text(&self.name_lc),
            Field::Text(&self.name),
            Field::Text(&self.latest_version),
            Field::OptInt(self.deleted_at),
            Field::OptInt(self.scheduled_purge),
        ]
    }
}

impl SecretVersionRow {
    fn fields(&self) -> [Field<'_>; 13] {
        [
            Field::Text(&self.vault_id),
            Field::Text(&self.name_lc),
            Field::Text(&self.version),
            Field::Int(self.seq),
            Field::Int(i64::from(self.enabled)),
            Field::OptInt(self.nbf),
            Field::OptInt(self.exp),
            Field::Int(self.created),
            Field::Int(self.updated),
            Field::Text(&self.content_type),
            Field::Text(&self.tags),
            Field::Bytes(&self.wrapped_key),
            Field::Bytes(&self.sealed),
        ]
    }
}

impl KekRow {
    fn fields(&self) -> [Field<'_>; 3] {
        [Field::Text(&self.vault_id), Field::Bytes(&self.material), Field::Int(self.created)]
    }
}

fn check_content_type(c: &str) -> Result<()> {
    if c.chars().count() > MAX_CONTENT_TYPE {
        return Err(VaultError::bad(format!("contentType is over {MAX_CONTENT_TYPE} characters")));
    }
    Ok(())
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_SECRET_TAGS {
        return Err(VaultError::bad(format!(
            "a secret carries at most {MAX_SECRET_TAGS} tags; this request has {}",
            tags.len()
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_LEN || v.chars().count() > MAX_TAG_LEN {
            return Err(VaultError::bad(format!(
                "tag names must be 1 to {MAX_TAG_LEN} characters and values at most {MAX_TAG_LEN}"
            )));
        }
    }
    Ok(())
}

fn check_dates(nbf: Option<i64>, exp: Option<i64>) -> Result<()> {
    for (what, t) in [("nbf", nbf), ("exp", exp)] {
        if t.is_some_and(|t| t < 0) {
            return Err(VaultError::bad(format!("attributes.{what} must be Unix seconds, 0 or more")));
        }
    }
    if let (Some(n), Some(e)) = (nbf, exp)
        && e <= n
    {
        return Err(VaultError::bad(format!("attributes.exp ({e}) must be after attributes.nbf ({n})")));
    }
    Ok(())
}

fn json_text<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| VaultError::bad(e.to_string()))
}

/// The secrets key's binding in the key backend.
fn kek_binding(vault_id: &str) -> [&[u8]; 2] {
    [vault_id.as_bytes(), KEK_BINDING]
}

impl VaultService {
    /// The vault's secrets key, made on first use. Two nodes may race to make it: the
    /// row first stored wins and both use it. (With an HSM backend the loser's key stays
    /// in the token unused until the backend can destroy objects, issue 16.)
    async fn secrets_key(&self, vault: &VaultInfo) -> Result<BackendKey> {
        if let Some(k) = self.stored_secrets_key(vault).await? {
            return Ok(k);
        }
        let made = self.custody(|be| be.generate(KeySpec::Aes256, &kek_binding(&vault.id)))?;
        let row = KekRow { vault_id: vault.id.clone(), material: made.handle, created: self.now() };
        let mac = self.mac.tag("secret_keks", &row.fields());
        repo::insert_kek(&self.db, &row, &mac).await?;
        self.stored_secrets_key(vault)
            .await?
            .ok_or_else(|| VaultError::Storage(format!("the secrets key of vault {} was not stored", vault.name)))
    }

    async fn stored_secrets_key(&self, vault: &VaultInfo) -> Result<Option<BackendKey>> {
        self.secrets_key_of(&vault.id, &vault.name).await
    }

    /// The secrets key of the vault with id `vault_id` (`name` for messages).
    async fn secrets_key_of(&self, vault_id: &str, name: &str) -> Result<Option<BackendKey>> {
        let Some((row, mac)) = repo::kek(&self.db, vault_id).await? else { return Ok(None) };
        self.mac.check("secret_keks", &row.fields(), &mac, || format!("secrets key of vault {name}"))?;
        Ok(Some(BackendKey { spec: KeySpec::Aes256, handle: row.material, public: None }))
    }

    /// Seals `value` for one version: (the data key wrapped by the secrets key, the sealed value).
    fn seal_value(&self, kek: &BackendKey, v: &SecretVersionRow, value: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let dek = SecretKey::generate()?;
        let context = [VALUE_CONTEXT, v.vault_id.as_bytes(), v.name_lc.as_bytes(), v.version.as_bytes()];
        let sealed = atrest_crypto::record::seal(&dek, &context, value)?;
        let wrapped =
            self.custody(|be| be.wrap_key(kek, &kek_binding(&v.vault_id), WrapAlg::A256Kw, dek.expose_secret()))?;
        Ok((wrapped, sealed))
    }

    /// Opens a version's value. A value that does not open is stored state gone wrong.
    fn open_value(&self, kek: &BackendKey, v: &SecretVersionRow) -> Result<SecretText> {
        self.open_sealed(kek, [&v.vault_id, &v.name_lc, &v.version], &v.wrapped_key, &v.sealed)
    }

    /// Opens a value sealed for `(vault id, name lowercased, version)` under a data key
    /// `wrapped` by that vault's secrets key `kek`.
    fn open_sealed(&self, kek: &BackendKey, at: [&str; 3], wrapped: &[u8], sealed: &[u8]) -> Result<SecretText> {
        let [vault_id, name_lc, version] = at;
        let integrity = || VaultError::Integrity { what: format!("value of secret version {name_lc}/{version}") };
        let dek = self
            .custody(|be| be.unwrap_key(kek, &kek_binding(vault_id), WrapAlg::A256Kw, wrapped))
            .map_err(|_| integrity())?;
        let dek = SecretKey::from_slice(dek.expose_secret()).map_err(|_| integrity())?;
        let context = [VALUE_CONTEXT, vault_id.as_bytes(), name_lc.as_bytes(), version.as_bytes()];
        let plain = Zeroizing::new(atrest_crypto::record::open(&dek, &context, sealed).map_err(|_| integrity())?);
        let text = std::str::from_utf8(&plain).map_err(|_| integrity())?;
        Ok(SecretText::from(text.to_string()))
    }

    async fn secret_row(&self, vault: &VaultInfo, name: &str) -> Result<Option<SecretRow>> {
        let Some((s, mac)) = repo::secret(&self.db, &vault.id, &name.to_ascii_lowercase()).await? else {
            return Ok(None);
        };
        Ok(Some(self.verified_secret(vault, s, &mac)?))
    }

    pub(crate) fn verified_secret(&self, vault: &VaultInfo, s: SecretRow, mac: &[u8]) -> Result<SecretRow> {
        self.mac.check("secrets", &s.fields(), mac, || format!("secret {} in vault {}", s.name, vault.name))?;
        Ok(s)
    }

    pub(crate) fn verified_secret_version(
        &self,
        vault: &VaultInfo,
        v: SecretVersionRow,
        mac: &[u8],
    ) -> Result<SecretVersionRow> {
        self.check_version(vault, &v, mac)?;
        Ok(v)
    }

    pub(crate) fn verified_secrets_key(&self, vault: &VaultInfo, row: KekRow, mac: &[u8]) -> Result<BackendKey> {
        self.mac.check("secret_keks", &row.fields(), mac, || format!("secrets key of vault {}", vault.name))?;
        Ok(BackendKey { spec: KeySpec::Aes256, handle: row.material, public: None })
    }

    async fn secret_version_row(
        &self,
        vault: &VaultInfo,
        name_lc: &str,
        version: &str,
    ) -> Result<Option<SecretVersionRow>> {
        let Some((v, mac)) = repo::version(&self.db, &vault.id, name_lc, version).await? else {
            return Ok(None);
        };
        self.check_version(vault, &v, &mac)?;
        Ok(Some(v))
    }

    fn check_version(&self, vault: &VaultInfo, v: &SecretVersionRow, mac: &[u8]) -> Result<()> {
        self.mac.check("secret_versions", &v.fields(), mac, || {
            format!("secret version {}/{} in vault {}", v.name_lc, v.version, vault.name)
        })?;
        Ok(())
    }

    /// A secret in the state asked for (live or soft-deleted) and its latest version.
    async fn secret_in(&self, vault: &VaultInfo, name: &str, deleted: bool) -> Result<(SecretRow, SecretVersionRow)> {
        let s = self
            .secret_row(vault, name)
            .await?
            .filter(|s| s.deleted_at.is_some() == deleted)
            .ok_or_else(|| VaultError::secret_not_found(name))?;
        let v = self
            .secret_version_row(vault, &s.name_lc, &s.latest_version)
            .await?
            .ok_or_else(|| VaultError::Integrity { what: format!("latest version of secret {}", s.name) })?;
        Ok((s, v))
    }

    /// A live secret and one of its versions (`None` or `""` = latest).
    async fn live_secret(
        &self,
        vault: &VaultInfo,
        name: &str,
        version: Option<&str>,
    ) -> Result<(SecretRow, SecretVersionRow)> {
        let version = version.filter(|v| !v.is_empty());
        let Some(version) = version else { return self.secret_in(vault, name, false).await };
        let s = self
            .secret_row(vault, name)
            .await?
            .filter(|s| s.deleted_at.is_none())
            .ok_or_else(|| VaultError::secret_not_found(name))?;
        let v = self
            .secret_version_row(vault, &s.name_lc, &version.to_ascii_lowercase())
            .await?
            .ok_or_else(|| VaultError::secret_not_found(&format!("{name}/{version}")))?;
        Ok((s, v))
    }

    fn secret_bundle(
        vault: &VaultInfo,
        s: &SecretRow,
        v: &SecretVersionRow,
        value: Option<SecretText>,
    ) -> Result<SecretBundle> {
        Ok(SecretBundle {
            name: s.name.clone(),
            version: v.version.clone(),
            value,
            content_type: (!v.content_type.is_empty()).then(|| v.content_type.clone()),
            attributes: SecretAttributes {
                enabled: v.enabled,
                nbf: v.nbf,
                exp: v.exp,
                created: v.created,
                updated: v.updated,
                recovery_level: vault.settings.recovery_level().to_string(),
                recoverable_days: vault.settings.retention_days,
            },
            tags: serde_json::from_str(&v.tags)
                .map_err(|_| VaultError::Integrity { what: format!("tags of secret version {}", v.version) })?,
        })
    }

    fn deleted_secret(vault: &VaultInfo, s: &SecretRow, v: &SecretVersionRow) -> Result<DeletedSecret> {
        Ok(DeletedSecret {
            secret: Self::secret_bundle(vault, s, v, None)?,
            deleted_date: s.deleted_at.unwrap_or(0),
            scheduled_purge_date: s.scheduled_purge.unwrap_or(0),
        })
    }

    /// Writes a changed secret row if the stored one is still as read. `false`: it changed.
    async fn write_secret_row(&self, s: &SecretRow) -> Result<bool> {
        let mac = self.mac.tag("secrets", &s.fields());
        repo::update_secret_if(&self.db, s, &mac, &s.stored_mac).await
    }

    /// Sets a secret: a new version (the secret is created if new). Nothing of the
    /// previous version (tags, content type, attributes) is carried over.
    ///
    /// # Errors
    /// `BadParameter` (name, size, tags, dates); `DeletedButRecoverable` for a
    /// soft-deleted name.
    pub async fn set_secret(&self, vault: &VaultInfo, name: &str, req: SetSecret) -> Result<SecretBundle> {
        check_name(name, "secret")?;
        let len = req.value.expose().len();
        if len > MAX_SECRET_VALUE {
            return Err(VaultError::bad(format!(
                "the secret value is {len} bytes; the most a secret holds is {MAX_SECRET_VALUE} bytes"
            )));
        }
        let content_type = req.content_type.unwrap_or_default();
        check_content_type(&content_type)?;
        let tags = req.tags.unwrap_or_default();
        check_tags(&tags)?;
        check_dates(req.nbf, req.exp)?;
        let kek = self.secrets_key(vault).await?;
        let name_lc = name.to_ascii_lowercase();
        let now = self.now();
        let mut v = SecretVersionRow {
            vault_id: vault.id.clone(),
            name_lc: name_lc.clone(),
            version: new_id()?,
            seq: 0,
            enabled: req.enabled.unwrap_or(true),
            nbf: req.nbf,
            exp: req.exp,
            created: now,
            updated: now,
            content_type,
            tags: json_text(&tags)?,
            wrapped_key: Vec::new(),
            sealed: Vec::new(),
            stored_mac: Vec::new(),
        };
        (v.wrapped_key, v.sealed) = self.seal_value(&kek, &v, req.value.expose().as_bytes())?;
        let _g = self.write_guard().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let existing = self.secret_row(vault, name).await?;
            if existing.as_ref().is_some_and(|s| s.deleted_at.is_some()) {
                return Err(VaultError::DeletedButRecoverable(format!(
                    "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; \
                     in this state, the secret can only be recovered or purged."
                )));
            }
            v.seq = repo::max_seq(&self.db, &vault.id, &name_lc).await?.unwrap_or(0) + 1;
            let s = SecretRow {
                vault_id: vault.id.clone(),
                name_lc: name_lc.clone(),
                name: existing.as_ref().map_or_else(|| name.to_string(), |s| s.name.clone()),
                latest_version: v.version.clone(),
                deleted_at: None,
                scheduled_purge: None,
                stored_mac: Vec::new(),
            };
            let version_mac = self.mac.tag("secret_versions", &v.fields());
            let secret_mac = self.mac.tag("secrets", &s.fields());
            let was = existing.as_ref().map(|e| e.stored_mac.as_slice());
            if repo::commit_versions(&self.db, &[(v.clone(), version_mac)], &s, &secret_mac, was).await? {
                return Self::secret_bundle(vault, &s, &v, Some(req.value));
            }
        }
        Err(contended(name))
    }

    /// Gets a secret version's value and attributes (`None`/`""` = latest). `nbf` and
    /// `exp` are informational, as in Azure Key Vault; a disabled version is refused.
    ///
    /// # Errors
    /// `SecretNotFound`; `Forbidden` (`SecretDisabled`).
    pub async fn get_secret(&self, vault: &VaultInfo, name: &str, version: Option<&str>) -> Result<SecretBundle> {
        let (s, v) = self.live_secret(vault, name, version).await?;
        let kek = self.stored_secrets_key(vault).await?;
        self.released_secret(vault, &s, &v, kek.as_ref())
    }

    /// A live secret's version with its value, unless the version is disabled.
    pub(crate) fn released_secret(
        &self,
        vault: &VaultInfo,
        s: &SecretRow,
        v: &SecretVersionRow,
        kek: Option<&BackendKey>,
    ) -> Result<SecretBundle> {
        if !v.enabled {
            return Err(VaultError::forbidden(
                Refusal::SecretDisabled,
                format!(
                    "Operation get is not allowed on a disabled secret. (Enable version {} of secret {} to read it.)",
                    v.version, s.name
                ),
            ));
        }
        let kek = kek.ok_or_else(|| VaultError::Integrity { what: format!("secrets key of vault {}", vault.name) })?;
        let value = self.open_value(kek, v)?;
        Self::secret_bundle(vault, s, v, Some(value))
    }

    /// Changes a version's attributes, content type or tags; never its value, and no
    /// new version. Disabled versions can be updated (that is how they are enabled).
    ///
    /// # Errors
    /// `SecretNotFound`, `BadParameter`.
    pub async fn update_secret(
        &self,
        vault: &VaultInfo,
        name: &str,
        version: Option<&str>,
        req: UpdateSecret,
    ) -> Result<SecretBundle> {
        if let Some(c) = &req.content_type {
            check_content_type(c)?;
        }
        let tags = req.tags.as_ref().map(|t| check_tags(t).and_then(|()| json_text(t))).transpose()?;
        let _g = self.write_guard().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let (s, mut v) = self.live_secret(vault, name, version).await?;
            if let Some(c) = &req.content_type {
                v.content_type.clone_from(c);
            }
            if let Some(e) = req.enabled {
                v.enabled = e;
            }
            if let Some(n) = req.nbf {
                v.nbf = n;
            }
            if let Some(e) = req.exp {
                v.exp = e;
            }
            if req.nbf.is_some() || req.exp.is_some() {
                check_dates(v.nbf, v.exp)?;
            }
            if let Some(t) = &tags {
                v.tags.clone_from(t);
            }
            v.updated = self.now().max(v.updated);
            let mac = self.mac.tag("secret_versions", &v.fields());
            if repo::update_version_if(&self.db, &v, &mac, &v.stored_mac).await? {
                return Self::secret_bundle(vault, &s, &v, None);
            }
        }
        Err(contended(name))
    }

    /// Lists live secrets (each as its latest version, without values), ≤ 25 per page.
    ///
    /// # Errors
    /// `BadParameter` for a bad page size or token.
    pub async fn list_secrets(
        &self,
        vault: &VaultInfo,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<SecretBundle>> {
        let page = self.secret_names(vault, max, token, false).await?;
        Ok(Page { items: page.items.into_iter().map(|d| d.secret).collect(), next: page.next })
    }

    /// Lists soft-deleted secrets.
    ///
    /// # Errors
    /// As [`Self::list_secrets`].
    pub async fn list_deleted_secrets(
        &self,
        vault: &VaultInfo,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<DeletedSecret>> {
        self.secret_names(vault, max, token, true).await
    }

    async fn secret_names(
        &self,
        vault: &VaultInfo,
        max: Option<usize>,
        token: Option<&str>,
        deleted: bool,
    ) -> Result<Page<DeletedSecret>> {
        let max = crate::model::page_size(max)?;
        let after = crate::model::name_after(token)?;
        let limit = i64::try_from(max + 1).unwrap_or(26);
        let rows = repo::secrets_page(&self.db, &vault.id, deleted, &after, limit).await?;
        let mut items = Vec::new();
        for (s, mac) in rows.iter().take(max) {
            self.mac.check("secrets", &s.fields(), mac, || format!("secret {} in vault {}", s.name, vault.name))?;
            let v = self
                .secret_version_row(vault, &s.name_lc, &s.latest_version)
                .await?
                .ok_or_else(|| VaultError::Integrity { what: format!("latest version of secret {}", s.name) })?;
            items.push(Self::deleted_secret(vault, s, &v)?);
        }
        let next = if rows.len() > max { rows.get(max - 1).map(|(s, _)| hex::encode(&s.name_lc)) } else { None };
        Ok(Page { items, next })
    }

    /// Lists every version of a live secret, oldest first, without values.
    ///
    /// # Errors
    /// `SecretNotFound`, `BadParameter`.
    pub async fn list_secret_versions(
        &self,
        vault: &VaultInfo,
        name: &str,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<SecretBundle>> {
        let max = crate::model::page_size(max)?;
        let after = crate::model::seq_after(token)?;
        let s = self
            .secret_row(vault, name)
            .await?
            .filter(|s| s.deleted_at.is_none())
            .ok_or_else(|| VaultError::secret_not_found(name))?;
        let limit = i64::try_from(max + 1).unwrap_or(26);
        let rows = repo::versions_page(&self.db, &vault.id, &s.name_lc, after, limit).await?;
        let mut items = Vec::new();
        let mut last_seq = 0;
        for (v, mac) in rows.iter().take(max) {
            self.check_version(vault, v, mac)?;
            last_seq = v.seq;
            items.push(Self::secret_bundle(vault, &s, v, None)?);
        }
        Ok(Page { items, next: (rows.len() > max).then(|| last_seq.to_string()) })
    }

    /// Soft-deletes a secret (all versions); it is purged after the vault's retention.
    ///
    /// # Errors
    /// `SecretNotFound`.
    pub async fn delete_secret(&self, vault: &VaultInfo, name: &str) -> Result<DeletedSecret> {
        let _g = self.write_guard().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let (mut s, v) = self.secret_in(vault, name, false).await?;
            let now = self.now();
            s.deleted_at = Some(now);
            s.scheduled_purge = Some(now + vault.settings.retention_days * DAY);
            if self.write_secret_row(&s).await? {
                return Self::deleted_secret(vault, &s, &v);
            }
        }
        Err(contended(name))
    }

    /// A soft-deleted secret (its latest version, without the value).
    ///
    /// # Errors
    /// `SecretNotFound` if it is not in the deleted state.
    pub async fn get_deleted_secret(&self, vault: &VaultInfo, name: &str) -> Result<DeletedSecret> {
        let (s, v) = self.secret_in(vault, name, true).await?;
        Self::deleted_secret(vault, &s, &v)
    }

    /// Recovers a soft-deleted secret with all its versions.
    ///
    /// # Errors
    /// `SecretNotFound` if it is not in the deleted state.
    pub async fn recover_deleted_secret(&self, vault: &VaultInfo, name: &str) -> Result<SecretBundle> {
        let _g = self.write_guard().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let (mut s, v) = self.secret_in(vault, name, true).await?;
            s.deleted_at = None;
            s.scheduled_purge = None;
            if self.write_secret_row(&s).await? {
                return Self::secret_bundle(vault, &s, &v, None);
            }
        }
        Err(contended(name))
    }

    /// Purges a soft-deleted secret for good. Under purge protection only the sweeper
    /// may, once the scheduled date has passed.
    ///
    /// # Errors
    /// `SecretNotFound`, `Forbidden` (purge protection).
    pub async fn purge_deleted_secret(&self, vault: &VaultInfo, name: &str) -> Result<()> {
        let _g = self.write_guard().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            let (s, _) = self.secret_in(vault, name, true).await?;
            if vault.settings.purge_protection && s.scheduled_purge.is_some_and(|p| self.now() < p) {
                return Err(VaultError::forbidden(
                    Refusal::PurgeProtected,
                    "Operation \"purge\" is not allowed because purge protection is enabled for this vault. \
                     Key Vault service will automatically purge it after the retention period has passed.",
                ));
            }
            // Only if still deleted as read: a recover (or a purge) that came first wins.
            if repo::erase_if(&self.db, &s.vault_id, &s.name_lc, &s.stored_mac).await? {
                return Ok(());
            }
        }
        Err(contended(name))
    }

    /// The purge sweeper's part for secrets: erases every soft-deleted secret whose
    /// scheduled purge date has passed. Returns how many.
    pub(crate) async fn purge_due_secrets(&self) -> Result<usize> {
        let rows = repo::secrets_due(&self.db, self.now()).await?;
        let mut n = 0;
        for (s, mac) in &rows {
            // A row whose MAC fails is not trusted to say it is due: leave it for an operator.
            // Erased only if unchanged since read: a secret recovered meanwhile stays.
            if self.mac.check("secrets", &s.fields(), mac, String::new).is_ok()
                && repo::erase_if(&self.db, &s.vault_id, &s.name_lc, mac).await?
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Backs up a live secret: every version (attributes, tags, and each value as stored:
    /// sealed under its data key, wrapped by the vault's secrets key), sealed whole under
    /// a key derived from the root key, so it restores only into this deployment and no
    /// value is ever out of the key backend's protection.
    ///
    /// # Errors
    /// `SecretNotFound`; integrity errors of the stored rows.
    pub async fn backup_secret(&self, vault: &VaultInfo, name: &str) -> Result<Vec<u8>> {
        let (s, _) = self.secret_in(vault, name, false).await?;
        let mut versions = Vec::new();
        let mut after = 0;
        loop {
            let rows = repo::versions_page(&self.db, &vault.id, &s.name_lc, after, 100).await?;
            let Some((last, _)) = rows.last() else { break };
            after = last.seq;
            for (v, mac) in &rows {
                self.check_version(vault, v, mac)?;
                versions.push(BackupVersion {
                    version: v.version.clone(),
                    seq: v.seq,
                    enabled: v.enabled,
                    nbf: v.nbf,
                    exp: v.exp,
                    created: v.created,
                    updated: v.updated,
                    content_type: v.content_type.clone(),
                    tags: v.tags.clone(),
                    wrapped_key: b64u(&v.wrapped_key),
                    sealed: b64u(&v.sealed),
                });
            }
        }
        let blob = Backup { format: BACKUP_FORMAT.into(), vault_id: vault.id.clone(), name: s.name.clone(), versions };
        let json = serde_json::to_vec(&blob).map_err(|e| VaultError::bad(e.to_string()))?;
        Ok(atrest_crypto::record::seal(&self.backup_key, BACKUP_CONTEXT, &json)?)
    }

    /// Restores a secret backup into `vault` under its name and version ids: each value
    /// is opened with its source vault's secrets key (in the key backend) and sealed again
    /// under a fresh data key, this vault's secrets key and its new context.
    ///
    /// # Errors
    /// `BadParameter` for a corrupt or foreign blob; `Conflict` if the name exists (live)
    /// and `DeletedButRecoverable` if it is soft-deleted.
    pub async fn restore_secret(&self, vault: &VaultInfo, backup: &[u8]) -> Result<SecretBundle> {
        let refused = || {
            VaultError::bad(
                "the backup is corrupted, is not a secret backup, or was not made by this deployment (it opens only \
                 with the same root key)",
            )
        };
        let json = atrest_crypto::record::open(&self.backup_key, BACKUP_CONTEXT, backup).map_err(|_| refused())?;
        let blob: Backup = serde_json::from_slice(&json).map_err(|_| refused())?;
        if blob.format != BACKUP_FORMAT || blob.versions.is_empty() {
            return Err(refused());
        }
        check_name(&blob.name, "secret")?;
        let source = self.secrets_key_of(&blob.vault_id, &blob.vault_id).await?.ok_or_else(refused)?;
        let kek = self.secrets_key(vault).await?;
        let name_lc = blob.name.to_ascii_lowercase();
        let mut rows = Vec::with_capacity(blob.versions.len());
        for b in &blob.versions {
            let (wrapped, sealed) = (b64u_decode(&b.wrapped_key, "wrapped_key")?, b64u_decode(&b.sealed, "sealed")?);
            let value = self
                .open_sealed(&source, [&blob.vault_id, &name_lc, &b.version], &wrapped, &sealed)
                .map_err(|_| refused())?;
            let mut v = SecretVersionRow {
                vault_id: vault.id.clone(),
                name_lc: name_lc.clone(),
                version: b.version.clone(),
                seq: b.seq,
                enabled: b.enabled,
                nbf: b.nbf,
                exp: b.exp,
                created: b.created,
                updated: b.updated,
                content_type: b.content_type.clone(),
                tags: b.tags.clone(),
                wrapped_key: Vec::new(),
                sealed: Vec::new(),
                stored_mac: Vec::new(),
            };
            (v.wrapped_key, v.sealed) = self.seal_value(&kek, &v, value.expose().as_bytes())?;
            let mac = self.mac.tag("secret_versions", &v.fields());
            rows.push((v, mac));
        }
        let latest = rows.iter().map(|(v, _)| v).max_by_key(|v| v.seq).cloned().ok_or_else(refused)?;
        let s = SecretRow {
            vault_id: vault.id.clone(),
            name_lc,
            name: blob.name.clone(),
            latest_version: latest.version.clone(),
            deleted_at: None,
            scheduled_purge: None,
            stored_mac: Vec::new(),
        };
        let secret_mac = self.mac.tag("secrets", &s.fields());
        let _g = self.write_guard().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            match self.secret_row(vault, &blob.name).await? {
                Some(e) if e.deleted_at.is_some() => {
                    return Err(VaultError::DeletedButRecoverable(format!(
                        "a secret named {} is soft-deleted in this vault: recover or purge it before restoring",
                        blob.name
                    )));
                }
                Some(_) => {
                    return Err(VaultError::Conflict(format!(
                        "a secret named {} already exists in this vault; delete and purge it, or restore elsewhere",
                        blob.name
                    )));
                }
                None => {}
            }
            // One transaction, inserting the name: a restore that fails, or loses a race
            // for the name, leaves nothing behind.
            if repo::commit_versions(&self.db, &rows, &s, &secret_mac, None).await? {
                return Self::secret_bundle(vault, &s, &latest, None);
            }
        }
        Err(contended(&blob.name))
    }
}

/// A secret backup: JSON sealed whole in the record format (`docs/vault-storage.md`).
/// It holds no value in the clear: each stays sealed as stored.
#[derive(Serialize, Deserialize)]
struct Backup {
    format: String,
    vault_id: String,
    name: String,
    versions: Vec<BackupVersion>,
}

#[derive(Serialize, Deserialize)]
struct BackupVersion {
    version: String,
    seq: i64,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
    content_type: String,
    tags: String,
    /// base64url of the data key wrapped by the source vault's secrets key.
    wrapped_key: String,
    /// base64url of the sealed value.
    sealed: String,
}
