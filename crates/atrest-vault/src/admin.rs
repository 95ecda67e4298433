//! Administration: who may manage which tenant, and the listings and changes the admin
//! API needs (principals, tokens, vaults, policies).
//!
//! # Scope rules
//! - The deployment admin manages every tenant and is the only one who creates tenants
//!   or other deployment admins.
//! - A tenant admin manages its own tenant's principals, tokens, vaults and policies,
//!   except a deployment admin's tokens and status (that would be an escalation).
//!   Another tenant does not exist for it: every lookup answers `NotFound`, never
//!   `Forbidden`, so tenant names cannot be probed.
//! - Members administer nothing, except their own tokens (list, rotate, revoke).
//!
//! Every row read here is MAC-verified like everywhere else.

use crate::access::{Principal, Role, Tenant};
use crate::error::{Refusal, Result, VaultError};
use crate::model::VaultInfo;
use crate::repo::access as repo;
use crate::service::VaultService;

/// A token as listed (never its secret, which is not stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Issued (Unix seconds).
    pub created: i64,
    /// Expiry, if any.
    pub expires: Option<i64>,
    /// Revoked tokens no longer authenticate.
    pub revoked: bool,
}

fn not_admin(actor: &Principal, what: &str) -> VaultError {
    VaultError::forbidden(
        Refusal::NotAdmin,
        format!(
            "principal {} may not {what}: this needs a tenant admin of the tenant or the deployment admin",
            actor.name
        ),
    )
}

impl VaultService {
    /// Whether `actor` administers `tenant_id`.
    #[must_use]
    pub fn administers(actor: &Principal, tenant_id: &str) -> bool {
        match actor.role {
            Role::DeploymentAdmin => true,
            Role::TenantAdmin => actor.tenant_id == tenant_id,
            Role::Member => false,
        }
    }

