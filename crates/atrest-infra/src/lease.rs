//! The job-lease seam: background work that must run once per deployment (purge
//! sweeper, rotation scheduler, the data service's sweeper, key follower, access
//! re-checks and jobs) takes a named, expiring lease first.
//!
//! One implementation per backend:
//! - **SQLite** (one node by design): [`Leases::Local`] grants every lease — there is
//!   nobody to share with.
//! - **PostgreSQL** (several stateless nodes): [`Leases::Shared`] keeps leases in the
//!   `leases` table. Taking or renewing one is a single upsert that only succeeds when the
//!   lease is free, expired or already ours, so two nodes never hold it at once (row
//!   locks serialize the upserts). A node that dies simply stops renewing; another takes
//!   the lease when it expires and, since jobs keep their progress in the data, carries on.

use crate::db::{Db, Engine};
use crate::error::Result;

/// Leases of one node.
#[derive(Debug, Clone)]
pub enum Leases {
    /// Single node: always granted.
    Local,
    /// Shared through the database, as `holder` (this node's id).
    Shared {
        /// The database.
        db: Db,
        /// This node (random per process).
        holder: String,
    },
}

impl Leases {
    /// The implementation for `db`'s engine, for a new node id.
    ///
    /// # Errors
    /// RNG failure.
    pub fn for_db(db: &Db) -> Result<Self> {
        Ok(match db.engine() {
            Engine::Sqlite => Leases::Local,
            Engine::Postgres => {
                Leases::Shared { db: db.clone(), holder: hex::encode(atrest_crypto::rand::bytes::<8>()?) }
            }
        })
    }

    /// This node's id (`local` on SQLite).
    #[must_use]
    pub fn holder(&self) -> &str {
        match self {
            Leases::Local => "local",
            Leases::Shared { holder, .. } => holder,
        }
    }

    /// Takes or renews `name` until `now + ttl`; `false` when another node holds it.
    ///
    /// # Errors
    /// Database errors.
    pub async fn acquire(&self, name: &str, now: i64, ttl: i64) -> Result<bool> {
        let Leases::Shared { db, holder } = self else { return Ok(true) };
        let n = sqlx::query(
            "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires = excluded.expires \
             WHERE leases.holder = excluded.holder OR leases.expires < $4",
        )
        .bind(name)
        .bind(holder.as_str())
        .bind(now + ttl)
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives `name` up (if held).
    ///
    /// # Errors
    /// Database errors.
    pub async fn release(&self, name: &str) -> Result<()> {
        if let Leases::Shared { db, holder } = self {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder.as_str())
                .execute(db.pool())
                .await?;
        }
        Ok(())
    }
}

/// The lease conformance suite: `a` and `b` are two nodes of one deployment (each with
/// its own holder id) over the same database, at time `now`. On SQLite (one node by
/// design) both are [`Leases::Local`] and every lease is granted; shared leases are
/// exclusive, renewable by their holder, taken over once expired, and released.
///
/// # Panics
/// On the first property that does not hold.
pub async fn conformance(a: &Leases, b: &Leases, name: &str, now: i64) {
    if matches!(a, Leases::Local) {
        assert!(a.acquire(name, now, 10).await.expect("acquire") && b.acquire(name, now, 10).await.expect("acquire"));
        return;
    }
    assert_ne!(a.holder(), b.holder(), "two nodes need two holder ids");
    assert!(a.acquire(name, now, 10).await.expect("acquire"), "a free lease is granted");
    assert!(!b.acquire(name, now + 1, 10).await.expect("acquire"), "a held lease is exclusive");
    assert!(a.acquire(name, now + 5, 10).await.expect("renew"), "its holder renews it");
    assert!(!b.acquire(name, now + 14, 10).await.expect("acquire"), "renewed: still held at +14");
    assert!(b.acquire(name, now + 16, 10).await.expect("acquire"), "expired: another node takes it");
    assert!(!a.acquire(name, now + 17, 10).await.expect("acquire"), "the old holder has lost it");
    b.release(name).await.expect("release");
    assert!(a.acquire(name, now + 18, 10).await.expect("acquire"), "released: free at once");
    a.release(name).await.expect("release");
}
