//! The audit log (hash chains) and the audit signing key.

use crate::db::Db;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// One audit entry as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Chain (vault id or `deployment`).
    pub chain: String,
    /// Position, from 1, without gaps.
    pub seq: i64,
    /// Unix seconds.
    pub time: i64,
    /// Who (principal name, or `system`).
    pub principal: String,
    /// What (e.g. `unwrapKey`, `create`, `set-policy`).
    pub operation: String,
    /// On what (key name/version, principal, vault).
    pub target: String,
    /// `ok`, or the error code.
    pub result: String,
    /// Extra facts as JSON (algorithm, resource, …); never key material or data.
    pub detail: String,
    /// Hash of the previous entry (hex).
    pub prev_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
}

const COLS: &str = "chain, seq, time, principal, operation, target, result, detail, prev_hash, hash, mac";

fn record(row: &AnyRow) -> Result<(AuditRecord, Vec<u8>)> {
    let prev: Vec<u8> = row.try_get("prev_hash")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok((
        AuditRecord {
            chain: row.try_get("chain")?,
            seq: row.try_get("seq")?,
            time: row.try_get("time")?,
            principal: row.try_get("principal")?,
            operation: row.try_get("operation")?,
            target: row.try_get("target")?,
            result: row.try_get("result")?,
            detail: row.try_get("detail")?,
            prev_hash: hex::encode(prev),
            hash: hex::encode(hash),
        },
        row.try_get("mac")?,
    ))
}

/// An entry ready to be written at the position it was built for.
pub(crate) struct NewEntry {
    pub rec: AuditRecord,
    pub prev: Vec<u8>,
    pub hash: Vec<u8>,
    pub mac: Vec<u8>,
}

/// Appends the entries `make` builds from the heads of `chains` (position and hash of
/// each chain's last entry, read in this transaction; a chain without entries is absent),
/// all in one transaction: one commit, one fsync. The positions written, in order, and
/// the database's commit sequence with them (where one is kept); `Ok(None)` when a
/// concurrent writer (another node) took a position first: nothing is written, build
/// them again.
pub(crate) async fn append_batch(
    db: &Db,
    chains: &[&str],
    make: impl FnOnce(&BTreeMap<String, (i64, Vec<u8>)>) -> Vec<NewEntry>,
) -> Result<Option<(Vec<i64>, Option<i64>)>> {
    let mut tx = db.pool().begin().await?;
    let list = (1..=chains.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT chain, seq, hash FROM audit_log a WHERE chain IN ({list}) \
         AND seq = (SELECT MAX(seq) FROM audit_log b WHERE b.chain = a.chain)"
    );
    let mut q = sqlx::query(&sql);
    for c in chains {
        q = q.bind(*c);
    }
    let mut heads = BTreeMap::new();
    for r in q.fetch_all(&mut *tx).await? {
        heads.insert(r.try_get::<String, _>("chain")?, (r.try_get::<i64, _>("seq")?, r.try_get::<Vec<u8>, _>("hash")?));
    }
    let entries = make(&heads);
    for chunk in entries.chunks(64) {
        let rows = (0..chunk.len())
            .map(|r| format!("({})", (1..=11).map(|c| format!("${}", r * 11 + c)).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO audit_log ({COLS}) VALUES {rows}");
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.rec.chain)
                .bind(e.rec.seq)
                .bind(e.rec.time)
                .bind(&e.rec.principal)
                .bind(&e.rec.operation)
                .bind(&e.rec.target)
                .bind(&e.rec.result)
                .bind(&e.rec.detail)
                .bind(&e.prev)
                .bind(&e.hash)
                .bind(&e.mac);
        }
        match q.execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() || busy(e.code().as_deref()) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    let commit_seq = db.kept_commit_seq(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some((entries.iter().map(|e| e.rec.seq).collect(), commit_seq)))
}

/// SQLite's "busy" codes (`SQLITE_BUSY` and its extended forms, e.g. `BUSY_SNAPSHOT`
/// when another connection committed between this transaction's read and its write):
/// the batch is built again, not failed.
fn busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5)
}

/// The head of a chain: (sequence number, hash) of its last entry.
pub(crate) async fn head(db: &Db, chain: &str) -> Result<Option<(i64, Vec<u8>)>> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1")
        .bind(chain)
        .fetch_optional(db.pool())
        .await?;
    last.map(|r| Ok((r.try_get::<i64, _>("seq")?, r.try_get::<Vec<u8>, _>("hash")?))).transpose()
}

/// Every chain in the log.
pub(crate) async fn chains(db: &Db) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT chain FROM audit_log ORDER BY chain").fetch_all(db.pool()).await?)
}

/// Every entry of a chain in order, with its stored MAC.
pub(crate) async fn entries(db: &Db, chain: &str) -> Result<Vec<(AuditRecord, Vec<u8>)>> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM audit_log WHERE chain = $1 ORDER BY seq"))
        .bind(chain)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(record).collect()
}

/// The audit signing key's row as stored.
pub(crate) struct SigningKeyRow {
    pub id: String,
    pub material: Vec<u8>,
    pub public_jwk: String,
    pub created: i64,
    pub mac: Vec<u8>,
}

/// The oldest audit signing key.
pub(crate) async fn signing_key(db: &Db) -> Result<Option<SigningKeyRow>> {
    let row =
        sqlx::query("SELECT id, material, public_jwk, created, mac FROM audit_signing_key ORDER BY created LIMIT 1")
            .fetch_optional(db.pool())
            .await?;
    row.map(|r| {
        Ok(SigningKeyRow {
            id: r.try_get("id")?,
            material: r.try_get("material")?,
            public_jwk: r.try_get("public_jwk")?,
            created: r.try_get("created")?,
            mac: r.try_get("mac")?,
        })
    })
    .transpose()
}

pub(crate) async fn insert_signing_key(db: &Db, k: &SigningKeyRow) -> Result<()> {
    sqlx::query("INSERT INTO audit_signing_key (id, material, public_jwk, created, mac) VALUES ($1, $2, $3, $4, $5)")
        .bind(&k.id)
        .bind(&k.material)
        .bind(&k.public_jwk)
        .bind(k.created)
        .bind(&k.mac)
        .execute(db.pool())
        .await?;
    Ok(())
}
