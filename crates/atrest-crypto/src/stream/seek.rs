//! Random access: `Read + Seek` over the plaintext of a stream stored in a
//! `Read + Seek` source. A read decrypts only the segments it touches; opening the
//! reader also authenticates the final segment, so the length it reports is trusted
//! (a cut or extended stream is refused up front, not at the end).

use super::segment::SegmentOpener;
use crate::secret::SecretKey;
use crate::{CryptoError, Result};
use atrest_format::{StreamHeader, StreamLayout, TAG_LEN};
use std::io::{self, Read, Seek, SeekFrom};

/// Random-access plaintext view of a stream.
pub struct SeekableReader<R: Read + Seek> {
    inner: R,
    opener: SegmentOpener,
    layout: StreamLayout,
    len: u64,
    segments: u64,
    pos: u64,
    /// Plaintext of the segment in `cached`.
    buf: Vec<u8>,
    cached: Option<(u64, usize)>,
    segments_opened: u64,
}

impl<R: Read + Seek> SeekableReader<R> {
    /// Reads the header, checks the commitment, validates the total length and
    /// authenticates the final segment.
    ///
    /// # Errors
    /// [`CryptoError::Format`] for a bad header or impossible length,
    /// [`CryptoError::CommitmentMismatch`], [`CryptoError::Integrity`], I/O.
    pub fn new(data_key: &SecretKey, context: &[&[u8]], mut inner: R) -> Result<Self> {
        let total = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        let mut header = vec![0u8; StreamHeader::LEN.min(usize::try_from(total).unwrap_or(usize::MAX))];
        inner.read_exact(&mut header)?;
        let opener = SegmentOpener::new(data_key, context, &header)?;
        let layout = opener.layout();
        let len = layout.plaintext_len(total)?;
        let segments = layout.segment_count(len);
        let buf = vec![0u8; layout.sealed_segment_size()];
        let mut me = Self { inner, opener, layout, len, segments, pos: 0, buf, cached: None, segments_opened: 0 };
        me.load(segments - 1)?;
        Ok(me)
    }

    /// Plaintext length (authenticated).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many segment decryptions this reader has done (lets tests prove that a range
    /// read touches only the segments it needs).
    #[must_use]
    pub fn segments_opened(&self) -> u64 {
        self.segments_opened
    }

    fn load(&mut self, index: u64) -> Result<()> {
        if self.cached.map(|c| c.0) == Some(index) {
            return Ok(());
        }
        self.cached = None;
        let last = index + 1 == self.segments;
        let sealed_len = if last {
            let start_pt = index * self.layout.segment_size() as u64;
            (self.len - start_pt) as usize + TAG_LEN
        } else {
            self.layout.sealed_segment_size()
        };
        self.inner.seek(SeekFrom::Start(self.layout.segment_offset(index)))?;
        self.inner.read_exact(&mut self.buf[..sealed_len]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof { CryptoError::Integrity } else { CryptoError::Io(e) }
        })?;
        self.segments_opened += 1;
        let pt = self.opener.open_segment(index, last, &mut self.buf[..sealed_len])?.len();
        self.cached = Some((index, pt));
        Ok(())
    }

    /// Reads exactly the plaintext bytes `offset..offset + out.len()`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] past the end; integrity and I/O errors.
    pub fn read_at(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(out.len() as u64).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(CryptoError::InvalidInput("range past the end of the blob"));
        }
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let index = self.layout.segment_of(at);
            self.load(index)?;
            let seg_start = index * self.layout.segment_size() as u64;
            let within = (at - seg_start) as usize;
            let avail = self.cached.map_or(0, |c| c.1) - within;
            let n = avail.min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.buf[within..within + n]);
            done += n;
        }
        Ok(())
    }
}

impl<R: Read + Seek> Drop for SeekableReader<R> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl<R: Read + Seek> Read for SeekableReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(out.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        // Serve at most to the end of the current segment per call.
        let seg_end = (self.layout.segment_of(self.pos) + 1) * self.layout.segment_size() as u64;
        let n = n.min((seg_end - self.pos) as usize);
        self.read_at(self.pos, &mut out[..n]).map_err(CryptoError::into_io)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SeekableReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}
