//! Usage counts a node holds in memory between durable reservations (A256GCM uses).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many A256GCM uses a node reserves at once: the durable count is raised by a block
/// before any encryption of it is released, and what a node does not use (it stops or
/// crashes) stays counted. 2^32 / 1024 restarts per version before the limit moves.
pub(crate) const GCM_BLOCK: i64 = 1024;

/// The uses each key version has reserved on this node and not yet released
/// (`next..end`), one lock per version — so a reservation waiting on the database holds
/// up only its own version. A version is known by (vault id, name, version, SHA-256 of its
/// sealed material): a version purged and restored from a backup (new material) starts
/// over from its stored count.
#[derive(Default)]
pub(crate) struct GcmBlocks(Mutex<HashMap<[u8; 32], Block>>);

/// One version's reserved uses, `next..end`.
type Block = Arc<tokio::sync::Mutex<(i64, i64)>>;

impl GcmBlocks {
    /// The block of the version `id` names.
    pub(crate) fn of(&self, id: [u8; 32]) -> Block {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(id).or_default().clone()
    }
}
