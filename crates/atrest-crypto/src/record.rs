//! Record format v1: one object sealed in one buffer.
//!
//! ```text
//! record = header (68 bytes) ‖ AES-256-GCM(working key, nonce(0, last), aad = header, plaintext) ‖ tag (16)
//! ```
//! The working key and commitment come from the per-object derivation (`derive.rs`),
//! under the label `atrest/v1/record`. The nonce is that of a lone final segment
//! (counter 0, last flag set), the same as a one-segment stream's; what keeps records
//! and streams apart is the kind label in the derivation and the kind byte in the
//! header, which is associated data.
//!
//! The in-place functions let a caller that reads a request body into a buffer with
//! [`HEADER_LEN`] bytes of headroom seal it without a copy; the benchmark in
//! `benches/throughput.rs` uses them.

use crate::derive::{check_commitment, derive};
use crate::secret::SecretKey;
use crate::{CryptoError, Result};
use atrest_format::{Kind, MAX_RECORD_PLAINTEXT, RecordHeader, SALT_LEN, TAG_LEN, nonce};

/// Header length.
pub const HEADER_LEN: usize = RecordHeader::LEN;
/// Bytes a sealed record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Sealed length of a plaintext of `len` bytes.
#[must_use]
pub const fn sealed_len(len: usize) -> usize {
    len + OVERHEAD
}

/// Seals `plaintext` under a fresh working key derived from `data_key` and `context`.
///
/// # Errors
/// [`CryptoError::LimitExceeded`] above 1 GiB; RNG failure.
pub fn seal(data_key: &SecretKey, context: &[&[u8]], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; sealed_len(plaintext.len())];
    buf[HEADER_LEN..HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
    if let Err(e) = seal_in_place(data_key, context, &mut buf) {
        // The buffer still holds the plaintext copy: wipe it before it is freed.
        zeroize::Zeroize::zeroize(&mut buf);
        return Err(e);
    }
    Ok(buf)
}

/// Seals in place. `buf` is laid out as `[any; HEADER_LEN] ‖ plaintext ‖ [any; TAG_LEN]`
/// and becomes the complete record.
///
/// # Errors
/// [`CryptoError::InvalidInput`] if `buf` is shorter than [`OVERHEAD`];
/// [`CryptoError::LimitExceeded`] above 1 GiB; RNG failure.
pub fn seal_in_place(data_key: &SecretKey, context: &[&[u8]], buf: &mut [u8]) -> Result<()> {
    seal_in_place_with_salt(data_key, context, buf, crate::rand::bytes()?)
}

/// As [`seal_in_place`] with a chosen salt: only for the published test vectors.
pub(crate) fn seal_in_place_with_salt(
    data_key: &SecretKey,
    context: &[&[u8]],
    buf: &mut [u8],
    salt: [u8; SALT_LEN],
) -> Result<()> {
    if buf.len() < OVERHEAD {
        return Err(CryptoError::InvalidInput("record buffer lacks room for header and tag"));
    }
    if buf.len() - OVERHEAD > MAX_RECORD_PLAINTEXT {
        return Err(CryptoError::LimitExceeded("records hold at most 1 GiB; use the stream format"));
    }
    let keys = derive(data_key, &salt, Kind::Record, context)?;
    let header = RecordHeader { salt, commitment: keys.commitment }.encode();
    let (head, rest) = buf.split_at_mut(HEADER_LEN);
    head.copy_from_slice(&header);
    let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    tag.copy_from_slice(&keys.aead.seal_in_place(nonce(0, true), &header, body)?);
    Ok(())
}

/// Opens a record and returns the plaintext.
///
/// # Errors
/// [`CryptoError::Format`], [`CryptoError::CommitmentMismatch`] or [`CryptoError::Integrity`].
pub fn open(data_key: &SecretKey, context: &[&[u8]], record: &[u8]) -> Result<Vec<u8>> {
    let mut buf = record.to_vec();
    let len = open_in_place(data_key, context, &mut buf)?.len();
    buf.copy_within(HEADER_LEN..HEADER_LEN + len, 0);
    buf.truncate(len);
    Ok(buf)
}

/// Opens a record in place; returns the plaintext as a sub-slice of `record`.
/// On failure no plaintext is left in the buffer.
///
/// # Errors
/// [`CryptoError::Format`], [`CryptoError::CommitmentMismatch`] or [`CryptoError::Integrity`].
pub fn open_in_place<'a>(data_key: &SecretKey, context: &[&[u8]], record: &'a mut [u8]) -> Result<&'a mut [u8]> {
    let (header, _) = RecordHeader::parse(record)?;
    if record.len() < OVERHEAD {
        return Err(CryptoError::Format(atrest_format::FormatError::BadLength(record.len() as u64)));
    }
    let keys = derive(data_key, &header.salt, Kind::Record, context)?;
    check_commitment(&keys.commitment, &header.commitment)?;
    let (head, rest) = record.split_at_mut(HEADER_LEN);
    let n = keys.aead.open_combined(nonce(0, true), head, rest)?;
    Ok(&mut rest[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let k = SecretKey::generate().unwrap();
        let r = seal(&k, &[b"res", b"obj", b"1"], b"hello").unwrap();
        assert_eq!(r.len(), 5 + OVERHEAD);
        assert_eq!(&r[..4], &[b'R', 1, 1, 1]);
        assert_eq!(open(&k, &[b"res", b"obj", b"1"], &r).unwrap(), b"hello");
    }

    #[test]
    fn empty_record() {
        let k = SecretKey::generate().unwrap();
        let r = seal(&k, &[], b"").unwrap();
        assert_eq!(r.len(), OVERHEAD);
        assert!(open(&k, &[], &r).unwrap().is_empty());
        assert!(open(&k, &[], &r[..OVERHEAD - 1]).is_err());
    }

    #[test]
    fn wrong_context_is_a_commitment_mismatch() {
        let k = SecretKey::generate().unwrap();
        let r = seal(&k, &[b"a"], b"x").unwrap();
        assert!(matches!(open(&k, &[b"b"], &r), Err(CryptoError::CommitmentMismatch)));
    }

    #[test]
    fn tampered_body_is_an_integrity_error_and_leaves_no_plaintext() {
        let k = SecretKey::generate().unwrap();
        let mut r = seal(&k, &[], b"secret").unwrap();
        r[HEADER_LEN] ^= 1;
        let mut copy = r.clone();
        assert!(matches!(open_in_place(&k, &[], &mut copy), Err(CryptoError::Integrity)));
        assert!(!copy.windows(6).any(|w| w == b"secret"));
    }
}
