//! API bearer tokens: `atr1.<id>.<secret>`, the id 16 hex digits, the secret base64url.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// The version prefix of every token.
pub const PREFIX: &str = "atr1";

/// A token taken apart: its id (looked up) and secret (verified against a keyed hash).
pub struct Bearer<'a> {
    /// 16 hex digits.
    pub id: &'a str,
    /// The secret's bytes; zeroized on drop.
    pub secret: Zeroizing<Vec<u8>>,
}

/// Splits a bearer token; `None` when it is not one.
#[must_use]
pub fn parse(bearer: &str) -> Option<Bearer<'_>> {
    let mut parts = bearer.split('.');
    let (Some(PREFIX), Some(id), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Bearer { id, secret: Zeroizing::new(URL_SAFE_NO_PAD.decode(secret).ok()?) })
}

/// The token for `id` and `secret` (what [`parse`] takes apart), zeroized on drop.
#[must_use]
pub fn format(id: &str, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret));
    let mut token = Zeroizing::new(Vec::with_capacity(PREFIX.len() + id.len() + encoded.len() + 2));
    token.extend_from_slice(PREFIX.as_bytes());
    token.push(b'.');
    token.extend_from_slice(id.as_bytes());
    token.push(b'.');
    token.extend_from_slice(encoded.as_bytes());
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = format("0123456789abcdef", b"secret bytes");
        let s = std::str::from_utf8(&t).unwrap();
        let b = parse(s).unwrap();
        assert_eq!((b.id, &b.secret[..]), ("0123456789abcdef", &b"secret bytes"[..]));
        for bad in [
            "",
            "atr1",
            "atr2.0123456789abcdef.AAAA",
            "atr1.0123.AAAA",
            "atr1.0123456789abcdeg.AAAA",
            "atr1.0123456789abcdef.A",
            "atr1.0123456789abcdef.AAAA.x",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
