//! Blocking `Write` and `Read` adapters.

use super::buffer::{Decryptor, Encryptor};
use super::segment::{SegmentOpener, SegmentSealer};
use crate::secret::SecretKey;
use crate::{CryptoError, Result};
use atrest_format::{DEFAULT_SEGMENT_SIZE_LOG2, StreamHeader};
use std::io::{self, Read, Write};

/// Encrypts everything written to it into `inner`. Call [`EncryptingWriter::finish`]:
/// a writer dropped without it leaves a stream that every reader rejects as truncated.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    enc: Encryptor,
}

impl<W: Write> EncryptingWriter<W> {
    /// A writer with 64 KiB segments.
    ///
    /// # Errors
    /// As [`SegmentSealer::new`].
    pub fn new(data_key: &SecretKey, context: &[&[u8]], inner: W) -> Result<Self> {
        Self::with_segment_size(data_key, context, inner, DEFAULT_SEGMENT_SIZE_LOG2)
    }

    /// A writer with segments of `2^segment_size_log2` bytes.
    ///
    /// # Errors
    /// As [`SegmentSealer::new`].
    pub fn with_segment_size(data_key: &SecretKey, context: &[&[u8]], inner: W, segment_size_log2: u8) -> Result<Self> {
        let sealer = SegmentSealer::new(data_key, context, segment_size_log2)?;
        Ok(Self { inner, enc: Encryptor::new(sealer) })
    }

    fn drain(&mut self) -> io::Result<()> {
        while !self.enc.pending().is_empty() {
            let n = self.inner.write(self.enc.pending())?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.enc.consume(n);
        }
        Ok(())
    }

    /// Seals the final segment, flushes, and returns the inner writer.
    ///
    /// # Errors
    /// I/O errors of the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.drain()?;
        self.enc.finish().map_err(CryptoError::into_io)?;
        self.drain()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.drain()?;
        self.enc.push(data).map_err(CryptoError::into_io)
    }

    /// Writes out every sealed segment. The open segment stays buffered: segments are
    /// sealed only when full or at [`EncryptingWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

/// Decrypts a stream read from `inner`. Returns end-of-file only after the final
/// segment authenticated. A stream that fails to authenticate (modified, cut, reordered)
/// is an `io::ErrorKind::InvalidData` error whose source is the [`CryptoError`]; errors
/// of `inner` itself pass through unchanged; a bad header is refused by [`Self::new`].
pub struct DecryptingReader<R: Read> {
    inner: R,
    dec: Decryptor,
}

impl<R: Read> DecryptingReader<R> {
    /// Reads the header from `inner` and checks the key commitment.
    ///
    /// # Errors
    /// [`CryptoError::Format`], [`CryptoError::CommitmentMismatch`], I/O.
    pub fn new(data_key: &SecretKey, context: &[&[u8]], mut inner: R) -> Result<Self> {
        let mut header = [0u8; StreamHeader::LEN];
        read_header(&mut inner, &mut header)?;
        let opener = SegmentOpener::new(data_key, context, &header)?;
        Ok(Self { inner, dec: Decryptor::new(opener) })
    }

    /// The next authenticated chunk of plaintext, without copying it out; `None` at the
    /// authenticated end of the stream.
    ///
    /// # Errors
    /// As [`Read::read`].
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        if !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.dec.take_chunk()))
    }

    /// Makes plaintext available; false at the authenticated end.
    fn fill(&mut self) -> io::Result<bool> {
        while self.dec.plaintext().is_empty() {
            if self.dec.is_done() {
                return Ok(false);
            }
            while self.dec.needs_input() {
                let n = read_retrying(&mut self.inner, self.dec.space())?;
                self.dec.advance(n);
            }
            self.dec.open_next().map_err(CryptoError::into_io)?;
        }
        Ok(true)
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || !self.fill()? {
            return Ok(0);
        }
        let p = self.dec.plaintext();
        let n = p.len().min(out.len());
        out[..n].copy_from_slice(&p[..n]);
        self.dec.consume(n);
        Ok(n)
    }
}

fn read_retrying<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn read_header<R: Read>(r: &mut R, header: &mut [u8; StreamHeader::LEN]) -> Result<()> {
    let mut got = 0;
    while got < header.len() {
        let n = read_retrying(r, &mut header[got..])?;
        if n == 0 {
            // Let the parser say what is wrong (wrong kind, or truncated header).
            StreamHeader::parse(&header[..got])?;
            return Err(CryptoError::Integrity);
        }
        got += n;
    }
    Ok(())
}
