//! Vault ports: without a vault domain, each customer vault answers at an origin of its
//! own, a port that every node of the deployment serves (the SDKs need one vault per
//! origin). The table maps port ↔ vault; which ports to offer and when to listen is the
//! server's business.

use crate::error::{Result, VaultError};
use crate::rowmac::Field;
use crate::service::VaultService;
use sqlx::Row as _;

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
        let rows = sqlx::query(
            "SELECT p.port, p.vault_id, p.mac, v.name FROM vault_ports p JOIN vaults v ON v.id = p.vault_id \
             ORDER BY p.port",
        )
        .fetch_all(self.db.pool())
        .await?;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for row in rows {
            let port: i64 = row.try_get("port")?;
            let vault_id: String = row.try_get("vault_id")?;
            let mac: Vec<u8> = row.try_get("mac")?;
            let Ok(p) = u16::try_from(port) else { continue };
            match self.mac.check("vault_ports", &Self::port_fields(port, &vault_id), &mac, || format!("port {port}")) {
                Ok(()) => ok.push((p, row.try_get("name")?)),
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
        let done =
            sqlx::query("INSERT INTO vault_ports (port, vault_id, mac) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(i64::from(port))
                .bind(&v.id)
                .bind(mac)
                .execute(self.db.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
