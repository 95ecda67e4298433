//! A Key Vault request's authorization from one read: the vault, the bearer token, its
//! principal, the principal's policy on the vault and, for a key operation, the key and
//! version — one statement (`repo::snapshot`), each row's MAC checked as on a single-row
//! read. Nothing is cached: the next request reads again, so a removed policy, a revoked
//! token, a disabled principal or key refuse the very next request, on every node.

use crate::Principal;
use crate::access::acts;
use crate::error::{Result, VaultError};
use crate::keys::{KeyRow, VersionRow};
use crate::model::VaultInfo;
use crate::ops::{KeyOp, OpInput, OpOutput};
use crate::permission::{Permission, SecretPermission};
use crate::repo::secrets::{SecretRow, SecretVersionRow};
use crate::repo::snapshot as repo;
use crate::service::VaultService;
use atrest_crypto::backend::BackendKey;

/// What a request may do, as read at its start.
pub struct RequestAuth {
    /// The vault the origin serves.
    pub vault: VaultInfo,
    /// The caller, when the bearer token is valid and its principal may act.
    pub principal: Option<Principal>,
    permissions: Vec<Permission>,
    secret_permissions: Vec<SecretPermission>,
    /// The key asked for and what was found.
    key: Option<KeyAsked>,
    /// The secret asked for and what was found.
    secret: Option<SecretAsked>,
    /// When it was read.
    read_at: std::time::Instant,
}

impl RequestAuth {
    /// How long ago it was read (a front end reads it again when a request's body took
    /// long to arrive, so a change made meanwhile applies to that request too).
    #[must_use]
    pub fn age(&self) -> std::time::Duration {
        self.read_at.elapsed()
    }
}

/// A secret a request reads: (name lowercased, version or `""`), and the secret row, that
/// version's row and the vault's secrets key, as found (each verified).
type SecretAsked = (String, String, Option<SecretRow>, Option<SecretVersionRow>, Option<BackendKey>);

/// A key a request named: (name lowercased, version or `""`), and the live or deleted key
/// row with that version's row, when both exist.
type KeyAsked = (String, String, Option<(KeyRow, VersionRow)>);

impl VaultService {
    /// Reads a request's authorization in one statement: vault `vault_name`, the
    /// `bearer` token's principal (`None` if the token is missing, malformed, unknown,
    /// expired or revoked, or its principal disabled), its permissions on the vault, and
    /// `key` (name, version or `""` for the latest) when the request operates on one.
    ///
    /// # Errors
    /// `NotFound` (no such vault); `Integrity` for a row that fails its MAC.
    pub async fn request_auth(
        &self,
        vault_name: &str,
        bearer: Option<&str>,
        key: Option<(&str, &str)>,
        secret: Option<(&str, &str)>,
    ) -> Result<RequestAuth> {
        let bearer = bearer.and_then(atrest_wire::token::parse);
        let lower = |x: Option<(&str, &str)>| {
            x.map(|(n, v)| (n.to_ascii_lowercase(), v.to_ascii_lowercase())).unwrap_or_default()
        };
        let ((name_lc, version), (secret_lc, secret_version)) = (lower(key), lower(secret));
        let vault_lc = vault_name.to_ascii_lowercase();
        let token_id = bearer.as_ref().map_or("", |b| b.id);
        let asked =
            repo::Asked { key: &name_lc, key_version: &version, secret: &secret_lc, secret_version: &secret_version };
        let rows = repo::snapshot(&self.db, &vault_lc, token_id, &asked).await?;
        let row = rows.vault.ok_or_else(|| VaultError::NotFound(format!("no vault named {vault_name}")))?;
        let (vault, _) = self.verified_vault(row)?;
        let mut principal = None;
        if let (Some(b), Some(t)) = (&bearer, &rows.token) {
            self.verify_token_row(t)?;
            if self.token_admits(t, b) {
                // A token whose principal is gone authenticates nobody.
                if let Some(p) = rows.principal {
                    let (p, _) = self.verified_principal(p)?;
                    principal = acts(&p).then_some(p);
                }
            }
        }
        let (permissions, secret_permissions) = match (&principal, rows.policy) {
            (Some(p), Some(row)) => self.verified_policy(&vault, p, row)?,
            _ => (Vec::new(), Vec::new()),
        };
        // The rows a request names are checked only for a caller: a request without a valid
        // token gets the challenge, whatever the state of the rows it names.
        let key = match key.filter(|_| principal.is_some()) {
            None => None,
            Some(_) => {
                let found = match (rows.key, rows.version) {
                    (Some((k, kmac)), Some((v, vmac))) => {
                        self.verify_key_row(&vault, &k, &kmac)?;
                        self.verify_version_row(&vault, &v, &vmac)?;
                        Some((k, v))
                    }
                    (Some((k, kmac)), None) => {
                        self.verify_key_row(&vault, &k, &kmac)?;
                        None
                    }
                    _ => None,
                };
                Some((name_lc, version, found))
            }
        };
        let secret = match secret.filter(|_| principal.is_some()) {
            None => None,
            Some(_) => {
                let s = rows.secret.map(|(s, mac)| self.verified_secret(&vault, s, &mac)).transpose()?;
                let v =
                    rows.secret_version.map(|(v, mac)| self.verified_secret_version(&vault, v, &mac)).transpose()?;
                let kek = rows.secrets_key.map(|(k, mac)| self.verified_secrets_key(&vault, k, &mac)).transpose()?;
                Some((secret_lc, secret_version, s, v, kek))
            }
        };
        Ok(RequestAuth {
            vault,
            principal,
            permissions,
            secret_permissions,
            key,
            secret,
            read_at: std::time::Instant::now(),
        })
    }

