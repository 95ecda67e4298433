//! AES key wrap: RFC 3394 (KW) and RFC 5649 (KWP), with 256-bit key-encryption keys.
//!
//! Used to keep data keys wrapped by resource keys and for `A256KW` in the vault.
//! Unwrap failures are uniform ([`CryptoError::Decrypt`]).

use crate::secret::{SecretBytes, SecretKey};
use crate::{CryptoError, Result};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap, KeyWrapPadded};

fn kek(key: &SecretKey) -> Result<AesKek> {
    AesKek::new(&AES_256, key.expose_secret())
        .map_err(|_| CryptoError::InvalidKey("AES-256 key-encryption key rejected"))
}

/// RFC 3394 wrap. `key` must be a multiple of 8 bytes, at least 16.
///
/// # Errors
/// [`CryptoError::InvalidInput`] for a length KW cannot wrap.
pub fn wrap_kw(kek_key: &SecretKey, key: &[u8]) -> Result<Vec<u8>> {
    if key.len() < 16 || !key.len().is_multiple_of(8) {
        return Err(CryptoError::InvalidInput("AES-KW wraps keys of 16 bytes or more in multiples of 8; use AES-KWP"));
    }
    let mut out = vec![0u8; key.len() + 8];
    let n = kek(kek_key)?.wrap(key, &mut out).map_err(|_| CryptoError::InvalidInput("AES-KW refused the input"))?.len();
    out.truncate(n);
    Ok(out)
}

/// RFC 3394 unwrap.
///
/// # Errors
/// [`CryptoError::Decrypt`] for any failure.
pub fn unwrap_kw(kek_key: &SecretKey, wrapped: &[u8]) -> Result<SecretBytes> {
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(CryptoError::Decrypt);
    }
    let mut out = SecretBytes::new(vec![0u8; wrapped.len()]);
    let n = kek(kek_key)?.unwrap(wrapped, out.as_mut_slice()).map_err(|_| CryptoError::Decrypt)?.len();
    Ok(out.truncated(n))
}

/// RFC 5649 wrap (any length from 1 byte).
///
/// # Errors
/// [`CryptoError::InvalidInput`] for empty input.
pub fn wrap_kwp(kek_key: &SecretKey, key: &[u8]) -> Result<Vec<u8>> {
    if key.is_empty() {
        return Err(CryptoError::InvalidInput("AES-KWP cannot wrap an empty key"));
    }
    let mut out = vec![0u8; key.len().div_ceil(8) * 8 + 8];
    let n = kek(kek_key)?
        .wrap_with_padding(key, &mut out)
        .map_err(|_| CryptoError::InvalidInput("AES-KWP refused the input"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// RFC 5649 unwrap.
///
/// # Errors
/// [`CryptoError::Decrypt`] for any failure.
pub fn unwrap_kwp(kek_key: &SecretKey, wrapped: &[u8]) -> Result<SecretBytes> {
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) {
        return Err(CryptoError::Decrypt);
    }
    let mut out = SecretBytes::new(vec![0u8; wrapped.len()]);
    let n = kek(kek_key)?.unwrap_with_padding(wrapped, out.as_mut_slice()).map_err(|_| CryptoError::Decrypt)?.len();
    Ok(out.truncated(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3394 §4.6: 256-bit KEK wrapping 256 bits of key data.
    #[test]
    fn rfc3394_4_6() {
        let kek = SecretKey::from_slice(
            &hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").unwrap(),
        )
        .unwrap();
        let key = hex::decode("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F").unwrap();
        let w = wrap_kw(&kek, &key).unwrap();
        assert_eq!(
            hex::encode_upper(&w),
            "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
        );
        assert_eq!(unwrap_kw(&kek, &w).unwrap().expose_secret(), &key[..]);
        let mut bad = w.clone();
        bad[5] ^= 1;
        assert!(matches!(unwrap_kw(&kek, &bad), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn kwp_round_trip_odd_lengths() {
        let kek = SecretKey::generate().unwrap();
        for len in [1usize, 7, 20, 32, 33, 100] {
            let key = vec![0xA5; len];
            let w = wrap_kwp(&kek, &key).unwrap();
            assert_eq!(w.len(), len.div_ceil(8) * 8 + 8);
            assert_eq!(unwrap_kwp(&kek, &w).unwrap().expose_secret(), &key[..]);
        }
        assert!(wrap_kw(&kek, &[0; 20]).is_err());
    }
}
