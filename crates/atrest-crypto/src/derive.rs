//! Per-object key derivation and key commitment, shared by both formats.
//!
//! ```text
//! okm        = HKDF-SHA256(ikm = data_key, salt = salt,
//!                          info = "atrest/v1/" ‖ kind ‖ "/key+commit" ‖ 0x00 ‖ ctx, L = 64)
//! working    = okm[0..32]    (AES-256-GCM key for this object only)
//! commitment = okm[32..64]   (stored in the header)
//! ctx        = for each context part: u32_be(len) ‖ part
//! ```
//! The salt is 32 fresh random bytes per sealing, so even a data key reused by mistake
//! yields a fresh working key; the commitment binds (data key, salt, context) and is
//! checked in constant time before any decryption.

use crate::aead::{AeadKey, Provider};
use crate::kdf::hkdf_sha256;
use crate::secret::{SecretKey, constant_time_eq};
use crate::{CryptoError, Result};
use atrest_format::{COMMITMENT_LEN, Kind, SALT_LEN};
use zeroize::Zeroizing;

/// Largest encoded context accepted (bounded so a caller bug cannot make HKDF hash megabytes).
pub const MAX_CONTEXT_LEN: usize = 4096;

/// Keys for one object.
pub(crate) struct ObjectKeys {
    pub aead: AeadKey,
    pub commitment: [u8; COMMITMENT_LEN],
}

fn encode_context(context: &[&[u8]]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for part in context {
        // Checked before copying, so an oversized context is refused without work.
        if out.len() + 4 + part.len() > MAX_CONTEXT_LEN {
            return Err(CryptoError::InvalidInput("context longer than 4096 bytes"));
        }
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

fn label(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Record => b"atrest/v1/record",
        Kind::Stream => b"atrest/v1/stream",
    }
}

pub(crate) fn derive(data_key: &SecretKey, salt: &[u8; SALT_LEN], kind: Kind, context: &[&[u8]]) -> Result<ObjectKeys> {
    let ctx = encode_context(context)?;
    let mut okm = Zeroizing::new([0u8; 64]);
    // One HKDF call yields both outputs (first 32 bytes: working key; next 32: commitment)
    // under a single label; that halves the HMAC work on small records.
    hkdf_sha256(data_key.expose_secret(), salt, &[label(kind), b"/key+commit", &[0], &ctx], &mut okm[..])?;
    let aead = AeadKey::from_bytes(Provider::fastest(), &okm[..32])?;
    let mut commitment = [0u8; COMMITMENT_LEN];
    commitment.copy_from_slice(&okm[32..]);
    Ok(ObjectKeys { aead, commitment })
}

pub(crate) fn check_commitment(expected: &[u8; COMMITMENT_LEN], found: &[u8; COMMITMENT_LEN]) -> Result<()> {
    if constant_time_eq(expected, found) { Ok(()) } else { Err(CryptoError::CommitmentMismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_encoding_is_unambiguous() {
        let a = encode_context(&[b"ab", b"c"]).unwrap();
        let b = encode_context(&[b"a", b"bc"]).unwrap();
        assert_ne!(a, b);
        assert!(encode_context(&[&[0u8; 5000][..]]).is_err());
    }

    #[test]
    fn kind_and_context_change_commitment() {
        let k = SecretKey::from_slice(&[1; 32]).unwrap();
        let salt = [2; 32];
        let r = derive(&k, &salt, Kind::Record, &[b"x"]).unwrap().commitment;
        let s = derive(&k, &salt, Kind::Stream, &[b"x"]).unwrap().commitment;
        let r2 = derive(&k, &salt, Kind::Record, &[b"y"]).unwrap().commitment;
        assert_ne!(r, s);
        assert_ne!(r, r2);
        assert_eq!(r, derive(&k, &salt, Kind::Record, &[b"x"]).unwrap().commitment);
    }
}
