//! The sans-I/O core: seal and open individual segments in caller-owned buffers.

use crate::aead::AeadKey;
use crate::derive::{check_commitment, derive};
use crate::secret::SecretKey;
use crate::{CryptoError, Result};
use atrest_format::{Kind, MAX_SEGMENTS, SALT_LEN, StreamHeader, StreamLayout, TAG_LEN, nonce};

/// Seals the segments of one stream, in order. Owns the segment counter, so a nonce
/// cannot be reused through this type.
pub struct SegmentSealer {
    aead: AeadKey,
    header: [u8; StreamHeader::LEN],
    layout: StreamLayout,
    next: u64,
    finished: bool,
}

impl SegmentSealer {
    /// Starts a stream: fresh salt, derived working key, encoded header.
    ///
    /// # Errors
    /// Bad segment size, oversized context, RNG failure.
    pub fn new(data_key: &SecretKey, context: &[&[u8]], segment_size_log2: u8) -> Result<Self> {
        Self::with_salt(data_key, context, segment_size_log2, crate::rand::bytes()?)
    }

    /// As [`Self::new`] with a chosen salt: only for the published test vectors.
    pub(crate) fn with_salt(
        data_key: &SecretKey,
        context: &[&[u8]],
        segment_size_log2: u8,
        salt: [u8; SALT_LEN],
    ) -> Result<Self> {
        let layout = StreamLayout::new(segment_size_log2)?;
        let keys = derive(data_key, &salt, Kind::Stream, context)?;
        let header = StreamHeader { segment_size_log2, salt, commitment: keys.commitment }.encode();
        Ok(Self { aead: keys.aead, header, layout, next: 0, finished: false })
    }

    /// The header to write before the first segment.
    #[must_use]
    pub fn header(&self) -> &[u8; StreamHeader::LEN] {
        &self.header
    }

    /// Segment geometry.
    #[must_use]
    pub fn layout(&self) -> StreamLayout {
        self.layout
    }

    /// Seals the next segment in place. `buf` is `plaintext ‖ [any; 16]`; a non-final
    /// segment holds exactly the segment size, the final one `1..=size` bytes (0 only
    /// when it is the only segment).
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] for a wrong segment length or a segment after the
    /// final one; [`CryptoError::LimitExceeded`] past 2^32 segments.
    pub fn seal_segment(&mut self, buf: &mut [u8], last: bool) -> Result<()> {
        let pt_len =
            buf.len().checked_sub(TAG_LEN).ok_or(CryptoError::InvalidInput("segment buffer lacks room for the tag"))?;
        self.check_next(pt_len, last)?;
        let (body, tag) = buf.split_at_mut(pt_len);
        tag.copy_from_slice(&self.aead.seal_in_place(nonce(self.next, last), &self.header, body)?);
        self.next += 1;
        self.finished = last;
        Ok(())
    }

    /// Seals the next segment from `input` into `out` (`input.len() + 16` bytes), without
    /// copying `input` first where the AEAD provider allows. Same rules as
    /// [`Self::seal_segment`].
    ///
    /// # Errors
    /// As [`Self::seal_segment`].
    pub fn seal_segment_from(&mut self, input: &[u8], out: &mut [u8], last: bool) -> Result<()> {
        self.check_next(input.len(), last)?;
        self.aead.seal_to(nonce(self.next, last), &self.header, input, out)?;
        self.next += 1;
        self.finished = last;
        Ok(())
    }

    fn check_next(&self, pt_len: usize, last: bool) -> Result<()> {
        if self.finished {
            return Err(CryptoError::InvalidInput("the stream is already finished"));
        }
        if self.next >= MAX_SEGMENTS {
            return Err(CryptoError::LimitExceeded("a stream holds at most 2^32 segments"));
        }
        let size = self.layout.segment_size();
        let ok = if last { pt_len <= size && (pt_len > 0 || self.next == 0) } else { pt_len == size };
        if ok { Ok(()) } else { Err(CryptoError::InvalidInput("segment length does not match the stream layout")) }
    }

    /// Segments sealed so far.
    #[must_use]
    pub fn segments_sealed(&self) -> u64 {
        self.next
    }
}

/// Opens segments of one stream, in any order (random access).
pub struct SegmentOpener {
    aead: AeadKey,
    header: [u8; StreamHeader::LEN],
    layout: StreamLayout,
}

impl SegmentOpener {
    /// Parses `header`, derives the working key and checks the key commitment.
    ///
    /// # Errors
    /// [`CryptoError::Format`] for a bad header, [`CryptoError::CommitmentMismatch`] for
    /// the wrong data key or context.
    pub fn new(data_key: &SecretKey, context: &[&[u8]], header: &[u8]) -> Result<Self> {
        let (h, _) = StreamHeader::parse(header)?;
        let layout = StreamLayout::new(h.segment_size_log2)?;
        let keys = derive(data_key, &h.salt, Kind::Stream, context)?;
        check_commitment(&keys.commitment, &h.commitment)?;
        Ok(Self { aead: keys.aead, header: h.encode(), layout })
    }

    /// Segment geometry.
    #[must_use]
    pub fn layout(&self) -> StreamLayout {
        self.layout
    }

    /// Opens segment `index` in place; `buf` is `ciphertext ‖ tag`. `last` says whether
    /// the caller believes this is the final segment; a wrong belief fails.
    ///
    /// # Errors
    /// [`CryptoError::Integrity`] for a wrong length, position, flag, key or any edit.
    pub fn open_segment<'a>(&self, index: u64, last: bool, buf: &'a mut [u8]) -> Result<&'a mut [u8]> {
        let pt_len = self.check(index, last, buf.len())?;
        self.aead.open_combined(nonce(index, last), &self.header, buf)?;
        Ok(&mut buf[..pt_len])
    }

    /// Opens segment `index` from `input` (`ciphertext ‖ tag`) into `out`, which must be
    /// exactly as long as the plaintext; avoids a copy where the provider allows.
    ///
    /// # Errors
    /// As [`Self::open_segment`].
    pub fn open_segment_to(&self, index: u64, last: bool, input: &[u8], out: &mut [u8]) -> Result<()> {
        let pt_len = self.check(index, last, input.len())?;
        if out.len() != pt_len {
            return Err(CryptoError::InvalidInput("output must be as long as the segment plaintext"));
        }
        let (body, tag) = input.split_at(pt_len);
        self.aead.open_to(nonce(index, last), &self.header, body, tag, out)
    }

    /// Plaintext length of a sealed segment of `sealed_len` bytes at `index`, if its
    /// length is possible there.
    fn check(&self, index: u64, last: bool, sealed_len: usize) -> Result<usize> {
        let size = self.layout.segment_size();
        let pt_len = sealed_len.checked_sub(TAG_LEN).ok_or(CryptoError::Integrity)?;
        let ok =
            index < MAX_SEGMENTS && if last { pt_len <= size && (pt_len > 0 || index == 0) } else { pt_len == size };
        if ok { Ok(pt_len) } else { Err(CryptoError::Integrity) }
    }
}
