//! The vault clients a deployment's data service uses (injected through
//! [`crate::Seams::vaults`]): this deployment's vault in process, as a resource's
//! identity, and vaults on other servers over HTTPS.

use crate::error::Result;
use crate::keyvault::{InProcessVault, KeyVault, VaultClients};
use crate::remote::HttpVault;
use atrest_crypto::SecretBytes;
use atrest_vault::{Principal, VaultService};
use std::sync::Arc;

/// In process for this deployment's vaults, HTTPS for others.
pub struct DeploymentClients {
    vault: Arc<VaultService>,
    http: reqwest::Client,
}

impl DeploymentClients {
    /// Clients of `vault` and of remote vaults whose certificates chain to `remote_ca`
    /// (else the system bundle).
    ///
    /// # Errors
    /// An unreadable CA file.
    pub fn new(vault: Arc<VaultService>, remote_ca: Option<&std::path::Path>) -> Result<Self> {
        Ok(Self { vault, http: crate::remote::http_client(remote_ca)? })
    }
}

impl VaultClients for DeploymentClients {
    fn local(&self, identity: Principal, resource: &str) -> Box<dyn KeyVault> {
        Box::new(InProcessVault::new(self.vault.clone(), identity, resource))
    }

    fn remote(&self, key_uri: &str, credential: SecretBytes) -> Result<Box<dyn KeyVault>> {
        Ok(Box::new(HttpVault::new(self.http.clone(), key_uri, credential)?))
    }
}
