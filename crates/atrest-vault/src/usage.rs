//! Usage counts a node holds in memory between durable reservations (A256GCM uses).

/// How many A256GCM uses a node reserves at once: the durable count is raised by a block
/// before any encryption of it is released, and what a node does not use (it stops or
/// crashes) stays counted. 2^32 / 1024 restarts per version before the limit moves.
pub(crate) const GCM_BLOCK: i64 = 1024;

/// The uses of each key version (vault id, name, version) this node has reserved and not
/// yet released: `next..end`.
#[derive(Default)]
pub(crate) struct GcmBlocks(pub std::collections::HashMap<(String, String, String), (i64, i64)>);
