//! Length arithmetic of the stream format: where segment `i` lives, and which
//! ciphertext lengths are valid.
//!
//! A stream of `L` plaintext bytes with segment size `S` has `n = max(1, ceil(L / S))`
//! segments. Every segment but the last holds exactly `S` plaintext bytes; the last holds
//! `1..=S` bytes, or 0 bytes only when it is the only segment (an empty stream). Each
//! segment is followed by its 16-byte tag.

use crate::{FormatError, StreamHeader, TAG_LEN};

/// Smallest allowed segment size, as log2 (4 KiB).
pub const MIN_SEGMENT_SIZE_LOG2: u8 = 12;
/// Largest allowed segment size, as log2 (16 MiB).
pub const MAX_SEGMENT_SIZE_LOG2: u8 = 24;
/// Default segment size, as log2 (64 KiB).
pub const DEFAULT_SEGMENT_SIZE_LOG2: u8 = 16;
/// Most segments one stream may have (2^32): 256 TiB at the default segment size.
pub const MAX_SEGMENTS: u64 = 1 << 32;

/// Segment geometry of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLayout {
    segment_size: u64,
}

impl StreamLayout {
    /// Layout for segments of `2^log2` plaintext bytes.
    ///
    /// # Errors
    /// [`FormatError::BadSegmentSize`] outside `12..=24`.
    pub fn new(log2: u8) -> Result<Self, FormatError> {
        if !(MIN_SEGMENT_SIZE_LOG2..=MAX_SEGMENT_SIZE_LOG2).contains(&log2) {
            return Err(FormatError::BadSegmentSize(log2));
        }
        Ok(Self { segment_size: 1 << log2 })
    }

    /// Plaintext bytes in a full segment.
    #[must_use]
    pub fn segment_size(&self) -> usize {
        self.segment_size as usize
    }

    /// Ciphertext bytes of a full segment (plaintext plus tag).
    #[must_use]
    pub fn sealed_segment_size(&self) -> usize {
        self.segment_size as usize + TAG_LEN
    }

    /// Number of segments for `plaintext_len` bytes.
    #[must_use]
    pub fn segment_count(&self, plaintext_len: u64) -> u64 {
        plaintext_len.div_ceil(self.segment_size).max(1)
    }

    /// Total stream length (header included) for `plaintext_len` bytes.
    ///
    /// # Errors
    /// [`FormatError::TooLarge`] past [`MAX_SEGMENTS`].
    pub fn ciphertext_len(&self, plaintext_len: u64) -> Result<u64, FormatError> {
        let n = self.segment_count(plaintext_len);
        if n > MAX_SEGMENTS {
            return Err(FormatError::TooLarge);
        }
        Ok(StreamHeader::LEN as u64 + plaintext_len + n * TAG_LEN as u64)
    }

    /// Plaintext length of a stream whose total length (header included) is
    /// `ciphertext_len`, or an error when no valid stream has that length.
    ///
    /// # Errors
    /// [`FormatError::BadLength`] or [`FormatError::TooLarge`].
    pub fn plaintext_len(&self, ciphertext_len: u64) -> Result<u64, FormatError> {
        let bad = FormatError::BadLength(ciphertext_len);
        let body = ciphertext_len.checked_sub(StreamHeader::LEN as u64).ok_or(bad.clone())?;
        if body < TAG_LEN as u64 {
            return Err(bad);
        }
        let sealed = self.sealed_segment_size() as u64;
        let n = body.div_ceil(sealed);
        if n > MAX_SEGMENTS {
            return Err(FormatError::TooLarge);
        }
        let last = body - (n - 1) * sealed;
        // A last segment shorter than a tag, or an empty last segment after others, is
        // never produced by a writer: the stream was cut.
        if last < TAG_LEN as u64 || (n > 1 && last == TAG_LEN as u64) {
            return Err(bad);
        }
        Ok(body - n * TAG_LEN as u64)
    }

    /// Byte offset (from the start of the stream) of segment `index`.
    #[must_use]
    pub fn segment_offset(&self, index: u64) -> u64 {
        StreamHeader::LEN as u64 + index * self.sealed_segment_size() as u64
    }

    /// Segment that holds plaintext byte `offset`.
    #[must_use]
    pub fn segment_of(&self, offset: u64) -> u64 {
        offset / self.segment_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_cases() {
        let l = StreamLayout::new(12).unwrap();
        let h = StreamHeader::LEN as u64;
        assert_eq!(l.ciphertext_len(0).unwrap(), h + 16);
        assert_eq!(l.ciphertext_len(4096).unwrap(), h + 4096 + 16);
        assert_eq!(l.ciphertext_len(4097).unwrap(), h + 4097 + 32);
        assert_eq!(l.plaintext_len(h + 16).unwrap(), 0);
        // A full segment followed by an empty one is not canonical.
        assert!(l.plaintext_len(h + 4096 + 16 + 16).is_err());
        // Less than a tag after the header.
        assert!(l.plaintext_len(h + 15).is_err());
        assert!(l.plaintext_len(3).is_err());
    }

    #[test]
    fn max_segments_is_enforced() {
        let l = StreamLayout::new(12).unwrap();
        assert!(l.ciphertext_len(MAX_SEGMENTS * 4096).is_ok());
        assert_eq!(l.ciphertext_len(MAX_SEGMENTS * 4096 + 1), Err(FormatError::TooLarge));
    }

    proptest! {
        #[test]
        fn lengths_invert(log2 in 12u8..=16, pt in 0u64..10_000_000) {
            let l = StreamLayout::new(log2).unwrap();
            let ct = l.ciphertext_len(pt).unwrap();
            prop_assert_eq!(l.plaintext_len(ct).unwrap(), pt);
        }

        #[test]
        fn every_length_maps_to_at_most_one_plaintext(log2 in 12u8..=13, ct in 0u64..100_000) {
            let l = StreamLayout::new(log2).unwrap();
            if let Ok(pt) = l.plaintext_len(ct) {
                prop_assert_eq!(l.ciphertext_len(pt).unwrap(), ct);
            }
        }
    }
}
