//! Tenants, principals, API tokens and access policies.
//!
//! - A deployment holds tenants; a tenant holds principals (users and service
//!   identities) and vaults. Roles: the deployment admin (creates tenants and their
//!   admins), tenant admins (manage their tenant's vaults, principals and policies), and
//!   members (whatever access policies grant them).
//! - Tokens look like `atr1.<id>.<secret>`; only an HMAC of the secret (root-derived key)
//!   is stored, with expiry and revocation. Checking one is a lookup by id and a
//!   constant-time comparison.
//! - Access policies grant a principal named key permissions on one vault. They are read
//!   on every request (never cached): removing one takes effect on the next request.

use crate::error::{Refusal, Result, VaultError};
use crate::model::VaultInfo;
use crate::permission::{Permission, SecretPermission};
use crate::repo::access as repo;
use crate::rowmac::Field;
use crate::service::VaultService;
use atrest_crypto::SecretBytes;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Stable id (appears in the bearer challenge's authorization URL).
    pub id: String,
    /// Unique name.
    pub name: String,
}

/// What a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A workload identity (e.g. a data-service resource).
    Service,
}

/// What a principal may administer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates tenants and their admins.
    DeploymentAdmin,
    /// Manages its tenant's vaults, principals and policies.
    TenantAdmin,
    /// Only what access policies grant.
    Member,
}

impl PrincipalKind {
    /// Stored and wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(PrincipalKind::User),
            "service" => Some(PrincipalKind::Service),
            _ => None,
        }
    }
}

impl Role {
    /// Stored and wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::DeploymentAdmin => "deployment-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Member => "member",
        }
    }

    /// Parses [`Self::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deployment-admin" => Some(Role::DeploymentAdmin),
            "tenant-admin" => Some(Role::TenantAdmin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A user or service identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Name, unique in the tenant.
    pub name: String,
    /// User or service.
    pub kind: PrincipalKind,
    /// Administrative role.
    pub role: Role,
    /// Disabled principals cannot authenticate.
    pub disabled: bool,
}

/// A freshly issued token: the only time its secret exists outside the caller.
#[derive(Debug)]
pub struct IssuedToken {
    /// Token id (for listing and revoking).
    pub id: String,
    /// The bearer token (`atr1.<id>.<secret>`); zeroized on drop, redacted in `Debug`.
    pub token: SecretBytes,
    /// Expiry, if any.
    pub expires: Option<i64>,
}

/// Longest token lifetime that can be asked for: 10 years, in seconds.
pub const MAX_TOKEN_TTL: i64 = 10 * 365 * 86_400;

/// Names of data-service resource identities start with this (`res-NAME`); the prefix is
/// reserved for them.
pub const RESOURCE_IDENTITY_PREFIX: &str = "res-";

/// The identity principal of data-service resource `resource`.
#[must_use]
pub fn resource_identity_name(resource: &str) -> String {
    format!("{RESOURCE_IDENTITY_PREFIX}{resource}")
}

/// Whether `p` is a data-service resource identity: only the data service acts as one
/// (in process), so no token is ever issued for it and none authenticates as it.
#[must_use]
pub fn is_resource_identity(p: &Principal) -> bool {
    p.kind == PrincipalKind::Service && p.name.starts_with(RESOURCE_IDENTITY_PREFIX)
}

/// Whether a principal may act through a token: enabled, and not a resource identity (a
/// resource identity's token, issued before they were refused, never acts as it).
pub(crate) fn acts(p: &Principal) -> bool {
    !p.disabled && !is_resource_identity(p)
}

pub(crate) fn data_service_identity(p: &Principal) -> VaultError {
    VaultError::forbidden(
        Refusal::DataServiceIdentity,
        format!(
            "principal {} is a data-service resource identity: only the data service acts as it, and no token is \
             issued for it; grant the resource's callers a role on the resource (atrest resource role set) instead",
            p.name
        ),
    )
}

