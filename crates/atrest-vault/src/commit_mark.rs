//! What a request committed to the vault's database, as the audit trail's group commit
//! saw it: the commit sequence after the batch that held the request's last entry. The
//! server's rollback anchor must cover a request's commits before its answer leaves; on
//! the Key Vault front end a request's last write is always its audit entry, so that
//! sequence tells the anchor what to cover without reading the databases again.
//!
//! A server runs a request under [`scope`]; [`note`] records each append's outcome.

use std::cell::Cell;
use std::future::Future;

/// What the appends of a request left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// No audit entry was appended in the scope.
    Nothing,
    /// The last append was durable; the vault database's commit sequence was then at
    /// least this (0 where none is kept).
    Seq(i64),
    /// An append failed: what the request committed is not known from here.
    Unknown,
}

tokio::task_local! {
    static MARK: Cell<Mark>;
}

/// Runs `f` with a fresh mark; returns its output and the mark it left.
pub async fn scope<F: Future>(f: F) -> (F::Output, Mark) {
    MARK.scope(Cell::new(Mark::Nothing), async move {
        let out = f.await;
        (out, MARK.with(Cell::get))
    })
    .await
}

/// Records an append's outcome in the current scope (if any): a durable append at
/// commit sequence `seq`, or `None` for a failed one (which makes the mark unknown for
/// good).
pub(crate) fn note(seq: Option<i64>) {
    let _ = MARK.try_with(|m| {
        m.set(match (m.get(), seq) {
            (Mark::Unknown, _) | (_, None) => Mark::Unknown,
            (Mark::Seq(a), Some(b)) => Mark::Seq(a.max(b)),
            (Mark::Nothing, Some(b)) => Mark::Seq(b),
        });
    });
}
