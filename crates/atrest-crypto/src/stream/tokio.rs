//! tokio `AsyncWrite` and `AsyncRead` adapters, with the same guarantees as the
//! blocking ones in [`super::sync`].

use super::buffer::{Decryptor, Encryptor};
use super::segment::{SegmentOpener, SegmentSealer};
use crate::secret::SecretKey;
use crate::{CryptoError, Result};
use atrest_format::{DEFAULT_SEGMENT_SIZE_LOG2, StreamHeader};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Encrypts everything written to it into `inner`. `shutdown()` seals the final
/// segment; a writer dropped without it leaves a stream readers reject as truncated.
pub struct AsyncEncryptingWriter<W> {
    inner: W,
    enc: Encryptor,
}

impl<W: AsyncWrite + Unpin> AsyncEncryptingWriter<W> {
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

    /// The inner writer (after `shutdown()`).
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.enc.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, self.enc.pending()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.enc.consume(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncryptingWriter<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Poll::Ready(me.enc.push(data).map_err(CryptoError::into_io))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        me.enc.finish().map_err(CryptoError::into_io)?;
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

/// Decrypts a stream read from `inner`; end-of-file only after the final segment
/// authenticated.
pub struct AsyncDecryptingReader<R> {
    inner: R,
    dec: Decryptor,
}

impl<R: AsyncRead + Unpin> AsyncDecryptingReader<R> {
    /// Reads the header and checks the key commitment.
    ///
    /// # Errors
    /// [`CryptoError::Format`], [`CryptoError::CommitmentMismatch`], I/O.
    pub async fn new(data_key: &SecretKey, context: &[&[u8]], mut inner: R) -> Result<Self> {
        let mut header = [0u8; StreamHeader::LEN];
        let mut got = 0;
        while got < header.len() {
            let n = inner.read(&mut header[got..]).await?;
            if n == 0 {
                StreamHeader::parse(&header[..got])?;
                return Err(CryptoError::Integrity);
            }
            got += n;
        }
        let opener = SegmentOpener::new(data_key, context, &header)?;
        Ok(Self { inner, dec: Decryptor::new(opener) })
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptingReader<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        while me.dec.plaintext().is_empty() {
            if me.dec.is_done() || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            while me.dec.needs_input() {
                let mut rb = ReadBuf::new(me.dec.space());
                ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                me.dec.advance(n);
            }
            me.dec.open_next().map_err(CryptoError::into_io)?;
        }
        let p = me.dec.plaintext();
        let n = p.len().min(out.remaining());
        out.put_slice(&p[..n]);
        me.dec.consume(n);
        Poll::Ready(Ok(()))
    }
}