impl VaultService {
    pub(crate) fn principal_fields<'a>(p: &'a Principal, created: i64) -> [Field<'a>; 7] {
        [
            Field::Text(&p.id),
            Field::Text(&p.tenant_id),
            Field::Text(&p.name),
            Field::Text(p.kind.as_str()),
            Field::Text(p.role.as_str()),
            Field::Int(i64::from(p.disabled)),
            Field::Int(created),
        ]
    }

    /// Creates a tenant.
    ///
    /// # Errors
    /// `Conflict` if the name exists.
    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        crate::model::check_name(name, "tenant")?;
        if crate::platform::is_platform(name) {
            return Err(VaultError::bad(format!("the tenant name {name} is reserved for the deployment")));
        }
        self.insert_tenant(name).await
    }

    pub(crate) async fn insert_tenant(&self, name: &str) -> Result<Tenant> {
        let t = Tenant { id: crate::model::new_id()?, name: name.to_ascii_lowercase() };
        let now = self.now();
        let mac = self.mac.tag("tenants", &[Field::Text(&t.id), Field::Text(&t.name), Field::Int(now)]);
        let _g = self.write_guard().await;
        if self.tenant(&t.name).await.is_ok() {
            return Err(VaultError::Conflict(format!("a tenant named {} already exists", t.name)));
        }
        repo::insert_tenant(&self.db, &t.id, &t.name, now, &mac).await?;
        Ok(t)
    }

    /// A tenant by name.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn tenant(&self, name: &str) -> Result<Tenant> {
        let row = repo::tenant_by_name(&self.db, &name.to_ascii_lowercase())
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no tenant named {name}")))?;
        let t = Tenant { id: row.id, name: row.name };
        self.mac.check(
            "tenants",
            &[Field::Text(&t.id), Field::Text(&t.name), Field::Int(row.created)],
            &row.mac,
            || format!("tenant {}", t.name),
        )?;
        Ok(t)
    }

    /// Creates a principal in a tenant.
    ///
    /// # Errors
    /// `Conflict` if the name exists in the tenant.
    pub async fn create_principal(
        &self,
        tenant: &Tenant,
        name: &str,
        kind: PrincipalKind,
        role: Role,
    ) -> Result<Principal> {
        crate::model::check_name(name, "principal")?;
        let p = Principal {
            id: crate::model::new_id()?,
            tenant_id: tenant.id.clone(),
            name: name.to_ascii_lowercase(),
            kind,
            role,
            disabled: false,
        };
        let now = self.now();
        let mac = self.mac.tag("principals", &Self::principal_fields(&p, now));
        let _g = self.write_guard().await;
        if repo::principal_id(&self.db, &p.tenant_id, &p.name).await?.is_some() {
            return Err(VaultError::Conflict(format!(
                "a principal named {} already exists in tenant {}",
                p.name, tenant.name
            )));
        }
        let row = repo::PrincipalRow {
            id: p.id.clone(),
            tenant_id: p.tenant_id.clone(),
            name: p.name.clone(),
            kind: p.kind.as_str().into(),
            role: p.role.as_str().into(),
            disabled: false,
            created: now,
            mac,
        };
        repo::insert_principal(&self.db, &row).await?;
        Ok(p)
    }

    /// A principal by id (row verified).
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn principal(&self, id: &str) -> Result<Principal> {
        Ok(self.principal_and_created(id).await?.0)
    }

    /// A principal by id (row verified) and its `created` time (needed to re-MAC the row).
    pub(crate) async fn principal_and_created(&self, id: &str) -> Result<(Principal, i64)> {
        let row = repo::principal(&self.db, id)
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no principal with id {id}")))?;
        self.verified_principal(row)
    }

    /// A principal row as a [`Principal`] (and its `created` time), its MAC checked.
    pub(crate) fn verified_principal(&self, row: repo::PrincipalRow) -> Result<(Principal, i64)> {
        let id = row.id.clone();
        let integrity = || VaultError::Integrity { what: format!("principal {id}") };
        let p = Principal {
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            kind: PrincipalKind::parse(&row.kind).ok_or_else(integrity)?,
            role: Role::parse(&row.role).ok_or_else(integrity)?,
            disabled: row.disabled,
        };
        self.mac.check("principals", &Self::principal_fields(&p, row.created), &row.mac, || {
            format!("principal {}", p.name)
        })?;
        Ok((p, row.created))
    }

    /// Issues a bearer token for a principal, valid for `ttl` seconds (or until revoked).
    ///
    /// # Errors
    /// `NotFound` for an unknown principal; `Forbidden` (`DataServiceIdentity`) for a
    /// data-service resource identity.
    pub async fn issue_token(&self, principal: &Principal, ttl: Option<i64>) -> Result<IssuedToken> {
        if is_resource_identity(principal) {
            return Err(data_service_identity(principal));
        }
        let id = hex::encode(atrest_crypto::rand::bytes::<8>()?);
        let secret = zeroize::Zeroizing::new(atrest_crypto::rand::bytes::<32>()?);
        let hash = self.token_hash.sign(&[id.as_bytes(), &secret[..]]);
        let now = self.now();
        let expires = match ttl {
            Some(t) if t <= 0 => return Err(VaultError::bad("a token's lifetime must be positive")),
            Some(t) if t > MAX_TOKEN_TTL => {
                return Err(VaultError::bad(format!(
                    "a token's lifetime is at most {MAX_TOKEN_TTL} seconds (10 years), not {t}; omit it for a token \
                     valid until revoked"
                )));
            }
            Some(t) => Some(now.checked_add(t).ok_or_else(|| VaultError::bad("the token lifetime is too long"))?),
            None => None,
        };
        let mac = self.mac.tag(
            "tokens",
            &[
                Field::Text(&id),
                Field::Text(&principal.id),
                Field::Bytes(&hash),
                Field::Int(now),
                Field::OptInt(expires),
                Field::Int(0),
            ],
        );
        let row = repo::TokenRow {
            id: id.clone(),
            principal_id: principal.id.clone(),
            hash: hash.to_vec(),
            created: now,
            expires,
            revoked: false,
            mac,
        };
        repo::insert_token(&self.db, &row).await?;
        // Every intermediate copy of the secret is wiped when dropped.
        let mut token = atrest_wire::token::format(&id, &secret[..]);
        Ok(IssuedToken { id, token: SecretBytes::new(std::mem::take(&mut *token)), expires })
    }

    /// Revokes a token; later requests with it are unauthenticated.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn revoke_token(&self, token_id: &str) -> Result<()> {
        let _g = self.write_guard().await;
        let row = self
            .token_row(token_id)
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no token with id {token_id}")))?;
        let mac = self.mac.tag(
            "tokens",
            &[
                Field::Text(&row.id),
                Field::Text(&row.principal_id),
                Field::Bytes(&row.hash),
                Field::Int(row.created),
                Field::OptInt(row.expires),
                Field::Int(1),
            ],
        );
        repo::revoke_token(&self.db, token_id, &mac).await
    }

    /// A token's row, verified.
    pub(crate) async fn token_row(&self, id: &str) -> Result<Option<repo::TokenRow>> {
        let Some(t) = repo::token(&self.db, id).await? else {
            return Ok(None);
        };
        self.verify_token_row(&t)?;
        Ok(Some(t))
    }

    /// Checks a token row's MAC.
    pub(crate) fn verify_token_row(&self, t: &repo::TokenRow) -> Result<()> {
        self.mac.check(
            "tokens",
            &[
                Field::Text(&t.id),
                Field::Text(&t.principal_id),
                Field::Bytes(&t.hash),
                Field::Int(t.created),
                Field::OptInt(t.expires),
                Field::Int(i64::from(t.revoked)),
            ],
            &t.mac,
            || format!("token {}", t.id),
        )?;
        Ok(())
    }

    /// Whether a (verified) token row admits `bearer`: its secret, not revoked, not expired.
    pub(crate) fn token_admits(&self, row: &repo::TokenRow, bearer: &atrest_wire::token::Bearer<'_>) -> bool {
        self.token_hash.verify(&[bearer.id.as_bytes(), &bearer.secret[..]], &row.hash).is_ok()
            && !row.revoked
            && row.expires.is_none_or(|e| self.now() < e)
    }

    /// Authenticates a bearer token. Every failure is the same `Unauthenticated` error,
    /// except a row that fails its integrity check, which is reported as such.
    ///
    /// # Errors
    /// `Unauthenticated`, `Integrity`.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let denied = || {
            VaultError::Unauthenticated("the bearer token is missing, malformed, unknown, expired or revoked".into())
        };
        let b = atrest_wire::token::parse(bearer).ok_or_else(denied)?;
        // The token and its principal in one statement.
        let rows = crate::repo::snapshot::snapshot(&self.db, "", b.id, &Default::default()).await?;
        let row = rows.token.ok_or_else(denied)?;
        self.verify_token_row(&row)?;
        if !self.token_admits(&row, &b) {
            return Err(denied());
        }
        let p =
            rows.principal.ok_or_else(|| VaultError::NotFound(format!("no principal with id {}", row.principal_id)))?;
        let (p, _) = self.verified_principal(p)?;
        if !acts(&p) {
            return Err(denied());
        }
        Ok(p)
    }

    /// Grants `permissions` (key permissions only) on `vault` to a principal, replacing
    /// any earlier policy, its secret permissions included.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_policy(&self, vault: &VaultInfo, principal: &Principal, permissions: &[Permission]) -> Result<()> {
        self.set_policy_with(vault, principal, permissions, &[]).await
    }

    /// Grants key `permissions` and `secrets` permissions on `vault` to a principal,
    /// replacing any earlier policy.
    ///
    /// # Errors
    /// `Forbidden` (`DataServiceIdentity`) for secret permissions to a resource identity;
    /// database errors.
    pub async fn set_policy_with(
        &self,
        vault: &VaultInfo,
        principal: &Principal,
        permissions: &[Permission],
        secrets: &[SecretPermission],
    ) -> Result<()> {
        if !secrets.is_empty() && is_resource_identity(principal) {
            return Err(VaultError::forbidden(
                Refusal::DataServiceIdentity,
                format!(
                    "{} is a data-service resource identity: it uses keys to protect its resource's data and never \
                     reads secrets, so it can hold no secret permission",
                    principal.name
                ),
            ));
        }
        let mut names: Vec<String> = Permission::names(permissions).into_iter().map(str::to_string).collect();
        names.extend(secrets.iter().map(|p| p.stored_name()));
        let perms = serde_json::to_string(&names).map_err(|e| VaultError::bad(e.to_string()))?;
        let now = self.now();
        let mac = self.mac.tag(
            "access_policies",
            &[Field::Text(&vault.id), Field::Text(&principal.id), Field::Text(&perms), Field::Int(now)],
        );
        let _g = self.write_guard().await;
        repo::replace_policy(&self.db, &vault.id, &principal.id, &perms, now, &mac).await
    }

    /// Removes a principal's policy on a vault.
    ///
    /// # Errors
    /// Database errors.
    pub async fn remove_policy(&self, vault: &VaultInfo, principal: &Principal) -> Result<()> {
        let _g = self.write_guard().await;
        repo::remove_policy(&self.db, &vault.id, &principal.id).await
    }

    /// Removes a principal's policies on every vault; returns how many there were.
    ///
    /// # Errors
    /// Database errors.
    pub async fn remove_all_policies(&self, principal: &Principal) -> Result<u64> {
        let _g = self.write_guard().await;
        repo::remove_policies_of(&self.db, &principal.id).await
    }

    /// Refuses a principal name reserved for data-service resource identities (for
    /// principals created through the admin API; the data service creates those).
    ///
    /// # Errors
    /// `Forbidden` (`DataServiceIdentity`).
    pub fn check_principal_name(name: &str) -> Result<()> {
        if name.to_ascii_lowercase().starts_with(RESOURCE_IDENTITY_PREFIX) {
            return Err(VaultError::forbidden(
                Refusal::DataServiceIdentity,
                format!(
                    "principal names starting with {RESOURCE_IDENTITY_PREFIX} are reserved for data-service resource \
                     identities (created with the resource): choose another name"
                ),
            ));
        }
        Ok(())
    }

    /// The key permissions a principal holds on a vault (row verified; read every time).
    ///
    /// # Errors
    /// `Integrity`.
    pub async fn permissions(&self, vault: &VaultInfo, principal: &Principal) -> Result<Vec<Permission>> {
        Ok(self.policy(vault, principal).await?.0)
    }

    /// The secret permissions a principal holds on a vault (row verified; read every time;
    /// never implied by key permissions).
    ///
    /// # Errors
    /// `Integrity`.
    pub async fn secret_permissions(&self, vault: &VaultInfo, principal: &Principal) -> Result<Vec<SecretPermission>> {
        Ok(self.policy(vault, principal).await?.1)
    }

    /// A principal's policy on a vault: its key and its secret permissions.
    ///
    /// # Errors
    /// `Integrity`.
    pub async fn policy(
        &self,
        vault: &VaultInfo,
        principal: &Principal,
    ) -> Result<(Vec<Permission>, Vec<SecretPermission>)> {
        match repo::policy(&self.db, &vault.id, &principal.id).await? {
            Some(row) => self.verified_policy(vault, principal, row),
            None => Ok((Vec::new(), Vec::new())),
        }
    }

    /// A policy row's key and secret permissions, its MAC checked.
    pub(crate) fn verified_policy(
        &self,
        vault: &VaultInfo,
        principal: &Principal,
        row: repo::PolicyRow,
    ) -> Result<(Vec<Permission>, Vec<SecretPermission>)> {
        let repo::PolicyRow { permissions: perms, updated, mac } = row;
        self.mac.check(
            "access_policies",
            &[Field::Text(&vault.id), Field::Text(&principal.id), Field::Text(&perms), Field::Int(updated)],
            &mac,
            || format!("access policy of principal {} on vault {}", principal.name, vault.name),
        )?;
        parse_stored(&perms)
    }

    /// Checks that `principal` may perform `permission` on `vault`.
    ///
    /// # Errors
    /// `Forbidden` (`AccessDenied`) with a message naming what to grant.
    pub async fn authorize(
        &self,
        vault: &VaultInfo,
        principal: &Principal,
        permission: Permission,
        key: Option<&str>,
    ) -> Result<()> {
        let held =
            if principal.tenant_id == vault.tenant_id { self.permissions(vault, principal).await? } else { vec![] };
        Self::check_permission(vault, principal, &held, permission, key)
    }

    /// Whether `held` (a principal's key permissions on `vault`) includes `permission`.
    pub(crate) fn check_permission(
        vault: &VaultInfo,
        principal: &Principal,
        held: &[Permission],
        permission: Permission,
        key: Option<&str>,
    ) -> Result<()> {
        if principal.tenant_id == vault.tenant_id && held.contains(&permission) {
            return Ok(());
        }
        let on = key.map_or_else(String::new, |k| format!(" for key {k}"));
        Err(VaultError::forbidden(
            Refusal::AccessDenied,
            format!(
                "the vault {} refused {permission}{on} to principal {}; grant {permission} to {} in the vault's access policy",
                vault.name, principal.name, principal.name
            ),
        ))
    }
}

