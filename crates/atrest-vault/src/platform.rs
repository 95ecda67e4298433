//! The deployment's own namespace for platform-managed keys: a reserved tenant and vault
//! that no customer-facing API shows or reaches. Tenant admins never see it; the
//! deployment admin does not administer it through the admin API either (its keys are
//! changed only by the rotation scheduler and the data service).

use crate::error::{Result, VaultError};
use crate::model::{VaultInfo, VaultSettings};
use crate::{CreateKey, LifetimeAction, PolicyAttributes, Principal, PrincipalKind, Role, RotationPolicy, Tenant};
use crate::{VaultService, rotation};

/// The reserved tenant (and vault) name of the platform namespace.
pub const PLATFORM: &str = "atrest-platform";
/// The platform key-encryption key every platform-managed resource key is wrapped by.
pub const PLATFORM_KEK: &str = "platform-kek";
/// The data service's identity in the platform namespace.
pub const PLATFORM_IDENTITY: &str = "atrest-store";

/// Whether a tenant or vault name is the reserved platform name.
#[must_use]
pub fn is_platform(name: &str) -> bool {
    name.eq_ignore_ascii_case(PLATFORM)
}

/// What [`VaultService::ensure_platform_namespace`] returns.
#[derive(Debug, Clone)]
pub struct PlatformNamespace {
    /// The reserved tenant.
    pub tenant: Tenant,
    /// The reserved vault (purge protection on, 90-day retention).
    pub vault: VaultInfo,
    /// The data service's principal there (get, wrapKey, unwrapKey).
    pub identity: Principal,
}

impl VaultService {
    /// Creates (first start) or loads the platform namespace: tenant and vault
    /// `atrest-platform`, the oct-256 key `platform-kek` with a rotation policy of
    /// `rotate_after` (ISO-8601, e.g. `P90D`), and the data service's identity. Calling it
    /// again with another period updates the policy.
    ///
    /// # Errors
    /// Database errors; `BadParameter` for an invalid period.
    pub async fn ensure_platform_namespace(&self, rotate_after: &str) -> Result<PlatformNamespace> {
        rotation::parse_duration(rotate_after)?;
        let tenant = match self.tenant(PLATFORM).await {
            Ok(t) => t,
            Err(VaultError::NotFound(_)) => self.insert_tenant(PLATFORM).await?,
            Err(e) => return Err(e),
        };
        let vault = match self.vault(PLATFORM).await {
            Ok(v) => v,
            Err(VaultError::NotFound(_)) => {
                let settings = VaultSettings { retention_days: 90, purge_protection: true, allow_rsa1_5: false };
                self.insert_vault(&tenant.id, PLATFORM, settings).await?
            }
            Err(e) => return Err(e),
        };
        if vault.tenant_id != tenant.id {
            return Err(VaultError::Conflict(format!(
                "a vault named {PLATFORM} belongs to another tenant: the name is reserved for the deployment's platform \
                 keys; rename that vault (back it up, restore it under another name) before starting this version"
            )));
        }
        let identity = match self.principal_by_name(&tenant, PLATFORM_IDENTITY).await {
            Ok(p) => p,
            Err(VaultError::NotFound(_)) => {
                self.create_principal(&tenant, PLATFORM_IDENTITY, PrincipalKind::Service, Role::Member).await?
            }
            Err(e) => return Err(e),
        };
        if self.permissions(&vault, &identity).await?.is_empty() {
            use crate::Permission as P;
            self.set_policy(&vault, &identity, &[P::Get, P::WrapKey, P::UnwrapKey]).await?;
        }
        match self.get_key(&vault, PLATFORM_KEK, None).await {
            Ok(_) => {}
            Err(VaultError::NotFound(_)) => {
                let req = CreateKey {
                    kty: "oct".into(),
                    key_size: Some(256),
                    key_ops: Some(vec!["wrapKey".into(), "unwrapKey".into()]),
                    ..CreateKey::default()
                };
                self.create_key(&vault, PLATFORM_KEK, req).await?;
            }
            Err(e) => return Err(e),
        }
        let policy = RotationPolicy {
            lifetime_actions: vec![LifetimeAction {
                trigger: crate::Trigger { time_after_create: Some(rotate_after.to_string()), time_before_expiry: None },
                action: crate::Action { kind: "Rotate".into() },
            }],
            attributes: PolicyAttributes::default(),
        };
        let current = self.get_rotation_policy(&vault, PLATFORM_KEK).await?;
        if current.lifetime_actions != policy.lifetime_actions {
            self.set_rotation_policy(&vault, PLATFORM_KEK, policy).await?;
        }
        Ok(PlatformNamespace { tenant, vault, identity })
    }
}
