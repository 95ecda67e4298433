//! AES-256-GCM on *ring* (never compiled into `fips` builds).

use crate::{CryptoError, Result};
use atrest_format::{NONCE_LEN, TAG_LEN};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

pub(super) struct Key(LessSafeKey);

impl Key {
    pub(super) fn new(key: &[u8]) -> Result<Self> {
        let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::InvalidKey("AES-256-GCM key rejected"))?;
        Ok(Self(LessSafeKey::new(k)))
    }

    pub(super) fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| CryptoError::LimitExceeded("AES-GCM message too long"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    pub(super) fn open_combined(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> bool {
        self.0.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf).is_ok()
    }

    pub(super) fn open(&self, nonce: [u8; NONCE_LEN], aad: &[u8], in_out: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = Tag::try_from(tag) else {
            return false;
        };
        self.0.open_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), tag, in_out, 0..).is_ok()
    }
}
