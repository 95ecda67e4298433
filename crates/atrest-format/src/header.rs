//! Record and stream headers: encode, parse, validate.

use crate::stream_layout::{MAX_SEGMENT_SIZE_LOG2, MIN_SEGMENT_SIZE_LOG2};

/// The only version defined so far.
pub const VERSION_1: u8 = 1;
/// Length of the random HKDF salt stored in every header.
pub const SALT_LEN: usize = 32;
/// Length of the key commitment stored in every header.
pub const COMMITMENT_LEN: usize = 32;

/// What a header introduces: byte 0 of every header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A record: one object sealed in one buffer.
    Record,
    /// A stream: an object sealed in fixed-size segments.
    Stream,
}

impl Kind {
    /// The byte that identifies this kind (`'R'` or `'S'`).
    #[must_use]
    pub const fn byte(self) -> u8 {
        match self {
            Kind::Record => b'R',
            Kind::Stream => b'S',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'R' => Some(Kind::Record),
            b'S' => Some(Kind::Stream),
            _ => None,
        }
    }
}

/// AEAD algorithm ids allow-listed in version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadId {
    /// AES-256-GCM, 96-bit nonce, 128-bit tag.
    Aes256Gcm,
}

impl AeadId {
    /// Wire value.
    #[must_use]
    pub const fn byte(self) -> u8 {
        match self {
            AeadId::Aes256Gcm => 1,
        }
    }
}

/// Key-derivation ids allow-listed in version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdfId {
    /// HKDF-SHA256 (RFC 5869).
    HkdfSha256,
}

impl KdfId {
    /// Wire value.
    #[must_use]
    pub const fn byte(self) -> u8 {
        match self {
            KdfId::HkdfSha256 => 1,
        }
    }
}

/// Why a header or a ciphertext length was refused. Parsing never looks at keys,
/// so these errors say nothing about key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the header needs.
    #[error("truncated header: need {need} bytes, got {got}")]
    TruncatedHeader {
        /// Bytes the header needs.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// Byte 0 is not the expected kind.
    #[error("not an atrest {expected:?}: kind byte {found:#04x}")]
    WrongKind {
        /// Kind the caller asked for.
        expected: Kind,
        /// Byte found.
        found: u8,
    },
    /// A version this build does not know.
    #[error("unsupported format version {0}; this build reads version 1")]
    UnsupportedVersion(u8),
    /// An algorithm id that is not allow-listed for the version.
    #[error("algorithm id {id:#04x} is not allowed for {what} in format version 1")]
    UnsupportedAlgorithm {
        /// Which field.
        what: &'static str,
        /// Value found.
        id: u8,
    },
    /// Segment size outside the allowed range.
    #[error("segment size 2^{0} outside the allowed range 2^12..=2^24")]
    BadSegmentSize(u8),
    /// The body length cannot be a valid sealing (torn or truncated data).
    #[error("ciphertext length {0} is not a valid length for this format: the data is truncated or extended")]
    BadLength(u64),
    /// More segments than the format allows.
    #[error("object too large for the stream format")]
    TooLarge,
}

fn check_common(bytes: &[u8], kind: Kind, need: usize) -> Result<(), FormatError> {
    if bytes.len() < need {
        // Report the kind error first when the first byte is already wrong: it is the
        // more useful message for a file that is not ours at all.
        if let Some(&b) = bytes.first()
            && Kind::from_byte(b) != Some(kind)
        {
            return Err(FormatError::WrongKind { expected: kind, found: b });
        }
        return Err(FormatError::TruncatedHeader { need, got: bytes.len() });
    }
    if Kind::from_byte(bytes[0]) != Some(kind) {
        return Err(FormatError::WrongKind { expected: kind, found: bytes[0] });
    }
    if bytes[1] != VERSION_1 {
        return Err(FormatError::UnsupportedVersion(bytes[1]));
    }
    if bytes[2] != AeadId::Aes256Gcm.byte() {
        return Err(FormatError::UnsupportedAlgorithm { what: "aead", id: bytes[2] });
    }
    if bytes[3] != KdfId::HkdfSha256.byte() {
        return Err(FormatError::UnsupportedAlgorithm { what: "kdf", id: bytes[3] });
    }
    Ok(())
}

fn prefix(kind: Kind) -> [u8; 4] {
    [kind.byte(), VERSION_1, AeadId::Aes256Gcm.byte(), KdfId::HkdfSha256.byte()]
}

