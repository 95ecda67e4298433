//! The CSPRNG (AWS-LC's DRBG, seeded by the OS).

use crate::{CryptoError, Result};

/// Fills `dest` with random bytes.
///
/// # Errors
/// [`CryptoError::Internal`] if the RNG fails; callers must not continue with the buffer.
pub fn fill(dest: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(dest).map_err(|_| CryptoError::Internal("random number generator failed"))
}

/// `N` random bytes.
///
/// # Errors
/// As [`fill`].
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    fill(&mut b)?;
    Ok(b)
}