    /// [`Self::authorize`] on what the request read at its start.
    ///
    /// # Errors
    /// `Unauthenticated` without a caller; `Forbidden` (`AccessDenied`).
    pub fn authorize_in(&self, auth: &RequestAuth, permission: Permission, key: Option<&str>) -> Result<()> {
        let p = caller(auth)?;
        Self::check_permission(&auth.vault, p, &auth.permissions, permission, key)
    }

    /// [`Self::authorize_secret`] on what the request read at its start.
    ///
    /// # Errors
    /// `Unauthenticated` without a caller; `Forbidden` (`AccessDenied`).
    pub fn authorize_secret_in(
        &self,
        auth: &RequestAuth,
        permission: SecretPermission,
        secret: Option<&str>,
    ) -> Result<()> {
        let p = caller(auth)?;
        Self::check_secret_permission(&auth.vault, p, &auth.secret_permissions, permission, secret)
    }

    /// [`Self::operate`] with the key and version the request read at its start (when it
    /// asked for this one; otherwise they are read now).
    ///
    /// # Errors
    /// As [`Self::operate`].
    pub async fn operate_in(
        &self,
        auth: &RequestAuth,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
        input: OpInput,
    ) -> Result<OpOutput> {
        let asked = (name.to_ascii_lowercase(), version.unwrap_or_default().to_ascii_lowercase());
        match &auth.key {
            Some((n, v, found)) if *n == asked.0 && *v == asked.1 => match found {
                Some((k, ver)) if k.deleted_at.is_none() => {
                    self.operate_rows(&auth.vault, k.clone(), ver.clone(), op, input).await
                }
                _ => Err(VaultError::key_not_found(name)),
            },
            _ => self.operate(&auth.vault, name, version, op, input).await,
        }
    }
}

impl VaultService {
    /// [`Self::get_secret`] with the rows the request read at its start (when it asked
    /// for this secret and version; otherwise they are read now).
    ///
    /// # Errors
    /// As [`Self::get_secret`].
    pub async fn get_secret_in(
        &self,
        auth: &RequestAuth,
        name: &str,
        version: Option<&str>,
    ) -> Result<crate::model::SecretBundle> {
        let asked = (name.to_ascii_lowercase(), version.unwrap_or_default().to_ascii_lowercase());
        match &auth.secret {
            Some((n, v, s, ver, kek)) if *n == asked.0 && *v == asked.1 => {
                let s =
                    s.as_ref().filter(|s| s.deleted_at.is_none()).ok_or_else(|| VaultError::secret_not_found(name))?;
                let missing = || match version.filter(|v| !v.is_empty()) {
                    Some(v) => VaultError::secret_not_found(&format!("{name}/{v}")),
                    None => VaultError::Integrity { what: format!("latest version of secret {}", s.name) },
                };
                let ver = ver.as_ref().ok_or_else(missing)?;
                self.released_secret(&auth.vault, s, ver, kek.as_ref())
            }
            _ => self.get_secret(&auth.vault, name, version).await,
        }
    }
}

fn caller(auth: &RequestAuth) -> Result<&Principal> {
    auth.principal.as_ref().ok_or_else(|| {
        VaultError::Unauthenticated("the bearer token is missing, malformed, unknown, expired or revoked".into())
    })
}
