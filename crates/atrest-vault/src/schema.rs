//! The vault's schema migrations (the data service's live in `atrest-store`; both are
//! applied by [`atrest_infra::db::Db::migrate_with`] into one tracking table).

use crate::db::Db;
use crate::error::Result;

/// Schema migrations, applied in order, each once. Never edit a released entry: append.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("schema/0001_vault.sql")),
    (2, include_str!("schema/0002_access.sql")),
    (3, include_str!("schema/0003_audit.sql")),
    (4, include_str!("schema/0004_rotation.sql")),
    (5, include_str!("schema/0005_leases.sql")),
    (6, include_str!("schema/0006_vault_ports.sql")),
    (7, include_str!("schema/0007_s3_keys.sql")),
    (8, include_str!("schema/0008_secrets.sql")),
];

/// Applies the vault's pending migrations to `db`.
///
/// # Errors
/// Database errors; a failed migration rolls back and leaves the schema as it was.
pub async fn migrate(db: &Db) -> Result<()> {
    Ok(db.migrate_with(MIGRATIONS).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_split_into_whole_statements() {
        atrest_infra::db::assert_splittable(super::MIGRATIONS);
    }
}