    /// The tenant `name` as `actor` may see it: `NotFound` for a tenant outside its scope.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn visible_tenant(&self, actor: &Principal, name: &str) -> Result<Tenant> {
        let t = self.tenant(name).await?;
        if crate::platform::is_platform(&t.name) {
            return Err(VaultError::NotFound(format!("no tenant named {name}")));
        }
        if actor.role == Role::DeploymentAdmin || actor.tenant_id == t.id {
            return Ok(t);
        }
        Err(VaultError::NotFound(format!("no tenant named {name}")))
    }

    /// The tenant `name`, requiring `actor` to administer it.
    ///
    /// # Errors
    /// `NotFound` outside the actor's scope, `Forbidden` for a member of the tenant.
    pub async fn administered_tenant(&self, actor: &Principal, name: &str, what: &str) -> Result<Tenant> {
        let t = self.visible_tenant(actor, name).await?;
        if Self::administers(actor, &t.id) { Ok(t) } else { Err(not_admin(actor, what)) }
    }

    /// The vault `name`, requiring `actor` to administer its tenant.
    ///
    /// # Errors
    /// `NotFound` outside the actor's scope (also for a member of another tenant),
    /// `Forbidden` for a member of the vault's tenant.
    pub async fn administered_vault(&self, actor: &Principal, name: &str, what: &str) -> Result<VaultInfo> {
        let v = self.vault(name).await?;
        if crate::platform::is_platform(&v.name)
            || (actor.role != Role::DeploymentAdmin && actor.tenant_id != v.tenant_id)
        {
            return Err(VaultError::NotFound(format!("no vault named {name}")));
        }
        if Self::administers(actor, &v.tenant_id) { Ok(v) } else { Err(not_admin(actor, what)) }
    }

    /// Checks that `actor` may give a principal `role` in a tenant it administers.
    ///
    /// # Errors
    /// `Forbidden` unless the deployment admin grants the deployment-admin role.
    pub fn check_grantable(actor: &Principal, role: Role) -> Result<()> {
        if role == Role::DeploymentAdmin && actor.role != Role::DeploymentAdmin {
            return Err(not_admin(actor, "create a deployment admin"));
        }
        Ok(())
    }

    /// A tenant by id.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn tenant_by_id(&self, id: &str) -> Result<Tenant> {
        let name = repo::tenant_name(&self.db, id).await?;
        self.tenant(&name.ok_or_else(|| VaultError::NotFound(format!("no tenant with id {id}")))?).await
    }

    /// Every tenant `actor` can see, by name.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_tenants(&self, actor: &Principal) -> Result<Vec<Tenant>> {
        let names = repo::tenant_names(&self.db).await?;
        let mut out = Vec::new();
        for n in names {
            if crate::platform::is_platform(&n) {
                continue;
            }
            let t = self.tenant(&n).await?;
            if actor.role == Role::DeploymentAdmin || actor.tenant_id == t.id {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The principals of a tenant, by name (rows verified).
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_principals(&self, tenant: &Tenant) -> Result<Vec<Principal>> {
        let ids = repo::principal_ids(&self.db, &tenant.id).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.principal(&id).await?);
        }
        Ok(out)
    }

    /// A principal of a tenant by name.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn principal_by_name(&self, tenant: &Tenant, name: &str) -> Result<Principal> {
        let id = repo::principal_id(&self.db, &tenant.id, &name.to_ascii_lowercase()).await?;
        let id =
            id.ok_or_else(|| VaultError::NotFound(format!("no principal named {name} in tenant {}", tenant.name)))?;
        self.principal(&id).await
    }

    /// Enables or disables a principal (a disabled principal's tokens stop authenticating
    /// on the next request).
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn set_principal_disabled(&self, p: &Principal, disabled: bool) -> Result<Principal> {
        let _g = self.write_guard().await;
        let (current, created) = self.principal_and_created(&p.id).await?;
        let updated = Principal { disabled, ..current };
        let mac = self.mac.tag("principals", &Self::principal_fields(&updated, created));
        repo::set_principal_disabled(&self.db, &p.id, disabled, &mac).await?;
        Ok(updated)
    }

    /// The tokens of a principal, newest first.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_tokens(&self, p: &Principal) -> Result<Vec<TokenInfo>> {
        let ids = repo::token_ids(&self.db, &p.id).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.token_row(&id).await? {
                out.push(TokenInfo { id: t.id, created: t.created, expires: t.expires, revoked: t.revoked });
            }
        }
        Ok(out)
    }

    /// The principal a token belongs to (its row verified).
    ///
    /// # Errors
    /// `NotFound`, `Integrity`.
    pub async fn token_owner(&self, token_id: &str) -> Result<String> {
        Ok(self
            .token_row(token_id)
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no token with id {token_id}")))?
            .principal_id)
    }

    /// Rotates a token: issues a new one for the same principal (valid for `ttl` seconds,
    /// or as long as the old one was) and revokes the old one.
    ///
    /// # Errors
    /// `NotFound`, `Integrity`, `BadParameter` for a revoked token.
    pub async fn rotate_token(&self, token_id: &str, ttl: Option<i64>) -> Result<crate::IssuedToken> {
        let old = self
            .token_row(token_id)
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no token with id {token_id}")))?;
        if old.revoked || old.expires.is_some_and(|e| self.now() >= e) {
            return Err(VaultError::bad(format!("token {token_id} is revoked or expired; issue a new token instead")));
        }
        let principal = self.principal(&old.principal_id).await?;
        // An inherited lifetime from before the cap is capped, not refused.
        let ttl = ttl.or(old.expires.map(|e| (e - old.created).min(crate::access::MAX_TOKEN_TTL)));
        let new = self.issue_token(&principal, ttl).await?;
        self.revoke_token(token_id).await?;
        Ok(new)
    }

    /// The vaults of a tenant, by name.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_vaults(&self, tenant: &Tenant) -> Result<Vec<VaultInfo>> {
        let names = crate::repo::vaults::names_of_tenant(&self.db, &tenant.id).await?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.push(self.vault(&n).await?);
        }
        Ok(out)
    }

    /// Every access policy of a vault: (principal, key permissions, secret permissions),
    /// by principal name.
    ///
    /// # Errors
    /// Database and integrity errors.
    pub async fn list_policies(
        &self,
        vault: &VaultInfo,
    ) -> Result<Vec<(Principal, Vec<crate::Permission>, Vec<crate::SecretPermission>)>> {
        let ids = repo::policy_holders(&self.db, &vault.id).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let p = self.principal(&id).await?;
            let (keys, secrets) = self.policy(vault, &p).await?;
            out.push((p, keys, secrets));
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::PrincipalKind;

    fn p(role: Role, tenant: &str) -> Principal {
        Principal {
            id: "p".into(),
            tenant_id: tenant.into(),
            name: "x".into(),
            kind: PrincipalKind::User,
            role,
            disabled: false,
        }
    }

    #[test]
    fn scope() {
        assert!(VaultService::administers(&p(Role::DeploymentAdmin, "a"), "b"));
        assert!(VaultService::administers(&p(Role::TenantAdmin, "a"), "a"));
        assert!(!VaultService::administers(&p(Role::TenantAdmin, "a"), "b"));
        assert!(!VaultService::administers(&p(Role::Member, "a"), "a"));
        assert!(VaultService::check_grantable(&p(Role::TenantAdmin, "a"), Role::TenantAdmin).is_ok());
        assert!(VaultService::check_grantable(&p(Role::TenantAdmin, "a"), Role::DeploymentAdmin).is_err());
        assert!(VaultService::check_grantable(&p(Role::DeploymentAdmin, "a"), Role::DeploymentAdmin).is_ok());
    }
}
