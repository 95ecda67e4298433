//! Row shapes shared by the code that reads objects (`objects.rs`, `blobs.rs`, `jobs.rs`)
//! and the group commit that writes them (`commit.rs`), so neither depends on the other;
//! and the framing of wrapped keys in resource rows.

use crate::keyvault::WrappedKey;

/// The epochs of a row whose data key no resource key wraps (an S3 object or upload
/// under a customer-provided key, SSE-C): re-key and re-encrypt jobs never select it, and
/// writes do not depend on the resource key.
pub(crate) const NO_RESOURCE_KEY: i64 = i64::MAX;

/// One object row, as written.
#[derive(Debug, Clone)]
pub(crate) struct ObjectRow {
    pub resource_id: String,
    pub kind: &'static str,
    pub name_hash: Vec<u8>,
    pub id: String,
    pub generation: i64,
    pub size: i64,
    pub rk_epoch: i64,
    pub enc_epoch: i64,
    pub name_sealed: Vec<u8>,
    pub wrapped_dek: Vec<u8>,
    pub body: Option<Vec<u8>>,
    pub created: i64,
    pub updated: i64,
    pub mac: Vec<u8>,
    /// S3 objects only: the object key, readable (listed in byte order), and the S3
    /// metadata sealed under the infrastructure layer (see the S3 module).
    pub skey: Option<Vec<u8>>,
    pub meta: Option<Vec<u8>>,
}

/// Frames a wrapped key as `0x01 ‖ u8 len ‖ version ‖ u8 len ‖ alg ‖ bytes`.
pub(crate) fn encode_wrapped(w: &WrappedKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(w.bytes.len() + 64);
    out.push(WRAPPED_FORMAT);
    for s in [&w.version, &w.alg] {
        out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&w.bytes);
    out
}

/// Version byte of the wrapped-key framing.
const WRAPPED_FORMAT: u8 = 1;

pub(crate) fn decode_wrapped(b: &[u8]) -> Option<WrappedKey> {
    let (&WRAPPED_FORMAT, mut rest) = b.split_first()? else { return None };
    let mut take = || -> Option<String> {
        let (&n, tail) = rest.split_first()?;
        let n = usize::from(n);
        if tail.len() < n {
            return None;
        }
        let s = String::from_utf8(tail[..n].to_vec()).ok()?;
        rest = &tail[n..];
        Some(s)
    };
    let version = take()?;
    let alg = take()?;
    Some(WrappedKey { version, alg, bytes: rest.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_framing_round_trips_and_refuses_garbage() {
        let w = WrappedKey { version: "0123abcd".into(), alg: "RSA-OAEP-256".into(), bytes: vec![9; 256] };
        let enc = encode_wrapped(&w);
        assert_eq!(enc[0], WRAPPED_FORMAT);
        assert_eq!(decode_wrapped(&enc), Some(w.clone()));
        let mut other_version = enc.clone();
        other_version[0] = 2;
        assert_eq!(decode_wrapped(&other_version), None);
        assert_eq!(decode_wrapped(&enc[..5]), None, "cut inside the version");
        assert_eq!(decode_wrapped(&[]), None);
        let empty = WrappedKey { version: String::new(), alg: String::new(), bytes: Vec::new() };
        assert_eq!(decode_wrapped(&encode_wrapped(&empty)), Some(empty));
    }
}
