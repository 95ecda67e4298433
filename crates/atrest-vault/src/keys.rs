//! Key lifecycle: create, get, list, versions, update, rotate, soft delete, recover,
//! purge and the purge sweeper. Every row read is MAC-checked before it is trusted.

use crate::ImportJwk;
use crate::error::{Refusal, Result, VaultError};
use crate::model::{DeletedKey, KeyAttributes, KeyBundle, Kty, Page, PublicJwk, VaultInfo, b64u};
use crate::model::{check_name, new_id};
use crate::repo::keys as repo;
pub(crate) use crate::repo::keys::{KeyRow, VersionRow};
use crate::rowmac::Field;
use crate::service::VaultService;
use atrest_crypto::backend::{BackendKey, KeySpec, PublicKey};
use atrest_crypto::ec::EcCurve;
use atrest_crypto::rsa::RsaBits;
use std::collections::BTreeMap;

const DAY: i64 = 86_400;

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct CreateKey {
    /// `RSA`, `EC` or `oct` (`-HSM` types are refused without an HSM backend).
    pub kty: String,
    /// RSA: 2048/3072/4096 (default 2048); oct: 256 (default).
    pub key_size: Option<u32>,
    /// EC: `P-256` (default) or `P-384`.
    pub crv: Option<String>,
    /// Permitted operations (default: all the type allows).
    pub key_ops: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Expiry.
    pub exp: Option<i64>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// Attributes and tags of a new key version (import).
#[derive(Debug, Clone, Default)]
pub struct NewKeyAttributes {
    /// Default true.
    pub enabled: Option<bool>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Expiry.
    pub exp: Option<i64>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// A private JWK member's text, if present.
fn secret(v: &Option<atrest_wire::akv::SecretText>) -> Option<&str> {
    v.as_ref().map(atrest_wire::akv::SecretText::expose)
}

/// What to change on a version; `None` leaves a field as it is; `tags` replaces all tags.
#[derive(Debug, Clone, Default)]
pub struct UpdateKey {
    /// New operations.
    pub key_ops: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Not before (`Some(None)` clears it).
    pub nbf: Option<Option<i64>>,
    /// Expiry (`Some(None)` clears it).
    pub exp: Option<Option<i64>>,
    /// New tag map.
    pub tags: Option<BTreeMap<String, String>>,
}

/// Everything about a new version except its key material.
struct NewVersion {
    kty: Kty,
    key_ops: Vec<String>,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    tags: BTreeMap<String, String>,
}

/// Where a new version's key material comes from.
enum Material {
    Generate(KeySpec),
    Import(atrest_crypto::backend::ImportKey),
}

impl KeyRow {
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

impl VersionRow {
    pub(crate) fn fields(&self) -> [Field<'_>; 15] {
        [
            Field::Text(&self.vault_id),
            Field::Text(&self.name_lc),
            Field::Text(&self.version),
            Field::Int(self.seq),
            Field::Text(&self.kty),
            Field::Text(&self.key_ops),
            Field::Int(i64::from(self.enabled)),
            Field::OptInt(self.nbf),
            Field::OptInt(self.exp),
            Field::Int(self.created),
            Field::Int(self.updated),
            Field::Text(&self.tags),
            Field::Text(&self.public_jwk),
            Field::Bytes(&self.material),
            Field::Int(self.gcm_count),
        ]
    }

    /// The identity the key material is sealed to.
    pub(crate) fn binding(&self) -> [&[u8]; 3] {
        [self.vault_id.as_bytes(), self.name_lc.as_bytes(), self.version.as_bytes()]
    }

    pub(crate) fn backend_key(&self) -> Result<BackendKey> {
        let public = self.public_key()?;
        let spec = match (Kty::parse(&self.kty)?, &public) {
            (Kty::Rsa, Some(PublicKey::Rsa(k))) => KeySpec::Rsa(rsa_bits(k.bits())?),
            (Kty::Ec, Some(PublicKey::Ec(k))) => KeySpec::Ec(k.curve()),
            (Kty::Oct, None) => KeySpec::Aes256,
            _ => return Err(VaultError::Integrity { what: format!("key version {}", self.version) }),
        };
        Ok(BackendKey { spec, handle: self.material.clone(), public })
    }

    pub(crate) fn public_key(&self) -> Result<Option<PublicKey>> {
        let jwk: PublicJwk = serde_json::from_str(&self.public_jwk)
            .map_err(|_| VaultError::Integrity { what: format!("public key of version {}", self.version) })?;
        let dec = |s: &Option<String>| crate::model::b64u_decode(s.as_deref().unwrap_or(""), "stored public key");
        Ok(match Kty::parse(&self.kty)? {
            Kty::Rsa => {
                Some(PublicKey::Rsa(atrest_crypto::rsa::RsaPublicKey::from_components(&dec(&jwk.n)?, &dec(&jwk.e)?)?))
            }
            Kty::Ec => {
                let curve = curve(jwk.crv.as_deref().unwrap_or(""))?;
                Some(PublicKey::Ec(atrest_crypto::ec::EcPublicKey::from_xy(curve, &dec(&jwk.x)?, &dec(&jwk.y)?)?))
            }
            Kty::Oct => None,
        })
    }

    pub(crate) fn ops(&self) -> Vec<String> {
        serde_json::from_str(&self.key_ops).unwrap_or_default()
    }
}

fn rsa_bits(bits: usize) -> Result<RsaBits> {
    match bits {
        2048 => Ok(RsaBits::B2048),
        3072 => Ok(RsaBits::B3072),
        4096 => Ok(RsaBits::B4096),
        _ => Err(VaultError::bad("RSA key size must be 2048, 3072 or 4096")),
    }
}

fn curve(crv: &str) -> Result<EcCurve> {
    match crv {
        "P-256" => Ok(EcCurve::P256),
        "P-384" => Ok(EcCurve::P384),
        other => Err(VaultError::bad(format!("unsupported curve {other:?}: use P-256 or P-384"))),
    }
}

fn curve_name(c: EcCurve) -> &'static str {
    match c {
        EcCurve::P256 => "P-256",
        EcCurve::P384 => "P-384",
    }
}

fn public_jwk(p: Option<&PublicKey>) -> PublicJwk {
    match p {
        Some(PublicKey::Rsa(k)) => PublicJwk { n: Some(b64u(k.n())), e: Some(b64u(k.e())), ..PublicJwk::default() },
        Some(PublicKey::Ec(k)) => PublicJwk {
            crv: Some(curve_name(k.curve()).to_string()),
            x: Some(b64u(k.x())),
            y: Some(b64u(k.y())),
            ..PublicJwk::default()
        },
        None => PublicJwk::default(),
    }
}

/// Checks a version's `nbf`/`exp` as AKV does: Unix seconds (never negative), and `exp`
/// after `nbf`.
fn check_dates(nbf: Option<i64>, exp: Option<i64>) -> Result<()> {
    for (what, t) in [("nbf", nbf), ("exp", exp)] {
        if let Some(t) = t
            && t < 0
        {
            return Err(VaultError::bad(format!(
                "attributes.{what} is {t}: times are Unix seconds, 0 or more (omit it for no limit)"
            )));
        }
    }
    if let (Some(nbf), Some(exp)) = (nbf, exp)
        && exp <= nbf
    {
        return Err(VaultError::bad(format!(
            "attributes.exp ({exp}) must be after attributes.nbf ({nbf}): the key would never be usable"
        )));
    }
    Ok(())
}

fn check_ops(kty: Kty, ops: Option<Vec<String>>) -> Result<Vec<String>> {
    let allowed = kty.allowed_ops();
    let ops = ops.unwrap_or_else(|| {
        allowed.iter().filter(|o| **o != crate::model::IMPORT_OP).map(|s| (*s).to_string()).collect()
    });
    if ops.iter().any(|o| o == crate::model::IMPORT_OP) && ops.len() > 1 {
        return Err(VaultError::bad(
            "an import key (key_ops [\"import\"]) can do nothing else: create it with key_ops [\"import\"] only",
        ));
    }
    for op in &ops {
        if !allowed.contains(&op.as_str()) {
            return Err(VaultError::bad(format!(
                "operation {op:?} is not valid for {} keys; valid: {}",
                kty.as_str(),
                allowed.join(", ")
            )));
        }
    }
    Ok(ops)
}

impl VaultService {
    pub(crate) async fn key_row(&self, vault: &VaultInfo, name: &str) -> Result<Option<KeyRow>> {
        let Some((k, mac)) = repo::key(&self.db, &vault.id, &name.to_ascii_lowercase()).await? else {
            return Ok(None);
        };
        self.verify_key_row(vault, &k, &mac)?;
        Ok(Some(k))
    }

    pub(crate) fn verify_key_row(&self, vault: &VaultInfo, k: &KeyRow, mac: &[u8]) -> Result<()> {
        self.mac.check("keys", &k.fields(), mac, || format!("key {} in vault {}", k.name, vault.name))?;
        Ok(())
    }

    pub(crate) fn verify_version_row(&self, vault: &VaultInfo, v: &VersionRow, mac: &[u8]) -> Result<()> {
        self.mac.check("key_versions", &v.fields(), mac, || {
            format!("key version {}/{} in vault {}", v.name_lc, v.version, vault.name)
        })?;
        Ok(())
    }

    pub(crate) async fn version_row(
        &self,
        vault: &VaultInfo,
        name_lc: &str,
        version: &str,
    ) -> Result<Option<VersionRow>> {
        let Some((v, mac)) = repo::version(&self.db, &vault.id, name_lc, version).await? else {
            return Ok(None);
        };
        self.verify_version_row(vault, &v, &mac)?;
        Ok(Some(v))
    }

    /// A live key and one of its versions (`None` or `""` = latest).
    pub(crate) async fn live_version(
        &self,
        vault: &VaultInfo,
        name: &str,
        version: Option<&str>,
    ) -> Result<(KeyRow, VersionRow)> {
        let key = self
            .key_row(vault, name)
            .await?
            .filter(|k| k.deleted_at.is_none())
            .ok_or_else(|| VaultError::key_not_found(name))?;
        let version = version.filter(|v| !v.is_empty()).unwrap_or(&key.latest_version).to_ascii_lowercase();
        let v =
            self.version_row(vault, &key.name_lc, &version).await?.ok_or_else(|| VaultError::key_not_found(name))?;
        Ok((key, v))
    }

    pub(crate) fn bundle(&self, vault: &VaultInfo, key: &KeyRow, v: &VersionRow) -> Result<KeyBundle> {
        let integrity = || VaultError::Integrity { what: format!("key version {}/{}", key.name, v.version) };
        Ok(KeyBundle {
            name: key.name.clone(),
            version: v.version.clone(),
            kty: Kty::parse(&v.kty)?,
            key_ops: serde_json::from_str(&v.key_ops).map_err(|_| integrity())?,
            public: serde_json::from_str(&v.public_jwk).map_err(|_| integrity())?,
            attributes: KeyAttributes {
                enabled: v.enabled,
                nbf: v.nbf,
                exp: v.exp,
                created: v.created,
                updated: v.updated,
                recovery_level: vault.settings.recovery_level().to_string(),
                recoverable_days: vault.settings.retention_days,
            },
            tags: serde_json::from_str(&v.tags).map_err(|_| integrity())?,
        })
    }

    pub(crate) async fn store_version(&self, v: &VersionRow) -> Result<()> {
        let mac = self.mac.tag("key_versions", &v.fields());
        repo::insert_version(&self.db, v, &mac).await
    }

    /// Stores a version's raised usage count if the row is still as read (its MAC `was`):
    /// only that column and the MAC change, so a concurrent attribute update on another
    /// node is never overwritten. `false`: it changed; read it again.
    pub(crate) async fn raise_gcm_count(&self, v: &VersionRow, was: &[u8]) -> Result<bool> {
        let mac = self.mac.tag("key_versions", &v.fields());
        repo::set_gcm_count_if(&self.db, v, &mac, was).await
    }

    pub(crate) async fn insert_key_row(&self, k: &KeyRow) -> Result<()> {
        self.write_key_row(k, true).await
    }

    async fn write_key_row(&self, k: &KeyRow, insert: bool) -> Result<()> {
        let mac = self.mac.tag("keys", &k.fields());
        repo::write_key(&self.db, k, &mac, insert).await
    }

    /// Adds a version made by `make` (given the binding) to key `name`, creating the key
    /// if new. A soft-deleted name is refused.
    async fn add_version(
        &self,
        vault: &VaultInfo,
        name: &str,
        new: NewVersion,
        material: Material,
    ) -> Result<KeyBundle> {
        check_name(name, "key")?;
        check_dates(new.nbf, new.exp)?;
        let name_lc = name.to_ascii_lowercase();
        let version = new_id()?;
        let binding = [vault.id.clone(), name_lc.clone(), version.clone()];
        let backend = self.backend.clone();
        // Key generation can take a second (RSA-4096): keep it off the async workers.
        let made = tokio::task::spawn_blocking(move || {
            let refs = binding.each_ref().map(|b| b.as_bytes());
            match material {
                Material::Generate(spec) => backend.generate(spec, &refs),
                Material::Import(key) => backend.import(key, &refs),
            }
        })
        .await
        .map_err(|_| VaultError::Storage("key generation task failed".into()))??;
        let _g = self.write_guard().await;
        let existing = self.key_row(vault, name).await?;
        if existing.as_ref().is_some_and(|k| k.deleted_at.is_some()) {
            return Err(VaultError::DeletedButRecoverable(format!(
                "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; \
                 in this state, the key can only be recovered or purged."
            )));
        }
        let seq = repo::max_seq(&self.db, &vault.id, &name_lc).await?;
        let now = self.now();
        let v = VersionRow {
            vault_id: vault.id.clone(),
            name_lc: name_lc.clone(),
            version: version.clone(),
            seq: seq.unwrap_or(0) + 1,
            kty: new.kty.as_str().to_string(),
            key_ops: serde_json::to_string(&new.key_ops).map_err(|e| VaultError::bad(e.to_string()))?,
            enabled: new.enabled,
            nbf: new.nbf,
            exp: new.exp,
            created: now,
            updated: now,
            tags: serde_json::to_string(&new.tags).map_err(|e| VaultError::bad(e.to_string()))?,
            public_jwk: serde_json::to_string(&public_jwk(made.public.as_ref()))
                .map_err(|e| VaultError::bad(e.to_string()))?,
            material: made.handle,
            gcm_count: 0,
            display_name: String::new(),
        };
        self.store_version(&v).await?;
        let key = KeyRow {
            vault_id: vault.id.clone(),
            name_lc,
            name: existing.as_ref().map_or_else(|| name.to_string(), |k| k.name.clone()),
            latest_version: version,
            deleted_at: None,
            scheduled_purge: None,
        };
        self.write_key_row(&key, existing.is_none()).await?;
        self.bundle(vault, &key, &v)
    }

    /// The key type a request asks for. `-HSM` types need a backend that reports
    /// HSM protection; the refusal comes from the backend's capabilities, not from a
    /// list of what atrest supports.
    fn requested_kty(&self, requested: &str) -> Result<Kty> {
        let Some(base) = requested.strip_suffix("-HSM") else { return Kty::parse(requested) };
        let kty = Kty::parse(base)?;
        if self.backend.capabilities().protection != atrest_crypto::backend::Protection::Hsm {
            return Err(VaultError::bad(format!(
                "key type {requested} needs an HSM backend and this vault's key backend ({}) keeps software keys \
                 only; create the key as {} instead, or configure a PKCS#11 backend",
                self.backend.name(),
                kty.as_str()
            )));
        }
        Err(VaultError::bad(format!(
            "key type {requested}: the {} backend reports HSM protection, but this build stores no HSM key types yet",
            self.backend.name()
        )))
    }

    /// Creates a key, or a new version of an existing one.
    ///
    /// # Errors
    /// `BadParameter` (type, size, curve, ops, name), `Conflict` (soft-deleted name).
    pub async fn create_key(&self, vault: &VaultInfo, name: &str, req: CreateKey) -> Result<KeyBundle> {
        let kty = self.requested_kty(&req.kty)?;
        let spec = match kty {
            Kty::Rsa => {
                if req.crv.is_some() {
                    return Err(VaultError::bad("crv applies to EC keys only"));
                }
                KeySpec::Rsa(rsa_bits(req.key_size.unwrap_or(2048) as usize)?)
            }
            Kty::Ec => {
                if req.key_size.is_some() {
                    return Err(VaultError::bad("key_size applies to RSA and oct keys; EC keys take crv"));
                }
                KeySpec::Ec(curve(req.crv.as_deref().unwrap_or("P-256"))?)
            }
            Kty::Oct => match req.key_size.unwrap_or(256) {
                256 => KeySpec::Aes256,
                other => return Err(VaultError::bad(format!("oct key size {other} is not supported: use 256"))),
            },
        };
        let caps = self.backend.capabilities();
        if !caps.specs.contains(&spec) {
            return Err(VaultError::bad(format!(
                "the key backend ({}) cannot create {spec:?} keys; it can create {:?}",
                self.backend.name(),
                caps.specs
            )));
        }
        let ops = check_ops(kty, req.key_ops)?;
        let new = NewVersion {
            kty,
            key_ops: ops,
            enabled: req.enabled.unwrap_or(true),
            nbf: req.nbf,
            exp: req.exp,
            tags: req.tags.unwrap_or_default(),
        };
        self.add_version(vault, name, new, Material::Generate(spec)).await
    }

    /// Imports a private key (BYOK) as a new version of `name`. RSA needs `n e d p q dp dq
    /// qi`, EC `crv x y d`, oct a 32-byte `k`. The private members never appear in any
    /// response or log; the key is sealed like a generated one.
    ///
    /// # Errors
    /// `BadParameter` with the missing or invalid member; `Conflict` (soft-deleted name).
    pub async fn import_key(
        &self,
        vault: &VaultInfo,
        name: &str,
        jwk: ImportJwk,
        attrs: NewKeyAttributes,
    ) -> Result<KeyBundle> {
        use atrest_crypto::backend::ImportKey;
        use zeroize::Zeroizing;
        let kty = self.requested_kty(&jwk.kty)?;
        let member = |v: Option<&str>, what: &str| -> Result<Zeroizing<Vec<u8>>> {
            let s = v.ok_or_else(|| {
                VaultError::bad(format!("the JWK lacks {what}, which importing a {} key requires", kty.as_str()))
            })?;
            Ok(Zeroizing::new(crate::model::b64u_decode(s, what)?))
        };
        let material = if let Some(blob) = &jwk.key_hsm {
            let (material, kek) = self.open_byok(vault, kty, blob).await?;
            tracing::info!(vault = %vault.name, key = %name, import_key = %kek, "secure import opened");
            material
        } else {
            match kty {
                Kty::Rsa => {
                    let (n, e, d, p, q) = (
                        member(jwk.n.as_deref(), "n")?,
                        member(jwk.e.as_deref(), "e")?,
                        member(secret(&jwk.d), "d")?,
                        member(secret(&jwk.p), "p")?,
                        member(secret(&jwk.q), "q")?,
                    );
                    let (dp, dq, qi) = (
                        member(secret(&jwk.dp), "dp")?,
                        member(secret(&jwk.dq), "dq")?,
                        member(secret(&jwk.qi), "qi")?,
                    );
                    let c = atrest_crypto::rsa::RsaComponents {
                        n: &n,
                        e: &e,
                        d: &d,
                        p: &p,
                        q: &q,
                        dp: &dp,
                        dq: &dq,
                        qi: &qi,
                    };
                    ImportKey::Rsa(
                        atrest_crypto::rsa::RsaPrivateKey::from_components(&c)
                            .map_err(|e| VaultError::bad(format!("the RSA key was refused: {e}")))?,
                    )
                }
                Kty::Ec => {
                    let c = curve(jwk.crv.as_deref().ok_or_else(|| VaultError::bad("the JWK lacks crv"))?)?;
                    let (d, x, y) =
                        (member(secret(&jwk.d), "d")?, member(jwk.x.as_deref(), "x")?, member(jwk.y.as_deref(), "y")?);
                    ImportKey::Ec(
                        atrest_crypto::ec::EcPrivateKey::from_components(c, &d, &x, &y)
                            .map_err(|e| VaultError::bad(format!("the EC key was refused: {e}")))?,
                    )
                }
                Kty::Oct => {
                    let k = member(secret(&jwk.k), "k")?;
                    ImportKey::Aes256(atrest_crypto::SecretKey::from_slice(&k).map_err(|_| {
                        VaultError::bad(format!("oct keys must be 32 bytes (AES-256); this one has {}", k.len()))
                    })?)
                }
            }
        };
        let ops = check_ops(kty, jwk.key_ops)?;
        let new = NewVersion {
            kty,
            key_ops: ops,
            enabled: attrs.enabled.unwrap_or(true),
            nbf: attrs.nbf,
            exp: attrs.exp,
            tags: attrs.tags.unwrap_or_default(),
        };
        self.add_version(vault, name, new, Material::Import(material)).await
    }

    /// Gets a key version (`None`/`""` = latest). Disabled keys are returned too.
    ///
    /// # Errors
    /// `NotFound` for unknown or deleted keys and versions.
    pub async fn get_key(&self, vault: &VaultInfo, name: &str, version: Option<&str>) -> Result<KeyBundle> {
        let (k, v) = self.live_version(vault, name, version).await?;
        self.bundle(vault, &k, &v)
    }

    /// Rotates: a new version of the same type and size with the latest version's
    /// operations and tags, enabled.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn rotate_key(&self, vault: &VaultInfo, name: &str) -> Result<KeyBundle> {
        let (k, latest) = self.live_version(vault, name, None).await?;
        let spec = latest.backend_key()?.spec;
        let kty = Kty::parse(&latest.kty)?;
        let tags = serde_json::from_str(&latest.tags).unwrap_or_default();
        // A policy's expiryTime sets exp on the new version.
        let exp = self.policy_expiry(vault, &k.name_lc).await?.map(|secs| self.now() + secs);
        let new = NewVersion { kty, key_ops: latest.ops(), enabled: true, nbf: None, exp, tags };
        self.add_version(vault, &k.name, new, Material::Generate(spec)).await
    }

    /// Changes attributes, operations or tags of a version; no new version.
    ///
    /// # Errors
    /// `NotFound`, `BadParameter`.
    pub async fn update_key(
        &self,
        vault: &VaultInfo,
        name: &str,
        version: Option<&str>,
        req: UpdateKey,
    ) -> Result<KeyBundle> {
        let _g = self.write_guard().await;
        // Conditional on the row being as read: on PostgreSQL another node may change it
        // (attributes, or its usage count) meanwhile; then read it again.
        for attempt in 0..32 {
            if attempt > 0 {
                crate::secrets::back_off(attempt).await;
            }
            let (k, mut v) = self.live_version(vault, name, version).await?;
            let was = self.mac.tag("key_versions", &v.fields());
            if let Some(ops) = &req.key_ops {
                let ops = check_ops(Kty::parse(&v.kty)?, Some(ops.clone()))?;
                // An import key's RSA-OAEP-256 unwrap opens every secure-import blob made for
                // it: it must never gain another operation, and a key that could unwrap must
                // not become one (blobs sent to it would have been exposed).
                let is_import = |o: &[String]| o.iter().any(|x| x == crate::model::IMPORT_OP);
                if is_import(&v.ops()) != is_import(&ops) {
                    return Err(VaultError::bad(
                        "the operations of an import key cannot change, and a key cannot become one: create a new \
                         import key",
                    ));
                }
                v.key_ops = serde_json::to_string(&ops).map_err(|e| VaultError::bad(e.to_string()))?;
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
            // Only a change of the dates is checked: a version stored before the check (or
            // imported so) can still be disabled or retagged.
            if req.nbf.is_some() || req.exp.is_some() {
                check_dates(v.nbf, v.exp)?;
            }
            if let Some(t) = &req.tags {
                v.tags = serde_json::to_string(t).map_err(|e| VaultError::bad(e.to_string()))?;
            }
            v.updated = self.now();
            let mac = self.mac.tag("key_versions", &v.fields());
            if repo::update_version_if(&self.db, &v, &mac, &was).await? {
                return self.bundle(vault, &k, &v);
            }
        }
        Err(VaultError::Storage(format!("key {name} kept changing under concurrent writes; retry the request")))
    }

    /// Lists keys (latest version of each live key), `max` ≤ 25 per page.
    ///
    /// # Errors
    /// `BadParameter` for a bad page size or token.
    pub async fn list_keys(
        &self,
        vault: &VaultInfo,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<KeyBundle>> {
        self.list_names(vault, max, token, false)
            .await
            .map(|p| Page { items: p.items.into_iter().map(|d| d.key).collect(), next: p.next })
    }

    /// Lists soft-deleted keys.
    ///
    /// # Errors
    /// As [`Self::list_keys`].
    pub async fn list_deleted_keys(
        &self,
        vault: &VaultInfo,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<DeletedKey>> {
        self.list_names(vault, max, token, true).await
    }

    async fn list_names(
        &self,
        vault: &VaultInfo,
        max: Option<usize>,
        token: Option<&str>,
        deleted: bool,
    ) -> Result<Page<DeletedKey>> {
        let max = crate::model::page_size(max)?;
        let after = crate::model::name_after(token)?;
        let rows = repo::keys_page(&self.db, &vault.id, deleted, &after, i64::try_from(max + 1).unwrap_or(26)).await?;
        let mut items = Vec::new();
        for (k, mac) in rows.iter().take(max) {
            self.mac.check("keys", &k.fields(), mac, || format!("key {} in vault {}", k.name, vault.name))?;
            let v = self
                .version_row(vault, &k.name_lc, &k.latest_version)
                .await?
                .ok_or_else(|| VaultError::Integrity { what: format!("latest version of key {}", k.name) })?;
            items.push(DeletedKey {
                key: self.bundle(vault, k, &v)?,
                deleted_date: k.deleted_at.unwrap_or(0),
                scheduled_purge_date: k.scheduled_purge.unwrap_or(0),
            });
        }
        let next =
            if rows.len() > max { items.last().map(|d| hex::encode(d.key.name.to_ascii_lowercase())) } else { None };
        Ok(Page { items, next })
    }

    /// Lists every version of a live key, oldest first.
    ///
    /// # Errors
    /// `NotFound`, `BadParameter`.
    pub async fn list_versions(
        &self,
        vault: &VaultInfo,
        name: &str,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<Page<KeyBundle>> {
        let max = crate::model::page_size(max)?;
        let after = crate::model::seq_after(token)?;
        let k = self
            .key_row(vault, name)
            .await?
            .filter(|k| k.deleted_at.is_none())
            .ok_or_else(|| VaultError::key_not_found(name))?;
        let rows =
            repo::versions_page(&self.db, &vault.id, &k.name_lc, after, i64::try_from(max + 1).unwrap_or(26)).await?;
        let mut items = Vec::new();
        let mut last_seq = 0;
        for (v, mac) in rows.iter().take(max) {
            self.mac.check("key_versions", &v.fields(), mac, || format!("key version {}/{}", k.name, v.version))?;
            last_seq = v.seq;
            items.push(self.bundle(vault, &k, v)?);
        }
        Ok(Page { items, next: (rows.len() > max).then(|| last_seq.to_string()) })
    }

    /// Soft-deletes a key (all versions); it is purged after the vault's retention.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn delete_key(&self, vault: &VaultInfo, name: &str) -> Result<DeletedKey> {
        let _g = self.write_guard().await;
        let (mut k, v) = self.live_version(vault, name, None).await?;
        let now = self.now();
        k.deleted_at = Some(now);
        k.scheduled_purge = Some(now + vault.settings.retention_days * DAY);
        self.write_key_row(&k, false).await?;
        Ok(DeletedKey {
            key: self.bundle(vault, &k, &v)?,
            deleted_date: now,
            scheduled_purge_date: now + vault.settings.retention_days * DAY,
        })
    }

    async fn deleted(&self, vault: &VaultInfo, name: &str) -> Result<(KeyRow, VersionRow)> {
        let k = self
            .key_row(vault, name)
            .await?
            .filter(|k| k.deleted_at.is_some())
            .ok_or_else(|| VaultError::key_not_found(name))?;
        let v = self
            .version_row(vault, &k.name_lc, &k.latest_version)
            .await?
            .ok_or_else(|| VaultError::Integrity { what: format!("latest version of key {}", k.name) })?;
        Ok((k, v))
    }

    /// A soft-deleted key.
    ///
    /// # Errors
    /// `NotFound` if it is not in the deleted state.
    pub async fn get_deleted_key(&self, vault: &VaultInfo, name: &str) -> Result<DeletedKey> {
        let (k, v) = self.deleted(vault, name).await?;
        Ok(DeletedKey {
            key: self.bundle(vault, &k, &v)?,
            deleted_date: k.deleted_at.unwrap_or(0),
            scheduled_purge_date: k.scheduled_purge.unwrap_or(0),
        })
    }

    /// Recovers a soft-deleted key with all its versions.
    ///
    /// # Errors
    /// `NotFound` if it is not in the deleted state.
    pub async fn recover_deleted_key(&self, vault: &VaultInfo, name: &str) -> Result<KeyBundle> {
        let _g = self.write_guard().await;
        let (mut k, v) = self.deleted(vault, name).await?;
        k.deleted_at = None;
        k.scheduled_purge = None;
        self.write_key_row(&k, false).await?;
        self.bundle(vault, &k, &v)
    }

    /// Purges a soft-deleted key for good. Under purge protection only the sweeper may,
    /// once the scheduled date has passed.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden` (purge protection).
    pub async fn purge_deleted_key(&self, vault: &VaultInfo, name: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let (k, _) = self.deleted(vault, name).await?;
        if vault.settings.purge_protection && k.scheduled_purge.is_some_and(|p| self.now() < p) {
            return Err(VaultError::forbidden(
                Refusal::PurgeProtected,
                "Operation \"purge\" is not allowed because purge protection is enabled for this vault. \
                 Key Vault service will automatically purge it after the retention period has passed.",
            ));
        }
        self.erase(&k).await
    }

    async fn erase(&self, k: &KeyRow) -> Result<()> {
        repo::erase(&self.db, &k.vault_id, &k.name_lc).await
    }

    /// The purge sweeper: erases every soft-deleted key and secret whose scheduled purge
    /// date has passed, in every vault. Returns how many it purged.
    ///
    /// # Errors
    /// Database errors; rows that fail their integrity check are skipped and reported.
    pub async fn purge_due(&self) -> Result<usize> {
        let _g = self.write_guard().await;
        let rows = repo::keys_due(&self.db, self.now()).await?;
        let mut n = 0;
        for (k, mac) in &rows {
            // A row whose MAC fails is not trusted to say it is due: leave it for an operator.
            if self.mac.check("keys", &k.fields(), mac, String::new).is_ok() {
                self.erase(k).await?;
                n += 1;
            }
        }
        Ok(n + self.purge_due_secrets().await?)
    }
}
