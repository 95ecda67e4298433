//! Segment assembly shared by the blocking and the async adapters: the adapters only
//! move bytes between these buffers and their inner reader or writer.

use super::segment::{SegmentOpener, SegmentSealer};
use crate::{CryptoError, Result};
use atrest_format::{StreamHeader, TAG_LEN};
use zeroize::Zeroize;

/// Plaintext in, sealed bytes out, one reused segment buffer.
pub(crate) struct Encryptor {
    sealer: SegmentSealer,
    header_sent: usize,
    buf: Vec<u8>,
    filled: usize,
    out: core::ops::Range<usize>,
    /// First byte of the next segment, taken when a full segment was sealed; it moves
    /// into the buffer once the sealed segment has been written out.
    carry: Option<u8>,
    finished: bool,
}

impl Encryptor {
    pub(crate) fn new(sealer: SegmentSealer) -> Self {
        let buf = vec![0u8; sealer.layout().sealed_segment_size()];
        Self { sealer, header_sent: 0, buf, filled: 0, out: 0..0, carry: None, finished: false }
    }

    /// Sealed bytes waiting to be written (the header first).
    pub(crate) fn pending(&self) -> &[u8] {
        if self.header_sent < StreamHeader::LEN {
            &self.sealer.header()[self.header_sent..]
        } else {
            &self.buf[self.out.clone()]
        }
    }

    pub(crate) fn consume(&mut self, n: usize) {
        if self.header_sent < StreamHeader::LEN {
            self.header_sent += n;
        } else {
            self.out.start += n;
        }
    }

    /// Takes plaintext and returns how many bytes it took (at least one, unless `data`
    /// is empty). Call only with nothing pending. Every call that seals a segment also
    /// takes data, so a caller told "0 bytes written" (or an error) has changed nothing
    /// and can still finish the stream.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<usize> {
        debug_assert!(self.pending().is_empty());
        if self.finished {
            return Err(CryptoError::InvalidInput("write after the stream was finished"));
        }
        if data.is_empty() {
            return Ok(0);
        }
        self.restore_carry();
        let size = self.buf.len() - TAG_LEN;
        // A full segment is sealed only once more data arrives (until then it may be the
        // last); the byte that proved it is not the last is taken along.
        if self.filled == size {
            self.seal(false)?;
            self.carry = Some(data[0]);
            return Ok(1);
        }
        let n = (size - self.filled).min(data.len());
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        Ok(n)
    }

    /// Seals the final segment; write out [`Self::pending`] afterwards. Call only with
    /// nothing pending. Idempotent.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if !self.finished {
            self.restore_carry();
            self.seal(true)?;
            self.finished = true;
        }
        Ok(())
    }

    fn restore_carry(&mut self) {
        if let Some(b) = self.carry.take() {
            debug_assert!(self.filled == 0 && self.pending().is_empty());
            self.buf[0] = b;
            self.filled = 1;
        }
    }

    fn seal(&mut self, last: bool) -> Result<()> {
        let len = self.filled + TAG_LEN;
        self.sealer.seal_segment(&mut self.buf[..len], last)?;
        self.out = 0..len;
        self.filled = 0;
        Ok(())
    }
}

impl Drop for Encryptor {
    fn drop(&mut self) {
        // The buffer may hold plaintext of an unfinished segment.
        self.buf.zeroize();
    }
}

/// Sealed bytes in, authenticated plaintext out, one reused segment buffer with one byte
/// of look-ahead (a full segment is final only if nothing follows it).
pub(crate) struct Decryptor {
    opener: SegmentOpener,
    buf: Vec<u8>,
    filled: usize,
    eof: bool,
    index: u64,
    out: core::ops::Range<usize>,
    carry: Option<u8>,
    done: bool,
}

impl Decryptor {
    pub(crate) fn new(opener: SegmentOpener) -> Self {
        let buf = vec![0u8; opener.layout().sealed_segment_size() + 1];
        Self { opener, buf, filled: 0, eof: false, index: 0, out: 0..0, carry: None, done: false }
    }

    /// Authenticated plaintext not yet handed out.
    pub(crate) fn plaintext(&self) -> &[u8] {
        &self.buf[self.out.clone()]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.out.start += n;
    }

    /// Hands out all remaining plaintext of the current segment at once.
    pub(crate) fn take_chunk(&mut self) -> &[u8] {
        let r = self.out.clone();
        self.out.start = r.end;
        &self.buf[r]
    }

    /// The final segment has been opened and handed out completely.
    pub(crate) fn is_done(&self) -> bool {
        self.done && self.out.is_empty()
    }

    /// Whether more sealed input is needed before the next segment can be opened. Call
    /// only once the current plaintext is consumed: it first moves the look-ahead byte
    /// held back from the previous segment to the front of the buffer (it could not sit
    /// there while that segment's plaintext was being handed out).
    pub(crate) fn needs_input(&mut self) -> bool {
        if let Some(b) = self.carry.take() {
            self.buf[0] = b;
            self.filled = 1;
        }
        !self.eof && self.filled < self.buf.len()
    }

    /// Where the next sealed bytes go.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Records `n` bytes read into [`Self::space`]; 0 means end of input.
    pub(crate) fn advance(&mut self, n: usize) {
        if n == 0 {
            self.eof = true;
        }
        self.filled += n;
    }

    /// Opens the buffered segment. Call when [`Self::needs_input`] is false.
    pub(crate) fn open_next(&mut self) -> Result<()> {
        let sealed = self.buf.len() - 1;
        let (len, last) = if self.filled > sealed { (sealed, false) } else { (self.filled, true) };
        if len == 0 {
            // Nothing at all after the header: the stream was cut before its first segment.
            return Err(CryptoError::Integrity);
        }
        let pt_len = self.opener.open_segment(self.index, last, &mut self.buf[..len])?.len();
        if !last {
            self.carry = Some(self.buf[sealed]);
        }
        self.out = 0..pt_len;
        self.filled = 0;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl Drop for Decryptor {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}
