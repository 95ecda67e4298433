//! Vault ports: without a vault domain, each customer vault answers at an origin of its
//! own, a port that every node of the deployment serves (the SDKs need one vault per
//! origin). The table maps port ↔ vault; which ports to offer and when to listen is the
//! server's business.

use crate::error::{Result, VaultError};
use crate::repo::vaults as repo;
use crate::rowmac::Field;
use crate::service::VaultService;

impl VaultService {
    fn port_fields(port: i64, vault_id: &str) -> [Field<'_>; 2] {
        [Field::Int(port), Field::Text(vault_id)]
    }

    /// Every vault port whose row verifies, as (port, vault name), by port; and the ports
    /// whose row does not verify (they are not served).
    ///
    /// # Errors
    /// Database errors.
    pub async fn vault_ports(&self) -> Result<(Vec<(u16, String)>, Vec<u16>)> {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for row in repo::ports(&self.db).await? {
            let Ok(p) = u16::try_from(row.port) else { continue };
            let fields = Self::port_fields(row.port, &row.vault_id);
            match self.mac.check("vault_ports", &fields, &row.mac, || format!("port {}", row.port)) {
                Ok(()) => ok.push((p, row.vault_name)),
                Err(_) => bad.push(p),
            }
        }
        Ok((ok, bad))
    }

    /// Gives vault `name` the port `port`; `false` when the port is taken or the vault
    /// already has one (another node may have won the race: read [`Self::vault_ports`]).
    ///
    /// # Errors
    /// `NotFound` for an unknown vault; database errors.
    pub async fn claim_vault_port(&self, name: &str, port: u16) -> Result<bool> {
        if port == 0 {
            return Err(VaultError::bad("port 0 is not a port a vault can answer on"));
        }
        let v = self.vault(name).await?;
        let mac = self.mac.tag("vault_ports", &Self::port_fields(i64::from(port), &v.id));
        let _g = self.write_guard().await;
        repo::insert_port(&self.db, i64::from(port), &v.id, &mac).await
    }
}
