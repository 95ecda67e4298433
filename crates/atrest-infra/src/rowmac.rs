//! MACs over security-relevant rows (vault settings, keys, key versions; later
//! principals, tokens, policies), so that a row edited in the database outside atrest
//! is refused on its next read instead of being trusted.
//!
//! `mac = 0x01 ‖ HMAC-SHA256(K_row, table ‖ field_1 ‖ … ‖ field_n)`, each field framed as
//! a type byte and a u32 big-endian length, and `K_row` = HKDF-SHA256(root key,
//! salt "atrest/v1/root", info "row-mac"). The identifying columns (vault, name,
//! version) are fields too, so a row copied onto another row's identity fails.

use crate::error::{InfraError, Result};
use atrest_crypto::SecretKey;
use atrest_crypto::kdf::{MacKey, hkdf_sha256};

const VERSION: u8 = 1;

/// A column value as the MAC sees it.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    /// Text.
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// An optional integer.
    OptInt(Option<i64>),
    /// Bytes.
    Bytes(&'a [u8]),
}

/// The row-MAC key.
pub struct RowMac(MacKey);

impl RowMac {
    /// Derives the row-MAC key from the root key.
    ///
    /// # Errors
    /// Never in practice (HKDF of 32 bytes).
    pub fn new(root: &SecretKey) -> Result<Self> {
        Self::derive(root, b"atrest/v1/root", b"row-mac")
    }

    /// A row-MAC key derived from another root (the data service derives its own from
    /// the infrastructure root), domain-separated by `salt` and `label`.
    ///
    /// # Errors
    /// Never in practice (HKDF of 32 bytes).
    pub fn derive(root: &SecretKey, salt: &[u8], label: &[u8]) -> Result<Self> {
        let mut k = [0u8; 32];
        hkdf_sha256(root.expose_secret(), salt, &[label], &mut k)?;
        let key = SecretKey::from_slice(&k)?;
        k.fill(0);
        Ok(Self(MacKey::new(&key)))
    }

    /// The framed encoding the MAC covers.
    #[must_use]
    pub fn encode(table: &str, fields: &[Field<'_>]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        let mut put = |ty: u8, bytes: &[u8]| {
            buf.push(ty);
            buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            buf.extend_from_slice(bytes);
        };
        put(b'T', table.as_bytes());
        for f in fields {
            match f {
                Field::Text(s) => put(b's', s.as_bytes()),
                Field::Int(i) => put(b'i', &i.to_be_bytes()),
                Field::OptInt(None) => put(b'n', &[]),
                Field::OptInt(Some(i)) => put(b'i', &i.to_be_bytes()),
                Field::Bytes(b) => put(b'b', b),
            }
        }
        buf
    }

    /// The MAC column value for a row.
    #[must_use]
    pub fn tag(&self, table: &str, fields: &[Field<'_>]) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.0.sign(&[&Self::encode(table, fields)]));
        out
    }

    /// Verifies a row; `what` names it in the error (identifiers only, never secrets).
    pub fn check(&self, table: &str, fields: &[Field<'_>], mac: &[u8], what: impl FnOnce() -> String) -> Result<()> {
        let ok = mac.first() == Some(&VERSION) && self.0.verify(&[&Self::encode(table, fields)], &mac[1..]).is_ok();
        if ok { Ok(()) } else { Err(InfraError::Integrity { what: what() }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_fails_and_framing_is_unambiguous() {
        let m = RowMac::new(&SecretKey::from_slice(&[3; 32]).unwrap()).unwrap();
        let t = m.tag("keys", &[Field::Text("ab"), Field::Text("c"), Field::OptInt(None)]);
        m.check("keys", &[Field::Text("ab"), Field::Text("c"), Field::OptInt(None)], &t, String::new).unwrap();
        assert!(m.check("keys", &[Field::Text("a"), Field::Text("bc"), Field::OptInt(None)], &t, String::new).is_err());
        assert!(
            m.check("keys", &[Field::Text("ab"), Field::Text("c"), Field::OptInt(Some(0))], &t, String::new).is_err()
        );
        assert!(
            m.check("vaults", &[Field::Text("ab"), Field::Text("c"), Field::OptInt(None)], &t, String::new).is_err()
        );
        let mut bad = t.clone();
        bad[0] = 2;
        assert!(
            m.check("keys", &[Field::Text("ab"), Field::Text("c"), Field::OptInt(None)], &bad, || "x".into()).is_err()
        );
    }
}
