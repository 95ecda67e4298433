//! The authorization snapshot of a Key Vault request in one statement (one round trip,
//! one hand-off to SQLite's worker): the vault the origin serves, the bearer token, its
//! principal, the principal's policy on the vault and, for a request on a key, the key
//! and the version asked for (the latest when none is named), and for a read of a secret
//! the secret, its version and the vault's secrets key. Rows come back as stored;
//! the caller verifies each MAC, as for single-row reads.

use super::access::{PolicyRow, PrincipalRow, TokenRow, policy_at, principal_at, token_at};
use super::keys::{KeyRow, VersionRow, key_row_at, version_row_at};
use super::secrets::{KekRow, SecretRow, SecretVersionRow};
use super::vaults::{VaultRow, vault_at};
use crate::db::Db;
use crate::error::Result;
use atrest_infra::columns::Columns;
use std::sync::LazyLock;

/// What one snapshot read found.
pub(crate) struct SnapshotRows {
    pub vault: Option<VaultRow>,
    pub token: Option<TokenRow>,
    pub principal: Option<PrincipalRow>,
    pub policy: Option<PolicyRow>,
    pub key: Option<(KeyRow, Vec<u8>)>,
    pub version: Option<(VersionRow, Vec<u8>)>,
    pub secret: Option<(SecretRow, Vec<u8>)>,
    pub secret_version: Option<(SecretVersionRow, Vec<u8>)>,
    pub secrets_key: Option<(KekRow, Vec<u8>)>,
}

fn select(alias: &str, cols: &str) -> String {
    cols.split(',').map(str::trim).map(|c| format!("{alias}.{c} AS {alias}_{c}")).collect::<Vec<_>>().join(", ")
}

/// The snapshot statement's columns by name, on the reader thread.
static INDEX: std::sync::OnceLock<std::collections::HashMap<String, usize>> = std::sync::OnceLock::new();

/// Built once: the same text every time, so the driver's statement cache reuses it.
static SQL: LazyLock<String> = LazyLock::new(|| {
    let cols = [
        select("v", "id, tenant_id, name, retention_days, purge_protection, allow_rsa1_5, created, updated, mac"),
        select("t", "id, principal_id, hash, created, expires, revoked, mac"),
        select("p", "id, tenant_id, name, kind, role, disabled, created, mac"),
        select("ap", "permissions, updated, mac"),
        select("k", super::keys::KEY_COLS),
        select("kv", super::keys::VERSION_COLS),
        select("s", super::secrets::SECRET_COLS),
        select("sv", super::secrets::VERSION_COLS),
        select("sk", "vault_id, material, created, mac"),
    ]
    .join(", ");
    // From a one-row base, so a missing vault, token or key leaves its columns NULL
    // instead of losing the row.
    format!(
        "SELECT {cols} FROM (SELECT 1 AS one) base \
         LEFT JOIN vaults v ON v.name = $1 \
         LEFT JOIN tokens t ON t.id = $2 \
         LEFT JOIN principals p ON p.id = t.principal_id \
         LEFT JOIN access_policies ap ON ap.vault_id = v.id AND ap.principal_id = t.principal_id \
         LEFT JOIN keys k ON k.vault_id = v.id AND k.name_lc = $3 \
         LEFT JOIN key_versions kv ON kv.vault_id = v.id AND kv.name_lc = $3 \
              AND kv.version = (CASE WHEN $4 = '' THEN k.latest_version ELSE $4 END) \
         LEFT JOIN secrets s ON s.vault_id = v.id AND s.name_lc = $5 \
         LEFT JOIN secret_versions sv ON sv.vault_id = v.id AND sv.name_lc = $5 \
              AND sv.version = (CASE WHEN $6 = '' THEN s.latest_version ELSE $6 END) \
         LEFT JOIN secret_keks sk ON sk.vault_id = v.id AND $5 <> ''"
    )
});

/// What a request names besides its vault and token (`""`: nothing; a version `""`:
/// the latest).
#[derive(Default)]
pub(crate) struct Asked<'a> {
    pub key: &'a str,
    pub key_version: &'a str,
    pub secret: &'a str,
    pub secret_version: &'a str,
}

/// The snapshot for vault `vault_name`, token `token_id` (`""`: none) and what `asked`
/// names (lowercased).
pub(crate) async fn snapshot(db: &Db, vault_name: &str, token_id: &str, asked: &Asked<'_>) -> Result<SnapshotRows> {
    let params =
        [vault_name, token_id, asked.key, asked.key_version, asked.secret, asked.secret_version].map(str::to_string);
    // A SQLite file: on its reader thread, one hand-off for the whole read.
    if let Some(reader) = db.reader() {
        return Ok(reader
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&SQL).map_err(|e| atrest_infra::reader::storage(&e))?;
                // The statement's columns never change: index them once.
                let index = INDEX.get_or_init(|| atrest_infra::columns::column_index(&stmt));
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(|e| atrest_infra::reader::storage(&e))?;
                let row = rows
                    .next()
                    .map_err(|e| atrest_infra::reader::storage(&e))?
                    .ok_or_else(|| atrest_infra::InfraError::Storage("the snapshot read returned no row".into()))?;
                parse(&atrest_infra::columns::SqliteRow::new(row, index)).map_err(|e| match e {
                    crate::VaultError::Storage(m) => atrest_infra::InfraError::Storage(m),
                    other => atrest_infra::InfraError::Storage(other.to_string()),
                })
            })
            .await?);
    }
    let mut q = sqlx::query(&SQL);
    for p in &params {
        q = q.bind(p.as_str());
    }
    parse(&q.fetch_one(db.pool()).await?)
}

fn parse(r: &impl Columns) -> Result<SnapshotRows> {
    let present = |p: &str, col: &str| -> Result<bool> { Ok(r.opt_text(p, col)?.is_some()) };
    Ok(SnapshotRows {
        vault: vault_at(r, "v_")?,
        token: token_at(r, "t_")?,
        principal: principal_at(r, "p_")?,
        policy: policy_at(r, "ap_")?,
        key: if present("k_", "name_lc")? { Some(key_row_at(r, "k_")?) } else { None },
        version: if present("kv_", "version")? { Some(version_row_at(r, "kv_")?) } else { None },
        secret: if present("s_", "name_lc")? { Some(super::secrets::secret_row_at(r, "s_")?) } else { None },
        secret_version: if present("sv_", "version")? { Some(super::secrets::version_row_at(r, "sv_")?) } else { None },
        secrets_key: super::secrets::kek_at(r, "sk_")?,
    })
}
