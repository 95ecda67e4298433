//! The key-usage inventory: which resources use which key versions, and which versions
//! no resource needs any more (safe to disable — never before).

use crate::error::Result;
use crate::model::KeySource;
use crate::service::StoreService;
use atrest_vault::{Principal, Role};
use std::collections::BTreeMap;

/// One key version's use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionUsage {
    /// Version id.
    pub version: String,
    /// Resources whose resource key (or message key) this version wraps.
    pub resources: Vec<String>,
    /// Whether any resource still needs it.
    pub needed: bool,
}

/// One key's use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// `platform`, or the key URI (versionless) / vault and name.
    pub key: String,
    /// Vault name (or remote origin).
    pub vault: String,
    /// Key name.
    pub name: String,
    /// Versions, oldest first when the vault is in this deployment (then versions no
    /// resource uses are listed with `needed: false`); else only the versions in use.
    pub versions: Vec<VersionUsage>,
}

impl StoreService {
    /// The inventory over the actor's tenant (customer keys); the deployment admin also
    /// sees the platform key.
    ///
    /// # Errors
    /// `Forbidden` unless a tenant admin; database and vault errors.
    pub async fn key_usage(&self, actor: &Principal) -> Result<Vec<KeyUsage>> {
        if !matches!(actor.role, Role::TenantAdmin | Role::DeploymentAdmin) {
            return Err(crate::StoreError::Forbidden(format!(
                "principal {} cannot read the key-usage inventory: it is for tenant admins",
                actor.name
            )));
        }
        let mut used: BTreeMap<(String, String, String), BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let see_platform = actor.role == Role::DeploymentAdmin;
        for r in self.all_resources().await? {
            let label =
                if r.tenant_id == actor.tenant_id { r.name.clone() } else { format!("{}/{}", r.tenant_id, r.name) };
            if see_platform {
                let e =
                    used.entry(("platform".into(), Self::platform_kek().vault, Self::platform_kek().name)).or_default();
                e.entry(r.msg_wrapped.version.clone()).or_default().push(format!("{label} (messages)"));
            }
            if r.tenant_id != actor.tenant_id && !(see_platform && r.key_source == KeySource::Platform) {
                continue;
            }
            let key = match r.key_source {
                KeySource::Platform => "platform".to_string(),
                KeySource::Customer => format!("{}/keys/{}", r.kek.vault, r.kek.name),
            };
            if r.key_source == KeySource::Platform && !see_platform {
                continue;
            }
            let versions = used.entry((key, r.kek.vault.clone(), r.kek.name.clone())).or_default();
            versions.entry(r.wrapped.version.clone()).or_default().push(label.clone());
            if let Some(old) = &r.old_wrapped {
                versions.entry(old.version.clone()).or_default().push(format!("{label} (re-key in progress)"));
            }
        }
        let mut out = Vec::new();
        for ((key, vault, name), versions) in used {
            let mut all: Vec<String> = Vec::new();
            if !vault.starts_with("https://")
                && let Ok(v) = self.vault.vault(&vault).await
            {
                let mut token = None;
                loop {
                    let Ok(page) = self.vault.list_versions(&v, &name, None, token.as_deref()).await else { break };
                    all.extend(page.items.into_iter().map(|b| b.version));
                    match page.next {
                        Some(t) => token = Some(t),
                        None => break,
                    }
                }
            }
            for v in versions.keys() {
                if !all.contains(v) {
                    all.push(v.clone());
                }
            }
            let versions = all
                .into_iter()
                .map(|v| {
                    let mut resources = versions.get(&v).cloned().unwrap_or_default();
                    resources.sort();
                    VersionUsage { needed: !resources.is_empty(), version: v, resources }
                })
                .collect();
            out.push(KeyUsage { key, vault, name, versions });
        }
        Ok(out)
    }
}