impl VaultService {
    /// Checks that `principal` may perform the secret operation `permission` on `vault`
    /// (secret permissions only: key permissions never imply them).
    ///
    /// # Errors
    /// `Forbidden` (`AccessDenied`) with a message naming what to grant.
    pub async fn authorize_secret(
        &self,
        vault: &VaultInfo,
        principal: &Principal,
        permission: SecretPermission,
        secret: Option<&str>,
    ) -> Result<()> {
        let held = if principal.tenant_id == vault.tenant_id {
            self.secret_permissions(vault, principal).await?
        } else {
            vec![]
        };
        Self::check_secret_permission(vault, principal, &held, permission, secret)
    }

    /// Whether `held` (a principal's secret permissions on `vault`) includes `permission`.
    pub(crate) fn check_secret_permission(
        vault: &VaultInfo,
        principal: &Principal,
        held: &[SecretPermission],
        permission: SecretPermission,
        secret: Option<&str>,
    ) -> Result<()> {
        // A resource identity reads no secret, whatever a policy written before this rule says.
        if principal.tenant_id == vault.tenant_id && !is_resource_identity(principal) && held.contains(&permission) {
            return Ok(());
        }
        let on = secret.map_or_else(String::new, |s| format!(" for secret {s}"));
        Err(VaultError::forbidden(
            Refusal::AccessDenied,
            format!(
                "the vault {} refused the secret permission {permission}{on} to principal {}; grant secret \
                 permission {permission} to {} in the vault's access policy (atrest policy set … --secret-permissions)",
                vault.name, principal.name, principal.name
            ),
        ))
    }
}

/// A stored policy's key and secret permissions (its row's MAC verified): a name this
/// build does not know is a row nobody wrote.
pub(crate) fn parse_stored(perms: &str) -> Result<(Vec<Permission>, Vec<SecretPermission>)> {
    let names: Vec<String> =
        serde_json::from_str(perms).map_err(|_| VaultError::Integrity { what: "access policy".into() })?;
    let (mut keys, mut secrets) = (Vec::new(), Vec::new());
    for n in &names {
        if let Some(p) = SecretPermission::from_stored(n) {
            secrets.push(p);
        } else {
            keys.push(Permission::from_name(n).ok_or_else(|| VaultError::Integrity { what: "access policy".into() })?);
        }
    }
    Ok((keys, secrets))
}