/// Header of a version-1 record: `kind ‖ version ‖ aead ‖ kdf ‖ salt[32] ‖ commitment[32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Random HKDF salt, fresh for every sealing.
    pub salt: [u8; SALT_LEN],
    /// Key commitment derived next to the working key.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl RecordHeader {
    /// Encoded length.
    pub const LEN: usize = 4 + SALT_LEN + COMMITMENT_LEN;

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&prefix(Kind::Record));
        out[4..4 + SALT_LEN].copy_from_slice(&self.salt);
        out[4 + SALT_LEN..].copy_from_slice(&self.commitment);
        out
    }

    /// Parses the header at the start of `bytes`; returns it and the body after it.
    ///
    /// # Errors
    /// Any [`FormatError`] describing why the bytes are not a v1 record header.
    pub fn parse(bytes: &[u8]) -> Result<(Self, &[u8]), FormatError> {
        check_common(bytes, Kind::Record, Self::LEN)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[4..4 + SALT_LEN]);
        let mut commitment = [0u8; COMMITMENT_LEN];
        commitment.copy_from_slice(&bytes[4 + SALT_LEN..Self::LEN]);
        Ok((Self { salt, commitment }, &bytes[Self::LEN..]))
    }
}

/// Header of a version-1 stream:
/// `kind ‖ version ‖ aead ‖ kdf ‖ segment_size_log2 ‖ salt[32] ‖ commitment[32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// log2 of the plaintext bytes per segment (12..=24).
    pub segment_size_log2: u8,
    /// Random HKDF salt, fresh for every sealing.
    pub salt: [u8; SALT_LEN],
    /// Key commitment derived next to the working key.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl StreamHeader {
    /// Encoded length.
    pub const LEN: usize = 5 + SALT_LEN + COMMITMENT_LEN;

    /// Encodes the header.
    #[must_use]
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&prefix(Kind::Stream));
        out[4] = self.segment_size_log2;
        out[5..5 + SALT_LEN].copy_from_slice(&self.salt);
        out[5 + SALT_LEN..].copy_from_slice(&self.commitment);
        out
    }

    /// Parses the header at the start of `bytes`; returns it and the bytes after it.
    ///
    /// # Errors
    /// Any [`FormatError`] describing why the bytes are not a v1 stream header.
    pub fn parse(bytes: &[u8]) -> Result<(Self, &[u8]), FormatError> {
        check_common(bytes, Kind::Stream, Self::LEN)?;
        let log2 = bytes[4];
        if !(MIN_SEGMENT_SIZE_LOG2..=MAX_SEGMENT_SIZE_LOG2).contains(&log2) {
            return Err(FormatError::BadSegmentSize(log2));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[5..5 + SALT_LEN]);
        let mut commitment = [0u8; COMMITMENT_LEN];
        commitment.copy_from_slice(&bytes[5 + SALT_LEN..Self::LEN]);
        Ok((Self { segment_size_log2: log2, salt, commitment }, &bytes[Self::LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_record() -> RecordHeader {
        RecordHeader { salt: [7; 32], commitment: [9; 32] }
    }

    #[test]
    fn record_round_trip_and_layout() {
        let h = sample_record();
        let enc = h.encode();
        assert_eq!(&enc[..4], &[b'R', 1, 1, 1]);
        let (p, rest) = RecordHeader::parse(&enc).unwrap();
        assert_eq!(p, h);
        assert!(rest.is_empty());
    }

    #[test]
    fn record_rejects_each_bad_prefix_byte() {
        let enc = sample_record().encode();
        let mut b = enc;
        b[0] = b'S';
        assert!(matches!(RecordHeader::parse(&b), Err(FormatError::WrongKind { .. })));
        let mut b = enc;
        b[1] = 2;
        assert_eq!(RecordHeader::parse(&b), Err(FormatError::UnsupportedVersion(2)));
        let mut b = enc;
        b[2] = 0;
        assert!(matches!(RecordHeader::parse(&b), Err(FormatError::UnsupportedAlgorithm { what: "aead", .. })));
        let mut b = enc;
        b[3] = 9;
        assert!(matches!(RecordHeader::parse(&b), Err(FormatError::UnsupportedAlgorithm { what: "kdf", .. })));
        assert!(matches!(RecordHeader::parse(&enc[..10]), Err(FormatError::TruncatedHeader { need: 68, got: 10 })));
    }

    #[test]
    fn stream_segment_size_bounds() {
        let mut h = StreamHeader { segment_size_log2: 16, salt: [1; 32], commitment: [2; 32] };
        assert_eq!(StreamHeader::parse(&h.encode()).unwrap().0, h);
        for bad in [0u8, 11, 25, 255] {
            h.segment_size_log2 = bad;
            assert_eq!(StreamHeader::parse(&h.encode()), Err(FormatError::BadSegmentSize(bad)));
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RecordHeader::parse(&bytes);
            let _ = StreamHeader::parse(&bytes);
        }

        #[test]
        fn stream_round_trip(log2 in 12u8..=24, salt in any::<[u8; 32]>(), commitment in any::<[u8; 32]>(),
                             tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            let h = StreamHeader { segment_size_log2: log2, salt, commitment };
            let mut bytes = h.encode().to_vec();
            bytes.extend_from_slice(&tail);
            let (p, rest) = StreamHeader::parse(&bytes).unwrap();
            prop_assert_eq!(p, h);
            prop_assert_eq!(rest, &tail[..]);
        }
    }
}
