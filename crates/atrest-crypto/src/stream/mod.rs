//! Stream format v1: blobs of any size, sealed in fixed-size segments (the STREAM
//! construction), with constant memory in both directions and random access.
//!
//! ```text
//! stream  = header (69 bytes) ‖ segment_0 ‖ … ‖ segment_{n-1}
//! segment = AES-256-GCM(working key, nonce(i, i == n-1), aad = header, plaintext_i) ‖ tag (16)
//! ```
//! # Invariants
//! - One working key per stream (fresh salt), so `(key, nonce)` pairs never repeat and
//!   no key sees more than 2^32 segments ([`atrest_format::MAX_SEGMENTS`]).
//! - The segment index is in the nonce: reordering or duplicating segments fails.
//! - Only the final segment carries the last flag: cutting the stream at or between
//!   segment boundaries fails, because the new final segment was sealed as non-final.
//! - The header is the associated data of every segment, and the key commitment in it
//!   is checked before any segment is opened: a segment copied from another stream,
//!   or a header edited in any byte, fails.
//! - Readers release plaintext only after its segment authenticated; a stream that
//!   fails part-way has delivered only authentic prefix segments, and the failure is
//!   reported before end-of-stream, so a consumer never mistakes a cut stream for a
//!   complete one.
//!
//! Layers: [`segment`] is the sans-I/O core; [`buffer`] holds the segment-assembly state
//! shared by the adapters; [`sync`] has `Read`/`Write` adapters, [`seek`] random access
//! over `Read + Seek`, and `tokio` (feature `tokio`) the async adapters.

mod buffer;
pub mod seek;
pub mod segment;
pub mod sync;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use atrest_format::{DEFAULT_SEGMENT_SIZE_LOG2, StreamHeader, StreamLayout};
pub use seek::SeekableReader;
pub use segment::{SegmentOpener, SegmentSealer};
pub use sync::{DecryptingReader, EncryptingWriter};

/// Header length.
pub const HEADER_LEN: usize = StreamHeader::LEN;
