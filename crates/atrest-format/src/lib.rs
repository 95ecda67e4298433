//! Byte layouts of atrest's two at-rest formats, and nothing else.
//!
//! This crate parses and encodes headers and does the length arithmetic of the
//! **record** format (one small object in one buffer) and the **stream** format
//! (a blob of any size, cut into authenticated segments). It performs no
//! cryptography and links no C code, so fuzzing its parsers is fast; the sealing
//! and opening live in `atrest-crypto`. The normative description, with test
//! vectors, is `docs/formats.md`.
//!
//! # Invariants
//! - Every header starts with a kind byte and a version byte; a parser accepts
//!   only the algorithm ids allow-listed for that version and rejects everything
//!   else before any key is touched.
//! - The encoded header is the associated data of every sealed part, so a change
//!   to any header byte (version, algorithm, segment size, salt, commitment) makes
//!   authentication fail.
//! - Nonces are never random: they are a segment counter plus a last-segment flag
//!   under a key used for one object only (see [`nonce`]).
//! - The stream encoding is canonical: a plaintext length has exactly one
//!   ciphertext length and vice versa, so a truncation cannot be re-read as a
//!   shorter valid stream without also forging a final-segment tag.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod header;
mod stream_layout;

pub use header::{AeadId, COMMITMENT_LEN, FormatError, KdfId, Kind, RecordHeader, SALT_LEN, StreamHeader, VERSION_1};
pub use stream_layout::{
    DEFAULT_SEGMENT_SIZE_LOG2, MAX_SEGMENT_SIZE_LOG2, MAX_SEGMENTS, MIN_SEGMENT_SIZE_LOG2, StreamLayout,
};

/// Length of the AEAD nonce (AES-256-GCM, 96 bits).
pub const NONCE_LEN: usize = 12;
/// Length of the AEAD tag appended to every sealed part.
pub const TAG_LEN: usize = 16;
/// Largest plaintext the record format accepts (1 GiB); larger objects use the stream format.
pub const MAX_RECORD_PLAINTEXT: usize = 1 << 30;

/// The nonce of segment `counter`: the counter as an 11-byte big-endian integer,
/// followed by `1` for the final segment and `0` otherwise (the STREAM construction
/// of Hoang, Reyhanitabar, Rogaway and Vizár). A record is a single final segment
/// with counter 0.
#[must_use]
pub fn nonce(counter: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_layout() {
        assert_eq!(nonce(0, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(nonce(0x0102, false), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0]);
        assert_ne!(nonce(7, false), nonce(7, true));
    }
}
