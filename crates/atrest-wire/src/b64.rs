//! base64url as the AKV API uses it: written without padding, read leniently (padding
//! and the standard alphabet accepted, as the SDKs and hand-made requests send both).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// base64url without padding.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url or standard base64, with or without padding; `None` otherwise.
#[must_use]
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let t: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_on_input_strict_on_output() {
        assert_eq!(decode("_-8"), Some(vec![0xff, 0xef]));
        assert_eq!(decode("/+8="), Some(vec![0xff, 0xef]));
        assert_eq!(encode(&[0xff, 0xef]), "_-8");
        assert_eq!(decode("a"), None);
        assert_eq!(decode("a b"), None);
    }

    proptest::proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }
    }
}
