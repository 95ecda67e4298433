//! Group commit of the audit trail: concurrent appends share one transaction, so one
//! durable write (one fsync on SQLite) covers every entry of a batch.
//!
//! Each caller queues its entry and waits; the first caller to find no writer running
//! spawns one, which takes everything queued, writes it in one transaction — each chain's
//! entries at consecutive positions after its head, read in that transaction — commits,
//! and only then answers every caller in the batch; meanwhile new entries queue for the
//! next batch. If the commit fails, every caller of the batch gets the error (so a key
//! use whose entry is not durable is withheld). On PostgreSQL another node may take a
//! position first: the batch is rolled back and written again at the new heads.
//!
//! The writer is a spawned task, not the first caller's future, so a caller that goes
//! away (a client that disconnects) cannot leave the others waiting.

use crate::clock::Clock;
use crate::db::{Db, Engine};
use crate::error::{Result, VaultError};
use crate::repo::audit as repo;
use crate::rowmac::{Field, RowMac};
use atrest_crypto::hash::sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{Mutex, oneshot};

/// The most entries one transaction takes (the rest wait for the next).
const MAX_BATCH: usize = 128;
/// How often a batch that collided with another node's appends is written again.
const ATTEMPTS: usize = 20;

/// An entry as a caller hands it in.
pub(crate) struct Entry {
    pub chain: String,
    pub principal: String,
    pub operation: String,
    pub target: String,
    pub result: String,
    pub detail: String,
}

/// A durable append: the entry's position, and the database's commit sequence after its
/// batch (`None` where none is kept).
pub(crate) type Appended = (i64, Option<i64>);

struct Pending {
    entry: Entry,
    done: oneshot::Sender<Result<Appended>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    writing: bool,
}

/// The audit writer of one vault service.
pub(crate) struct AuditCommit {
    db: Db,
    mac: RowMac,
    clock: Arc<dyn Clock>,
    /// The vault's SQLite write lock (shared with every other write of the service).
    write_lock: Arc<Mutex<()>>,
    queue: std::sync::Mutex<Queue>,
    /// Batches written and entries in them (for metrics and the benchmark).
    stats: [std::sync::atomic::AtomicU64; 2],
}

impl AuditCommit {
    pub(crate) fn new(db: Db, mac: RowMac, clock: Arc<dyn Clock>, write_lock: Arc<Mutex<()>>) -> Arc<Self> {
        Arc::new(Self { db, mac, clock, write_lock, queue: std::sync::Mutex::default(), stats: Default::default() })
    }

    /// Appends `entry` durably; returns its position in its chain and the commit sequence.
    pub(crate) async fn append(self: &Arc<Self>, entry: Entry) -> Result<Appended> {
        let (done, wait) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            q.pending.push(Pending { entry, done });
            !std::mem::replace(&mut q.writing, true)
        };
        if start {
            tokio::spawn(self.clone().write_all());
        }
        wait.await.unwrap_or_else(|_| Err(VaultError::Storage("the audit writer stopped".into())))
    }

    /// (batches, entries) written since start.
    pub(crate) fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.stats[0].load(Relaxed), self.stats[1].load(Relaxed))
    }

    /// Writes batches until the queue is empty.
    async fn write_all(self: Arc<Self>) {
        // If this task ends any other way (a panic, the runtime going away), the queue is
        // handed back: `writing` reset and every entry still queued failed, so no caller
        // waits for ever and the next append starts a writer again.
        struct Handback<'a>(&'a AuditCommit, bool);
        impl Drop for Handback<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    return; // ended normally: the queue was handed back under its lock
                }
                let mut q = self.0.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                q.writing = false;
                for p in q.pending.drain(..) {
                    let _ = p.done.send(Err(VaultError::Storage("the audit writer stopped".into())));
                }
            }
        }
        let mut handback = Handback(&self, true);
        loop {
            let batch: Vec<Pending> = {
                let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if q.pending.is_empty() {
                    q.writing = false;
                    handback.1 = false;
                    return;
                }
                let n = q.pending.len().min(MAX_BATCH);
                q.pending.drain(..n).collect()
            };
            let entries: Vec<&Entry> = batch.iter().map(|p| &p.entry).collect();
            match self.write(&entries).await {
                Ok((seqs, commit_seq)) => {
                    use std::sync::atomic::Ordering::Relaxed;
                    self.stats[0].fetch_add(1, Relaxed);
                    self.stats[1].fetch_add(batch.len() as u64, Relaxed);
                    for (p, seq) in batch.into_iter().zip(seqs) {
                        let _ = p.done.send(Ok((seq, commit_seq)));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for p in batch {
                        let _ = p.done.send(Err(VaultError::Storage(msg.clone())));
                    }
                }
            }
        }
    }

    /// Writes one batch in one transaction; the positions it took, in order, and the
    /// commit sequence.
    async fn write(&self, entries: &[&Entry]) -> Result<(Vec<i64>, Option<i64>)> {
        let _g = match self.db.engine() {
            Engine::Sqlite => Some(self.write_lock.lock().await),
            Engine::Postgres => None,
        };
        let mut chains: Vec<&str> = entries.iter().map(|e| e.chain.as_str()).collect();
        chains.sort_unstable();
        chains.dedup();
        for _ in 0..ATTEMPTS {
            let make = |heads: &BTreeMap<String, (i64, Vec<u8>)>| {
                let time = self.clock.now();
                let mut next: BTreeMap<&str, (i64, Vec<u8>)> = BTreeMap::new();
                entries
                    .iter()
                    .map(|e| {
                        let (seq, prev) = next.entry(e.chain.as_str()).or_insert_with(|| {
                            heads.get(&e.chain).map_or((0, vec![0u8; 32]), |(s, h)| (*s, h.clone()))
                        });
                        *seq += 1;
                        let mut rec = repo::AuditRecord {
                            chain: e.chain.clone(),
                            seq: *seq,
                            time,
                            principal: e.principal.clone(),
                            operation: e.operation.clone(),
                            target: e.target.clone(),
                            result: e.result.clone(),
                            detail: e.detail.clone(),
                            prev_hash: hex::encode(&*prev),
                            hash: String::new(),
                        };
                        let hash = entry_hash(prev, &rec);
                        rec.hash = hex::encode(hash);
                        repo::NewEntry {
                            prev: std::mem::replace(prev, hash.to_vec()),
                            hash: hash.to_vec(),
                            mac: self.mac.tag("audit_log", &[Field::Bytes(&hash)]),
                            rec,
                        }
                    })
                    .collect::<Vec<_>>()
            };
            if let Some(written) = repo::append_batch(&self.db, &chains, make).await? {
                return Ok(written);
            }
        }
        Err(VaultError::Storage("audit append kept colliding with concurrent appends".into()))
    }
}

/// An entry's hash: over the previous entry's hash and every field (`docs/vault-storage.md`).
pub(crate) fn entry_hash(prev: &[u8], r: &repo::AuditRecord) -> [u8; 32] {
    let framed = RowMac::encode(
        "audit",
        &[
            Field::Text(&r.chain),
            Field::Int(r.seq),
            Field::Int(r.time),
            Field::Text(&r.principal),
            Field::Text(&r.operation),
            Field::Text(&r.target),
            Field::Text(&r.result),
            Field::Text(&r.detail),
        ],
    );
    sha256(&[prev, &framed])
}
